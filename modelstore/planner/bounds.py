"""Rule 2 of docs/planner.md: only models with a cut near the request's ends, under a cost bound.

Every stored edge of the cost graph costs at least ``c0`` (the fetch and merge of the fewest floats a
compatible catalog row can hold). A plan costing less than ``B = fetch_once + 3·c0`` therefore has at
most two stored steps. Its scans cost ``scan_once`` once, ``part`` per scanned part and their rows:

* one stored step, entered at x and left at y, with scans from s to x and from y to t: the scans' rows
  cost less than ``β1 = 2·c0 − scan_once − part``, so x lies in the window of cuts whose scan from s
  costs less than β1, and y in that around t (windows 3 and 4);
* two stored steps: the first is entered at s or at a cut x reached by scans from s costing less than
  ``β2 = c0 − scan_once − part``; the last is left at t or at a cut within β2 of it (windows 1 and 2).

So every plan cheaper than B uses only models with a cut in window 1 or 2, or with one cut in window 3
and the other in window 4. The planner reads only those (``modelstore.plan_candidates`` with
``p_near_lo``/``p_near_hi``: a few index ranges) and solves; when the plan it finds costs less than B,
the optimum over the whole catalog costs less than B too, so its stored steps were all read and the
plan is optimal (:meth:`NearBound.proves`). Otherwise it reads the whole relevant set and solves again.

Rule 3 (:func:`chain_bound`) takes over where a scan statement costs at least two stored steps, and
rule 2's windows shrink to the ends themselves: then plans under its bound are chains of stored models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelstore.planner.graph import PlanCosts
from modelstore.planner.rowcount import RowEstimator

#: offsets tried from an end: powers of two, then a linear refinement inside the last doubling
_POWERS = 2 ** np.arange(0, 62, dtype=np.int64)
_STEPS = 16


@dataclass(frozen=True)
class NearBound:
    """The bound B (ms, fixed costs included) and the two windows of cut keys, ``[lo, hi]`` each."""

    bound_ms: float
    windows: list[tuple[int, int]]
    #: rule 3: the longest chain of models sharing cuts to follow from each end (None: rule 2's windows)
    chain_depth: int | None = None

    def proves(self, plan_cost_ms: float) -> bool:
        """Whether a plan of this cost found over the windows' models is optimal over every model."""
        return plan_cost_ms < self.bound_ms


def min_stored_ms(costs: PlanCosts, catalog_values: int) -> float:
    """c0: the least any compatible stored model costs. A compatible row holds the request's columns or
    more, so at least ``catalog_values`` floats, and fetching is non-decreasing in floats."""
    if costs.stored_values_ms is None:
        return 0.0
    return float(costs.stored_values_ms(np.array([catalog_values], dtype=np.int64))[0])


#: the most stored steps rule 3 allows a plan under its bound (chains of half as many from each end)
MAX_CHAIN_STEPS = 8


