"""Planning a model request (paper §5): which stored statistics, with which sign, and which scans.

:func:`plan_request` finds the relevant stored models (:mod:`.relevant`, Algorithm 3), builds the
cost graph over their cuts and solves it with Dijkstra (:mod:`.graph`, Algorithm 4), and returns a
:class:`~modelstore.plan.Plan` of signed steps with estimated rows and costs. Costs come from the
calibrated :class:`~modelstore.costs.CostModel` and rows from the table's statistics
(:class:`~modelstore.rowcount.RowEstimator`); see ``docs/planner.md``.
"""

from __future__ import annotations

import time

import psycopg

from modelstore.costs import CostModel
from modelstore.descriptor import Descriptor
from modelstore.plan import Plan, Step
from modelstore.planner.cuts import Cut, cuts_range, range_cuts
from modelstore.planner.graph import PlanCosts, solve
from modelstore.planner.relevant import MAX_RELEVANT, StoredModel, relevant_models
from modelstore.rowcount import RowEstimator


def stats_values(family: str, k: int, classes: int = 1) -> int:
    """Floats in the statistics of ``k`` columns (what fetching and merging them touches)."""
    if family == "linear":
        return k + k * k
    if family == "gaussian_nb":
        return classes * (1 + 2 * k)
    return classes * (1 + k)


def plan_costs(model: CostModel, estimator: RowEstimator, descriptor: Descriptor, *,
               classes_hint: int = 2) -> PlanCosts:
    """The cost model specialised to one request: its family, its column count, its table."""
    family, order_kind = descriptor.family, descriptor.source.order_kind
    k = len(descriptor.stats_columns)
    per_row = model.scan_ms(family, k, 1_000_000) / 1_000_000  # additive in rows by construction
    merged = stats_values(family, k, classes_hint)
    scan_once = model.statement_ms + (0.0 if estimator.has_index else model.seq_read_ms(estimator.total_rows))

    def rows(lo: Cut, hi: Cut) -> float:
        return estimator.rows(cuts_range(lo, hi, order_kind)) if lo < hi else 0.0

    return PlanCosts(
        stored_ms=lambda m: model.fetch_ms(m.n_values) + model.merge_ms(merged),
        scan_ms=lambda n: per_row * n,
        part_ms=model.merge_ms(merged),
        fetch_once_ms=model.statement_ms,
        scan_once_ms=scan_once,
        rows=rows,
    )


def plan_request(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, *,
                 cost_model: CostModel, estimator: RowEstimator, allow_subtract: bool = True,
                 max_relevant: int = MAX_RELEVANT) -> Plan:
    """The cheapest plan for ``descriptor`` (exact for the linear and Naive Bayes families)."""
    started = time.perf_counter()
    kind = descriptor.source.order_kind
    models, truncated = relevant_models(conn, source_id, descriptor, limit=max_relevant)
    s, t = range_cuts(descriptor.range, kind)
    solution = solve(s, t, models, lambda m: range_cuts(m.range, kind),
                     plan_costs(cost_model, estimator, descriptor), backward=allow_subtract)
    steps = tuple(
        Step(e.sign, e.op, cuts_range(e.lo, e.hi, kind), e.model.stats_id if e.model else None,
             e.model.columns if e.model else (), round(e.rows), e.cost_ms)
        for e in solution.edges
    )
    strategy = solution.strategy + ("" if allow_subtract else " (forward only)")
    return Plan(descriptor, steps, strategy, time.perf_counter() - started,
                est_cost_ms=solution.cost_ms, scratch_cost_ms=solution.scratch_ms,
                graph={"relevant": len(models), "truncated": truncated, "nodes": solution.graph_nodes,
                       "edges": solution.graph_edges})


__all__ = ["Plan", "PlanCosts", "StoredModel", "plan_costs", "plan_request", "stats_values"]
