"""Detectors: each looks at one attempt (with the capture's other attempts as
context) and reports findings — signals with a strength and the frames that
show them. They never issue verdicts; the classifier does.

``BUILTIN`` is the explicit list, in the order they run. A detector that raises
is recorded in the report's warnings and the others still run.
"""

from __future__ import annotations

from . import blockpage, crosscheck, dnsforge, options, outcome, rst, silence

BUILTIN = (outcome.OutcomeDetector(), rst.ResetDetector(), blockpage.BlockpageDetector(),
           silence.SilenceDetector(), options.OptionsDetector())
#: Detectors that compare an attempt with the capture's other attempts (stage 2).
CROSS: tuple = (dnsforge.DnsForgeryDetector(), crosscheck.CrossCheckDetector())


def describe() -> list[dict]:
    import sys

    out = []
    for d in BUILTIN + CROSS:
        signals = getattr(sys.modules[type(d).__module__], "SIGNALS", {})
        out.append({"name": d.name, "detects": d.detects, "false_positives": d.false_positives,
                    "stage": "local" if d in BUILTIN else "cross-attempt", "signals": dict(signals)})
    return out
