"""Rules 2 and 3 of docs/planner.md: read only the models a plan under a cost bound can use.

Every stored edge of the cost graph costs at least ``c0`` (the fetch and merge of the fewest floats a
compatible catalog row can hold); a plan with a stored step pays ``fetch_once``, one with a scan
``scan_once`` plus ``part`` per scanned part plus the rows. For a bound B (below) a plan cheaper than B
is one of:

* stored steps only, at most K of them (K·c0 < B − fetch_once), consecutive ones sharing a cut: its
  first ⌈K/2⌉ steps are reached from s by chains of at most ⌈K/2⌉ models sharing cuts, the others from
  t (rule 3; ``chain_depth``);
* one stored step and scans: entered at x and left at y with scan(s, x) + scan(y, t) <
  ``β1 = B − fetch_once − c0 − scan_once − part``: one cut in W(s, β1), the other in W(t, β1) (windows 3, 4);
* two stored steps and scans: the first entered within ``β2 = β1 − c0`` of s, the last left within β2 of
  t (windows 1, 2);

and never three stored steps with a scan, because B ≤ fetch_once + 3·c0 + scan_once + part. The planner
reads those models only (``modelstore.plan_candidates``: a few index ranges and equality probes) and
solves; when the plan found costs less than B, the optimum over the whole catalog costs no more, so its
stored steps were all read and the plan found is optimal (:meth:`NearBound.proves`). Otherwise it reads
the whole relevant set and solves again.
"""

from __future__ import annotations

import math
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


#: the rows a one-step plan may scan at the ends under the bound, unless three stored steps cost more
#: (an efficiency choice: what rules 2 and 3 read grows with it; the proof holds for any bound)
WINDOW_ROWS = 100

#: the most stored steps a stored-only plan under the bound may have (chains of half as many from each end)
MAX_CHAIN_STEPS = 8


def near_bound(s_key: int, t_key: int, costs: PlanCosts, estimator: RowEstimator, c0: float,
               *, key_room: int) -> NearBound | None:
    """B, the four windows around cut keys ``s_key`` < ``t_key`` (integer and date columns: cuts are
    "before key") — around s and t for budget β2, then around s and t for β1 — and the chain depth.
    A window holds every cut whose scan from its end costs less than the budget; it may hold more (the
    offsets are searched on a grid: powers of two, then 16 steps inside the last doubling), never
    fewer. Two vectorised row estimates in all. None when stored steps may cost nothing."""
    if c0 <= 0.0:
        return None
    scan_part = costs.scan_once_ms + costs.part_ms
    # as high as the proof allows (three stored steps with a scan, or a chain of MAX_CHAIN_STEPS + 1), but
    # no higher than a one-step plan scanning WINDOW_ROWS rows at the ends, unless three stored steps cost
    # more: a higher bound proves more plans and reads more models (the windows widen with it)
    one_step_cap = c0 + scan_part + float(costs.scan_ms(WINDOW_ROWS))
    bound = costs.fetch_once_ms + min(3.0 * c0 + scan_part, (MAX_CHAIN_STEPS + 1) * c0, max(3.0 * c0, one_step_cap))
    # the most stored steps m with m·c0 < B − fetch_once (rounding can only lower it: B is lowered to match)
    stored_only_steps = max(1, math.ceil((bound - costs.fetch_once_ms) / c0 - 1e-9) - 1)
    bound = min(bound, costs.fetch_once_ms + (stored_only_steps + 1) * c0)
    depth = math.ceil(stored_only_steps / 2)
    beta1 = bound - costs.fetch_once_ms - c0 - scan_part
    budgets = (beta1 - c0, beta1)
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
    return NearBound(bound, windows, chain_depth=depth if depth >= 2 else None)


def _scan_ms(keys: np.ndarray, ends: np.ndarray, costs: PlanCosts, estimator: RowEstimator) -> np.ndarray:
    """The cost of scanning from each end to each key (``ends`` broadcast against ``keys``' leading axis)."""
    flat = np.concatenate((keys.ravel(), np.ravel(ends))).astype(float)
    below = estimator.below_cuts(flat, np.zeros(len(flat), dtype=np.int8))
    at_keys = below[: keys.size].reshape(keys.shape)
    at_ends = below[keys.size :]
    if keys.ndim == 3:
        at_ends = at_ends[:, None, None]
    return np.asarray(costs.scan_ms(np.abs(at_keys - at_ends)), dtype=float)
