"""forensics: tell deliberate network interference from faults, packet by packet."""

__version__ = "0.1.0"

from . import compiled as _compiled

# before any other module of the package: a compiled module whose source was edited since its build
# must not run in its place (see forensics.compiled)
_compiled.install()


def analyze(paths, **kwargs):
    """Analyse captures (files or directories); returns a ``Report``. See ``forensics.api``."""
    from .api import analyze as _analyze

    return _analyze(paths, **kwargs)
