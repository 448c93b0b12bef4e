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
               classes_hint: int = 2, chunk_rows: int = 10_000) -> PlanCosts:
    """The cost model specialised to one request: its family, its column count, its table.

    Scans are priced as index range scans when the ordering column has a btree index (per matched
    row) and as one full read of the table otherwise (once per plan): docs/planner.md.
    """
    family, order_kind = descriptor.family, descriptor.source.order_kind
    k = len(descriptor.stats_columns)
    index_row = model.index_read_ms(1.0) if estimator.has_index else 0.0
    full_read = 0.0 if estimator.has_index else model.seq_read_ms(estimator.total_rows)

    def rows(lo: Cut, hi: Cut) -> float:
        return estimator.rows(cuts_range(lo, hi, order_kind)) if lo < hi else 0.0

    if family == "logistic":
        # fetching and training, per row, with each chunk's fixed cost spread over its rows
        per_row = (model.train_ms(k, chunk_rows) - model.statement_ms) / chunk_rows + index_row
        return PlanCosts(
            stored_ms=lambda m: model.fetch_ms(m.n_values),
            scan_ms=lambda n: per_row * n,
            part_ms=0.0,
            fetch_once_ms=model.statement_ms,
            scan_once_ms=model.statement_ms + full_read,
            rows=rows,
        )
    per_row = model.row_ms(family, k) + index_row
    merged = stats_values(family, k, classes_hint)
    return PlanCosts(
        stored_ms=lambda m: model.fetch_ms(m.n_values) + model.merge_ms(merged),
        scan_ms=lambda n: per_row * n,
        part_ms=model.merge_ms(merged),
        fetch_once_ms=model.statement_ms,
        scan_once_ms=model.scan_statement_ms(family, k) + full_read,
        rows=rows,
    )


def plan_request(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, *,
                 cost_model: CostModel, estimator: RowEstimator, allow_subtract: bool = True,
                 max_relevant: int = MAX_RELEVANT, params_key: str = "", chunk_rows: int = 10_000) -> Plan:
    """The cheapest plan for ``descriptor``.

    Linear and Naive Bayes: stored statistics in either direction and scans. Logistic (paper §4-5):
    stored chunk models contained in the request, forward only, and ``train`` steps for the rest.
    """
    started = time.perf_counter()
    kind = descriptor.source.order_kind
    logistic = descriptor.family == "logistic"
    models, truncated = relevant_models(conn, source_id, descriptor, limit=max_relevant, contained_only=logistic,
                                        exact_columns=logistic, params_key=params_key)
    s, t = range_cuts(descriptor.range, kind)
    solution = solve(s, t, models, lambda m: range_cuts(m.range, kind),
                     plan_costs(cost_model, estimator, descriptor, chunk_rows=chunk_rows),
                     backward=allow_subtract and not logistic)
    gap_op = "train" if logistic else "scan"
    steps = tuple(
        Step(e.sign, e.op if e.op == "stored" else gap_op, cuts_range(e.lo, e.hi, kind),
             e.model.stats_id if e.model else None, e.model.columns if e.model else (), round(e.rows), e.cost_ms)
        for e in solution.edges
    )
    strategy = solution.strategy + ("" if allow_subtract or logistic else " (forward only)")
    if logistic:
        strategy = (strategy.replace("one scan is cheapest", "training is cheapest")
                    .replace("one scan", "train every chunk").replace("scans", "training"))
    return Plan(descriptor, steps, strategy, time.perf_counter() - started,
                est_cost_ms=solution.cost_ms, scratch_cost_ms=solution.scratch_ms,
                graph={"relevant": len(models), "truncated": truncated, "nodes": solution.graph_nodes,
                       "edges": solution.graph_edges})


__all__ = ["Plan", "PlanCosts", "StoredModel", "plan_costs", "plan_request", "stats_values"]
