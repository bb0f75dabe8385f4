"""The library entry point: ``analyze(paths) -> Report``."""

from __future__ import annotations

import os
from typing import Callable, Iterable

from .classify.engine import RULES_VERSION, judge
from .errors import InputError, UsageError
from .model import Attempt, DnsTransaction, InputInfo, TcpConn
from .reassembly import attempts as attempts_mod
from .reassembly.engine import Reassembler
from .sources import iter_inputs, expand_paths

ProgressFn = Callable[[int, int], None]


def analyze(paths: Iterable[str] | str, *, progress: ProgressFn | None = None,
            max_flows: int | None = None, reachable: Iterable[str] = ()):
    """Read every capture in ``paths`` (files or directories) and judge every attempt.

    ``reachable``: CIDRs that count as public address space in this network
    (beyond the global unicast space), for the special-purpose-answer check of
    forged DNS: a lab or an intranet whose servers live in such space.
    """
    return _analyze(paths, progress, max_flows, _cidrs(reachable))


def _cidrs(cidrs: Iterable[str]) -> tuple[str, ...]:
    import ipaddress

    out = []
    for c in cidrs:
        try:
            out.append(str(ipaddress.ip_network(c.strip(), strict=False)))
        except ValueError:
            raise UsageError(f"--reachable: {c!r} is not an address range (expected CIDR, e.g. 10.0.0.0/8)") from None
    return tuple(out)


def _analyze(paths, progress, max_flows, reachable=()):
    from .report import Report

    if isinstance(paths, (str, os.PathLike)):
        paths = [str(paths)]
    files = expand_paths([str(p) for p in paths])
    found: list[Attempt] = []

    def emit(item: object) -> None:
        if isinstance(item, TcpConn):
            found.extend(attempts_mod.from_tcp(item))
        elif isinstance(item, DnsTransaction):
            found.append(attempts_mod.from_dns(item))

    engine = Reassembler(emit, **({"max_flows": max_flows} if max_flows else {}))
    infos: list[InputInfo] = []
    readable = 0
    errors: list[str] = []
    for idx, (info, batches) in enumerate(iter_inputs(files, progress)):
        infos.append(info)
        try:
            for rows, buf in batches:
                engine.feed(idx, rows, buf)
            readable += 1
        except InputError as exc:
            errors.append(str(exc))
            info.warnings.append(str(exc))
    if not readable:
        raise InputError(errors[0] if len(errors) == 1 else "; ".join(errors[:3]))
    engine.flush()
    found.sort(key=lambda a: (a.start, a.input, a.frames[0] if a.frames else 0))
    ranks = {k: i for i, k in enumerate(sorted({a.tcp.stream for a in found if a.tcp is not None}))}
    for i, a in enumerate(found, 1):
        object.__setattr__(a, "id", f"a{i}")
        if a.tcp is not None:
            object.__setattr__(a, "stream", ranks[a.tcp.stream])
    warnings: list[str] = []
    for info in infos:
        warnings.extend(f"{info.path}: {w}" for w in info.warnings)
    st = engine.stats
    if st.evicted:
        warnings.append(f"{st.evicted} connections were finished early because more than "
                        f"{engine.max_flows} were live at once")
    verdicts = judge(found, warnings, reachable)
    return Report(infos, found, verdicts, RULES_VERSION, warnings, st.evicted)
