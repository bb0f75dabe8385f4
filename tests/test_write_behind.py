"""``render.write_behind``: the report's blocks written by a thread of their own while the next
ones are read, in order, with the writing's error raised in the caller and no thread left."""

from __future__ import annotations

import io
import threading

import pytest

from forensics.render import WRITE_AHEAD, write_behind


def _blocks(n: int, seen: list | None = None):
    for k in range(n):
        if seen is not None:
            seen.append(k)
        block = (b"%06d," % k) * (k % 5 + 1)
        yield memoryview(block)[1:] if k % 3 == 0 else block


def _want(n: int) -> bytes:
    return b"".join(bytes(b) for b in _blocks(n))


def test_blocks_are_written_whole_and_in_order():
    before = threading.active_count()
    out = io.BytesIO()
    assert write_behind(out, _blocks(1000)) is True
    assert out.getvalue() == _want(1000)
    assert write_behind(out, iter(())) is False
    assert threading.active_count() == before


class _FailingSink:
    def __init__(self, after: int) -> None:
        self.after, self.written = after, []

    def write(self, block) -> int:
        if len(self.written) == self.after:
            raise OSError(28, "No space left on device")
        self.written.append(bytes(block))
        return len(block)


def test_an_error_of_the_writing_is_raised_in_the_caller_and_the_reading_stops():
    before = threading.active_count()
    sink, seen = _FailingSink(after=3), []
    with pytest.raises(OSError, match="No space left"):
        write_behind(sink, _blocks(10_000, seen))
    assert sink.written == [bytes(b) for b in list(_blocks(3))]
    # the reading stopped soon after: at most the queue's blocks and the ones in hand beyond the failure
    assert len(seen) <= 3 + WRITE_AHEAD + 3
    assert threading.active_count() == before


def test_an_error_of_the_reading_ends_the_writer_after_the_blocks_before_it():
    before = threading.active_count()
    out = io.BytesIO()

    def broken():
        yield from _blocks(50)
        raise ValueError("the attempts' files hold fewer lines than the report has")

    with pytest.raises(ValueError, match="fewer lines"):
        write_behind(out, broken())
    assert out.getvalue() == _want(50)
    assert threading.active_count() == before


def test_the_reading_runs_at_most_a_few_blocks_ahead_of_a_slow_writer():
    release = threading.Event()
    seen: list[int] = []
    written: list[int] = []

    class Slow:
        def write(self, block) -> int:
            release.wait(10)
            written.append(len(block))
            return len(block)

    t = threading.Thread(target=write_behind, args=(Slow(), _blocks(100, seen)))
    t.start()
    for _ in range(200):  # until the reader is blocked on the full queue (bounded: 2 s)
        if len(seen) >= WRITE_AHEAD + 2:
            break
        threading.Event().wait(0.01)
    threading.Event().wait(0.05)
    ahead = len(seen)
    release.set()
    t.join(10)
    assert not t.is_alive()
    # the writer holds one block, the queue WRITE_AHEAD, the reader one it cannot put yet
    assert WRITE_AHEAD <= ahead <= WRITE_AHEAD + 2, ahead
    assert len(written) == 100
