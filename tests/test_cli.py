"""The command line: formats, exit codes, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from conftest import ROOT, validate

CMD = [sys.executable, "-m", "forensics"]


def run(*args, cwd=None):
    return subprocess.run(CMD + list(args), capture_output=True, text=True, timeout=120, cwd=cwd)


def _refused(path):
    t = 1_700_000_000.0
    syn = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="192.0.2.10", dst="203.0.113.5", ttl=64) / TCP(sport=41000, dport=8443, flags="S", seq=1000)
    rst = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="203.0.113.5", dst="192.0.2.10", ttl=52) / TCP(sport=8443, dport=41000, flags="RA", seq=0, ack=1001)
    syn.time, rst.time = t, t + 0.03
    wrpcap(str(path), [syn, rst])


def test_formats_agree(tmp_path):
    cap = tmp_path / "refused.pcap"
    _refused(cap)
    j = run("analyze", str(cap), "--format", "json")
    assert j.returncode == 0, j.stderr
    report = validate(json.loads(j.stdout))
    assert [a["verdict"] for a in report["attempts"]] == ["connection-refused"]
    assert report["attempts"][0]["class"] == "endpoint"
    lines = run("analyze", str(cap), "--format", "jsonl").stdout.splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["a1"]
    rows = list(csv.DictReader(io.StringIO(run("analyze", str(cap), "--format", "csv").stdout)))
    assert rows[0]["client_ip"] == "192.0.2.10" and rows[0]["verdict"] == "connection-refused"
    table = run("analyze", str(cap), "--format", "table").stdout
    assert "connection-refused" in table and "192.0.2.10:41000" in table
    out = tmp_path / "r.json"
    assert run("analyze", str(cap), "-o", str(out), "--format", "json").returncode == 0
    assert json.loads(out.read_text())["summary"]["attempts"] == 1


def test_not_a_capture_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a capture\n")
    r = run("analyze", str(bad))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "not a pcap or pcapng" in r.stderr


def test_missing_file_exit_2(tmp_path):
    r = run("analyze", str(tmp_path / "nope.pcap"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr


def test_output_never_overwrites_input(tmp_path):
    cap = tmp_path / "refused.pcap"
    _refused(cap)
    before = cap.read_bytes()
    r = run("analyze", str(cap), "-o", str(cap))
    assert r.returncode == 2 and cap.read_bytes() == before


def test_library_dataframe_has_csv_columns(tmp_path):
    from forensics import analyze
    from forensics.report import CSV_COLUMNS

    cap = tmp_path / "refused.pcap"
    _refused(cap)
    df = analyze(cap).attempts_frame()
    assert list(df.columns) == CSV_COLUMNS and df.iloc[0]["server_port"] == 8443


def test_detectors_command_lists_rules():
    r = run("detectors")
    assert r.returncode == 0 and "endpoint.refused" in r.stdout and "false positives" in r.stdout


def test_version_says_which_record_walk_runs():
    import os

    from forensics import __version__
    from forensics.sources import pcapio

    out = run("--version")
    assert out.returncode == 0 and out.stdout.splitlines()[0] == f"forensics {__version__}"
    assert ("record walk: compiled" in out.stdout) == (pcapio.compiled_walk is not None), out.stdout
    if pcapio.compiled_walk is not None:
        assert ("with the -j router" in out.stdout) == hasattr(pcapio.compiled_walk, "route"), out.stdout
        assert ("the merge of its report" in out.stdout) == hasattr(pcapio.compiled_walk, "merge_lines")
        assert ("and the joining of the JSON report's lines" in out.stdout) == hasattr(pcapio.compiled_walk,
                                                                                      "lead_lines"), out.stdout
        import importlib

        dec = importlib.import_module("forensics.sources.decode")
        assert ("headers decoded in compiled code" in out.stdout) == (dec.compiled_decode is not None), out.stdout
    forced = subprocess.run([sys.executable, "-m", "forensics", "--version"], capture_output=True, text=True,
                            env={**os.environ, "FORENSICS_PURE_WALK": "1"})
    assert "record walk: Python" in forced.stdout
    from forensics import dnslane

    assert ("line writer: compiled" in out.stdout) == (dnslane._pieces is not None), out.stdout
    from forensics import pipeline
    from forensics.reassembly import dnswire

    assert ("and stage 2's lines" in out.stdout) == (pipeline.spilled_lines is not pipeline._spilled_lines)
    assert ("DNS parser: compiled" in out.stdout) == (dnswire.fast_parse is not dnswire.parse), out.stdout
    from forensics import compiled, model

    assert ("record constructors: compiled" in out.stdout) == (compiled.slots_module() is not None), out.stdout
    assert ("record constructors: compiled" in out.stdout) == (type(model.new_tcp_conn).__name__ != "function")
    pure = subprocess.run([sys.executable, "-m", "forensics", "--version"], capture_output=True, text=True,
                          env={**os.environ, "FORENSICS_PURE": "1"})
    assert "line writer: Python" in pure.stdout and "DNS parser: Python" in pure.stdout, pure.stdout
    assert "record constructors: Python" in pure.stdout, pure.stdout
    from forensics.reassembly import tcp

    assert ("TCP row scan: compiled" in out.stdout) == (compiled.segscan_module() is not None), out.stdout
    assert ("TCP row scan: compiled" in out.stdout) == (tcp.scan_rows is not tcp.scan_records), out.stdout
    assert "TCP row scan: Python" in pure.stdout, pure.stdout


def test_version_says_when_the_compiled_walk_has_no_router(monkeypatch):
    """An editable install keeps an extension built before the router: -j N still
    works (every part decodes everything), and --version says so."""
    import types

    from click.testing import CliRunner

    from forensics import cli
    from forensics.sources import pcapio

    monkeypatch.setattr(pcapio, "compiled_walk", types.SimpleNamespace(walk=None))
    out = CliRunner().invoke(cli.cli, ["--version"])
    assert out.exit_code == 0 and "compiled, without the -j router" in out.output, out.output
    # one built before the merge of -j's report: the report is merged in Python, alike
    monkeypatch.setattr(pcapio, "compiled_walk", types.SimpleNamespace(walk=None, route=lambda *a: None))
    out = CliRunner().invoke(cli.cli, ["--version"])
    assert out.exit_code == 0 and "without the compiled merge" in out.output, out.output
    # one built before the joining of the JSON report's lines: -j's merge then runs in Python too
    # (its merge_lines takes no lead)
    monkeypatch.setattr(pcapio, "compiled_walk", types.SimpleNamespace(walk=None, route=lambda *a: None,
                                                                       merge_lines=lambda *a: None))
    out = CliRunner().invoke(cli.cli, ["--version"])
    assert out.exit_code == 0 and "without the compiled joining" in out.output, out.output
    # one built before the compiled header decoder: headers are decoded with numpy
    monkeypatch.setattr(pcapio, "compiled_walk", types.SimpleNamespace(walk=None, route=lambda *a: None,
                                                                       merge_lines=lambda *a: None,
                                                                       lead_lines=lambda *a: None))
    out = CliRunner().invoke(cli.cli, ["--version"])
    assert out.exit_code == 0 and "headers decoded with numpy (built from an older" in out.output, out.output


def test_text_and_byte_rendering_agree(tmp_path):
    """Into a file, the attempts' lines go as bytes under the text layer; into a
    StringIO, as text: the same report either way, and in order with the text
    written around them (an empty report too)."""
    import forensics
    from forensics.render import render, render_to_string

    cap = tmp_path / "refused.pcap"
    _refused(cap)
    empty = tmp_path / "empty.pcap"
    wrpcap(str(empty), [])
    for path in (cap, empty, ROOT / "pcaps"):
        rep = forensics.analyze(str(path))
        for fmt in ("json", "jsonl"):
            out = tmp_path / f"r.{fmt}"
            with open(out, "w", encoding="utf-8", newline="") as fh:
                render(rep, fmt, fh)
            assert out.read_text(encoding="utf-8") == render_to_string(rep, fmt), (path.name, fmt)
    assert json.loads(render_to_string(forensics.analyze(str(empty)), "json"))["attempts"] == []


def _stopped_by_sigterm(args, tmp_path, stdin=None, feed: bytes = b"") -> tuple[int, str, list]:
    """Run ``forensics analyze`` with its working folder under ``tmp_path``, send it SIGTERM once
    that folder exists, and return its exit code, its stderr and what is left of the folder."""
    import os
    import signal
    import time

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))
    p = subprocess.Popen([sys.executable, "-m", "forensics", "analyze", *args], stdin=stdin,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        if feed:
            p.stdin.write(feed)
            p.stdin.flush()  # and kept open: the analysis waits for more
        deadline = time.monotonic() + 30
        while not any(tmp.glob("forensics-*")) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert p.poll() is None, "the analysis ended before it could be stopped"
        assert any(tmp.glob("forensics-*")), "no working folder appeared"
        time.sleep(0.3)  # into the analysis
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err.decode(), sorted(tmp.rglob("*"))


def test_sigterm_removes_the_working_folder(tmp_path):
    """A run stopped by SIGTERM (``timeout``, a service stopping) ends as Ctrl-C does: one line,
    exit 143, and its working folder removed. Here it waits on a pipe that stays open."""
    data = (ROOT / "pcaps" / "dns-injector" / "client.pcap").read_bytes()
    rc, err, left = _stopped_by_sigterm(["-", "--format", "json"], tmp_path, stdin=subprocess.PIPE, feed=data)
    assert rc == 128 + 15, err
    assert err.strip().splitlines() == ["forensics: stopped by SIGTERM"], err
    assert left == []


def test_sigterm_ends_the_workers_and_removes_their_files(tmp_path):
    """The same with ``-j 2`` on a generated capture: the workers' spills go with the folder."""
    cap = tmp_path / "gen.pcap"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gen_capture.py"), "--packets", "300000",
                    "--out", str(cap)], check=True, capture_output=True)
    rc, err, left = _stopped_by_sigterm([str(cap), "-j", "2", "--format", "jsonl", "-o", str(tmp_path / "o")],
                                        tmp_path)
    assert rc == 128 + 15, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "forensics: stopped by SIGTERM", err
    assert left == []


