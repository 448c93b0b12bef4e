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

**How it is solved.** Everything is arrays: cuts are integer positions 0 … V−1 in sorted order,
stored models are (from, to, cost) triples, the pieces between neighbouring cuts are one vector of
rows. Models with the same two cuts are pruned to the cheapest (:func:`cheapest_per_pair`, rule 1 of
``docs/planner.md``), the graph is one ``scipy.sparse`` matrix and ``scipy.sparse.csgraph.dijkstra``
solves it; Python objects (:class:`Edge`) are made only for the steps of the chosen path.
:func:`solve` takes model objects and cuts (small inputs, the tests' entry point);
:func:`solve_indexed` takes the arrays (the planner's).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from modelstore.request.cuts import Cut
from modelstore.planner.relevant import StoredModel


@dataclass(frozen=True)
class PlanCosts:
    """The cost model as the graph needs it, for one request (milliseconds).

    ``scan_ms`` is called with numpy arrays of rows as well as with numbers (it must be elementwise).
    """

    stored_ms: Callable[[StoredModel], float]  # fetch + merge of one stored model
    scan_ms: Callable[[float], float]  # the rows of a scanned piece (additive in rows)
    part_ms: float  # merging one scanned part
    fetch_once_ms: float  # the one round trip fetching every stored step, if any
    scan_once_ms: float  # the one scan statement (and full read without an index), if any
    rows: Callable[[Cut, Cut], float]  # estimated rows between two cuts
    #: fetch + merge of stored statistics of ``n_values`` floats (vectorised ``stored_ms``), if known
    stored_values_ms: Callable[[np.ndarray], np.ndarray] | None = None
    #: the cost of one scanned row when ``scan_ms`` is that times the rows (then the cut graph of the stored
    #: models is kept between requests, :mod:`modelstore.planner.search`), else None
    row_ms: float | None = None


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


@dataclass(frozen=True)
class IndexedEdge:
    """A step of a path over cut positions: ``model`` indexes the caller's model arrays (stored steps)."""

    op: str
    sign: int
    lo: int
    hi: int
    rows: float
    cost_ms: float
    model: int = -1


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
    pruned: int = 0  # stored edges dropped by rule 1 (a cheaper model with the same cuts)


@dataclass(frozen=True)
class IndexedSolution:
    edges: tuple[IndexedEdge, ...]
    cost_ms: float
    scratch_ms: float
    strategy: str
    graph_nodes: int
    graph_edges: int
    pruned: int = 0


def cheapest_per_pair(lo: np.ndarray, hi: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the models to keep: per pair of cuts (lo, hi) the cheapest (ties: the first).

    Rule 1 of docs/planner.md: two models with the same cuts are interchangeable on any path, so
    only the cheaper one can be on an optimal path."""
    if len(lo) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(len(lo)), cost, hi, lo))
    a, b = lo[order], hi[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return order[first]


def solve_indexed(n_cuts: int, s: int, t: int, lo: np.ndarray, hi: np.ndarray, model_cost: np.ndarray,
                  piece_rows: np.ndarray, costs: PlanCosts, *, backward: bool = True,
                  words: dict[str, str] = SCAN_WORDS) -> IndexedSolution:
    """The cheapest plan between cut positions ``s`` < ``t`` of ``n_cuts`` sorted cuts.

    ``lo``/``hi``/``model_cost``: per model its cut positions (lo < hi) and its cost; ``piece_rows``:
    the rows between cuts i and i + 1 (length ``n_cuts − 1``)."""
    piece_rows = np.asarray(piece_rows, dtype=float)
    rows_st = float(piece_rows[s:t].sum())
    scratch = costs.scan_once_ms + costs.part_ms + float(costs.scan_ms(rows_st))
    scratch_edges = (IndexedEdge("scan", +1, s, t, rows_st, costs.part_ms + float(costs.scan_ms(rows_st))),)
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    model_cost = np.asarray(model_cost, dtype=float)
    valid = lo < hi
    lo, hi, model_cost, ids = lo[valid], hi[valid], model_cost[valid], np.flatnonzero(valid)
    if len(lo) == 0:
        return IndexedSolution(scratch_edges, scratch, scratch, f"nothing stored is relevant: {words['scratch']}",
                               0, 0)
    keep = cheapest_per_pair(lo, hi, model_cost)
    pruned = len(lo) - len(keep)
    lo, hi, model_cost, ids = lo[keep], hi[keep], model_cost[keep], ids[keep]

    V = n_cuts
    # stored edges between "at" nodes 0 … V−1: forwards (add) and, for subtractable families, backwards;
    # a forward pair (a, b) and a backward pair (b, a) of another model may coincide: keep the cheaper
    src, dst, w, model = lo, hi, model_cost, ids
    if backward:
        src, dst = np.concatenate((lo, hi)), np.concatenate((hi, lo))
        w, model = np.concatenate((model_cost, model_cost)), np.concatenate((ids, ids))
        keep = cheapest_per_pair(src, dst, w)
        src, dst, w, model = src[keep], dst[keep], w[keep], model[keep]
    n_stored = len(src)

    # scan nodes: "inside a forward scan" V + i, "inside a backward scan" 2V + i
    at = np.arange(V)
    piece_ms = np.asarray(costs.scan_ms(piece_rows), dtype=float) if V > 1 else np.zeros(0)
    parts = [(src, dst, w),
             (at, V + at, np.full(V, costs.part_ms)), (V + at, at, np.zeros(V)),
             (V + at[:-1], V + at[1:], piece_ms)]
    if backward:
        parts += [(at, 2 * V + at, np.full(V, costs.part_ms)), (2 * V + at, at, np.zeros(V)),
                  (2 * V + at[1:], 2 * V + at[:-1], piece_ms)]
    n_nodes = 3 * V if backward else 2 * V
    full = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]))
    pair_key = src * V + dst
    order = np.argsort(pair_key, kind="stable")
    sorted_keys = pair_key[order]

    def stored_step(a: int, b: int) -> tuple[int, float]:
        j = order[np.searchsorted(sorted_keys, a * V + b)]
        return int(model[j]), float(w[j])

    candidates = [(scratch, scratch_edges)]
    for nodes, graph in ((n_nodes, full), (V, (src, dst, w))):
        dist_t, path = shortest_path(nodes, *graph, s, t)
        if path is None:
            continue
        edges = _edges(path, V, stored_step, piece_rows, costs)
        once = (costs.fetch_once_ms if any(e.op == "stored" for e in edges) else 0.0) + (
            costs.scan_once_ms if any(e.op == "scan" for e in edges) else 0.0)
        candidates.append((dist_t + once, edges))
    cost, edges = min(candidates, key=lambda c: (c[0], len(c[1])))
    kinds = {e.op for e in edges}
    label = (words["cheapest"] if kinds == {"scan"} else
             "stored statistics only" if kinds == {"stored"} else f"stored statistics and {words['mixed']}")
    n_edges = n_stored + sum(len(p[0]) for p in parts[1:])
    return IndexedSolution(edges, cost, scratch, label, n_nodes, n_edges, pruned)


#: graphs of at most this many nodes are solved by a heap Dijkstra in Python: for a few hundred nodes,
#: building a sparse matrix and calling scipy costs more than the search itself
SMALL_GRAPH = 1500


def shortest_path(n_nodes: int, src: np.ndarray, dst: np.ndarray, w: np.ndarray, s: int, t: int,
                  *, small: int = SMALL_GRAPH) -> tuple[float, list[int] | None]:
    """(distance, node path) of a cheapest s → t path over non-negative edges, or (inf, None)."""
    if n_nodes > small:
        graph = sp.csr_matrix((w, (src, dst)), shape=(n_nodes, n_nodes))
        dist, pred = dijkstra(graph, directed=True, indices=s, return_predecessors=True)
        if not np.isfinite(dist[t]):
            return math.inf, None
        path = [t]
        while path[-1] != s:
            path.append(int(pred[path[-1]]))
        return float(dist[t]), path[::-1]
    adjacency: list[list[tuple[int, float]]] = [[] for _ in range(n_nodes)]
    for a, b, c in zip(src.tolist(), dst.tolist(), w.tolist()):
        adjacency[a].append((b, c))
    dist = {s: 0.0}
    pred: dict[int, int] = {}
    heap = [(0.0, s)]
    done = set()
    while heap:
        d, u = heapq.heappop(heap)
        if u in done:
            continue
        if u == t:
            path = [t]
            while path[-1] != s:
                path.append(pred[path[-1]])
            return d, path[::-1]
        done.add(u)
        for v, c in adjacency[u]:
            nd = d + c
            if nd < dist.get(v, math.inf):
                dist[v] = nd
                pred[v] = u
                heapq.heappush(heap, (nd, v))
    return math.inf, None


def _edges(path: list[int], V: int, stored_step, piece_rows: np.ndarray, costs: PlanCosts) -> tuple[IndexedEdge, ...]:
    """Turn a node path into signed steps, one per stored edge and one per scan run."""
    edges: list[IndexedEdge] = []
    run_start = None
    for u, v in zip(path, path[1:]):
        mode_u, a = divmod(u, V)
        mode_v, b = divmod(v, V)
        if mode_u == 0 and mode_v == 0:
            model, cost = stored_step(a, b)
            lo, hi, sign = (a, b, +1) if a < b else (b, a, -1)
            edges.append(IndexedEdge("stored", sign, lo, hi, 0.0, cost, model))
        elif mode_u == 0:  # entering a scan run at cut a
            run_start = a
        elif mode_v == 0:  # leaving the run at cut b
            lo_i, hi_i, sign = (run_start, b, +1) if mode_u == 1 else (b, run_start, -1)
            if lo_i != hi_i:
                rows = float(piece_rows[lo_i:hi_i].sum())
                edges.append(IndexedEdge("scan", sign, lo_i, hi_i, rows,
                                         costs.part_ms + float(costs.scan_ms(rows))))
            run_start = None
    return tuple(edges)


def solve(s: Cut, t: Cut, models: Sequence[StoredModel], cuts_of: Callable[[StoredModel], tuple[Cut, Cut]],
          costs: PlanCosts, *, backward: bool = True, words: dict[str, str] = SCAN_WORDS) -> Solution:
    """The cheapest plan for the rows between cuts ``s`` < ``t``, over model objects."""
    ends = [cuts_of(m) for m in models]
    cuts = sorted({s, t, *(c for pair in ends for c in pair)})
    index = {c: i for i, c in enumerate(cuts)}
    lo = np.array([index[a] for a, _ in ends], dtype=np.int64)
    hi = np.array([index[b] for _, b in ends], dtype=np.int64)
    cost = np.array([costs.stored_ms(m) for m in models], dtype=float)
    piece_rows = np.array([costs.rows(a, b) for a, b in zip(cuts, cuts[1:])], dtype=float)
    sol = solve_indexed(len(cuts), index[s], index[t], lo, hi, cost, piece_rows, costs, backward=backward,
                        words=words)
    edges = tuple(
        Edge(e.op, e.sign, cuts[e.lo], cuts[e.hi],
             models[e.model].rows if e.op == "stored" else e.rows, e.cost_ms,
             models[e.model] if e.op == "stored" else None)
        for e in sol.edges)
    return Solution(edges, sol.cost_ms, sol.scratch_ms, sol.strategy, sol.graph_nodes, sol.graph_edges, sol.pruned)
