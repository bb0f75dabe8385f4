"""The project's exceptions.

    ForensicsError                 base: the tool could not do its work
    +-- InputError                 an input cannot be read at all (exit 2)
    +-- UsageError                 bad options or arguments (exit 2)
    +-- CaptureError               a probe, live capture or lab could not run (exit 3)

Interference is never an exception: a reset, a timeout or a forged answer is a
finding. An exception means the tool itself failed. Third-party exceptions
(scapy, pyshark, OS errors) are translated into these at the edges.
"""


class ForensicsError(Exception):
    """Base of every error the library raises on purpose."""

    exit_code = 2


class InputError(ForensicsError):
    """An input cannot be read at all: missing, not a capture, no decodable packet."""

    exit_code = 2


class UsageError(ForensicsError):
    """Options or arguments that do not fit together."""

    exit_code = 2


class CaptureError(ForensicsError):
    """A probe, a live capture or the lab could not run (privileges, tools, interfaces)."""

    exit_code = 3
