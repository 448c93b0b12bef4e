"""Rule 2 of docs/planner.md: only models with a cut near the request's ends, under a cost bound.

Every stored edge of the cost graph costs at least ``c0`` (the fetch and merge of the fewest floats a
compatible catalog row can hold). A plan costing less than ``B = fetch_once + 3·c0`` therefore has at
most two stored steps, and each of them is its path's first or last stored step. The first is entered
at the request's lower cut s, or at a cut a that the path reached from s by scans alone — which costs
at least ``scan_once + part + scan(rows between s and a)``, so that such an a lies in a window around s
bounded by the rows a budget of ``2·c0 − scan_once − part`` can scan; the same holds for the last
step's exit and the upper cut t. So every stored step of every plan cheaper than B has a cut in one of
the two windows. The planner reads only those models (``modelstore.plan_candidates`` with
``p_near_lo``/``p_near_hi``: a few index ranges) and solves; when the plan it finds costs less than B,
the optimum over the whole catalog costs less than B too, so its stored steps were all read and the
plan is optimal. Otherwise it reads the whole relevant set and solves again (:func:`proves`).
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

    def proves(self, plan_cost_ms: float) -> bool:
        """Whether a plan of this cost found over the windows' models is optimal over every model."""
        return plan_cost_ms < self.bound_ms


def min_stored_ms(costs: PlanCosts, catalog_values: int) -> float:
    """c0: the least any compatible stored model costs. A compatible row holds the request's columns or
    more, so at least ``catalog_values`` floats, and fetching is non-decreasing in floats."""
    if costs.stored_values_ms is None:
        return 0.0
    return float(costs.stored_values_ms(np.array([catalog_values], dtype=np.int64))[0])


def near_bound(s_key: int, t_key: int, costs: PlanCosts, estimator: RowEstimator, c0: float,
               *, key_room: int) -> NearBound:
    """B and the windows around cut keys ``s_key`` < ``t_key`` (integer and date columns: cuts are
    "before key"). A window holds every cut whose scan from its end costs less than the budget;
    it may hold more (the offsets are searched on a grid), never fewer."""
    bound = costs.fetch_once_ms + 3.0 * c0
    budget = 2.0 * c0 - costs.scan_once_ms - costs.part_ms
    if budget <= 0.0:  # no scan is affordable before the first stored step: the cuts are s and t
        return NearBound(bound, [(s_key, s_key), (t_key, t_key)])
    return NearBound(bound, [_window(s_key, costs, estimator, budget, key_room),
                             _window(t_key, costs, estimator, budget, key_room)])


def _window(key: int, costs: PlanCosts, estimator: RowEstimator, budget: float, key_room: int) -> tuple[int, int]:
    below_key = float(estimator.below_cuts(np.array([float(key)]), np.zeros(1, dtype=np.int8))[0])

    def scan_ms(keys: np.ndarray) -> np.ndarray:
        below = estimator.below_cuts(keys.astype(float), np.zeros(len(keys), dtype=np.int8))
        return np.asarray(costs.scan_ms(np.abs(below - below_key)), dtype=float)

    ends = []
    for sign in (-1, 1):
        offsets = _POWERS[np.abs(key + sign * _POWERS) < key_room]
        reached = np.flatnonzero(scan_ms(key + sign * offsets) >= budget)
        if len(reached) == 0:  # the whole domain is within the budget
            ends.append(key + sign * int(offsets[-1]) if len(offsets) else key)
            continue
        i = int(reached[0])
        hi_off = int(offsets[i])
        lo_off = int(offsets[i - 1]) if i else 0
        if hi_off - lo_off > 1:  # refine: the first of 16 steps inside the doubling that reaches the budget
            steps = np.unique(np.linspace(lo_off, hi_off, _STEPS + 1).astype(np.int64))
            hit = steps[scan_ms(key + sign * steps) >= budget]
            hi_off = int(hit[0]) if len(hit) else hi_off
        # a cut at offset hi_off already costs the budget; every cut strictly closer may not
        ends.append(key + sign * (hi_off - 1))
    return ends[0], ends[1]
