"""Rows of a structured array, selected as whole records.

numpy copies the rows that an index array or a mask selects from a structured
array field by field, one element at a time (``rows[idx]``: about 0.2 us a row
for the 30 fields of the decoded packet rows). Seen as one opaque field of the
record's size, the same memory is copied a record at a time: the same bytes,
about 25 times faster (20,000 packet rows: 2.0 ms against 0.08 ms, or 1.7 ms
against 0.06 ms by a mask). The packet stage selects rows this way several times
a batch (TCP and DNS rows, rows sorted by flow), and the index of the attempts is
sorted the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = ["take"]


def take(rows: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """``rows[sel]`` for a 1-D structured array ``rows`` and an index array or boolean mask
    ``sel``: the same records, in a new array of the same dtype."""
    dt = rows.dtype
    return rows.view(np.dtype((np.void, dt.itemsize)))[sel].view(dt)
