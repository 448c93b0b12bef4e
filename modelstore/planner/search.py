"""The cost graph of a catalog, built once per catalog state and searched per request (paper §5, Algorithm 4).

:mod:`.graph` builds the 3V-node cost graph of one request from scratch. Here the graph over the cuts of
the *stored* models is built once (:class:`CutGraph`, kept in the session's catalog cache,
:mod:`.cache`) and each request only adds its two ends: the request's lower cut s and upper cut t are
two virtual nodes S and T, joined to the graph by the scan pieces from s to its neighbouring cuts and
from t's neighbouring cuts to t (or by a free edge when s or t is itself a stored cut). Scanning over a
cut costs the rows between its neighbours either way (rows below a cut are a non-decreasing function, so
the pieces add up), so every path of the request's own graph is a path here of the same cost, and back:
the optimum is the same (docs/planner.md, "Per request: two virtual nodes").

The search (:func:`_bidirectional`, checked against :func:`.graph.solve_indexed` on random graphs) is a
bidirectional Dijkstra in Python over the implicit graph (node = cut × {at the cut, inside a forward scan,
inside a backward scan}) from S and, over reversed edges, from T. It stops when the two frontiers' radii
add up to the cheapest meeting found, and never goes past ``limit`` (the cost beyond which no path can beat
the single scan): it settles the nodes within about half the optimum of either end — a few hundred of the
588,000 nodes of 100,000 stored models — where a one-sided compiled search (``scipy.sparse.csgraph``) pays
for every node of the graph in its set-up and for every node within the whole optimum in its search.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from modelstore.planner.graph import cheapest_per_pair

@dataclass
class Topology:
    """The stored models' cuts and edges (after rule 1) and the rows below each cut: what does not depend
    on the cost model. Its weighted graphs (:func:`weigh`) are kept in ``weighted`` by cost figures."""

    keys: np.ndarray  # sorted distinct cut keys (int64): cut i is "just before key i"
    below: np.ndarray  # estimated rows below each cut
    backward: bool
    out: Adjacency  # per cut: stored edges (to cut, model)
    into: Adjacency  # per cut: stored edges arriving (from cut, model)
    n_stored_edges: int
    pruned: int  # models dropped by rule 1
    weighted: OrderedDict = field(default_factory=OrderedDict)


@dataclass
class CutGraph:
    """A :class:`Topology` with the costs of one cost model: per model, per piece between cuts, per part."""

    topology: Topology
    model_ms: list[float]  # per model (index into the arrays the topology was built from)
    piece_ms: list[float]  # scanning the rows between cut i and cut i + 1 (without the part's merge)
    part_ms: float
    row_ms: float

    @property
    def keys(self) -> np.ndarray:
        return self.topology.keys

    @property
    def below(self) -> np.ndarray:
        return self.topology.below

    @property
    def backward(self) -> bool:
        return self.topology.backward

    @property
    def pruned(self) -> int:
        return self.topology.pruned

    @property
    def n_stored_edges(self) -> int:
        return self.topology.n_stored_edges

    @property
    def n_cuts(self) -> int:
        return len(self.topology.keys)

    @property
    def n_nodes(self) -> int:
        return (3 if self.backward else 2) * self.n_cuts

    @property
    def n_edges(self) -> int:
        v = self.n_cuts  # per direction of scan: entering and leaving at every cut, and the pieces
        return self.n_stored_edges + (2 * v + max(v - 1, 0)) * (2 if self.backward else 1)


def build_topology(lo_keys: np.ndarray, hi_keys: np.ndarray, size: np.ndarray, below_of, *,
                   backward: bool) -> Topology:
    """The cuts and edges of models with closed integer ranges [lo, hi] (cuts lo and hi + 1).

    ``size``: what rule 1 keeps the smallest of among models with the same cuts — the floats they hold,
    since every cost model prices a stored model non-decreasingly in its floats (docs/planner.md, "Cost
    model"), so the smallest is a cheapest under any figures. ``below_of(keys)``: estimated rows below each
    cut key (vectorised)."""
    lo_keys = np.asarray(lo_keys, dtype=np.int64)
    hi_cut = np.asarray(hi_keys, dtype=np.int64) + 1
    keys, inverse = np.unique(np.concatenate((lo_keys, hi_cut)), return_inverse=True)
    m = len(lo_keys)
    lo, hi = inverse[:m], inverse[m:]
    below = np.asarray(below_of(keys), dtype=float) if len(keys) else np.zeros(0)
    keep = cheapest_per_pair(lo, hi, np.asarray(size, dtype=float))  # rule 1
    pruned = m - len(keep)
    lo, hi, ids = lo[keep], hi[keep], keep
    # a forward edge a → b (a < b) and a backward one (b > a) never share their cuts in this order
    src, dst, model = (np.concatenate((lo, hi)), np.concatenate((hi, lo)), np.concatenate((ids, ids))) \
        if backward else (lo, hi, ids)
    v = len(keys)
    out = Adjacency(v, src, dst, model)
    into = out if backward else Adjacency(v, dst, src, model)  # symmetric when every edge goes both ways
    return Topology(keys, below, backward, out, into, len(src), pruned)


def weigh(topology: Topology, model_cost: np.ndarray, *, part_ms: float, row_ms: float) -> CutGraph:
    """The topology with one cost model's figures (two vectors; the adjacency is shared)."""
    piece_ms = (np.maximum(np.diff(topology.below), 0.0) * row_ms).tolist()
    return CutGraph(topology, np.asarray(model_cost, dtype=float).tolist(), piece_ms, float(part_ms), float(row_ms))


def build(lo_keys: np.ndarray, hi_keys: np.ndarray, model_cost: np.ndarray, below_of, *, part_ms: float,
          row_ms: float, backward: bool) -> CutGraph:
    """:func:`build_topology` (rule 1 on the costs themselves) and :func:`weigh` in one."""
    topology = build_topology(lo_keys, hi_keys, model_cost, below_of, backward=backward)
    return weigh(topology, model_cost, part_ms=part_ms, row_ms=row_ms)


class Adjacency:
    """Per cut, its stored edges as a list of (other cut, model), in the order the edges were given.

    Kept as three flat arrays (CSR: each cut's edges are a run of them) and each cut's list made on first
    use: a search touches a few hundred cuts of the hundreds of thousands a large catalog has, and making a
    Python list per cut up front cost more than the search (~0.5–1 s at 100,000 models, most of it the
    garbage collector passing over the new lists) — a cost paid again after every change of the catalog."""

    __slots__ = ("_ptr", "_to", "_model", "_lists")

    def __init__(self, v: int, src: np.ndarray, dst: np.ndarray, model: np.ndarray):
        order = np.argsort(src, kind="stable")  # stable: each cut's edges keep their order
        self._ptr = np.searchsorted(src[order], np.arange(v + 1))
        self._to = dst[order]
        self._model = model[order]
        self._lists: dict[int, list[tuple[int, int]]] = {}

    def __getitem__(self, i: int) -> list[tuple[int, int]]:
        edges = self._lists.get(i)
        if edges is None:
            p, q = self._ptr[i], self._ptr[i + 1]
            edges = self._lists[i] = list(zip(self._to[p:q].tolist(), self._model[p:q].tolist()))
        return edges

    def __len__(self) -> int:
        return len(self._ptr) - 1


@dataclass(frozen=True)
class Ends:
    """A request's two ends on a :class:`CutGraph`: the edges leaving S and those arriving at T
    (node, cost), and whether s and t are stored cuts (only then can a plan use stored steps only)."""

    s_key: int
    t_key: int
    below_s: float
    below_t: float
    s_edges: tuple[tuple[int, float], ...]
    t_edges: tuple[tuple[int, float], ...]
    s_cut: int  # the cut s is, or -1
    t_cut: int


def ends(g: CutGraph, s_key: int, t_key: int, below_s: float, below_t: float) -> Ends:
    """S → the cut s is (free), or → inside a forward scan at the first cut above s and inside a backward
    scan at the last cut below it (a merge and the piece's rows); likewise into T."""
    v = g.n_cuts
    keys, below, part, row = g.keys, g.below, g.part_ms, g.row_ms
    i = int(np.searchsorted(keys, s_key))
    s_cut = i if i < v and keys[i] == s_key else -1
    if s_cut >= 0:
        s_edges = ((s_cut, 0.0),)
    else:
        s_edges = tuple(e for e in (
            (v + i, part + max(below[i] - below_s, 0.0) * row) if i < v else None,
            (2 * v + i - 1, part + max(below_s - below[i - 1], 0.0) * row) if i > 0 and g.backward else None)
            if e is not None)
    j = int(np.searchsorted(keys, t_key))
    t_cut = j if j < v and keys[j] == t_key else -1
    if t_cut >= 0:
        t_edges = ((t_cut, 0.0),)
    else:
        t_edges = tuple(e for e in (
            (v + j - 1, max(below_t - below[j - 1], 0.0) * row) if j > 0 else None,
            (2 * v + j, max(below[j] - below_t, 0.0) * row) if j < v and g.backward else None)
            if e is not None)
    return Ends(int(s_key), int(t_key), float(below_s), float(below_t), s_edges, t_edges, s_cut, t_cut)


@dataclass(frozen=True)
class Found:
    """A cheapest S → T path: its cost (edges only) and its steps (op, sign, lo key, hi key, rows, cost
    in ms, model index or -1), with how many nodes the search settled."""

    cost_ms: float
    steps: tuple[tuple, ...]
    settled: int


def shortest(g: CutGraph, e: Ends, *, scans: bool = True, limit: float = math.inf) -> Found | None:
    """The cheapest path from S to T (``scans=False``: stored edges only), or None when none costs
    less than ``limit``."""
    if not scans and (e.s_cut < 0 or e.t_cut < 0):
        return None
    nodes, cost, settled = _bidirectional(g, e, scans, limit)
    if nodes is None:
        return None
    return Found(cost, _steps(g, e, nodes), settled)


def _bidirectional(g: CutGraph, e: Ends, scans: bool, limit: float):
    """Bidirectional Dijkstra from S and (over reversed edges) from T; stops when the two heaps' tops add up
    to at least the cheapest meeting found (every shorter path would have been met by then)."""
    v = g.n_cuts
    s_node, t_node = 3 * v, 3 * v + 1
    out, into, piece, part, backward = g.topology.out, g.topology.into, g.piece_ms, g.part_ms, g.backward and scans
    mc = g.model_ms
    to_t = dict(e.t_edges) if scans else {e.t_cut: 0.0}
    from_s = dict(e.s_edges) if scans else {e.s_cut: 0.0}
    df, db = {s_node: 0.0}, {t_node: 0.0}
    pf: dict[int, tuple[int, int]] = {}
    pb: dict[int, tuple[int, int]] = {}
    hf, hb = [(0.0, s_node)], [(0.0, t_node)]
    best, meet = limit, -1
    settled = 0
    pop, push, inf = heapq.heappop, heapq.heappush, math.inf
    while hf and hb and hf[0][0] + hb[0][0] < best:
        if hf[0][0] <= hb[0][0]:
            d, u = pop(hf)
            if d > df[u]:
                continue
            settled += 1
            if u == s_node:
                edges = [(x, w, -1) for x, w in from_s.items()]
            else:
                mode, i = divmod(u, v)
                if mode == 0:
                    edges = [(b, mc[j], j) for b, j in out[i]]
                    if scans:
                        edges = edges + [(v + i, part, -1), (2 * v + i, part, -1)] if backward else \
                            edges + [(v + i, part, -1)]
                elif mode == 1:
                    edges = [(i, 0.0, -1), (v + i + 1, piece[i], -1)] if i + 1 < v else [(i, 0.0, -1)]
                else:
                    edges = [(i, 0.0, -1), (2 * v + i - 1, piece[i - 1], -1)] if i > 0 else [(i, 0.0, -1)]
                if u in to_t:
                    edges = edges + [(t_node, to_t[u], -1)]
            for x, w, j in edges:
                nd = d + w
                if nd < df.get(x, inf):
                    df[x] = nd
                    pf[x] = (u, j)
                    push(hf, (nd, x))
                    other = db.get(x)
                    if other is not None and nd + other < best:
                        best, meet = nd + other, x
        else:
            d, x = pop(hb)
            if d > db[x]:
                continue
            settled += 1
            if x == t_node:
                edges = [(u, w, -1) for u, w in to_t.items()]
            else:
                mode, i = divmod(x, v)
                if mode == 0:
                    edges = [(a, mc[j], j) for a, j in into[i]]
                    if scans:
                        edges = edges + [(v + i, 0.0, -1), (2 * v + i, 0.0, -1)] if backward else \
                            edges + [(v + i, 0.0, -1)]
                elif mode == 1:
                    edges = [(i, part, -1), (v + i - 1, piece[i - 1], -1)] if i > 0 else [(i, part, -1)]
                else:
                    edges = [(i, part, -1), (2 * v + i + 1, piece[i], -1)] if i + 1 < v else [(i, part, -1)]
                if x in from_s:
                    edges = edges + [(s_node, from_s[x], -1)]
            for u, w, j in edges:
                nd = d + w
                if nd < db.get(u, inf):
                    db[u] = nd
                    pb[u] = (x, j)
                    push(hb, (nd, u))
                    other = df.get(u)
                    if other is not None and nd + other < best:
                        best, meet = nd + other, u
    if meet < 0:
        return None, inf, settled
    path = [meet]
    models = []
    while path[-1] != s_node:
        u, j = pf[path[-1]]
        path.append(u)
        models.append(j)
    path.reverse()
    models.reverse()
    while path[-1] != t_node:
        x, j = pb[path[-1]]
        path.append(x)
        models.append(j)
    return path, best, settled


def _steps(g: CutGraph, e: Ends, path: list[int]) -> tuple[tuple, ...]:
    """A node path S … T as signed steps: one per stored edge and one per scan run."""
    v = g.n_cuts
    s_node, t_node = 3 * v, 3 * v + 1
    keys, below = g.keys, g.below

    def key_below(node: int) -> tuple[int, float]:
        if node == s_node:
            return e.s_key, e.below_s
        if node == t_node:
            return e.t_key, e.below_t
        i = node % v
        return int(keys[i]), float(below[i])

    steps = []
    run = None  # (start key, rows below it, direction) of the scan run being walked
    for a, b in zip(path, path[1:]):
        mode_a = 3 if a >= 3 * v else a // v
        mode_b = 3 if b >= 3 * v else b // v
        if mode_a == 0 and mode_b == 0:  # a stored edge
            i, j = a, b
            m = next(k for y, k in g.topology.out[i] if y == j)
            c = g.model_ms[m]
            sign = 1 if keys[i] < keys[j] else -1
            lo, hi = (i, j) if sign > 0 else (j, i)
            steps.append(("stored", sign, int(keys[lo]), int(keys[hi]), 0.0, c, m))
        elif mode_b in (1, 2) and mode_a in (0, 3):  # entering a scan run at a cut, or at s
            key, rows_below = key_below(a)
            run = (key, rows_below, mode_b)
        elif mode_a in (1, 2) and mode_b in (0, 3):  # leaving it at a cut, or at t
            key, rows_below = key_below(b)
            start, start_below, direction = run
            if key != start:
                rows = abs(rows_below - start_below)
                lo, hi = sorted((start, key))
                steps.append(("scan", 1 if direction == 1 else -1, lo, hi, rows, g.part_ms + rows * g.row_ms, -1))
            run = None
    return tuple(steps)


@dataclass(frozen=True)
class Solved:
    """The cheapest plan of a request over a :class:`CutGraph`: cost (fixed costs included), steps as in
    :class:`Found`, the strategy's label, the single scan's cost, and the nodes the searches settled."""

    cost_ms: float
    steps: tuple[tuple, ...]
    strategy: str
    scratch_ms: float
    settled: int


def solve(g: CutGraph, e: Ends, *, fetch_once_ms: float, scan_once_ms: float, words: dict[str, str]) -> Solved:
    """The three classes of plan of docs/planner.md — one scan; stored steps only; anything — each with its
    one-off costs; the cheapest wins (ties: fewer steps). A path is searched only as far as it could
    still beat the single scan (the ``limit`` of each search)."""
    rows_st = max(e.below_t - e.below_s, 0.0)
    scan_edge = g.part_ms + rows_st * g.row_ms
    scratch = scan_once_ms + scan_edge
    scratch_steps = (("scan", 1, e.s_key, e.t_key, rows_st, scan_edge, -1),)
    candidates = [(scratch, scratch_steps)]
    settled = 0
    if g.n_cuts:
        full = shortest(g, e, scans=True, limit=scratch - min(fetch_once_ms, scan_once_ms))
        if full is not None:
            settled += full.settled
            candidates.append((full.cost_ms + _once(full.steps, fetch_once_ms, scan_once_ms), full.steps))
        best = min(c[0] for c in candidates)
        only = shortest(g, e, scans=False, limit=best - fetch_once_ms + 1e-12 * (1.0 + abs(best)))
        if only is not None:
            settled += only.settled
            candidates.append((only.cost_ms + fetch_once_ms, only.steps))
    cost, steps = min(candidates, key=lambda c: (c[0], len(c[1])))
    kinds = {st[0] for st in steps}
    label = (words["cheapest"] if kinds == {"scan"} else
             "stored statistics only" if kinds == {"stored"} else f"stored statistics and {words['mixed']}")
    if len(g.keys) == 0:
        label = f"nothing stored is relevant: {words['scratch']}"
    return Solved(cost, steps, label, scratch, settled)


def _once(steps, fetch_once_ms: float, scan_once_ms: float) -> float:
    return ((fetch_once_ms if any(st[0] == "stored" for st in steps) else 0.0)
            + (scan_once_ms if any(st[0] == "scan" for st in steps) else 0.0))
