"""Running the parts of an analysis in parallel: local processes, or a Dask cluster.

Every part reads every input and keeps its share of the flows
(``forensics.pipeline.run_part``), so no flow is ever cut between workers:
nothing needs stitching, and the merged report equals the one-process report.
Reading is cheap; what a part would repeat is decoding, and a compiled router
spares it that: each part decodes only its own flows' packets and the few every
part needs (ICMP errors, damaged or unusual packets).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import multiprocessing as mp
import os
import pickle
import signal
import threading
import traceback
from concurrent.futures import CancelledError

import numpy as np

from .detectors.controls import ControlSet
from .errors import ForensicsError, UsageError
from .ordering import DiskArray
from .pipeline import (JudgedPart, Numbering, PartResult, check_readable, judge_part, merge_control_sets,
                       new_workdir, number, remove_workdir, run_part, workdir_error)


def _controls_out(res: PartResult) -> bytes:
    """The part's controls taken off it, pickled: they travel as bytes that whoever gathers the
    parts passes on unread to every part's stage 2 (``_controls_in``)."""
    controls, res.controls = res.controls, None
    return pickle.dumps(controls, pickle.HIGHEST_PROTOCOL)


def _controls_in(blobs: list, own=None) -> ControlSet:
    """Every part's controls merged, in part order, from their bytes (None where ``own``, this
    part's own, is at hand): what the parent would send, without it pickling the merged set
    once per worker, one after the other, while the workers wait. The sets are this
    process's to give up (its own, and the ones it unpickled): the first is the merged one
    (``merge_control_sets``' ``adopt``)."""
    return merge_control_sets([own if b is None else pickle.loads(b) for b in blobs], adopt=True)


# ------------------------------------------------------------------ processes
#: Per part in the shared progress array: bytes read, bytes in all, packets read,
#: flows finished at the end, flows open at the end, attempts judged, attempts in all.
_SLOTS = 7
_STAGE_SLOT = {"finishing": 3, "judging": 5}


def _child(conn, files, part, nparts, workdir, max_flows, keep, reachable, shared) -> None:
    """One part in its own process: stage 1, then (given every part's controls and
    where its attempts go in the report) stage 2."""
    # A worker is ended by its parent (SIGTERM) when another part failed or the run is
    # stopped: it ends at once and quietly, whatever it was doing (forked, it would run the
    # command line's handler, and print a traceback from the middle of sending its own error).
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    base = _SLOTS * part

    def progress(done: int, total: int, packets: int) -> None:
        shared[base] = done
        shared[base + 1] = total
        shared[base + 2] = packets

    def stage(name: str, done: int, total: int) -> None:
        k = base + _STAGE_SLOT[name]
        shared[k] = done
        shared[k + 1] = total

    try:
        res = run_part(files, part, nparts, workdir, max_flows=max_flows, keep=keep, progress=progress,
                       reachable=reachable, stage=stage)
        kept, res.kept = res.kept, None  # the attempts travel once, with their verdicts
        mine = res.controls
        conn.send(("part", (res, _controls_out(res))))
        # the other parts' controls come first: they are merged here while the parent numbers
        # the attempts (on the benchmark's rotated 1M files, 0.04 s to number, 0.12 s to merge)
        msg = conn.recv()
        if msg[0] != "controls":
            return
        controls = _controls_in(msg[1], mine)
        msg = conn.recv()
        if msg[0] != "numbering":
            return
        res.kept = kept
        _, positions, ranks = msg
        conn.send(("judged", judge_part(res, controls, workdir, positions, ranks, stage)))
    except ForensicsError as exc:
        conn.send(("error", exc))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the parent is gone or stopping
    except OSError as exc:  # a full temporary folder is one line; another OS error, a bug
        err = workdir_error(exc, workdir)
        conn.send(("error", err) if err is not None else ("crash", traceback.format_exc()))
    except BaseException:  # a bug: the parent shows it
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def _start_method() -> str:
    """``fork`` where it is safe: a platform that forks, and no Python thread but this one (a
    thread could hold a lock the child would inherit held, never to be released). A forked
    worker starts with the parent's modules imported: it starts working at once, where a
    spawned one first spends 0.2-0.3 s importing them (measured on the benchmark machine),
    which every ``-j N`` run waited for. ``spawn`` otherwise."""
    if "fork" in mp.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


