"""Reading captures never needs root; what does (the lab) says so first, on one line, exit 3.

As root, each case runs in a forked child that drops to nobody/nogroup with no
supplementary groups (the interpreter and the modules are already loaded, so the
child needs no access to where Python lives); as another user, in-process.
The captures are temporary copies readable by nobody: the repository is never chmod-ed.
A second variant runs the real command line through ``setpriv`` when nobody
can reach this interpreter (skipped with the reason otherwise).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT

SAMPLE = ROOT / "pcaps" / "rst-injector" / "client.pcap"
NOBODY_UID = NOBODY_GID = 65534


@pytest.fixture
def tmp_path():
    """A temporary directory nobody can enter (pytest's own lives under a root-only directory)."""
    d = Path(tempfile.mkdtemp(prefix="forensics-priv-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _readable_copy(tmp: Path) -> Path:
    """A copy of the sample that nobody can read, in a temporary directory, not the repository."""
    dst = tmp / "client.pcap"
    if not dst.exists():
        shutil.copyfile(SAMPLE, dst)
        os.chmod(dst, 0o644)
    return dst


def _as_nobody(fn, *args) -> tuple[int, str, str]:
    """Run ``fn(*args)`` as nobody; returns (exit code, stdout, stderr)."""
    if os.geteuid() != 0:
        return _capture(fn, *args)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop everything, run, report through the pipe, never return
        code = 99
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY_GID)
            os.setuid(NOBODY_UID)
            assert os.geteuid() == NOBODY_UID and os.getegid() == NOBODY_GID and not os.getgroups()
            code, out, err = _capture(fn, *args)
            os.write(w, json.dumps([code, out, err]).encode())
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, never raised in the fork
            os.write(w, json.dumps([98, "", f"{type(exc).__name__}: {exc}"]).encode())
        finally:
            os._exit(code if isinstance(code, int) else 97)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return tuple(json.loads(data.decode()))


def _capture(fn, *args) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = fn(*args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout, sys.stderr = old
    return int(code or 0), out.getvalue(), err.getvalue()


def _cli(*argv: str) -> int:
    from forensics.cli import main

    sys.argv = ["forensics", *argv]
    main()
    return 0


def _analyze(path: str) -> int:
    import forensics

    report = forensics.analyze([path]).to_dict()
    print(json.dumps({"attempts": len(report["attempts"]), "uid": os.geteuid(),
                      "verdicts": sorted({a["verdict"] for a in report["attempts"]})}))
    return 0


def _warm(path: Path) -> None:
    """Load every module analysis and the CLI use, as root, before the child drops privileges."""
    _capture(_cli, "analyze", str(path), "--format", "json")
    _capture(_cli, "analyze", str(path), "--format", "table")
    _capture(_cli, "lab", "list")
    _capture(_analyze, str(path))
    import forensics.lab.netns  # noqa: F401


def test_library_reads_a_capture_as_nobody(tmp_path):
    path = _readable_copy(tmp_path)
    _warm(path)
    code, out, err = _as_nobody(_analyze, str(path))
    assert code == 0, err
    got = json.loads(out)
    as_root = json.loads(_capture(_analyze, str(path))[1])
    assert got["uid"] != 0 and got["attempts"] > 0, got
    assert (got["attempts"], got["verdicts"]) == (as_root["attempts"], as_root["verdicts"])


def test_cli_analyze_as_nobody_exits_by_the_contract(tmp_path):
    path = _readable_copy(tmp_path)
    _warm(path)
    code, out, err = _as_nobody(_cli, "analyze", str(path), "--format", "json")
    root_code, root_out, _ = _capture(_cli, "analyze", str(path), "--format", "json")
    assert code in (0, 1) and code == root_code, err  # a verdict, never a privilege failure
    assert json.loads(out)["attempts"] == json.loads(root_out)["attempts"] and not err.strip()


def test_lab_run_as_nobody_says_what_is_missing_and_exits_3(tmp_path):
    out_dir = tmp_path / "lab-out"
    os.chmod(tmp_path, 0o777)  # so that only the missing privilege, not the directory, can stop it
    _warm(_readable_copy(tmp_path))
    code, out, err = _as_nobody(_cli, "lab", "run", "rst-injector", "--out", str(out_dir))
    assert code == 3, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "root" in lines[0] and "Traceback" not in err, err
    assert lines[0].startswith("forensics: error: the lab needs root")
    assert not out_dir.exists(), "the lab touched the disk before checking it could run"


def test_lab_list_needs_no_root():
    _capture(_cli, "lab", "list")
    code, out, err = _as_nobody(_cli, "lab", "list")
    assert code == 0 and "rst-injector" in out, err


def test_real_command_line_as_nobody(tmp_path):
    """The same through ``setpriv`` and a fresh interpreter, when nobody can reach it."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to switch to nobody")
    drop = [setpriv, f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups"]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent",
           "LANG": "C.UTF-8"}
    probe = subprocess.run(drop + [sys.executable, "-c", "import forensics.cli, numpy"], env=env,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run {sys.executable} with this project's dependencies "
                    f"({probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode}); "
                    f"the forked variants above cover the same ground")
    path = _readable_copy(tmp_path)
    run = subprocess.run(drop + [sys.executable, "-m", "forensics", "analyze", str(path), "--format", "json"],
                         env=env, capture_output=True, text=True, timeout=120, cwd="/")
    assert run.returncode in (0, 1) and json.loads(run.stdout)["attempts"], run.stderr
    os.chmod(tmp_path, 0o777)
    lab = subprocess.run(drop + [sys.executable, "-m", "forensics", "lab", "run", "rst-injector",
                                 "--out", str(tmp_path / "out")], env=env, capture_output=True, text=True,
                         timeout=60, cwd="/")
    assert lab.returncode == 3 and len(lab.stderr.strip().splitlines()) == 1 and "root" in lab.stderr, lab.stderr
