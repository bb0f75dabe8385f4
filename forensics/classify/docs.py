"""docs/rules.md, written from the rules and the detectors themselves (so it cannot drift).

``python -m forensics.classify.docs > docs/rules.md``; a test checks the file is current.
"""

from __future__ import annotations

from ..detectors import describe
from ..model import VERDICT_CLASS
from .rules import RULES, RULES_VERSION


def render() -> str:
    out = ["# The verdict rules", "",
           f"Rules version `{RULES_VERSION}`. The classifier walks an ordered list of rules "
           "(`forensics/classify/rules.py`); the first rule whose required signals are all present, and none of "
           "whose forbidding signals is, gives the attempt its verdict, trigger and confidence (the rule's "
           "confidence times the strength of the weakest signal it needed). Every attempt in a report names the "
           "rule that fired (`rule`), and its `summary` is made of the details of the signals the rule lists, "
           "numbers included. Signals come from the detectors below; `forensics detectors` lists the same.", "",
           "Detectors run in two stages: *local* detectors read one attempt's packets as it finishes; "
           "*cross-attempt* detectors compare it with the capture's other attempts (same server, same name, same "
           "resolver), which are its controls. When the control that would decide is missing, the verdict is "
           "`inconclusive` and the summary names the missing control.", "",
           "| # | rule id | verdict | class | needs | forbidden by | trigger | why |",
           "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(RULES, 1):
        none = ", ".join(f"`{s}`" for s in r.none_of) if len(r.none_of) < 6 else "any trouble signal"
        needs = ", ".join(f"`{s}`" for s in r.all_of) or "—"
        trig = "from the evidence" if r.trigger == "*" else f"`{r.trigger}`"
        out.append(f"| {i} | `{r.id}` | `{r.verdict}` | {VERDICT_CLASS[r.verdict]} | {needs} | {none or '—'} | "
                   f"{trig} | {r.doc} |")
    out += ["", "\"Any trouble signal\" is the `TROUBLE` list in `rules.py`: every signal that says something "
            "went wrong.", "", "## Detectors and their signals", ""]
    for d in describe():
        out += [f"### `{d['name']}` ({d['stage']})", "", d["detects"], "",
                f"**Known false positives:** {d['false_positives']}", "", "| signal | meaning |", "|---|---|"]
        out += [f"| `{k}` | {v} |" for k, v in d["signals"].items()]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