class _Workers:
    def __init__(self, files, jobs, workdir, max_flows, keep, reachable) -> None:
        method = _start_method()
        ctx = mp.get_context(method)
        self.jobs = jobs
        self.shared = ctx.Array("q", _SLOTS * jobs, lock=False)
        self.procs, self.conns = [], []
        # Forked, a worker inherits every object the parent tracks (the imports' 44,000 in the
        # command). Frozen before the fork (``gc.freeze``, as Python's documentation advises for
        # a fork without exec), they are left out of the worker's collections: none walks them
        # (writing to each one's header, which would copy its page), and they do not count
        # towards the growth that brings ``pipeline.collector_by_hand``'s collection, which
        # counts the part's own objects. The parent's own are unfrozen once the workers exist;
        # a caller that froze objects of its own manages its collector itself, and is left alone
        # (unfreezing would thaw its objects too).
        frozen = method == "fork" and gc.get_freeze_count() == 0
        if frozen:
            gc.freeze()
        try:
            for part in range(jobs):
                parent_end, child_end = ctx.Pipe()
                p = ctx.Process(target=_child, daemon=True,
                                args=(child_end, files, part, jobs, workdir, max_flows, keep, reachable, self.shared))
                p.start()
                child_end.close()
                self.procs.append(p)
                self.conns.append(parent_end)
        finally:
            if frozen:
                gc.unfreeze()

    def gather(self, want: str, progress=None, stage=None) -> list:
        """One message of kind ``want`` from every worker (raising the first failure)."""
        out: list = [None] * self.jobs
        pending = set(range(self.jobs))
        while pending:
            for part in sorted(pending):
                c = self.conns[part]
                if c.poll(0.05):
                    try:
                        kind, value = c.recv()
                    except EOFError:
                        kind, value = "crash", f"worker {part} exited with status {self.procs[part].exitcode}"
                    pending.discard(part)
                    if kind == want:
                        out[part] = value
                    elif kind == "error":
                        raise value
                    else:
                        raise RuntimeError(f"a worker failed:\n{value}")
                elif not self.procs[part].is_alive() and not c.poll(0):
                    raise RuntimeError(f"worker {part} died (exit status {self.procs[part].exitcode})")
            self._report(progress, stage)
        return out

    def _report(self, progress, stage) -> None:
        sh, parts = self.shared, range(self.jobs)
        if stage is not None:
            # the parts' counts summed, once every part has reached that stage
            for name in ("judging", "finishing"):
                k = _STAGE_SLOT[name]
                if all(sh[_SLOTS * p + k + 1] for p in parts):
                    stage(name, sum(sh[_SLOTS * p + k] for p in parts), sum(sh[_SLOTS * p + k + 1] for p in parts))
                    return
        if progress is not None:
            # every part reads every input: the slowest part is the progress
            slow = min(parts, key=lambda p: sh[_SLOTS * p])
            if sh[_SLOTS * slow + 1]:
                progress(sh[_SLOTS * slow], sh[_SLOTS * slow + 1], sh[_SLOTS * slow + 2])

    def send_each(self, msgs: list) -> None:
        for c, msg in zip(self.conns, msgs):
            c.send(msg)

    def close(self, failed: bool) -> None:
        for p, c in zip(self.procs, self.conns):
            if failed and p.is_alive():
                p.terminate()
            p.join()
            c.close()


def run_processes(files: list[str], jobs: int, workdir: str, *, max_flows: int | None = None,
                  keep: bool = False, progress=None, reachable: tuple[str, ...] = (),
                  stage=None) -> tuple[list[PartResult], list[JudgedPart], Numbering]:
    """Run ``jobs`` parts in as many processes on this machine, both stages."""
    workers = _Workers(files, jobs, workdir, max_flows, keep, reachable)
    failed = True
    try:
        sent = workers.gather("part", progress, stage)
        results = [res for res, _ in sent]
        check_readable(results)
        blobs = [blob for _, blob in sent]
        workers.send_each([("controls", [None if j == k else b for j, b in enumerate(blobs)]) for k in range(jobs)])
        numbering = number(results, workdir)
        workers.send_each([("numbering", numbering.positions[k], numbering.ranks[k]) for k in range(jobs)])
        judged = workers.gather("judged", progress, stage)
        failed = False
        return results, judged, numbering
    finally:
        workers.close(failed)


