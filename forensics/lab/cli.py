"""`forensics lab`: the network-namespace lab (placeholder until the lab lands)."""

import click


@click.group()
def lab() -> None:
    """Record real captures of interference in network namespaces."""
