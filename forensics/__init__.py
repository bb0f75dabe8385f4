"""forensics: tell deliberate network interference from faults, packet by packet."""

__version__ = "0.1.0"


def analyze(paths, **kwargs):
    """Analyse captures (files or directories); returns a ``Report``. See ``forensics.api``."""
    from .api import analyze as _analyze

    return _analyze(paths, **kwargs)