# ----------------------------------------------------------------------- Dask
def _dask_part(files, part, nparts, max_flows, keep, reachable):
    """Stage 1 of a part on a Dask worker. Its spill stays in a folder on that worker, for
    stage 2 (``_dask_judge``), which is sent to the same worker. Hands back the part without
    its controls, its controls pickled (passed on to every part's stage 2 unread), and the
    worker's address."""
    from distributed import get_worker

    workdir = new_workdir()
    try:
        res = run_part(files, part, nparts, workdir, max_flows=max_flows, keep=keep, reachable=reachable)
        res.worker_index = res.index  # stays here, for stage 2; the client fetches a copy in blocks
    except BaseException:
        remove_workdir(workdir)
        raise
    return res, _controls_out(res), get_worker().address


def _dask_judge(res, blobs, positions, ranks):
    """Stage 2 of a part, on the worker that holds its spill: the verdicts against every
    part's controls, and the part's lines of the report. The lines stay in the part's folder
    there, for the client to fetch a block at a time (``_dask_read``) and then remove the
    folder (``_dask_drop``): handed back whole, a part's lines (1 GB at 10M packets) were held
    in the client's memory two and three times over."""
    workdir = os.path.dirname(res.spill)
    try:
        judged = judge_part(res, _controls_in(blobs), workdir, positions, ranks)
    except BaseException:
        remove_workdir(workdir)
        raise
    return judged, os.path.getsize(judged.lines)


def _dask_read(path: str, offset: int, size: int) -> bytes:
    """``size`` bytes of the file ``path`` from ``offset``, on the worker that has it."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


def _dask_drop(spill: str) -> None:
    """A part's folder on its worker, removed once its lines are fetched or its stage 2 will not run."""
    remove_workdir(os.path.dirname(spill))


#: How often the client looks whether the worker holding a part's spill is still there, while
#: it waits for that part's stage 2 (a task pinned to a worker that is gone would wait forever).
DASK_POLL_S = 2.0
#: Times a part's two stages are run again elsewhere when the worker holding its spill is lost.
DASK_RERUNS = 2
#: How long a failed run waits for its parts' folders to be removed on the workers.
DASK_DROP_S = 30.0
#: Bytes of a part's report lines fetched from its worker at a time.
DASK_FETCH_BYTES = 32 << 20


class _Lost(Exception):
    """The worker a task was pinned to is gone."""


def _pinned(client, where: str, fn, *args):
    """``fn(*args)`` as a task on the worker ``where`` only (where the part's files are)."""
    return client.submit(fn, *args, workers=[where], allow_other_workers=False, pure=False)


def _drop_anywhere(client, spill: str) -> None:
    """Best effort: a part's folder whose worker is gone, removed by any worker (it stays, on a
    machine that lives on; it is gone with one that does not)."""
    try:
        client.submit(_dask_drop, spill, pure=False).result(timeout=DASK_DROP_S)
    except Exception:  # noqa: BLE001
        pass


def _judge_task(client, res: PartResult, where: str, blobs, numbering: Numbering):
    """Part ``res``'s stage 2, pinned to the worker ``where`` that holds its spill."""
    k = res.part
    # the part's index is on the worker; the numbering's files are on this machine: the worker
    # gets their contents, sent ahead of the task (not inside it)
    res = dataclasses.replace(res, index=res.worker_index)
    positions, ranks = client.scatter([np.asarray(numbering.positions[k]), np.asarray(numbering.ranks[k])],
                                      workers=[where])
    return _pinned(client, where, _dask_judge, res, blobs, positions, ranks)


def _alive(client) -> set:
    return set(client.scheduler_info().get("workers", {}))


