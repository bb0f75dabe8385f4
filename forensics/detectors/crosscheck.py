"""Attempts as each other's controls.

Detects: for a dropped or reset first payload, whether the same server
completed an exchange with another name from this vantage point (the name is
what matters: SNI/Host filtering; other names completed only from another
vantage point of the folder are reported apart, as no control for this path),
with the same name from the same vantage point (it is not the
name), with the same name only from another vantage point of the folder
(inputs that share no client address: the name works elsewhere and not on this
path, OONI's control measurement), or with nothing else (the control is
missing, and the summary says which one would settle it); for
ClientHellos that vanish, whether smaller hellos to the same server passed
(a box intolerant of big handshakes); for full-size segments that vanish,
whether the server acknowledged smaller ones elsewhere; for SYNs that vanish,
whether plain SYNs to the same server were answered while ECN SYNs were not,
and whether this address ever answered while other addresses did; for HTTP,
whether the same Host passed with another path (the URL or a keyword set it
off, not the Host).

Known false positives: a server that hosts each name on different machines
behind one address (a failing backend looks like a dropped name); a capture
with too few attempts for any control; two hosts of one site captured in one
folder whose traffic leaves by different paths look like two vantage points,
which they are.
"""

from __future__ import annotations

import re

from ..model import Finding
from .base import Facts, doc_parts, finding
from .controls import NAMES_SHOWN, Controls, from_here

NAME = "controls"

#: The signals this detector reports, and what each means.
SIGNALS = {
    'control-other-name-ok': 'other names completed at the same server and port',
    'control-same-name-ok': 'the same name completed at the same server and port in another attempt',
    'control-name-ok-elsewhere': 'the same name completed at the same server and port, but only from another '
                                 'vantage point of the folder (inputs that share no client address)',
    'control-other-name-ok-elsewhere': 'other names completed at the same server and port, but only from another '
                                       'vantage point of the folder: no control from this path',
    'control-name-filtered': 'the same name met forged packets elsewhere in the capture',
    'control-missing': 'no control attempt exists; the summary names the one that would settle it',
    'control-smaller-hello-ok': 'smaller ClientHellos completed at the same server',
    'control-plain-syn-ok': 'plain SYNs to the same server were answered while these ECN SYNs were not',
    'control-other-addresses-ok': 'this address never answered while other addresses did',
    'trigger-refined': 'the same Host passed with another path: the trigger is the URL or a keyword',
}

_DROPS = ("hello-dropped", "request-dropped", "payload-dropped")
#: The signals ``run`` looks into the controls for: an attempt with none of them gets no
#: finding from this detector whatever the controls hold, so its verdict is known before the
#: controls are complete (``pipeline`` judges it in its first stage). Every check in ``run``
#: asks for one of these.
ASKS = frozenset({*_DROPS, "rst-forged", "blockpage-forged", "rst-suspect", "syn-dropped", "syn-unanswered"})
_TOKEN = re.compile(r"[A-Za-z0-9]{3,}")


def asks(f: Facts) -> bool:
    """Whether ``run`` reads the controls for ``f`` at all (False: it finds nothing, whatever
    they hold)."""
    return f.transport == "tcp" and f.kind != "dns" and not ASKS.isdisjoint(f.signals())