def chain_bound(s_key: int, t_key: int, costs: PlanCosts, c0: float) -> NearBound | None:
    """Rule 3, when a scan costs at least what two stored steps do (rule 2's windows would be the ends
    alone): with K = ⌊(scan_once + part) / c0⌋ (at most :data:`MAX_CHAIN_STEPS`) and
    B = fetch_once + (K + 1)·c0, a plan under B has no scan (one costs at least fetch_once + c0 +
    scan_once + part ≥ B) and at most K stored steps, consecutive ones sharing a cut: its first ⌈K/2⌉
    steps are within ⌈K/2⌉ links of s, the others within ⌈K/2⌉ of t."""
    if c0 <= 0.0 or 2.0 * c0 > costs.scan_once_ms + costs.part_ms:
        return None
    steps = min(int((costs.scan_once_ms + costs.part_ms) // c0), MAX_CHAIN_STEPS)
    return NearBound(costs.fetch_once_ms + (steps + 1) * c0, [(s_key, s_key), (t_key, t_key)],
                     chain_depth=(steps + 1) // 2)


def near_bound(s_key: int, t_key: int, costs: PlanCosts, estimator: RowEstimator, c0: float,
               *, key_room: int) -> NearBound:
    """B and the four windows around cut keys ``s_key`` < ``t_key`` (integer and date columns: cuts
    are "before key"): around s and t for budget β2, then around s and t for β1. A window holds every
    cut whose scan from its end costs less than the budget; it may hold more (the offsets are searched
    on a grid: powers of two, then 16 steps inside the last doubling), never fewer. Two vectorised
    row estimates in all."""
    bound = costs.fetch_once_ms + 3.0 * c0
    budgets = (c0 - costs.scan_once_ms - costs.part_ms, 2.0 * c0 - costs.scan_once_ms - costs.part_ms)
    ends = np.array([s_key, t_key], dtype=np.int64)
    offsets = _POWERS[_POWERS < key_room // 2]
    # (end, side, offset) → the scan cost from the end to the cut at end + side·offset
    signs = np.array([-1, 1], dtype=np.int64)
    keys = ends[:, None, None] + signs[None, :, None] * offsets[None, None, :]
    grid = _scan_ms(keys, ends, costs, estimator)
    coarse = {}  # (budget, end, side) → (offset not reaching it, offset reaching it or None)
    refine_keys = []
    for b, budget in enumerate(budgets):
        if budget <= 0.0:
            continue
        for e in range(2):
            for d in range(2):
                reached = np.flatnonzero(grid[e, d] >= budget)
                if len(reached) == 0:  # the whole domain is within the budget
                    coarse[b, e, d] = (int(offsets[-1]), None)
                    continue
                i = int(reached[0])
                lo_off, hi_off = (int(offsets[i - 1]) if i else 0), int(offsets[i])
                steps = np.unique(np.linspace(lo_off, hi_off, _STEPS + 1).astype(np.int64))
                coarse[b, e, d] = (lo_off, hi_off, len(refine_keys), steps)
                refine_keys.append(steps)
    fine = None
    if refine_keys:
        lengths = [len(r) for r in refine_keys]
        flat_keys, flat_ends = [], []
        for (b, e, d), entry in coarse.items():
            if len(entry) == 4:
                flat_keys.append(ends[e] + signs[d] * entry[3])
                flat_ends.append(np.full(len(entry[3]), ends[e]))
        fine = _scan_ms(np.concatenate(flat_keys), np.concatenate(flat_ends), costs, estimator)
        starts = np.concatenate(([0], np.cumsum(lengths)))
    windows = []
    for b, budget in enumerate(budgets):
        for e in range(2):
            if budget <= 0.0:  # no scan is affordable before (after) the stored step: its cut is the end
                windows.append((int(ends[e]), int(ends[e])))
                continue
            bounds = []
            for d in range(2):
                entry = coarse[b, e, d]
                if entry[1] is None:
                    reach = entry[0] + 1
                else:
                    _, hi_off, j, steps = entry
                    costs_j = fine[starts[j] : starts[j + 1]]
                    hit = steps[costs_j >= budget]
                    reach = int(hit[0]) if len(hit) else hi_off
                # a cut at offset ``reach`` already costs the budget; every cut strictly closer may not
                bounds.append(int(ends[e]) + int(signs[d]) * (reach - 1))
            windows.append((bounds[0], bounds[1]))
    return NearBound(bound, windows)


def _scan_ms(keys: np.ndarray, ends: np.ndarray, costs: PlanCosts, estimator: RowEstimator) -> np.ndarray:
    """The cost of scanning from each end to each key (``ends`` broadcast against ``keys``' leading axis)."""
    flat = np.concatenate((keys.ravel(), np.ravel(ends))).astype(float)
    below = estimator.below_cuts(flat, np.zeros(len(flat), dtype=np.int8))
    at_keys = below[: keys.size].reshape(keys.shape)
    at_ends = below[keys.size :]
    if keys.ndim == 3:
        at_ends = at_ends[:, None, None]
    return np.asarray(costs.scan_ms(np.abs(at_keys - at_ends)), dtype=float)
