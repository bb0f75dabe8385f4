"""The analyser's rate along one file: packets/s per block of packets read, then the
rate of each later stage (the flows still open at the end, finished; the verdicts).

Linear time means a constant rate along the file. Comparing whole runs of 1M and
10M packets mixes that with the machine's drift between runs (15 % here); within one
run, a cost that grows with what was read shows as a falling rate, block after block.

    python benchmarks/rate_along.py benchmarks/data/10m.pcap [--block 500000]

One process (``jobs=1``), the library's ``analyze`` with its progress callbacks; the
report is built and dropped. Prints one line per block, and the peak RSS so far.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("--block", type=int, default=500_000, help="packets per line while reading")
    ap.add_argument("--stage-block", type=int, default=100_000, help="items per line after reading")
    args = ap.parse_args()

    from forensics import api

    t0 = time.perf_counter()
    read = {"t": t0, "n": 0}
    stages: dict[str, dict] = {}

    def rss_mb() -> int:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024

    def progress(_done: int, _total: int, packets: int) -> None:
        if packets - read["n"] >= args.block:
            now = time.perf_counter()
            rate = (packets - read["n"]) / (now - read["t"])
            print(f"read     {packets:>11,} packets  at {now - t0:8.1f} s  {rate:9,.0f} packets/s  "
                  f"peak RSS {rss_mb()} MB", flush=True)
            read.update(t=now, n=packets)

    def stage(name: str, done: int, total: int) -> None:
        now = time.perf_counter()
        s = stages.setdefault(name, {"t": now, "n": 0})
        if done - s["n"] >= args.stage_block or (done == total and done > s["n"]):
            rate = (done - s["n"]) / max(now - s["t"], 1e-9)
            print(f"{name:9s}{done:>11,} of {total:,} at {now - t0:8.1f} s  {rate:9,.0f} /s", flush=True)
            s.update(t=now, n=done)

    report = api.analyze([args.input], progress=progress, stage=stage, jobs=1, keep_attempts=False)
    print(f"total    {time.perf_counter() - t0:.1f} s, {report.summary()['attempts']:,} attempts, "
          f"peak RSS {rss_mb()} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
