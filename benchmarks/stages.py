#!/usr/bin/env python3
"""Time the analysis a layer at a time, in one process, against the speed targets' budgets.

``run.py`` times the whole command. This script says where a run's time goes, layer by
layer, each run afresh on the same input and each including the one before it:

* ``read``: the record walk and the columnar decode of every packet (``iter_inputs``);
* ``reassemble``: and the flows reassembled into finished connections and DNS
  transactions (``Reassembler``), which are counted and dropped;
* ``first stage``: ``forensics.analyze`` as ``forensics analyze -j 1`` runs it, up to where
  its verdicts begin (the first "judging" of its ``stage`` callback): and each attempt
  judged locally, its JSON pieces encoded and spilled, the parts' controls merged and the
  attempts numbered;
* ``whole``: and the rest of stage 2 (the verdicts left, the lines), and the report's JSON
  lines written out (to ``/dev/null``); the same run as the first stage, from its start.

``--repeat N`` rounds (default 3) run the layers one after the other each; each layer's
median is shown, so what ``reassemble`` adds to ``read`` can come out slightly off where
the machine's noise is as large. The analysis keeps no ``Attempt`` objects
(``keep_attempts=False``), as the command does on a large input.

Each layer is printed with its wall and CPU seconds, what it adds to the layer before,
and that per packet and per attempt. With ``--against RUN_JSON`` (``run.py --json-out`` on
the same input) it also prints the budgets that issue #6 sets: the seconds that are 5x
faster than lean ``tshark -T fields`` and 50x faster than scapy's dissection, with what
each layer leaves of them. The two do not measure quite the same thing: ``run.py`` times
the command, with the interpreter's start and the report's rendering; here the
interpreter is already up.

Exit status: 0, or 2 when the input cannot be read.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time

#: The targets of issue #6 for one process, as (name in run.py's results, factor).
TARGETS = (("tshark -T fields (lean: no seq analysis)", 5.0), ("scapy", 50.0))
LAYERS = ("read", "reassemble", "first stage", "whole")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _read(files: list[str], reassemble: bool) -> tuple[int, int]:
    """Packets read and (with ``reassemble``) items finished, with the pipeline's collector policy."""
    from forensics.pipeline import collector_by_hand
    from forensics.reassembly.engine import Reassembler
    from forensics.sources import iter_inputs

    finished = [0]

    def emit(items: list) -> None:
        finished[0] += len(items)

    engine = Reassembler(emit) if reassemble else None
    packets = 0
    with collector_by_hand() as tick:
        for idx, (info, batches) in enumerate(iter_inputs(files)):
            for rows, buf, now, made in batches:
                packets += len(rows)
                if engine is not None:
                    engine.feed(idx, rows, buf, now, made)
                tick()
            if engine is not None:
                engine.end_input(idx, info.end_ts)
        if engine is not None:
            engine.flush()
    return packets, finished[0]


def _stages(files: list[str]) -> tuple[dict, dict]:
    """One analysis as ``forensics analyze -j 1`` runs it (``analyze``), its lines written out:
    the figures up to its verdicts' start (its ``stage`` callback's first "judging"), and whole."""
    from forensics.api import analyze

    t, c = time.perf_counter(), _cpu()
    first: dict = {}

    def stage(name: str, _done: int, _total: int) -> None:
        if name == "judging" and not first:
            first.update(seconds=time.perf_counter() - t, cpu_seconds=_cpu() - c)

    report = analyze(files, jobs=1, keep_attempts=False, stage=stage)
    with open(os.devnull, "wb") as out:
        for block in report.iter_attempt_json_blocks(binary=True):
            out.write(block)
    whole = {"seconds": time.perf_counter() - t, "cpu_seconds": _cpu() - c, "attempts": report.summary()["attempts"]}
    return {**first, "attempts": whole["attempts"]}, whole


def measure(files: list[str], repeat: int = 3) -> dict:
    """Each layer's median wall and CPU seconds over ``repeat`` rounds (the layers interleaved, so
    that a slow spell of the machine hits them alike, and caches filled by the first round's
    first layers do not favour the later ones), the rounds' wall seconds, and the packets and
    attempts it saw."""
    rounds = [_round(files) for _ in range(repeat)]
    out = {}
    for name in LAYERS:
        runs = [r[name] for r in rounds]
        out[name] = {**runs[0], "seconds": statistics.median(x["seconds"] for x in runs),
                     "cpu_seconds": statistics.median(x["cpu_seconds"] for x in runs),
                     "runs_seconds": [x["seconds"] for x in runs]}
    return out


def _round(files: list[str]) -> dict:
    out: dict = {}
    for name, reassemble in (("read", False), ("reassemble", True)):
        t, c = time.perf_counter(), _cpu()
        packets, items = _read(files, reassemble)
        out[name] = {"seconds": time.perf_counter() - t, "cpu_seconds": _cpu() - c, "packets": packets,
                     **({"finished": items} if reassemble else {})}
    out["first stage"], out["whole"] = _stages(files)
    return out


def budgets(run_json: dict) -> list[tuple[str, float, float]]:
    """``(baseline, its seconds, the budget)`` of each target found in ``run.py``'s results."""
    res = run_json.get("results", {})
    found = []
    for name, factor in TARGETS:
        key = next((k for k in res if k.startswith(name) and res[k].get("ok")), None)
        if key is not None:
            found.append((key, float(res[key]["seconds"]), float(res[key]["seconds"]) / factor))
    return found


def render(layers: dict, against: list[tuple[str, float, float]]) -> str:
    packets = layers["read"]["packets"]
    attempts = layers["whole"]["attempts"]
    lines = [f"{'layer':12s} {'wall s':>8s} {'cpu s':>8s} {'adds s':>8s} {'us/packet':>10s} {'us/attempt':>11s}"]
    prev = 0.0
    for name in LAYERS:
        s = layers[name]["seconds"]
        add = s - prev
        lines.append(f"{name:12s} {s:8.2f} {layers[name]['cpu_seconds']:8.2f} {add:8.2f} "
                     f"{1e6 * add / max(packets, 1):10.2f} {1e6 * add / max(attempts, 1):11.2f}")
        prev = s
    lines.append(f"({packets:,} packets, {layers['reassemble']['finished']:,} connections and DNS "
                 f"transactions finished, {attempts:,} attempts; 'adds' is what the layer adds to the one above)")
    for base, secs, budget in against:
        left = [f"{name} {budget - layers[name]['seconds']:+.2f}" for name in LAYERS]
        lines.append(f"budget for the target against {base} ({secs:.2f} s): {budget:.2f} s; "
                     f"left after each layer: {', '.join(left)} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input", help="a pcap, or a folder of (rotated) pcaps")
    ap.add_argument("--against", metavar="RUN_JSON", help="run.py --json-out of the same input: print the budgets")
    ap.add_argument("--repeat", type=int, default=3, metavar="N", help="rounds; each layer's median is shown (default 3)")
    ap.add_argument("--json-out", help="write the layers' figures here")
    args = ap.parse_args(argv)
    from forensics.errors import ForensicsError
    from forensics.sources import expand_paths

    against = []
    if args.against:
        with open(args.against, encoding="utf-8") as fh:
            against = budgets(json.load(fh))
    try:
        layers = measure(expand_paths([args.input]), max(args.repeat, 1))
    except ForensicsError as exc:
        print(f"stages.py: {exc}", file=sys.stderr)
        return 2
    print(render(layers, against))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as fh:
            json.dump({"input": args.input, "layers": layers,
                       "budgets": [{"baseline": b, "seconds": s, "budget": g} for b, s, g in against]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