class CrossCheckDetector:
    name = NAME
    detects, false_positives = doc_parts(__doc__)

    def run(self, f: Facts, controls: Controls) -> list[Finding]:
        if not asks(f):
            return []
        controls.settle()  # the capped sets cut to their caps, once after the last add
        sig = f.signals()
        st = controls.servers.get(f.server_ip)
        if st is None:
            return []
        out: list[Finding] = []
        where = f"{f.server_ip}:{f.server_port}" if ":" not in f.server_ip else f"[{f.server_ip}]:{f.server_port}"
        named = sig & {*_DROPS, "rst-forged", "blockpage-forged", "rst-suspect"}
        if named and f.name:
            done_here = st.names_at(f.server_port)
            mine = controls.vantage(f.input)
            here, far = controls.names_done(f.server_ip, f.server_port, mine)
            # the first others in name order (names_done gives one more than is shown: the
            # attempt's own name may be among them)
            others = [n for n in here if n != f.name][:NAMES_SHOWN - 1]
            others_far = [n for n in far if n != f.name][:NAMES_SHOWN - 1]
            same = elsewhere = False
            if f.name in done_here:
                same = from_here(done_here[f.name], mine)
                elsewhere = not same
            if same:
                out.append(finding(NAME, "control-same-name-ok", 1.0,
                                   f"{f.name} itself completed an exchange at {where} in another attempt, so the "
                                   f"name alone is not what fails"))
            elif elsewhere:
                far = sorted(done_here[f.name])[:3]  # known clients (a None would have been "same")
                out.append(finding(NAME, "control-name-ok-elsewhere", 1.0,
                                   f"{f.name} itself completed an exchange at {where} from {', '.join(far)}, "
                                   f"a vantage point of this folder that shares no client with this capture: the "
                                   f"server serves the name, the path from here does not deliver it",
                                   clients=tuple(far)))
            if others:
                out.append(finding(NAME, "control-other-name-ok", 1.0,
                                   f"other names completed at the same server ({', '.join(others)} at {where})",
                                   names=tuple(others)))
            elif others_far:
                out.append(finding(NAME, "control-other-name-ok-elsewhere", 1.0,
                                   f"other names completed at the same server ({', '.join(others_far)} at {where}), "
                                   f"but only from another vantage point of this folder: the server is up, and whether "
                                   f"this path delivers any name to it is not known", names=tuple(others_far)))
            bare = f.name.split(":")[0].lower()
            if not same and sig & set(_DROPS) and bare in controls.filtered_names:
                out.append(finding(NAME, "control-name-filtered", 1.0,
                                   f"connections for {bare} met forged packets elsewhere in this capture: the name "
                                   f"is being filtered on this path", name=bare))
            if not same and not elsewhere and not others and bare not in controls.filtered_names:
                out.append(finding(NAME, "control-missing", 1.0,
                                   f"no other name was tried at {where}{' from this vantage point' if others_far else ''}; a control "
                                   f"{'SNI' if f.kind == 'tls' else 'Host' if f.kind == 'http' else 'connection'} to the "
                                   f"same server would separate name filtering from a fault of the path or the server"))
        size = f.features.get("hello_size", 0)
        if "hello-dropped" in sig and size and st.hello_ok_max and size > st.hello_ok_max:
            out.append(finding(NAME, "control-smaller-hello-ok", 1.0,
                               f"ClientHellos of up to {st.hello_ok_max} bytes completed at {where}; this one "
                               f"({size} bytes, {f.features.get('hello_segments', 1)} segment(s)) vanished",
                               size=size, trigger="size"))
        if ("syn-dropped" in sig or "syn-unanswered" in sig) and f.features.get("ecn_unanswered") and st.plain_syn_answered:
            out.append(finding(NAME, "control-plain-syn-ok", 1.0,
                               f"SYNs asking for ECN went unanswered while {st.plain_syn_answered} plain SYN(s) to "
                               f"{f.server_ip} were answered", trigger="ecn"))
        if "syn-dropped" in sig and not st.synack and not st.completed and not f.features.get("ecn_unanswered"):
            answering = controls.answering_servers()
            if answering:
                out.append(finding(NAME, "control-other-addresses-ok", 1.0,
                                   f"{f.server_ip} never answered any of {st.attempts} attempt(s) in the capture while "
                                   f"{answering} other address(es) did; a server that is down looks the same, a "
                                   f"test from another network would tell", answering=answering))
            else:
                out.append(finding(NAME, "control-missing", 1.0,
                                   "no server answered any SYN in this capture: a control connection to another "
                                   "address would tell an address block from a dead link"))
        if f.kind == "http" and (sig & {"rst-forged", "blockpage-forged", "request-dropped"}):
            ok, bad = controls.paths.get((f.server_ip, f.server_port, f.name), (set(), set()))
            if ok:
                path = f.features.get("path", "")
                trig = "url"
                shared = None
                if len(bad) >= 2:
                    ok_tokens = {t.lower() for p in ok for t in _TOKEN.findall(p)}
                    common = set.intersection(*({t.lower() for t in _TOKEN.findall(p)} for p in bad)) - ok_tokens
                    if common:
                        trig, shared = "keyword", sorted(common)[0]
                detail = (f"the same Host passed with path {sorted(ok)[0]!r}; "
                          + (f"the failing paths share the word {shared!r}" if shared else
                             f"this path ({path!r}) or a word in it set it off"))
                out.append(finding(NAME, "trigger-refined", 1.0, detail, trigger=trig))
        return out
