"""Shared fixtures: where ../shared is, the report schema, tshark as an oracle."""

from __future__ import annotations

import csv
import datetime
import importlib
import json
import os
import secrets
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
#: Many public test traces merged into one file: a speed and survival input, not a verdict test.
MERGED = SHARED / "bench" / "real-merged.pcap"


def need_merged() -> None:
    """Skip the test when ``MERGED`` is absent."""
    if not MERGED.exists():
        pytest.skip(f"{MERGED} is absent (../shared is not beside this checkout)")


def _compiled_walk_module():
    try:
        return importlib.import_module("forensics.sources._walk")
    except ImportError:
        return None


#: The compiled record walk (``forensics/sources/_walk.pyx``), or None when it is not built.
COMPILED_WALK = _compiled_walk_module()


def source_twin(module):
    """``module`` run from its ``.py`` as a module of its own, where the imported one is its compiled build
    (the tests compare the two); None where it is not built."""
    from forensics import compiled

    if module.__name__ not in compiled.STATE.compiled:
        return None
    import importlib.util
    import sys

    name = f"{module.__package__}._source_of_{module.__name__.rpartition('.')[2]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(module.__file__).with_name(
        module.__name__.rpartition(".")[2] + ".py"))
    twin = importlib.util.module_from_spec(spec)
    sys.modules[name] = twin  # (its dataclasses look their module up there)
    spec.loader.exec_module(twin)
    return twin


def need_compiled(without: str) -> None:
    """Skip the test when the compiled walk is not built; ``without`` says what that means."""
    if COMPILED_WALK is None:
        pytest.skip(f"the compiled walk is not built (python setup.py build_ext --inplace); {without}")


def load_benchmark(stem: str):
    """``benchmarks/<stem>.py`` (``gen_capture``, the generator; ``run``, the runner) as a
    module named ``bench_<stem>``, loaded once."""
    import importlib.util
    import sys

    name = f"bench_{stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{stem}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def generated(tmp_path, seed: int, *rates: str) -> str:
    """A 6,000-packet benchmark capture in ``tmp_path`` (``gen_capture``, with ``seed`` and the
    interference ``rates``, e.g. ``"--rst", "0.05"``): its path."""
    out = tmp_path / "gen.pcap"
    assert load_benchmark("gen_capture").main(["--packets", "6000", "--out", str(out), "--seed", str(seed),
                                               *rates]) == 0
    return str(out)


def with_samples_and_corpus(*made: str) -> list[str]:
    """The inputs the lanes' and writers' equality tests read: the samples, the captures a test
    ``made``, and every capture of the corpus (none where ``../shared`` is absent)."""
    return [str(ROOT / "pcaps"), *made, *[str(p) for p in captures_under(CORPUS)]]


def captures_under(root: Path) -> list[Path]:
    """Every file below ``root`` that opens with a pcap or pcapng magic, sorted (none if absent)."""
    from forensics.sources import pcapio

    magics = tuple(pcapio.PCAP_MAGICS) + (pcapio.PCAPNG_SHB,)
    out = []
    for p in sorted(root.rglob("*")) if root.exists() else ():
        if p.is_file():
            with p.open("rb") as fh:
                if fh.read(4) in magics:
                    out.append(p)
    return out


def _fuzz_seed() -> int:
    """FUZZ_SEED if set; in CI the UTC date (a new draw each day, the same all day); else random."""
    if os.environ.get("FUZZ_SEED"):
        return int(os.environ["FUZZ_SEED"])
    if os.environ.get("CI") == "true":
        return int(datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d"))
    return secrets.randbits(32)


#: The seed of the property tests' random examples (tests/test_fuzz.py); printed in the header.
FUZZ_SEED = _fuzz_seed()


def _seed_line() -> str:
    return (f"fuzz seed: {FUZZ_SEED} (reproduce: FUZZ_SEED={FUZZ_SEED} python3 -m pytest tests/test_fuzz.py; "
            f"longer: FUZZ_SCALE=20)")


def pytest_report_header(config):
    return _seed_line()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # the header is hidden under -q (the README's command): say it again at the end
    if "test_fuzz" in str(getattr(config, "args", "")) or any(
            "test_fuzz" in r.nodeid for reps in terminalreporter.stats.values() for r in reps
            if hasattr(r, "nodeid")):
        terminalreporter.write_line(_seed_line())


SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())


def corpus_entries() -> list[dict]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def need_corpus() -> None:
    if not (CORPUS / "MANIFEST.tsv").exists():
        pytest.skip(f"the shared corpus is not at {CORPUS} (clone the project beside ../shared to run this)")


def need_tshark() -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (apt install tshark): it is the oracle for this test")


def validate(report: dict) -> dict:
    """Check a report against docs/report.schema.json; return it."""
    import jsonschema

    jsonschema.validate(report, SCHEMA)
    return report


def analyze_json(*paths, **options) -> dict:
    """Analyse with the library and return the validated JSON report."""
    from forensics import analyze

    return validate(json.loads(json.dumps(analyze([str(p) for p in paths], **options).to_dict())))


def handed_on(path: str, monkeypatch, kind: type) -> list:
    """The finished items of type ``kind`` (``TcpConn``, ``DnsTransaction``) that the engine hands
    on for ``path``, in order: what the lanes' tests put to both paths."""
    import forensics
    from forensics import pipeline

    got: list = []
    real = pipeline._Recorder.record_items

    def record_items(self, items):
        got.extend(i for i in items if isinstance(i, kind))
        real(self, items)

    monkeypatch.setattr(pipeline._Recorder, "record_items", record_items)
    forensics.analyze([path], keep_attempts=False)
    monkeypatch.undo()
    return got


def reworded(apply_rules):
    """``apply_rules`` with every verdict's summary reworded: a lane must then stay closed."""
    from forensics.model import Verdict

    def rules(facts, findings):
        v = apply_rules(facts, findings)
        return Verdict(v.verdict, v.cls, v.trigger, v.confidence, "Something else.", v.rule, v.hop, v.evidence)

    return rules


def assert_same_reports_without(lane_flag: str, paths: list[str], monkeypatch, jobs: int) -> None:
    """Each of ``paths`` gives the same report, byte for byte, with ``pipeline.<lane_flag>``
    turned off (a lane closed: everything goes the general way) as with it on."""
    import forensics
    from forensics import pipeline
    from forensics.render import render_to_string

    for path in paths:
        with_lane = render_to_string(forensics.analyze([path], keep_attempts=False, jobs=jobs), "json")
        monkeypatch.setattr(pipeline, lane_flag, False)
        without = render_to_string(forensics.analyze([path], keep_attempts=False, jobs=jobs), "json")
        monkeypatch.undo()
        assert with_lane == without, path
