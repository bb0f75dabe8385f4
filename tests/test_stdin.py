"""A capture on standard input (``tcpdump -U -w - | forensics analyze -``): the same
report as from the file, gzip too, one-line errors, and Ctrl-C ends the input
without losing what was read."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import signal
import struct
import subprocess
import sys
import termios
import threading
import time

import pytest

from conftest import ROOT, validate

CMD = [sys.executable, "-m", "forensics"]
SAMPLE = ROOT / "pcaps" / "transit-injector" / "client.pcap"  # injected resets and clean exchanges


def _analyze(*args, stdin_bytes=None):
    return subprocess.run(CMD + ["analyze", *args], input=stdin_bytes, capture_output=True, timeout=120)


def _file_report():
    res = _analyze(str(SAMPLE), "--format", "json")
    assert res.returncode == 1, res.stderr
    return json.loads(res.stdout)


def _same_but_path(piped: dict, from_file: dict) -> None:
    assert piped["attempts"] == from_file["attempts"]
    assert piped["summary"] == from_file["summary"]
    (a,), (b,) = piped["inputs"], from_file["inputs"]
    assert a["path"] == "-"
    assert {k: v for k, v in a.items() if k not in ("path", "format")} == \
        {k: v for k, v in b.items() if k not in ("path", "format")}


@pytest.mark.parametrize("compress", [False, True])
def test_piped_capture_gives_the_files_report(compress):
    data = SAMPLE.read_bytes()
    res = _analyze("-", "--format", "json", stdin_bytes=gzip.compress(data) if compress else data)
    assert res.returncode == 1, res.stderr  # deliberate interference found, as from the file
    piped = validate(json.loads(res.stdout))
    want = _file_report()
    if compress:  # bytes counts what was decompressed; everything else is the file's
        assert piped["inputs"][0]["format"] == "pcap.gz"
        assert piped["inputs"][0]["bytes"] == len(data)
    _same_but_path(piped, want)
    assert {a["verdict"] for a in piped["attempts"]} == {"ok", "injected-rst"}


def test_stdin_with_jobs_and_another_file_is_read_once():
    """-j 2 with standard input runs in one process (a pipe is read once), next to a file."""
    other = SAMPLE.with_name("client2.pcap")  # the same scenario seen from a second client
    res = _analyze("-j", "2", str(other), "-", "--format", "json", stdin_bytes=SAMPLE.read_bytes())
    assert res.returncode == 1, res.stderr
    rep = json.loads(res.stdout)
    assert [i["path"] for i in rep["inputs"]] == [str(other), "-"]
    files = _analyze(str(other), str(SAMPLE), "--format", "json")
    assert rep["attempts"] == json.loads(files.stdout)["attempts"]


@pytest.mark.parametrize("args,stdin_bytes,message", [
    (["-", "-"], b"", "- (standard input) can be given only once"),
    (["-", "--scheduler", "tcp://192.0.2.1:8786"], b"", "cannot be sent to a Dask cluster"),
    (["-"], b"", "not a capture file (only 0 bytes)"),
    (["-"], b"GET / HTTP/1.1\r\n\r\n", "not a pcap or pcapng capture"),
])
def test_stdin_errors_are_one_line_exit_2(args, stdin_bytes, message):
    res = _analyze(*args, stdin_bytes=stdin_bytes)
    assert res.returncode == 2
    err = res.stderr.decode()
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def _unread(fd: int) -> int:
    """Bytes written into a pipe and not read yet (FIONREAD works on either end on Linux)."""
    buf = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


def test_ctrl_c_ends_the_input_and_what_was_read_is_reported():
    """The capturing program keeps the pipe open (a live capture); Ctrl-C to forensics
    ends its input: the packets already read are judged and reported, with a warning."""
    data = SAMPLE.read_bytes()
    assert len(data) < 60_000  # fits in a pipe: the write does not block
    r, w = os.pipe()
    proc = subprocess.Popen(CMD + ["analyze", "-", "--format", "json"], stdin=r, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    os.close(r)
    try:
        os.write(w, data)
        deadline = time.monotonic() + 60
        while _unread(w) and time.monotonic() < deadline:  # until forensics has read it all
            time.sleep(0.05)
        assert _unread(w) == 0, "forensics never read its input"
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(w)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err  # the injected resets were found
    assert b"Traceback" not in err
    assert b"stopped by an interrupt (Ctrl-C) after 70 records" in err
    rep = json.loads(out)
    assert rep["attempts"] == _file_report()["attempts"]


def test_live_stream_interrupt_while_waiting(monkeypatch):
    """In process: Ctrl-C while the reader waits for packets ends the stream (after the
    grace for what the capturing program flushes), and puts the old handler back."""
    from forensics.sources import pcapio

    monkeypatch.setattr(pcapio, "LIVE_STOP_GRACE", 0.2)
    before = signal.getsignal(signal.SIGINT)
    r, w = os.pipe()
    stream = pcapio._LiveStream(r)
    try:
        os.write(w, b"abc")
        assert stream.read(2) == b"ab"  # what is there, without waiting for the chunk to fill
        assert stream.read(10) == b"c"
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        assert stream.read(10) == b""  # blocked with nothing to read, then interrupted
        assert 0.3 <= time.monotonic() - t0 < 5
        assert stream.interrupted
        assert signal.getsignal(signal.SIGINT) is before  # a second Ctrl-C is the default one
    finally:
        stream.close()
        os.close(r)
        os.close(w)
    assert signal.getsignal(signal.SIGINT) is before


def test_live_stream_keeps_reading_what_arrives_in_the_grace(monkeypatch):
    """After Ctrl-C, bytes the capturing program flushes right away are still read."""
    from forensics.sources import pcapio

    monkeypatch.setattr(pcapio, "LIVE_STOP_GRACE", 1.0)
    r, w = os.pipe()
    stream = pcapio._LiveStream(r)
    try:
        os.kill(os.getpid(), signal.SIGINT)  # handled at once, outside any read
        assert stream.interrupted
        os.write(w, b"tail")
        assert stream.read(100) == b"tail"
        assert stream.read(100) == b""  # the grace runs out: the end
    finally:
        stream.close()
        os.close(r)
        os.close(w)
