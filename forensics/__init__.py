"""forensics: tell deliberate network interference from faults, packet by packet."""

__version__ = "0.1.0"
