"""The analysis modules compiled by setup.py: they give the reports their source gives, and never hide an edit.

``setup.py`` compiles some ``.py`` files of the package as they are; the guard
(``forensics.compiled``) runs the source of any module edited since its build.
The first tests run the guard on a package made in ``tmp_path`` (its
"extensions" are garbage: importing one would fail, so a passing import proves
the source ran); the last compare whole reports, compiled against
``FORENSICS_PURE=1``, on the samples and the corpus.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import CORPUS, ROOT, need_corpus  # noqa: E402

from forensics import compiled  # noqa: E402

EXT = importlib.machinery.EXTENSION_SUFFIXES[0]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _package(root: Path, name: str) -> Path:
    """``name/`` with a.py, sub/b.py, c.py (each with a garbage extension beside it), and _walk with no .py."""
    pkg = root / name
    (pkg / "sub").mkdir(parents=True)
    for d in (pkg, pkg / "sub"):
        (d / "__init__.py").write_text("")
    for rel, value in (("a", 1), ("sub/b", 2), ("c", 3)):
        (pkg / f"{rel}.py").write_text(f"VALUE = {value}\n")
        (pkg / f"{rel}{EXT}").write_bytes(b"not an ELF object")
    (pkg / f"_walk{EXT}").write_bytes(b"not an ELF object")
    return pkg


def test_scan_runs_the_source_of_what_changed_or_is_unknown(tmp_path):
    pkg = _package(tmp_path, "fakepkg")
    manifest = {"fakepkg.a": _sha(pkg / "a.py"), "fakepkg.sub.b": _sha(pkg / "sub" / "b.py")}
    (pkg / compiled.MANIFEST).write_text(json.dumps(manifest))
    st = compiled.scan(str(pkg), "fakepkg", pure=False)
    assert sorted(st.compiled) == ["fakepkg.a", "fakepkg.sub.b"]
    assert st.why == {"fakepkg.c": "unknown"}  # an extension the manifest does not list
    (pkg / "sub" / "b.py").write_text("VALUE = 20\n")  # an edit after the build
    st = compiled.scan(str(pkg), "fakepkg", pure=False)
    assert sorted(st.compiled) == ["fakepkg.a"]
    assert st.why == {"fakepkg.c": "unknown", "fakepkg.sub.b": "stale"}
    assert st.source["fakepkg.sub.b"] == str(pkg / "sub" / "b.py")
    # an augmenting .pxd (C types for the build) is part of the source: recorded with it, then edited
    (pkg / "a.pxd").write_text("cpdef int f(int x)\n")
    assert compiled.scan(str(pkg), "fakepkg", pure=False).why.get("fakepkg.a") == "stale"
    manifest["fakepkg.a"] = compiled.source_digest(str(pkg / "a.py"))
    (pkg / compiled.MANIFEST).write_text(json.dumps(manifest))
    assert "fakepkg.a" in compiled.scan(str(pkg), "fakepkg", pure=False).compiled
    (pkg / "a.pxd").write_text("cpdef long f(long x)\n")
    assert compiled.scan(str(pkg), "fakepkg", pure=False).why.get("fakepkg.a") == "stale"
    # FORENSICS_PURE: every module with a build runs its source; _walk, with no .py, is never touched
    st = compiled.scan(str(pkg), "fakepkg", pure=True)
    assert not st.compiled and set(st.why.values()) == {"pure"} and len(st.source) == 3
    # a damaged manifest trusts no build
    (pkg / compiled.MANIFEST).write_text("{not json")
    st = compiled.scan(str(pkg), "fakepkg", pure=False)
    assert not st.compiled and set(st.why.values()) == {"unknown"}
    assert "edited since the build" in compiled.describe(st) and "a, b, c" in compiled.describe(st)


def test_the_finder_imports_the_source_where_python_would_take_the_build(tmp_path, monkeypatch):
    pkg = _package(tmp_path, "fakepkg2")
    (pkg / compiled.MANIFEST).write_text(json.dumps({"fakepkg2.a": "0" * 64}))  # built from other source
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("fakepkg2")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(ImportError):  # Python's own choice: the (garbage) extension
        importlib.import_module("fakepkg2.a")
    monkeypatch.delitem(sys.modules, "fakepkg2.a", raising=False)
    st = compiled.scan(str(pkg), "fakepkg2", pure=False)
    finder = compiled._SourceFinder(st.source)
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])
    assert importlib.import_module("fakepkg2.a").VALUE == 1
    assert importlib.import_module("fakepkg2.sub.b").VALUE == 2
    assert importlib.import_module("fakepkg2.c").VALUE == 3


def _need_compiled_analysis() -> None:
    if not compiled.STATE.compiled:
        pytest.skip("no analysis module is compiled in this install (Cython or a C compiler was missing "
                    f"at install time, or {compiled.PURE_ENV} is set): nothing to compare with the source")


def _run(args: list[str], pure: bool, tmp_path: Path, tag: str) -> bytes:
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    if pure:
        env[compiled.PURE_ENV] = "1"
    out = tmp_path / f"{tag}-{'pure' if pure else 'compiled'}.json"
    proc = subprocess.run([sys.executable, "-m", "forensics", "analyze", "-j", "1", *args, "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    return out.read_bytes()


def test_the_compiled_modules_are_the_ones_that_run():
    _need_compiled_analysis()
    code = "import forensics.reassembly.tcp as t, forensics.compiled as c; print(t.__file__); print(c.describe())"
    env = {k: v for k, v in os.environ.items() if k != compiled.PURE_ENV}
    built = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    source = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**env, compiled.PURE_ENV: "1"})
    assert built.stdout.splitlines()[0].endswith(EXT), built.stdout
    assert source.stdout.splitlines()[0].endswith("tcp.py"), source.stdout
    assert "FORENSICS_PURE is set" in source.stdout


def test_samples_give_the_same_report_compiled_and_from_source(tmp_path):
    _need_compiled_analysis()
    pure = _run([str(ROOT / "pcaps")], True, tmp_path, "samples")
    built = _run([str(ROOT / "pcaps")], False, tmp_path, "samples")
    assert len(json.loads(built)["attempts"]) > 100
    assert built == pure


@pytest.mark.corpus
def test_corpus_gives_the_same_report_compiled_and_from_source(tmp_path):
    _need_compiled_analysis()
    need_corpus()
    pure = _run([str(CORPUS)], True, tmp_path, "corpus")
    built = _run([str(CORPUS)], False, tmp_path, "corpus")
    assert len(json.loads(built)["attempts"]) > 100
    assert built == pure
