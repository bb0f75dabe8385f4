"""Shared fixtures: where ../shared is, the report schema, tshark as an oracle."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus"
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