def _pinned_result(client, future, where: str):
    """The result of ``future``, a task pinned to the worker ``where``; ``_Lost`` if that worker
    is gone before it comes (the task would wait for it forever), or the scheduler cancelled
    the task because its inputs were lost."""
    from distributed import KilledWorker

    while True:
        try:
            return future.result(timeout=DASK_POLL_S)
        except TimeoutError:  # (distributed's TimeoutError is the built-in one)
            if where in _alive(client):
                continue  # still at work
        except KilledWorker:
            pass
        except (CancelledError, asyncio.CancelledError):
            # cancelled by the scheduler ("lost dependencies"): what the task was to read, held by
            # that worker only, is gone with it. The client's list of workers is refreshed only
            # every few seconds, and may name it still.
            pass
        except Exception:  # noqa: BLE001 - a connection cut mid-transfer: lost if the worker is gone
            if where in _alive(client):
                raise
        future.cancel()
        raise _Lost(where)


def _fetch_file(client, path: str, size: int, where: str, dest: str) -> None:
    """The ``size`` bytes of the file ``path`` on the worker ``where`` (a part's index or its
    report lines), written to ``dest`` here, a block at a time."""
    with open(dest, "wb") as fh:
        for off in range(0, size, DASK_FETCH_BYTES):
            block = _pinned(client, where, _dask_read, path, off, DASK_FETCH_BYTES)
            fh.write(_pinned_result(client, block, where))
            del block


def _fetch_index(client, res: PartResult, where: str, workdir: str) -> DiskArray:
    """A copy here of the sorted index of part ``res``, which is on the worker ``where``."""
    wi = res.worker_index
    dest = os.path.join(workdir, f"part{res.part}.index")
    _fetch_file(client, wi.path, len(wi) * wi.dtype.itemsize, where, dest)
    got = DiskArray(dest, wi.dtype)
    if len(got) != len(wi):
        raise ForensicsError(f"part {res.part}: its index came short from {where}")
    return got


def _stage_1(client, future, k: int, workdir: str) -> tuple:
    """Part ``k``'s stage-1 result, its index fetched to this machine's disk in blocks. Should its
    worker go before that, the result goes with it and Dask computes it again elsewhere (this
    client holds the future); the old folder is removed where it can be."""
    for _ in range(DASK_RERUNS + 1):
        res, blob, where = future.result()
        try:
            res.index = _fetch_index(client, res, where, workdir)
            return res, blob, where
        except _Lost:
            _drop_anywhere(client, res.spill)
    raise ForensicsError(f"part {k}: the Dask workers holding it were lost {DASK_RERUNS + 1} times")


def _judged_or_rerun(client, tasks: list, k: int, pinned: list, blobs, numbering: Numbering, part_args: tuple,
                     dest: str) -> JudgedPart:
    """Part ``k`` judged, its lines fetched to ``dest`` and its folder on the worker removed.
    Its task is pinned to the worker that holds the part's spill; should that worker be lost
    (before or during stage 2, or while its lines are fetched), the spill is lost with it, so
    the part's stage 1 runs again on any worker (a part's result depends only on the inputs,
    so its attempts and controls are the ones already merged and numbered) and stage 2 after
    it, there; at most DASK_RERUNS times."""
    res, where = pinned[k]
    for tries in range(DASK_RERUNS + 1):
        try:
            judged, size = _pinned_result(client, tasks[k], where)
            _fetch_file(client, judged.lines, size, where, dest)
            try:
                _pinned_result(client, _pinned(client, where, _dask_drop, res.spill), where)
            except _Lost:
                pass
            judged.lines = dest
            return judged
        except _Lost:
            pass
        tasks[k].cancel()
        if tries == DASK_RERUNS:
            break
        _drop_anywhere(client, res.spill)
        again, _blob, where = client.submit(_dask_part, *part_args, pure=False).result()
        if len(again.index) != len(res.index):
            raise ForensicsError(f"part {k} found {len(again.index)} attempts when run again, {len(res.index)} "
                                 f"the first time: the inputs changed during the analysis")
        again.index = res.index  # (this machine's copy: the numbering is done; stage 2 reads the worker's)
        again.infos, res = res.infos, again  # the paths as the caller gave them
        pinned[k] = (res, where)
        tasks[k] = _judge_task(client, res, where, blobs, numbering)
    raise ForensicsError(f"part {k}: the Dask workers holding it were lost {DASK_RERUNS + 1} times")