def test_the_report_file_is_written_whole_or_not_at_all(tmp_path):
    """A run stopped while it writes its report (Ctrl-C, SIGTERM, a full disk) leaves the
    output file as it was, and no temporary file beside it."""
    import os

    from forensics.cli import _write_file

    out = tmp_path / "report.json"
    out.write_text("the previous report\n")
    os.chmod(out, 0o640)

    def stopped(fh):
        fh.write("{\"attempts\": [" * 1000)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write_file(str(out), stopped)
    assert out.read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    _write_file(str(out), lambda fh: fh.write("new\n"))
    assert out.read_text() == "new\n" and (out.stat().st_mode & 0o777) == 0o640
    # through a symlink, the link stays and its file is replaced
    link = tmp_path / "link.json"
    link.symlink_to(out)
    _write_file(str(link), lambda fh: fh.write("via link\n"))
    assert link.is_symlink() and out.read_text() == "via link\n"


def test_a_report_to_a_device_is_written_in_place(tmp_path):
    import os
    import stat

    r = subprocess.run([sys.executable, "-m", "forensics", "analyze", str(ROOT / "pcaps" / "sni-drop"),
                        "--format", "json", "-o", os.devnull], capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(tmp_path):
    """A missing folder is said before the analysis runs; a write that fails (here the
    device that is always full) after it, both as one line, never a traceback."""
    import os

    sample = str(ROOT / "pcaps" / "sni-drop")
    for out, words in ((tmp_path / "gone" / "r.json", "its folder does not exist"),
                       ("/dev/full", "could not be written")):
        if str(out) == "/dev/full" and not os.path.exists(out):
            continue
        r = subprocess.run([sys.executable, "-m", "forensics", "analyze", sample, "--format", "json", "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and words in r.stderr, r.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_full_temporary_folder_is_one_line_and_exit_2(tmp_path, jobs):
    """The analysis keeps its attempts in a temporary folder (TMPDIR): one that fills up (a
    tmpfs of 64 KB; the 30 samples need about 0.5 MB) ends the run with one line saying
    where, and what to do; the folder is left empty."""
    import os
    import shutil

    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small)],
                      capture_output=True).returncode:
        pytest.skip("this machine cannot mount a tmpfs here")
    try:
        r = subprocess.run(CMD + ["analyze", "-j", jobs, str(ROOT / "pcaps"), "-o", str(tmp_path / "r.json")],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "TMPDIR": str(small)})
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert str(small) in r.stderr and "No space left" in r.stderr and "TMPDIR" in r.stderr, r.stderr
        assert os.listdir(small) == []
        assert not (tmp_path / "r.json").exists()
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
