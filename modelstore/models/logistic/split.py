"""Cutting the rows of a request's gap into chunks of about l rows, and training each (paper §4, Algorithm 2).

The chunks are cut along the ordering column and described by the closed range of their ordering
values, so that a later request whose range covers a chunk can reuse its stored model.
"""

from __future__ import annotations

import bisect
import numbers

import numpy as np
import pandas as pd

from modelstore.errors import InputError
from modelstore.models.logistic._common import DEFAULT_L2, plain
from modelstore.models.logistic.chunk import ChunkModel, train_chunk

__all__ = ["DEFAULT_CHUNK_ROWS", "split_chunks", "train_chunks"]

#: a suggested chunk size l: the paper's best logistic gains came with 10K-row materialised models
#: (§6, Figure 2(e)); large enough that every chunk holds every class of a not too rare label
DEFAULT_CHUNK_ROWS = 10_000


def _round_half_up(a: int, b: int) -> int:
    """round(a / b) for non-negative ints, halves up (Python's round() goes to even)."""
    return (2 * a + b) // (2 * b)


def _check_ascending(values) -> None:
    arr = values if isinstance(values, np.ndarray) else None
    if arr is not None and arr.dtype.kind in "iufmM":
        if arr.dtype.kind in "fmM" and np.isnan(arr).any():
            raise InputError("the ordering values hold NULL/NaN; the ordering column must be non-NULL")
        if arr.size > 1 and not (arr[1:] >= arr[:-1]).all():
            raise InputError("the ordering values must be sorted ascending")
        return
    try:
        for i in range(1, len(values)):
            if not values[i - 1] <= values[i]:
                raise InputError(
                    f"the ordering values must be sorted ascending, got {values[i - 1]!r} before {values[i]!r} "
                    f"at row {i}"
                )
    except TypeError as exc:
        raise InputError(f"the ordering values must be comparable non-NULL values: {exc}") from exc


def split_chunks(order_values, chunk_rows: int) -> list[slice]:
    """Cut sorted ordering values into about-``chunk_rows`` chunks, never splitting a tie.

    The rule (paper §4 cuts a gap into ⌊|Dq|/l⌋ chunks of l rows; we balance them instead):

    - n rows are cut into p = max(1, round(n / l)) chunks (halves round up), greedily from the
      start: with r rows left and q chunks still to cut, the next chunk takes round(r / q) rows;
      without ties the sizes are therefore ⌊n/p⌋ or ⌈n/p⌉, i.e. between 0.75·l and 1.5·l once
      n ≥ l (a gap smaller than 1.5·l is a single chunk).
    - a chunk is described by the closed range [lo, hi] of its ordering values, so rows with equal
      values must stay together: a cut that would split a run of equal values moves to the end of
      the run (and to the end of the rows if fewer than l/2 would be left). The rows after such a
      run are re-planned: q becomes min(q − 1, max(1, round(r/l))), so the chunks after a long run
      are not squeezed. Ties can thus make fewer and larger chunks; every chunk still holds at
      least min(n, ⌊l/2⌋) rows.

    Returns consecutive slices that partition ``range(n)`` in order ([] for no rows).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, numbers.Integral) or chunk_rows < 1:
        raise InputError(f"chunk_rows must be a whole number >= 1, got {chunk_rows!r} instead")
    l = int(chunk_rows)
    if isinstance(order_values, pd.Series | pd.Index):
        order_values = order_values.to_numpy()
    values = order_values if isinstance(order_values, np.ndarray) else list(order_values)
    n = len(values)
    if n == 0:
        return []
    _check_ascending(values)
    slices = []
    start, left = 0, max(1, _round_half_up(n, l))
    while start < n:
        r = n - start
        cut = start + _round_half_up(r, left) if left > 1 else n
        if cut >= n:
            slices.append(slice(start, n))
            break
        left -= 1
        if values[cut] == values[cut - 1]:  # the cut would split a tie: move it to the end of the run
            cut = bisect.bisect_right(values, values[cut - 1], lo=cut)
            if _round_half_up(n - cut, l) == 0:  # a tail under l/2 rows joins this chunk
                cut = n
            left = min(left, max(1, _round_half_up(n - cut, l)))
        slices.append(slice(start, cut))
        start = cut
    return slices


def train_chunks(order_values, X, y, *, chunk_rows: int, l2: float = DEFAULT_L2, classes=None) -> list[ChunkModel]:
    """Algorithm 2 lines 9–11 for one gap: cut its rows (sorted by ``order_values``) and train each chunk.

    ``classes`` defaults to the labels of ``y``; pass the request's classes when the gap is only
    part of the request.
    """
    y = np.asarray(y)
    if classes is None:
        classes = [plain(v) for v in pd.unique(y)]
    if isinstance(X, pd.DataFrame):
        take = lambda s: X.iloc[s]  # noqa: E731
    else:
        X = np.asarray(X)
        take = lambda s: X[s]  # noqa: E731
    if isinstance(order_values, pd.Series | pd.Index):
        order_values = order_values.to_numpy()
    if len(order_values) != len(y) or len(y) != len(X):
        raise InputError(f"order_values, X and y must have one entry per row, got {len(order_values)}, {len(X)}, {len(y)}")
    return [
        train_chunk(take(s), y[s], l2=l2, classes=classes, lo=order_values[s.start], hi=order_values[s.stop - 1])
        for s in split_chunks(order_values, chunk_rows)
    ]
