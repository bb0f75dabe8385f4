"""The command line: a thin layer that parses options, calls the library, renders.

Errors from the library (ForensicsError) become one line on stderr and the
contract's exit code; nothing else is printed as a traceback.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import stat
import sys
import tempfile

# No analysis step calls BLAS, but numpy's OpenBLAS starts a thread per core when numpy is
# imported, and each spins until its timeout: on the benchmark machine numpy's import took
# 0.21 s and 0.25 s of CPU with them, 0.15 s and 0.12 s with one thread, at every start of
# the command. Set before any module imports numpy; a value the user set stays.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import click

from . import __version__
from .errors import ForensicsError, UsageError


class _Group(click.Group):
    """A click group that turns the library's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ForensicsError as exc:
            click.echo(f"forensics: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            signum = getattr(exc, "signum", signal.SIGINT)
            click.echo("forensics: interrupted" if signum == signal.SIGINT
                       else f"forensics: stopped by {signal.Signals(signum).name}", err=True)
            sys.exit(128 + signum)


class _Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, as Ctrl-C is: the analysis' ``finally``
    blocks run, so its working folder (spills and report lines: hundreds of MB for a large
    capture) is removed and ``-j N`` workers are ended, where the signal's default action
    left them all behind."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, _frame) -> None:
    raise _Stopped(signum)


def _show_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from .sources import pcapio

    click.echo(f"forensics {__version__}")
    walk = pcapio.compiled_walk
    if walk is None:
        click.echo("record walk: Python (the extension is not built, or FORENSICS_PURE_WALK is set)")
    elif getattr(walk, "route", None) is None:  # an editable install keeps an old build until rebuilt
        click.echo("record walk: compiled, without the -j router (built from an older _walk.pyx: "
                   "each -j part decodes every packet; rebuild with pip install -e .)")
    elif getattr(walk, "merge_lines", None) is None:
        click.echo("record walk: compiled, with the -j router, without the compiled merge of -j's report "
                   "(built from an older _walk.pyx; rebuild with pip install -e .)")
    elif getattr(walk, "lead_lines", None) is None:
        click.echo("record walk: compiled, with the -j router and the merge of its report, without the "
                   "compiled joining of the JSON report's lines (built from an older _walk.pyx; rebuild with "
                   "pip install -e .)")
    elif getattr(walk, "decode_rows", None) is None:
        click.echo("record walk: compiled, with the -j router, the merge of its report and the joining of "
                   "the JSON report's lines; headers decoded with numpy (built from an older _walk.pyx; "
                   "rebuild with pip install -e .)")
    else:
        from .sources.decode import compiled_decode

        how = ("in compiled code" if compiled_decode is not None
               else "with numpy (the compiled rows are not this decode.py's PKT_DTYPE)")
        click.echo("record walk: compiled, with the -j router, the merge of its report and the joining of "
                   f"the JSON report's lines; headers decoded {how}")
    from . import compiled

    click.echo(compiled.describe())
    lines = compiled.lines_module()
    if lines is None:
        click.echo(f"line writer: Python (the extension is not built, or {compiled.PURE_ENV} is set)")
    elif not lines.SLOTS:
        click.echo(f"line writer: Python (the records' fields {', '.join(lines._missing)} have no slot to read)")
    elif getattr(lines, "spilled_lines", None) is None:
        click.echo("line writer: compiled (the common DNS and TCP attempts; stage 2's lines in Python: built "
                   "from an older _lines.pyx, rebuild with pip install -e .)")
    else:
        click.echo("line writer: compiled (the common DNS and TCP attempts, and stage 2's lines)")
    if compiled.dnsparse_module() is None:
        click.echo(f"DNS parser: Python (the extension is not built, or {compiled.PURE_ENV} is set)")
    else:
        click.echo("DNS parser: compiled")
    from .model import new_endpoint

    if type(new_endpoint).__name__ == "function":
        click.echo(f"record constructors: Python (the extension is not built, or {compiled.PURE_ENV} is set)")
    else:
        click.echo("record constructors: compiled")
    from .reassembly import tcp

    if tcp.scan_rows is tcp.scan_records:
        click.echo(f"TCP row scan: Python (the extension is not built, or {compiled.PURE_ENV} is set)")
    else:
        click.echo("TCP row scan: compiled")
    ctx.exit()


@click.group(cls=_Group)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_show_version,
              help="Show the version, and which parts run compiled, and exit.")