def run_dask(address: str, files: list[str], workdir: str, *, jobs: int | None = None,
             max_flows: int | None = None, keep: bool = False,
             reachable: tuple[str, ...] = ()) -> tuple[list[PartResult], list[JudgedPart], Numbering]:
    """Run the parts as tasks on the Dask cluster whose scheduler is at ``address``, both
    stages: each part's stage 2 on the worker that ran its stage 1 and holds its spill, as
    ``-j N`` does in its processes. Only the parts' indexes, controls and final lines come
    to this machine: each index written to disk here as it comes, the lines one part at a time,
    fetched in blocks of DASK_FETCH_BYTES."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("--scheduler needs Dask: pip install 'forensics[dask]'") from None
    try:
        client = Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    sent: list = []
    futures: list = []
    pinned: list = []  # (part, worker holding its spill)
    tasks: list = []  # each part's stage 2, None once its lines are here
    try:
        nparts = jobs or max(1, sum(client.nthreads().values()))
        absfiles = [os.path.abspath(f) for f in files]
        futures = [client.submit(_dask_part, absfiles, k, nparts, max_flows, keep, reachable, pure=False)
                   for k in range(nparts)]
        sent = [_stage_1(client, f, k, workdir) for k, f in enumerate(futures)]  # one part at a time
        futures = []
        results = [res for res, _, _ in sent]
        for r in results:
            for info, f in zip(r.infos, files):  # the paths as the caller gave them
                info.path = f
        check_readable(results)
        numbering = number(results, workdir)
        # every part's controls, on every worker: each part's stage 2 merges them all, and a
        # copy on every worker survives the loss of any one of them
        blobs = client.scatter([blob for _, blob, _ in sent], broadcast=True)
        pinned = [(res, where) for res, _, where in sent]
        tasks = [_judge_task(client, res, where, blobs, numbering) for res, where in pinned]
        judged: list[JudgedPart] = []
        for k in range(len(tasks)):  # one part's lines at a time, fetched a block at a time
            judged.append(_judged_or_rerun(client, tasks, k, pinned, blobs, numbering,
                                           (absfiles, k, nparts, max_flows, keep, reachable),
                                           os.path.join(workdir, f"part{pinned[k][0].part}.lines")))
            tasks[k] = None
        return results, judged, numbering
    finally:
        _drop_unjudged(client, futures, sent, pinned, tasks)
        client.close()


def _drop_unjudged(client, futures: list, sent: list, pinned: list, tasks: list) -> None:
    """The folders of the parts whose stage 2 will not run or did not finish, removed on their
    workers, when the run stops early (a part failed, a stage-2 task never started): a part
    that did its stage 1 and no stage 2 leaves its spill there otherwise. Best effort: a worker
    may be gone, with its folders. (A stage-1 task still running when stage 1 failed elsewhere
    leaves its folder: it cannot be told to stop.)"""
    if futures:  # stage 1 failed: the parts that did finish it
        left = []
        for f in futures:
            if f.status == "finished":
                try:
                    res, _, where = f.result(timeout=5)
                    left.append((res, where))
                except Exception:  # noqa: BLE001
                    pass
            else:
                f.cancel()
    elif tasks:  # stage 2 started: the parts whose lines did not come
        left = [pinned[k] for k, t in enumerate(tasks) if t is not None]
        for t in tasks:
            if t is not None:
                t.cancel()
    else:  # stage 1 done, stage 2 never started
        left = [(res, where) for res, _, where in sent]
    if not left:
        return
    try:
        alive = _alive(client)
        drops = [_pinned(client, where, _dask_drop, res.spill)
                 for res, where in left if where in alive]  # (pinned to a worker that is gone, it would wait)
        for f in drops:
            f.result(timeout=DASK_DROP_S)
    except Exception:  # noqa: BLE001 - best effort: the worker may be gone
        pass
