"""Brute-force planning: enumerate every plan of the paper's complete graph and price it.

Independent of modelstore.planner.graph: vertices are all cuts; between every two cuts there is a scan
edge (either direction) and an edge per stored model with those cuts (either direction, or forward
only). A plan is a simple path from s to t; consecutive scans in the same direction are one scanned
part (as the executor runs them); fixed costs are paid once per plan per kind of step.
"""

from __future__ import annotations

import math

from modelstore.planner.graph import PlanCosts


def brute_force(s, t, models, cuts_of, costs: PlanCosts, *, backward: bool = True) -> float:
    cuts = sorted({s, t, *(c for m in models for c in cuts_of(m))})
    order = {c: i for i, c in enumerate(cuts)}
    # rows between neighbouring cuts, summed for longer scans (the estimator's additivity)
    piece = [costs.rows(a, b) for a, b in zip(cuts, cuts[1:])]

    def rows_between(u, w):
        i, j = sorted((order[u], order[w]))
        return sum(piece[i:j])

    edges = {}  # (u, w) -> list of (op, cost)
    for m in models:
        lo, hi = cuts_of(m)
        pairs = [(lo, hi), (hi, lo)] if backward else [(lo, hi)]
        for u, w in pairs:
            edges.setdefault((u, w), []).append(("stored", costs.stored_ms(m)))
    best = math.inf

    def price(path):
        total, stored, scanned = 0.0, False, False
        run_dir, run_rows = None, 0.0
        for (u, w), (op, cost) in path:
            direction = 1 if order[w] > order[u] else -1
            if op == "scan":
                if run_dir == direction:
                    run_rows += rows_between(u, w)
                else:
                    if run_dir is not None:
                        total += costs.part_ms + costs.scan_ms(run_rows)
                    run_dir, run_rows = direction, rows_between(u, w)
                scanned = True
            else:
                if run_dir is not None:
                    total += costs.part_ms + costs.scan_ms(run_rows)
                    run_dir = None
                total += cost
                stored = True
        if run_dir is not None:
            total += costs.part_ms + costs.scan_ms(run_rows)
        return total + (costs.fetch_once_ms if stored else 0) + (costs.scan_once_ms if scanned else 0)

    def walk(node, visited, path):
        nonlocal best
        if node == t:
            best = min(best, price(path))
            return
        for nxt in cuts:
            if nxt in visited:
                continue
            if not backward and order[nxt] < order[node]:
                continue
            for choice in [("scan", 0.0)] + edges.get((node, nxt), []):
                walk(nxt, visited | {nxt}, path + [((node, nxt), choice)])

    walk(s, {s}, [])
    return best
