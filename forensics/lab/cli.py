"""`forensics lab`: record real captures of interference in network namespaces.

``forensics lab list`` shows the scenarios; ``forensics lab run SCENARIO... [--all]
[--out DIR]`` records each into ``DIR/<scenario>/`` (captures + ``truth.json``).
Needs root, iproute2, iptables or nftables, tcpdump, curl, dig and openssl; when
one is missing it says so on one line and exits 3.  Each recording is checked
against its phenomenon (``verify``) unless ``--no-check``.
"""

from __future__ import annotations

import time

import click

from ..errors import CaptureError, UsageError


@click.group()
def lab() -> None:
    """Record real captures of interference in network namespaces."""


@lab.command("list")
def list_cmd() -> None:
    """Show the scenarios and what each records."""
    from .scenarios import all_scenarios

    for name, s in all_scenarios().items():
        click.echo(f"{name:22} {s.description}")


@lab.command("run")
@click.argument("scenario", nargs=-1)
@click.option("--all", "run_all", is_flag=True, help="Record every scenario.")
@click.option("--out", "out_dir", default="lab-out", show_default=True, type=click.Path(file_okay=False),
              help="Directory that receives one folder per scenario.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check each recording shows its phenomenon on the wire (forensics.lab.verify).")
@click.option("-v", "--verbose", is_flag=True, help="Show every client step and the devices' log.")
def run_cmd(scenario: tuple[str, ...], run_all: bool, out_dir: str, check: bool, verbose: bool) -> None:
    """Record SCENARIO... (or --all) into OUT/<scenario>/ (needs root).

    Exits 3 when the lab cannot run, or when a recording does not show its
    phenomenon (with --check, the default)."""
    from pathlib import Path

    from .netns import check_environment
    from .runner import run_scenario
    from .scenarios import all_scenarios
    from .verify import verify

    known = all_scenarios()
    names = list(known) if run_all else list(scenario)
    if not names:
        raise UsageError("name at least one scenario, or --all (see `forensics lab list`)")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"unknown scenario: {', '.join(unknown)} (see `forensics lab list`)")
    check_environment()
    t0 = time.monotonic()
    failed = []
    for name in names:
        res = run_scenario(known[name], Path(out_dir) / name, verbose=verbose)
        note = ""
        if check:
            try:
                verify(name, Path(out_dir) / name)
                note = "  checked"
            except AssertionError as exc:
                failed.append(name)
                note = f"  CHECK FAILED: {exc}"
        click.echo(f"{name:22} {res['seconds']:5.1f} s  -> {Path(out_dir) / name}{note}")
    click.echo(f"recorded {len(names)} scenario(s) in {time.monotonic() - t0:.1f} s")
    if failed:
        raise CaptureError(f"{len(failed)} recording(s) do not show their phenomenon: {', '.join(failed)}")
