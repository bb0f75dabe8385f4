"""The library entry point: ``analyze(paths) -> Report``.

The work is split by flow (see ``forensics.pipeline``): ``jobs=N`` runs N
partitions in N processes on this machine, ``scheduler="tcp://host:8786"``
runs them as tasks on a Dask distributed cluster (``pip install
'forensics[dask]'``; every worker must see the input paths). The report is the
same, byte for byte, however the work was split.
"""

from __future__ import annotations

import inspect
import os
from typing import Callable, Iterable

from .errors import UsageError
from .pipeline import StageFn, assemble, finalize, new_workdir, remove_workdir, run_part, workdir_error
from .sources import STDIN, expand_paths
from .sources.pcapio import file_size

#: ``progress(bytes_done, bytes_total, packets_done)``; a two-argument callable
#: ``(bytes_done, bytes_total)`` is accepted too.
ProgressFn = Callable[..., None]
#: Inputs up to this size keep their ``Attempt`` and ``Verdict`` objects in the
#: report (``keep_attempts=None``); larger ones only their JSON, on disk.
KEEP_MAX_BYTES = 32 * 1024 * 1024


def analyze(paths: Iterable[str] | str, *, progress: ProgressFn | None = None, max_flows: int | None = None,
            jobs: int = 1, scheduler: str | None = None, keep_attempts: bool | None = None,
            reachable: Iterable[str] = (), stage: StageFn | None = None):
    """Read every capture in ``paths`` (files, directories, or ``-`` for standard input) and
    judge every attempt.

    ``jobs``: processes on this machine (1: this one). ``scheduler``: the address
    of a Dask scheduler to run the work on instead. ``keep_attempts``: keep the
    ``Attempt``/``Verdict`` objects (``report.attempts``); by default only for
    inputs up to ``KEEP_MAX_BYTES``. ``max_flows``: live connections tracked at
    once before the oldest are finished early (counted in ``evicted_flows``).
    ``reachable``: CIDRs that count as public address space in this network
    (beyond the global unicast space), for the special-purpose-answer check of
    forged DNS: a lab or an intranet whose servers live in such space.
    ``progress(bytes_done, bytes_total, packets_done)`` follows the reading;
    ``stage(name, done, total)`` what comes after it: "finishing" (the flows
    still open at the end, finished) and "judging" (attempts given verdicts).
    """
    reachable = _cidrs(reachable)
    if isinstance(paths, (str, os.PathLike)):
        paths = [str(paths)]
    files = expand_paths([str(p) for p in paths])
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    if STDIN in files:
        if scheduler:
            raise UsageError("standard input (-) cannot be sent to a Dask cluster: write the capture to a file "
                             "the workers can read")
        jobs = 1  # every part reads its input itself, and a pipe can be read once
    if keep_attempts is None:
        keep_attempts = STDIN not in files and sum(file_size(f) for f in files) <= KEEP_MAX_BYTES
    report_progress = _three_args(progress)
    workdir = new_workdir()
    try:
        if scheduler:
            from .parallel import run_dask

            results, judged, numbering = run_dask(scheduler, files, workdir, jobs=jobs if jobs > 1 else None,
                                                  max_flows=max_flows, keep=keep_attempts, reachable=reachable)
            return assemble(results, judged, numbering, workdir, max_flows=max_flows, cleanup=workdir)
        if jobs > 1:
            from .parallel import run_processes

            results, judged, numbering = run_processes(files, jobs, workdir, max_flows=max_flows,
                                                       keep=keep_attempts, progress=report_progress,
                                                       reachable=reachable, stage=stage)
            return assemble(results, judged, numbering, workdir, max_flows=max_flows, cleanup=workdir)
        results = [run_part(files, 0, 1, workdir, max_flows=max_flows, keep=keep_attempts,
                            progress=report_progress, reachable=reachable, stage=stage)]
        return finalize(results, workdir, max_flows=max_flows, cleanup=workdir, stage=stage)
    except OSError as exc:
        remove_workdir(workdir)
        err = workdir_error(exc, workdir)
        if err is None:
            raise
        raise err from None
    except BaseException:
        remove_workdir(workdir)
        raise


def _cidrs(cidrs: Iterable[str]) -> tuple[str, ...]:
    import ipaddress

    out = []
    for c in cidrs:
        try:
            out.append(str(ipaddress.ip_network(c.strip(), strict=False)))
        except ValueError:
            raise UsageError(f"--reachable: {c!r} is not an address range (expected CIDR, e.g. 10.0.0.0/8)") from None
    return tuple(out)


def _three_args(progress: ProgressFn | None):
    if progress is None:
        return None
    try:
        params = inspect.signature(progress).parameters.values()
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        varargs = any(p.kind == p.VAR_POSITIONAL for p in params)
    except (TypeError, ValueError):
        return progress
    if varargs or len(positional) >= 3:
        return progress
    return lambda done, total, packets: progress(done, total)
