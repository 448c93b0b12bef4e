"""The cost graph and its shortest path (paper §5, Algorithm 4).

Vertices are cuts (:mod:`modelstore.request.cuts`): the request's two endpoints and the endpoints of
the relevant stored models. A stored model is an edge between its cuts, traversed forwards to add it
and backwards to subtract it (linear and Naive Bayes; logistic chunk models are forward only). A
path from the request's lower cut to its upper cut is a plan: its signed edges sum to the request.

**Smaller than the paper's graph, with the same optimum.** The paper joins every pair of vertices by
a scan edge — O(V²) edges. Here scan edges join only *neighbouring* cuts: a scan of [u, w] is the
same rows, at the same per-row cost, as the scans of the neighbouring pieces between u and w, so any
path through the complete graph maps onto one of equal cost here, and back. What is not additive is
per *scan part* (each scanned range is one more summary to merge): each cut therefore has two more
nodes, "inside a forward scan" and "inside a backward scan"; entering one costs one merge, moving to
the next cut inside it costs that piece's rows, and leaving is free — so consecutive pieces are one
part, priced once, as the executor runs them. The graph has 3V nodes and O(V + M) edges.

Costs that a plan pays once, not per edge — the round trip that fetches all its stored statistics,
and the one statement that scans all its gaps (plus a full read of the table when the ordering column
has no index) — would make Dijkstra's path-additive costs wrong if put on edges. Instead the three
classes of plan are solved separately: scan only (one scan of the request), stored only (Dijkstra
without scan edges) and any (Dijkstra on everything); each path's true cost adds its class's fixed
costs, and the cheapest wins. (The best path overall either is the best of its own class, or loses
to the best of a class with fewer fixed costs — see ``docs/planner.md``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import networkx as nx

from modelstore.request.cuts import Cut
from modelstore.planner.relevant import StoredModel


@dataclass(frozen=True)
class PlanCosts:
    """The cost model as the graph needs it, for one request (milliseconds)."""

    stored_ms: Callable[[StoredModel], float]  # fetch + merge of one stored model
    scan_ms: Callable[[float], float]  # the rows of a scanned piece (additive in rows)
    part_ms: float  # merging one scanned part
    fetch_once_ms: float  # the one round trip fetching every stored step, if any
    scan_once_ms: float  # the one scan statement (and full read without an index), if any
    rows: Callable[[Cut, Cut], float]  # estimated rows between two cuts


@dataclass(frozen=True)
class Edge:
    """One signed step of a solved path: a stored model or a scanned part between two cuts."""

    op: str  # 'stored' | 'scan'
    sign: int
    lo: Cut
    hi: Cut
    rows: float
    cost_ms: float
    model: StoredModel | None = None


#: how a strategy names reading base rows: aggregating statistics, or training chunk models (logistic)
SCAN_WORDS = {"scratch": "one scan", "cheapest": "one scan is cheapest", "mixed": "scans"}
TRAIN_WORDS = {"scratch": "train every chunk", "cheapest": "training is cheapest", "mixed": "training"}


@dataclass(frozen=True)
class Solution:
    edges: tuple[Edge, ...]
    cost_ms: float  # the path's edges plus its class's one-off costs
    scratch_ms: float  # one scan of the whole request
    strategy: str
    graph_nodes: int
    graph_edges: int


def solve(s: Cut, t: Cut, models: Sequence[StoredModel], cuts_of: Callable[[StoredModel], tuple[Cut, Cut]],
          costs: PlanCosts, *, backward: bool = True, words: dict[str, str] = SCAN_WORDS) -> Solution:
    """The cheapest plan for the rows between cuts ``s`` < ``t``."""
    rows_st = _run_rows(costs, [s, t])
    scratch = costs.scan_once_ms + costs.part_ms + costs.scan_ms(rows_st)
    scratch_edges = (Edge("scan", +1, s, t, rows_st, costs.part_ms + costs.scan_ms(rows_st)),)
    if not models:
        return Solution(scratch_edges, scratch, scratch, f"nothing stored is relevant: {words['scratch']}", 0, 0)

    cuts = sorted({s, t, *(c for m in models for c in cuts_of(m))})
    index = {c: i for i, c in enumerate(cuts)}
    stored: dict[tuple[int, int], tuple[float, StoredModel]] = {}  # cheapest model per (from, to)
    for m in models:
        lo, hi = cuts_of(m)
        if not lo < hi:
            continue
        cost = costs.stored_ms(m)
        for a, b in ((index[lo], index[hi]), (index[hi], index[lo])) if backward else ((index[lo], index[hi]),):
            if (a, b) not in stored or cost < stored[(a, b)][0]:
                stored[(a, b)] = (cost, m)

    graph = nx.DiGraph()
    graph.add_nodes_from(("at", i) for i in range(len(cuts)))
    for (a, b), (cost, _) in stored.items():
        graph.add_edge(("at", a), ("at", b), weight=cost)
    stored_only = graph.copy()
    piece_rows = [costs.rows(cuts[i], cuts[i + 1]) for i in range(len(cuts) - 1)]
    for i in range(len(cuts)):
        graph.add_edge(("at", i), ("fwd", i), weight=costs.part_ms)
        graph.add_edge(("fwd", i), ("at", i), weight=0.0)
        if i + 1 < len(cuts):
            graph.add_edge(("fwd", i), ("fwd", i + 1), weight=costs.scan_ms(piece_rows[i]))
        if backward:
            graph.add_edge(("at", i), ("bwd", i), weight=costs.part_ms)
            graph.add_edge(("bwd", i), ("at", i), weight=0.0)
            if i > 0:
                graph.add_edge(("bwd", i), ("bwd", i - 1), weight=costs.scan_ms(piece_rows[i - 1]))

    src, dst = ("at", index[s]), ("at", index[t])
    candidates = [(scratch, scratch_edges)]
    for g in (graph, stored_only):
        try:
            length, path = nx.bidirectional_dijkstra(g, src, dst, weight="weight")
        except nx.NetworkXNoPath:
            continue
        edges = _edges(path, cuts, stored, piece_rows, costs)
        once = (costs.fetch_once_ms if any(e.op == "stored" for e in edges) else 0.0) + (
            costs.scan_once_ms if any(e.op == "scan" for e in edges) else 0.0)
        candidates.append((length + once, edges))
    cost, edges = min(candidates, key=lambda c: (c[0], len(c[1])))
    kinds = {e.op for e in edges}
    label = (words["cheapest"] if kinds == {"scan"} else
             "stored statistics only" if kinds == {"stored"} else f"stored statistics and {words['mixed']}")
    return Solution(edges, cost, scratch, label, graph.number_of_nodes(), graph.number_of_edges())


def _run_rows(costs: PlanCosts, cuts: list[Cut]) -> float:
    return sum(costs.rows(a, b) for a, b in zip(cuts, cuts[1:]))


def _edges(path, cuts, stored, piece_rows, costs: PlanCosts) -> tuple[Edge, ...]:
    """Turn a node path into signed steps, one per stored edge and one per scan run."""
    edges: list[Edge] = []
    run_start = None
    for (mode_a, a), (mode_b, b) in zip(path, path[1:]):
        if mode_a == "at" and mode_b == "at":
            cost, model = stored[(a, b)]
            lo, hi, sign = (cuts[a], cuts[b], +1) if a < b else (cuts[b], cuts[a], -1)
            edges.append(Edge("stored", sign, lo, hi, model.rows, cost, model))
        elif mode_a == "at":  # entering a scan run at cut a
            run_start = a
        elif mode_b == "at":  # leaving the run at cut b
            lo_i, hi_i, sign = (run_start, b, +1) if mode_a == "fwd" else (b, run_start, -1)
            if lo_i != hi_i:
                rows = sum(piece_rows[lo_i:hi_i])
                edges.append(Edge("scan", sign, cuts[lo_i], cuts[hi_i], rows, costs.part_ms + costs.scan_ms(rows)))
            run_start = None
    return tuple(edges)
