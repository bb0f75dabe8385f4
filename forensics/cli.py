"""The command line: a thin layer that parses options, calls the library, renders.

Errors from the library (ForensicsError) become one line on stderr and the
contract's exit code; nothing else is printed as a traceback.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import ForensicsError


class _Group(click.Group):
    """A click group that turns the library's errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ForensicsError as exc:
            click.echo(f"forensics: error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("forensics: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="forensics")
def cli() -> None:
    """Packet-level forensics: deliberate filtering, middlebox faults or the endpoints?"""


def _register_subcommands() -> None:
    from .lab.cli import lab

    cli.add_command(lab)


def main() -> None:
    _register_subcommands()
    cli(prog_name="forensics")
