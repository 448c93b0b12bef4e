"""Planning a model request (paper §5): which stored statistics, with which sign, and which scans.

:func:`plan_request` finds the relevant stored models (:mod:`.relevant`, Algorithm 3), builds the
cost graph over their cuts and solves it with Dijkstra (:mod:`.graph`, Algorithm 4), and returns a
:class:`~modelstore.planner.plan.Plan` of signed steps with estimated rows and costs. Costs come from the
calibrated :class:`~modelstore.planner.costs.CostModel` and rows from the table's statistics
(:class:`~modelstore.planner.rowcount.RowEstimator`); see ``docs/planner.md``.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import numpy as np
import psycopg

from modelstore.catalog import index
from modelstore.families import FAMILIES
from modelstore.request.descriptor import Descriptor, bound_key
from modelstore.catalog.index import IndexSpan
from modelstore.planner.plan import Plan, Step
from modelstore.request.cuts import WHOLE_KEY_SCALE, Cut, cut_at, cuts_range, range_cuts, whole_key, whole_keys
from modelstore.planner.graph import SCAN_WORDS, TRAIN_WORDS, PlanCosts, solve, solve_indexed
from modelstore.planner.relevant import (
    Candidates, StoredModel, candidates, models_ending_near, relevant_models,
)
from modelstore.planner import cache, search
from modelstore.planner.rowcount import RowEstimator

if TYPE_CHECKING:
    from modelstore.planner.costs import CostModel


def stats_values(family: str, k: int, classes: int = 1) -> int:
    """Floats in the statistics of ``k`` columns (what fetching and merging them touches)."""
    return FAMILIES[family].stored_values(k, classes)


def plan_costs(model: CostModel, estimator: RowEstimator, descriptor: Descriptor, *,
               classes_hint: int = 2, chunk_rows: int = 10_000) -> PlanCosts:
    """The cost model specialised to one request: its family, its column count, its table.

    Scans are priced as index range scans when the ordering column has a btree index (per matched
    row) and as one full read of the table otherwise (once per plan): docs/planner.md.
    """
    family, order_kind = descriptor.kind, descriptor.source.order_kind
    k = len(descriptor.stats_columns)
    index_row = model.index_read_ms(1.0) if estimator.has_index else 0.0
    full_read = 0.0 if estimator.has_index else model.seq_read_ms(estimator.total_rows)
    # without an index every scanned part is one more range tested on every table row: priced per part
    # (the graph pays part_ms once per scanned part, so the statement's first range is taken off once)
    range_read = 0.0 if estimator.has_index else model.seq_ranges_ms(estimator.total_rows, 2)

    def rows(lo: Cut, hi: Cut) -> float:
        return estimator.rows(cuts_range(lo, hi, order_kind)) if lo < hi else 0.0

    if descriptor.family.trained:
        # fetching and training, per row, with each chunk's fixed cost spread over its rows
        per_row = (model.train_ms(k, chunk_rows) - model.statement_ms) / chunk_rows + index_row
        return PlanCosts(
            stored_ms=lambda m: model.fetch_ms(m.n_values),
            stored_values_ms=lambda values: np.array([model.fetch_ms(float(v)) for v in values]),
            scan_ms=lambda n: per_row * n,
            part_ms=range_read,
            fetch_once_ms=model.statement_ms,
            scan_once_ms=model.statement_ms + full_read - range_read,
            rows=rows,
        )
    per_row = model.row_ms(family, k) + index_row
    merged = stats_values(family, k, classes_hint)

    def stored_ms(m) -> float:  # a stored summary, or an index span of several nodes
        fetched = getattr(m, "fetched_rows", 1)
        return model.fetch_ms(m.n_values, rows=fetched) + fetched * model.merge_ms(merged)

    def stored_values_ms(n_values: np.ndarray) -> np.ndarray:  # stored summaries (one row each), vectorised
        distinct, inverse = np.unique(n_values, return_inverse=True)
        each = np.array([model.fetch_ms(float(v), rows=1) + model.merge_ms(merged) for v in distinct])
        return each[inverse] if len(distinct) else np.zeros(0)

    return PlanCosts(
        stored_ms=stored_ms,
        stored_values_ms=stored_values_ms,
        scan_ms=lambda n: per_row * n,
        part_ms=model.merge_ms(merged) + range_read,
        fetch_once_ms=model.statement_ms,
        scan_once_ms=model.scan_statement_ms(family, k) + full_read - range_read,
        rows=rows,
        row_ms=per_row,
    )


#: the single from-scratch scan is kept unless another plan is estimated cheaper by more than this
#: fraction of it (docs/planner.md, "Cost model"; ``Store.scan_margin``)
SCAN_MARGIN = 0.15


def plan_request(conn: psycopg.Connection, source_id: int | None, descriptor: Descriptor, *,
                 cost_model: CostModel, estimator: RowEstimator, allow_subtract: bool = True,
                 params_key: str = "", chunk_rows: int = 10_000, context=None,
                 scan_margin: float = SCAN_MARGIN) -> Plan:
    """The cheapest plan for ``descriptor``, over every relevant stored model (no truncation).

    ``context``: a :class:`~modelstore.catalog.context.RequestContext` holding the index, its boundaries,
    the models near the ends and the relevant set as ``modelstore.request_context`` read them; what it
    lacks is read here (docs/planner.md, "Round trips").

    Linear and Naive Bayes: stored statistics in either direction and scans. Logistic (paper §4-5):
    stored chunk models contained in the request, forward only, and ``train`` steps for the rest.

    ``scan_margin``: a plan other than the one scan of the request must be estimated cheaper than
    ``(1 − scan_margin)`` × that scan, else the scan is run — an estimate can be off, and one scan
    is the plan the cost model knows best (so planning does not lose against it by a near miss).
    Plans over the statistics index are exempt (their end pieces are read in the first round trip).
    """
    if isinstance(scan_margin, bool) or not isinstance(scan_margin, int | float) or not 0 <= scan_margin < 1:
        raise ValueError(f"scan_margin must be a fraction in [0, 1), got {scan_margin!r} instead")
    started = time.perf_counter()
    kind = descriptor.source.order_kind
    trained = descriptor.family.trained  # chunk models: contained, forward only, train the gaps
    s, t = range_cuts(descriptor.range, kind)
    costs = plan_costs(cost_model, estimator, descriptor, chunk_rows=chunk_rows)
    pending = None
    if (not trained and whole_keys(s, t, kind) and costs.row_ms is not None
            and source_id is not None and context is None
            and isinstance(conn, psycopg.Connection)):  # (PL/Python's SPI connection has no pipeline)
        # the session's catalog (often only "nothing changed", or the changed rows) in the same round trip as the
        # index lookup (a request context has read the index already: then the catalog is read only when no index
        # serves the request)
        with conn.pipeline():
            pending = cache.send(conn, source_id, descriptor)
            stat_index = index.find(conn, source_id, descriptor,
                                    rows=context.index_rows if context is not None else None)
    else:
        stat_index = None if trained else index.find(conn, source_id, descriptor,
                                                     rows=context.index_rows if context is not None else None)
    spans = []
    if stat_index is not None:  # the index's few spans around the request's ends, not its hierarchy
        spans = [dataclasses.replace(span, rows=estimator.rows(cuts_range(span.lo, span.hi, kind)))
                 for span in index.spans(conn, stat_index, s, t, kind, len(descriptor.stats_columns),
                                         rows=context.boundaries if context is not None else None)]
    backward = allow_subtract and descriptor.family.subtractable
    words = TRAIN_WORDS if trained else SCAN_WORDS
    gap_op = "train" if trained else "scan"
    cached = None
    if not spans and whole_keys(s, t, kind):  # the common case, over arrays (whole keys: request/cuts.py)
        if not trained and costs.row_ms is not None and source_id is not None:
            # the session's catalog cache and the cut graph built once (docs/planner.md)
            steps, solution, n_stored, cached = _solve_cached(
                conn, source_id, descriptor, s, t, costs, estimator, kind, gap_op, backward, words,
                context.candidates if context is not None else None, pending)
        else:  # logistic chunks (contained, forward only): every relevant model, read per request
            found = candidates(conn, source_id, descriptor, contained_only=trained, exact_columns=trained,
                               params_key=params_key,
                               row=context.candidates if context is not None else None)
            steps, solution, n_stored = _solve_arrays(found, s, t, costs, estimator, kind, gap_op, backward, words)
    else:
        if spans:
            # the spans cover whole chunks; stored models can only save the partial-chunk scans at the ends
            # the context's near models were read over these windows when it read the spans' nodes
            near = context.near if context is not None and context.nodes else None
            models = models_ending_near(conn, source_id, descriptor, _chunk_windows(spans, s, t), rows=near)
        else:
            models, _ = relevant_models(conn, source_id, descriptor, contained_only=trained,
                                        exact_columns=trained, params_key=params_key)
        n_stored = len(models)
        solution = solve(s, t, list(models) + spans,
                         lambda m: (m.lo, m.hi) if isinstance(m, IndexSpan) else range_cuts(m.range, kind),
                         costs, backward=backward, words=words)
        steps = tuple(_step(e, kind, gap_op) for e in solution.edges)
    cost, strategy = solution.cost_ms, solution.strategy
    one_scan = len(steps) == 1 and steps[0].op == gap_op and steps[0].sign > 0
    # not against the statistics index: its plan's partial-chunk scans ride in the request's first round
    # trip (docs/planner.md, "Round trips"), where one scan of the request would be one more
    if not one_scan and not spans and cost > (1.0 - scan_margin) * solution.scratch_ms:
        request = cuts_range(s, t, kind)
        steps = (Step(+1, gap_op, request, None, (), round(estimator.rows(request)),
                      solution.scratch_ms - costs.scan_once_ms),)
        strategy = f"{words['scratch']}: the cheapest other plan ({cost:.3f} ms) saves less than {scan_margin:.0%}"
        cost = solution.scratch_ms
    strategy += "" if allow_subtract or trained else " (forward only)"
    overhead = cost_model.overhead_ms
    return Plan(descriptor, steps, strategy, time.perf_counter() - started,
                est_cost_ms=cost + overhead, scratch_cost_ms=solution.scratch_ms + overhead,
                graph={"relevant": n_stored, "index_spans": len(spans), "truncated": False,
                       "pruned": solution.pruned, "nodes": solution.graph_nodes, "edges": solution.graph_edges,
                       "cost_path": cost_path(descriptor, estimator),
                       "est_parts": est_parts(cost_model, estimator, descriptor, steps, cost, chunk_rows),
                       **(cached or {})})


def cost_path(descriptor: Descriptor, estimator: RowEstimator) -> str:
    """How the plan's base rows are read: 'index' (a btree on the ordering column), 'seq' (every table
    row), or 'train' (a logistic request's chunks): what the learned correction is kept per
    (:mod:`modelstore.planner.costs.learning`)."""
    if descriptor.family.trained:
        return "train"
    return "index" if estimator.has_index else "seq"


def est_parts(model: CostModel, estimator: RowEstimator, descriptor: Descriptor, steps, cost_ms: float,
              chunk_rows: int) -> dict:
    """A plan's estimate (``cost_ms``, without the overhead) split into what the learned correction
    scales separately: ``agg`` — aggregating (or training on) the scanned rows; ``read`` — reading
    them (the whole table without an index, with a test per scanned range; else the matched rows
    through the index); ``fixed`` — the rest (round trips, fetches, merges)."""
    scans = [st for st in steps if st.op in ("scan", "train")]
    rows = float(sum(st.est_rows or 0 for st in scans))
    k = len(descriptor.stats_columns)
    if descriptor.family.trained:
        agg = rows * (model.train_ms(k, chunk_rows) - model.statement_ms) / chunk_rows
    else:
        agg = model.scan_ms(descriptor.kind, k, rows)
    if not scans:
        read = 0.0
    elif estimator.has_index:
        read = model.index_read_ms(rows)
    else:
        read = model.seq_read_ms(estimator.total_rows) + model.seq_ranges_ms(estimator.total_rows, len(scans))
    return {"agg": agg, "read": read, "fixed": max(cost_ms - agg - read, 0.0)}


def _solve_arrays(found: Candidates, s: Cut, t: Cut, costs: PlanCosts, estimator: RowEstimator, kind: str,
                  gap_op: str, backward: bool, words: dict):
    """Cuts as whole keys (on these domains "after v" is "before v + 1", side 0 throughout), rows of
    every piece from one vectorised estimate, Dijkstra over arrays; objects only for the chosen steps."""
    m = len(found)
    keys = np.concatenate((found.lo_keys, found.hi_keys + 1,
                           np.array([whole_key(s, kind), whole_key(t, kind)], dtype=np.int64)))
    cuts, inverse = np.unique(keys, return_inverse=True)
    below = estimator.below_cuts(cuts / WHOLE_KEY_SCALE[kind], np.zeros(len(cuts), dtype=np.int8))
    piece_rows = np.maximum(np.diff(below), 0.0)
    model_cost = (costs.stored_values_ms(found.n_values) if costs.stored_values_ms is not None
                  else np.zeros(m))
    solution = solve_indexed(len(cuts), int(inverse[2 * m]), int(inverse[2 * m + 1]), inverse[:m],
                             inverse[m : 2 * m], model_cost, piece_rows, costs, backward=backward, words=words)
    steps = []
    for e in solution.edges:
        r = cuts_range(cut_at(cuts[e.lo], kind), cut_at(cuts[e.hi], kind), kind)
        if e.op == "stored":
            j = e.model
            steps.append(Step(e.sign, "stored", r, int(found.stats_ids[j]), found.column_sets[found.column_ix[j]],
                              int(found.n_rows[j]), e.cost_ms))
        else:
            steps.append(Step(e.sign, gap_op, r, None, (), round(e.rows), e.cost_ms))
    return tuple(steps), solution, m


@dataclasses.dataclass(frozen=True)
class _Solved:
    """What plan_request reads of a solution (as :class:`~modelstore.planner.graph.Solution` has it)."""

    cost_ms: float
    scratch_ms: float
    strategy: str
    pruned: int
    graph_nodes: int
    graph_edges: int


def _solve_cached(conn, source_id: int, descriptor: Descriptor, s: Cut, t: Cut, costs: PlanCosts,
                  estimator: RowEstimator, kind: str, gap_op: str, backward: bool, words: dict, row=None,
                  pending=None):
    """The relevant set from the session's catalog cache (one round trip, only what changed since the held
    arrays' snapshot), the cut graph of that set built once per catalog state, cost model and row estimator, and a
    search from the request's two ends (:mod:`.cache`, :mod:`.search`). ``row``: the relevant set as
    ``modelstore.request_context`` read it in the request's first round trip (then nothing is read here);
    ``pending``: the ``plan_catalog`` call already sent with the index lookup."""
    if row is not None:
        look = cache.from_row(conn, source_id, descriptor, row)
    else:
        look = cache.receive(pending) if pending is not None else cache.lookup(conn, source_id, descriptor)
    entry = look.entry
    r = descriptor.range
    scale = WHOLE_KEY_SCALE[kind]  # whole keys per catalog key (the estimator takes the catalog's units)
    a, b = entry.relevant(bound_key(r.lo) * scale, bound_key(r.hi) * scale)
    distinct_ms = costs.stored_values_ms(entry.nv_distinct)
    zeros = np.zeros

    def topology():
        return search.build_topology(
            entry.lo_keys[a:b], entry.hi_keys[a:b], entry.n_values[a:b],
            lambda keys: estimator.below_cuts(keys / scale, zeros(len(keys), dtype=np.int8)), backward=backward)

    def weigh(topo):
        return search.weigh(topo, distinct_ms[entry.nv_inverse[a:b]], part_ms=costs.part_ms, row_ms=costs.row_ms)

    if look.cached:
        topo, topo_hit = cache.graph_for(entry, (a, b, backward), estimator, topology)
        g, weights_hit = cache.weighted(topo, (costs.part_ms, costs.row_ms, distinct_ms.tobytes()), weigh)
        graph_hit = topo_hit and weights_hit
    else:
        g, graph_hit = weigh(topology()), False
    below = estimator.below_cuts(np.array([float(s.key), float(t.key)]), zeros(2, dtype=np.int8))
    e = search.ends(g, whole_key(s, kind), whole_key(t, kind), float(below[0]), float(below[1]))
    solved = search.solve(g, e, fetch_once_ms=costs.fetch_once_ms, scan_once_ms=costs.scan_once_ms, words=words)
    steps = []
    for op, sign, lo, hi, rows, cost_ms, j in solved.steps:
        rng = cuts_range(cut_at(lo, kind), cut_at(hi, kind), kind)
        if op == "stored":
            i = a + j
            steps.append(Step(sign, "stored", rng, int(entry.stats_ids[i]), entry.column_sets[entry.column_ix[i]],
                              int(entry.n_rows[i]), cost_ms))
        else:
            steps.append(Step(sign, gap_op, rng, None, (), round(rows), cost_ms))
    # reported as the request's own graph (docs/planner.md): the stored cuts plus s and t where they are none
    cuts = g.n_cuts + (e.s_cut < 0) + (e.t_cut < 0)
    per_cut = 3 if backward else 2
    solution = _Solved(solved.cost_ms, solved.scratch_ms, solved.strategy, g.pruned, per_cut * cuts,
                       g.n_stored_edges + (2 * cuts + max(cuts - 1, 0)) * (per_cut - 1))
    info = {"catalog_hit": look.hit, "catalog_fetched": look.fetched, "graph_hit": graph_hit,
            "settled": solved.settled}
    return tuple(steps), solution, b - a, info


def _chunk_windows(spans, s: Cut, t: Cut) -> list[tuple]:
    """Key ranges of the partial chunks at the request's ends: from the boundary before each end to
    the boundary after it (the spans' endpoints are exactly those boundaries)."""
    bounds = sorted({c for sp in spans for c in (sp.lo, sp.hi)})
    windows = []
    for end in (s, t):
        before = [c for c in bounds if c <= end]
        after = [c for c in bounds if c >= end]
        windows.append(((before[-1] if before else end).key, (after[0] if after else end).key))
    return windows


def _step(edge, kind: str, gap_op: str) -> Step:
    r = cuts_range(edge.lo, edge.hi, kind)
    if edge.op != "stored":
        return Step(edge.sign, gap_op, r, None, (), round(edge.rows), edge.cost_ms)
    m = edge.model
    if isinstance(m, IndexSpan):
        return Step(edge.sign, "index", r, m.index_id, m.columns, round(edge.rows), edge.cost_ms, m.nodes)
    return Step(edge.sign, "stored", r, m.stats_id, m.columns, round(edge.rows), edge.cost_ms)


__all__ = ["SCAN_MARGIN", "Plan", "PlanCosts", "StoredModel", "cost_path", "est_parts", "plan_costs", "plan_request",
           "stats_values"]