def cli() -> None:
    """Packet-level forensics: deliberate filtering, middlebox faults or the endpoints?"""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--format", "fmt", type=click.Choice(["table", "json", "jsonl", "csv"]), default=None,
              help="Output format (default: table on a terminal, json otherwise).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the report to this file instead of standard output (whole or not at all: a run "
                   "stopped while writing leaves the file as it was).")
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar on stderr (default: for inputs over a few MB on a terminal).")
@click.option("--reachable", "reachable", multiple=True, metavar="CIDR",
              help="Address range that counts as public in this network (repeatable), e.g. an intranet's or a "
                   "lab's server space, so that DNS answers in it are not taken for special-purpose space.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Processes to use (default: the machine's cores; 1 for small inputs and standard input).")
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Run on the Dask cluster whose scheduler is at ADDRESS (needs forensics[dask]).")
@click.option("--max-flows", type=click.IntRange(min=1), default=None,
              help="Connections tracked at once before the oldest are finished early (default 250000).")
def analyze(paths: tuple[str, ...], fmt: str | None, output: str | None, progress: bool | None,
            reachable: tuple[str, ...], jobs: int | None, scheduler: str | None, max_flows: int | None) -> None:
    """Reconstruct every connection attempt in PATHS (captures or directories) and judge it.

    A PATH of - reads a capture from standard input as it arrives, e.g. live from
    tcpdump -U -w - (pcap or pcapng, gzip too); Ctrl-C or the end of the stream ends
    the input, and what was read is judged and reported.

    Exit status: 0 no deliberate interference found, 1 at least one attempt
    judged deliberate, 2 unreadable input or usage error.
    """
    from .api import analyze as run
    from .render import render
    from .sources import STDIN, expand_paths
    from .sources.pcapio import file_size

    files = expand_paths(list(paths))
    if output and not os.path.isdir(os.path.dirname(os.path.abspath(output))):
        raise UsageError(f"{output}: its folder does not exist")  # said now, not after the analysis
    for f in files:
        for o in ([output] if output else []):
            if f != STDIN and os.path.exists(o) and os.path.samefile(f, o):
                raise UsageError(f"{o}: the output would overwrite an input")
    if STDIN in files:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("-: standard input is a terminal; pipe a capture into it, e.g. "
                             "tcpdump -U -w - | forensics analyze -")
    if fmt is None:
        fmt = "table" if (output is None and sys.stdout.isatty()) else "json"
    total = sum(file_size(f) for f in files)
    if jobs is None:
        jobs = (os.cpu_count() or 1) if total > PARALLEL_MIN_BYTES else 1
    show = progress if progress is not None else (sys.stderr.isatty() and total > PROGRESS_MIN_BYTES)
    bar = _Progress(total if STDIN not in files else None) if show else None
    try:
        report = run(files, progress=bar.update if bar else None, stage=bar.stage if bar else None,
                     reachable=reachable, jobs=jobs, scheduler=scheduler, max_flows=max_flows, keep_attempts=False)
    finally:
        if bar:
            bar.close()
    for w in report.warnings:
        click.echo(f"forensics: warning: {w}", err=True)
    if fmt in ("json", "jsonl"):
        report.read_once()  # written once: the attempts' files are freed as the report is written
    if output:
        try:
            _write_file(output, lambda fh: render(report, fmt, fh))
        except OSError as exc:  # a full disk, a folder gone meanwhile: one line, not a traceback
            raise ForensicsError(f"{output}: the report could not be written: {exc.strerror or exc}") from None
    else:
        render(report, fmt, sys.stdout, color=sys.stdout.isatty(),
               width=shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 200)
    sys.exit(report.exit_code)


