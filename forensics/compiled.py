"""Which analysis modules run compiled, and the guard that keeps a compiled module from hiding its source.

``setup.py`` compiles some of the package's ``.py`` files, as they are, into
extension modules beside them, and writes ``_compiled.json``: the SHA-256 of each
source it compiled. Python imports an extension module in preference to the
``.py`` of the same name, so after an edit (an editable install keeps the build
of its last ``pip install``) the old build would run instead of the code on
disk. ``install()``, called by ``forensics/__init__.py`` before any other module
of the package is imported, sends every import of such a module to its source
when the source differs from the one compiled, when the manifest does not know
the module (a build left from an older list), or when ``FORENSICS_PURE=1`` asks
for the source everywhere. The compiled record walk (``sources/_walk``, which
has no ``.py`` of its own name) is not this guard's business: see
``FORENSICS_PURE_WALK`` in ``sources.pcapio``. Nor is the compiled writer of the
attempts' JSON pieces (``_lines``, also without a ``.py``): ``lines_module`` gives it,
or None under ``FORENSICS_PURE=1``, and its callers then make the pieces through dicts;
nor the compiled DNS parser (``reassembly/_dnsparse``): ``dnsparse_module``, the same way;
nor the records' compiled constructors (``_slots``): ``slots_module``; nor the scan of a
connection's rows as bytes (``reassembly/_segscan``): ``segscan_module``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from dataclasses import dataclass, field

MANIFEST = "_compiled.json"
PURE_ENV = "FORENSICS_PURE"


def _extension(name: str):
    """The optional extension module ``forensics.<name>``, or None: not built, or ``FORENSICS_PURE=1``."""
    if os.environ.get(PURE_ENV, "") not in ("", "0"):
        return None
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ImportError:
        return None


def lines_module():
    """``forensics._lines`` (the common attempts' JSON pieces written by compiled code, the same
    bytes as the dicts give), or None: not built, or ``FORENSICS_PURE=1`` (everything as Python)."""
    return _extension("_lines")


def dnsparse_module():
    """``forensics.reassembly._dnsparse`` (``dnswire.parse`` in compiled code, the same
    messages), or None: not built, or ``FORENSICS_PURE=1``."""
    return _extension("reassembly._dnsparse")


def slots_module():
    """``forensics._slots`` (the records' constructors in compiled code, the same objects:
    ``model.slot_filler``), or None: not built, or ``FORENSICS_PURE=1``."""
    return _extension("_slots")


def segscan_module():
    """``forensics.reassembly._segscan`` (a connection's rows scanned as bytes, what ``tcp._scan``
    gives: ``tcp.finish_tcp``), or None: not built, or ``FORENSICS_PURE=1``."""
    return _extension("reassembly._segscan")


@dataclass
class State:
    """What the guard found: module name -> path, by what runs."""

    compiled: dict[str, str] = field(default_factory=dict)  # the extension module runs
    source: dict[str, str] = field(default_factory=dict)  # a build exists, the .py runs
    why: dict[str, str] = field(default_factory=dict)  # of each in ``source``: "stale", "unknown" or "pure"


def scan(package_dir: str, package: str, pure: bool) -> State:
    """Every module under ``package_dir`` with both a ``.py`` and an extension build, sorted by what should run."""
    try:
        with open(os.path.join(package_dir, MANIFEST), encoding="utf-8") as fh:
            manifest = json.load(fh)
        if not isinstance(manifest, dict):
            manifest = {}
    except (OSError, ValueError):
        manifest = {}
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    st = State()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
        names = set(files)
        for f in sorted(files):
            if not f.endswith(suffixes):
                continue
            stem = f.split(".", 1)[0]
            if stem + ".py" not in names:
                continue
            rel = os.path.relpath(os.path.join(root, stem), package_dir)
            name = ".".join([package, *rel.split(os.sep)])
            py = os.path.join(root, stem + ".py")
            if pure:
                why = "pure"
            elif name not in manifest:
                why = "unknown"
            else:
                why = "" if source_digest(py) == manifest[name] else "stale"
            if why:
                st.source[name], st.why[name] = py, why
            else:
                st.compiled[name] = os.path.join(root, f)
    return st


def source_digest(py: str) -> str:
    """What the manifest records of a compiled module's source: the SHA-256 of its ``.py``, or,
    where an augmenting ``.pxd`` beside it gives the build C types, of both (``setup.py``
    computes the same): an edit of either makes the build stale."""
    with open(py, "rb") as fh:
        data = fh.read()
    pxd = py[:-3] + ".pxd"
    if os.path.exists(pxd):
        with open(pxd, "rb") as fh:
            data += b"\0pxd\0" + fh.read()
    return hashlib.sha256(data).hexdigest()


class _SourceFinder:
    """A meta path finder that answers only for the modules whose source must run."""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = paths

    def find_spec(self, name, path=None, target=None):
        py = self.paths.get(name)
        return importlib.util.spec_from_file_location(name, py) if py is not None else None


STATE = State()


def install() -> State:
    """Scan this package once and put the finder first on ``sys.meta_path`` if any source must run."""
    global STATE
    pkg_dir = os.path.dirname(os.path.abspath(__file__))
    pure = os.environ.get(PURE_ENV, "") not in ("", "0")
    STATE = scan(pkg_dir, __name__.rpartition(".")[0], pure)
    if STATE.source and not any(isinstance(f, _SourceFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFinder(STATE.source))
    return STATE


def describe(st: State | None = None) -> str:
    """One line for ``forensics --version``."""
    st = st or STATE
    n, m = len(st.compiled), len(st.source)
    if not n and not m:
        return "analysis: Python (no module compiled in this install)"
    if not n and all(w == "pure" for w in st.why.values()):
        return f"analysis: Python ({PURE_ENV} is set; {m} modules are compiled)"
    out = f"analysis: {n} modules compiled"
    if m:
        stale = sorted(k.rpartition(".")[2] for k, w in st.why.items() if w != "pure")
        out += (f", {m} run from source (edited since the build, or not in it: {', '.join(stale)}; "
                f"rebuild with pip install -e .)")
    return out
