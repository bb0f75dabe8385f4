"""Build the optional compiled parts; the project's metadata is in pyproject.toml.

Two kinds, both ``optional``: without a C compiler, Python headers or Cython the
install still succeeds and everything runs as Python.

* ``forensics.sources._walk``: the record walk, written in Cython (``_walk.pyx``);
  ``forensics.sources.pcapio`` has the same walk in Python. Also the ``-j N`` router
  and the merge of the parts' report lines, each with its Python equivalent.
* ``forensics._lines``: the common DNS and TCP attempts' JSON pieces written from their
  values, in Cython (``_lines.pyx``); ``forensics.dnslane`` and ``forensics.report`` write the
  same bytes through dicts without it.
* ``forensics.reassembly._dnsparse``: ``dnswire.parse`` in Cython (``_dnsparse.pyx``), the same
  messages in a third of the time; ``dnswire.fast_parse`` is it, or ``parse`` without it.
* ``forensics._slots``: the records' constructors (``model.slot_filler``) as built-in
  functions that fill the slots from C, the same objects; ``model`` makes them in Python without it.
* ``forensics.reassembly._segscan``: a connection's rows scanned as the bytes they are kept in
  (``tcp.scan_records``: the same results, and the rows as tuples made only when asked for),
  and a batch's rows absorbed by their connections (``tcp.add_pieces``, ``absorb_groups``, ``syn_rows``).
* The per-attempt analysis modules (``ANALYSIS`` below): the very ``.py`` files,
  compiled as they are by Cython (no second source; augmenting ``.pxd`` files beside four of
  them, ``forensics/model.pxd`` and ``forensics/reassembly/{tlswire,dnswire,tcp}.pxd``, give a helper,
  the TLS and DNS parsers and the TCP row scan C types, and are recorded with their ``.py``). The
  interpreter's own work per step (dispatching each bytecode, looking names up)
  is what compiling removes: 14 % of the instructions of the analysis on the
  benchmark's 20k file. The build writes ``forensics/_compiled.json``, the
  SHA-256 of each module's source as compiled; ``forensics.compiled`` runs the
  source of a module edited since (or set ``FORENSICS_PURE=1`` for all of them).
"""

import importlib.util
import json
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

#: The modules an attempt passes through, compiled as they are. Not here: the
#: readers (their work is numpy's and the walk's), the CLI and the lab. A module
#: listed must not make closures that Cython would turn into reference cycles
#: (it keeps all the variables a function's nested functions use in one object,
#: so a nested function that another one calls holds itself): tests/test_gc.py.
ANALYSIS = [
    "forensics/pipeline.py",
    "forensics/model.py",
    "forensics/report.py",
    "forensics/reassembly/engine.py",
    "forensics/reassembly/tcp.py",
    "forensics/reassembly/dnswire.py",
    "forensics/reassembly/tlswire.py",
    "forensics/reassembly/httpwire.py",
    "forensics/reassembly/attempts.py",
    "forensics/classify/engine.py",
    "forensics/dnslane.py",
    "forensics/tlslane.py",
    "forensics/detectors/base.py",
    "forensics/detectors/features.py",
    "forensics/detectors/controls.py",
    "forensics/detectors/outcome.py",
    "forensics/detectors/dnsforge.py",
    "forensics/detectors/rst.py",
    "forensics/detectors/silence.py",
    "forensics/detectors/options.py",
    "forensics/detectors/addrspace.py",
    "forensics/detectors/ttl.py",
    "forensics/detectors/blockpage.py",
    "forensics/detectors/crosscheck.py",
]
#: Compiled as Python runs them: annotations are not type declarations (Cython
#: would otherwise reject a list passed where ``tuple`` is annotated, or a numpy
#: integer where ``int`` is), and functions keep their Python introspection.
DIRECTIVES = {"language_level": 3, "annotation_typing": False, "binding": True}
MANIFEST = "_compiled.json"


def _module(path: str) -> str:
    return path[:-3].replace("/", ".")


def _guard():
    """``forensics/compiled.py`` loaded by its path: the package itself is not importable while
    it is built (its ``__init__`` runs the guard), and the digest the build records must be the
    one the guard computes (``source_digest``)."""
    spec = importlib.util.spec_from_file_location("_forensics_compiled",
                                                  os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                               "forensics", "compiled.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (its dataclass looks its module up there)
    spec.loader.exec_module(mod)
    return mod


_source_digest = _guard().source_digest


class BuildExt(build_ext):
    """Compiles the extensions side by side, and records which analysis modules it built from which source."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            self.parallel = os.cpu_count() or 1
        self._built = {}

    def build_extension(self, ext):
        super().build_extension(ext)  # an optional one that fails raises here, and is not recorded
        src = ext.sources[0]
        if src.endswith(".c") and os.path.exists(src[:-2] + ".py"):
            self._built[ext.name] = _source_digest(src[:-2] + ".py")

    def run(self):
        super().run()
        # beside the compiled modules: the source tree (an editable install) or the wheel's tree
        pkg = os.path.dirname(self.get_ext_fullpath("forensics.model"))
        os.makedirs(pkg, exist_ok=True)
        with open(os.path.join(pkg, MANIFEST), "w") as fh:
            json.dump(dict(sorted(self._built.items())), fh, indent=1)
            fh.write("\n")


try:
    from Cython.Build import cythonize
except ImportError:  # no Cython: nothing to compile, everything runs as Python
    ext_modules = []
else:
    ext_modules = cythonize(
        [Extension("forensics.sources._walk", ["forensics/sources/_walk.pyx"]),
         Extension("forensics._lines", ["forensics/_lines.pyx"]),
         Extension("forensics.reassembly._dnsparse", ["forensics/reassembly/_dnsparse.pyx"]),
         Extension("forensics._slots", ["forensics/_slots.pyx"]),
         Extension("forensics.reassembly._segscan", ["forensics/reassembly/_segscan.pyx"])]
        + [Extension(_module(p), [p]) for p in ANALYSIS],
        compiler_directives=DIRECTIVES,
        nthreads=os.cpu_count() or 1,
        quiet=True,
    )
    for ext in ext_modules:
        ext.optional = True  # cythonize makes new Extensions and drops this flag: set it on them

setup(ext_modules=ext_modules, cmdclass={"build_ext": BuildExt})