def _write_file(output: str, write) -> None:
    """``write(fh)`` into ``output`` whole or not at all: a regular file (or a new one) is
    written beside itself under a temporary name and renamed over it once complete, so a
    run stopped or failing while it writes (Ctrl-C, SIGTERM, a full disk) leaves the file
    as it was, never a report cut in the middle. A FIFO, a device or a directory that
    takes no new file is written in place."""
    target = os.path.realpath(output)  # through a symlink: the link stays, its file is replaced
    try:
        old = os.stat(target) if os.path.exists(target) else None
        regular = old is None or stat.S_ISREG(old.st_mode)
        fd, tmp = (tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part",
                                    dir=os.path.dirname(target)) if regular else (-1, None))
    except OSError:
        fd, tmp = -1, None
    if tmp is None:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        if old is None:
            os.chmod(tmp, 0o666 & ~_umask())  # what open() would have given a new file
        else:  # the file's own mode and, where allowed, owner
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            try:
                os.chown(tmp, old.st_uid, old.st_gid)
            except OSError:
                pass
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@cli.command()
def detectors() -> None:
    """List the detectors, what each detects and its known false positives."""
    from .classify.rules import RULES, RULES_VERSION
    from .detectors import describe

    for d in describe():
        click.echo(f"{d['name']} ({d['stage']})\n  detects: {d['detects']}\n  false positives: {d['false_positives']}")
        for k, v in d["signals"].items():
            click.echo(f"    {k:28} {v}")
        click.echo("")
    click.echo(f"rules (version {RULES_VERSION}), first match wins:")
    for r in RULES:
        click.echo(f"  {r.id:24} -> {r.verdict:20} needs {', '.join(r.all_of) or '-'}"
                   f"{'; not ' + ', '.join(r.none_of) if r.none_of else ''}")


#: Inputs smaller than this finish before a progress bar would be worth seeing.
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
#: Inputs smaller than this are analysed in one process (starting workers costs more).
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
#: Seconds between two drawings of the progress bar (rich's own refresh rate, 10 a second).
REFRESH_S = 0.1


class _Progress:
    """On stderr: the bytes read of the total with packets/s, MB/s and the time left;
    then the flows finished at the end and the attempts judged, each with its rate."""

    _WHAT = {"finishing": "open flows", "judging": "attempts"}

    def __init__(self, total: int | None) -> None:
        import time

        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._clock = time.monotonic
        self._t0 = self._clock()
        # drawn from the callbacks, not by rich's refresh thread: with no thread running, ``-j N``
        # can fork its workers (``parallel._start_method``)
        self._p = Progress(TextColumn("{task.description:9}"), BarColumn(), TextColumn("{task.fields[rate]}"),
                           TimeRemainingColumn(), transient=True, auto_refresh=False)
        self._task = self._p.add_task("reading", total=total, rate="")
        self._stage: str | None = None
        self._stage_t0 = 0.0
        self._drawn = -REFRESH_S
        self._p.start()

    def _draw(self, now: float, last: bool = False) -> None:
        if last or now - self._drawn >= REFRESH_S:
            self._drawn = now
            self._p.refresh()

    def update(self, done: int, total: int, packets: int = 0) -> None:
        if self._stage is not None:
            return
        now = self._clock()
        dt = now - self._t0
        rate = f"{packets / dt:,.0f} packets/s, {done / dt / 1e6:,.1f} MB/s" if dt > 0.5 and packets else ""
        self._p.update(self._task, completed=done, rate=rate)
        self._draw(now)

    def stage(self, name: str, done: int, total: int) -> None:
        now = self._clock()
        if name != self._stage:  # a new row from zero, so that its rate and time left are its own
            self._p.update(self._task, visible=False)
            self._task = self._p.add_task(name, total=max(total, 1), rate="")
            self._stage, self._stage_t0 = name, now
        dt = now - self._stage_t0
        rate = f"{done / dt:,.0f} {self._WHAT.get(name, 'items')}/s" if dt > 0.5 and done else ""
        self._p.update(self._task, completed=done, total=max(total, 1), rate=rate)
        self._draw(now, done >= total)

    def close(self) -> None:
        self._p.stop()


def _register_subcommands() -> None:
    from .lab.cli import lab

    cli.add_command(lab)


def main() -> None:
    # The command runs one analysis and ends. Its stages collect cyclic garbage by hand, only
    # when tracked objects pile up (``pipeline.collector_by_hand``); the automatic collector
    # would walk, for nothing, what the imports make (36 collections in the modules the analysis imports)
    # and, each time it comes back on between two stages, every object the analysis keeps
    # (94 ms at 1M packets of the benchmark). The library called from Python keeps the caller's.
    gc.disable()
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _stop)
    _register_subcommands()
    cli(prog_name="forensics")
