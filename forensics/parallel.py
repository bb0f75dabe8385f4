"""Running the parts of an analysis in parallel: local processes, or a Dask cluster.

Every part reads every input and keeps its share of the flows
(``forensics.pipeline.run_part``), so no flow is ever cut between workers:
nothing needs stitching, and the merged report equals the one-process report.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback

from .errors import ForensicsError, UsageError
from .pipeline import PartResult, new_workdir, remove_workdir, run_part


# ------------------------------------------------------------------ processes
def _child(conn, files, part, nparts, workdir, max_flows, keep, reachable, shared) -> None:
    def progress(done: int, total: int, packets: int) -> None:
        shared[3 * part] = done
        shared[3 * part + 1] = total
        shared[3 * part + 2] = packets

    try:
        res = run_part(files, part, nparts, workdir, max_flows=max_flows, keep=keep, progress=progress,
                       reachable=reachable)
        conn.send(("ok", res))
    except ForensicsError as exc:
        conn.send(("error", exc))
    except BaseException:  # a bug: the parent shows it
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def run_processes(files: list[str], jobs: int, workdir: str, *, max_flows: int | None = None,
                  keep: bool = False, progress=None, reachable: tuple[str, ...] = ()) -> list[PartResult]:
    """Run ``jobs`` parts in as many processes on this machine."""
    ctx = mp.get_context("spawn")  # no fork: the parent may run threads (the progress bar)
    shared = ctx.Array("q", 3 * jobs, lock=False)
    procs, conns = [], []
    for part in range(jobs):
        parent_end, child_end = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child, args=(child_end, files, part, jobs, workdir, max_flows, keep, reachable, shared),
                        daemon=True)
        p.start()
        child_end.close()
        procs.append(p)
        conns.append(parent_end)
    results: list[PartResult | None] = [None] * jobs
    failure: BaseException | None = None
    try:
        pending = set(range(jobs))
        while pending:
            for part in list(pending):
                c = conns[part]
                if c.poll(0.1):
                    try:
                        kind, value = c.recv()
                    except EOFError:
                        kind, value = "crash", f"worker {part} exited with status {procs[part].exitcode}"
                    pending.discard(part)
                    if kind == "ok":
                        results[part] = value
                    elif failure is None:
                        failure = value if kind == "error" else RuntimeError(f"a worker failed:\n{value}")
                elif not procs[part].is_alive() and not c.poll(0):
                    pending.discard(part)
                    if failure is None:
                        failure = RuntimeError(f"worker {part} died (exit status {procs[part].exitcode})")
            if progress is not None:
                # every part reads every input: the slowest part is the progress
                slow = min(range(jobs), key=lambda k: shared[3 * k])
                if shared[3 * slow + 1]:
                    progress(shared[3 * slow], shared[3 * slow + 1], shared[3 * slow + 2])
            if failure is not None:
                break
    finally:
        for p in procs:
            if failure is not None and p.is_alive():
                p.terminate()
            p.join()
    if failure is not None:
        raise failure
    return results  # type: ignore[return-value]


# ----------------------------------------------------------------------- Dask
def _dask_part(files, part, nparts, max_flows, keep, reachable) -> PartResult:
    """A part on a Dask worker: its spill travels back with the result."""
    workdir = new_workdir()
    try:
        res = run_part(files, part, nparts, workdir, max_flows=max_flows, keep=keep, reachable=reachable)
        with open(res.spill, "rb") as fh:
            res.spill_bytes = fh.read()
        return res
    finally:
        remove_workdir(workdir)


def run_dask(address: str, files: list[str], workdir: str, *, jobs: int | None = None,
             max_flows: int | None = None, keep: bool = False, reachable: tuple[str, ...] = ()) -> list[PartResult]:
    """Run the parts as tasks on the Dask cluster whose scheduler is at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'forensics[dask]'") from None
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    try:
        nparts = jobs or max(1, sum(client.nthreads().values()))
        absfiles = [os.path.abspath(f) for f in files]
        futures = [client.submit(_dask_part, absfiles, k, nparts, max_flows, keep, reachable, pure=False)
                   for k in range(nparts)]
        results: list[PartResult] = client.gather(futures)
    finally:
        client.close()
    for r in results:
        path = os.path.join(workdir, f"part{r.part}.spill")
        with open(path, "wb") as fh:
            fh.write(r.spill_bytes or b"")
        r.spill, r.spill_bytes = path, None
    return results
