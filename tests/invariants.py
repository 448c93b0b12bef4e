"""Catalog invariants (issue #7): what must hold in schema ``modelstore`` after any mix of concurrent,
failed or killed requests.

``check_catalog(conn)`` reads the whole catalog in one REPEATABLE READ snapshot (when ``conn`` is idle),
asserts every invariant below with a message naming the offending row, and returns a summary dict of
row counts. It deliberately re-derives everything from the stored rows — array shapes, the index
hierarchy, node sums (merged here with the textbook pairwise formulas, not modelstore's own ``+``) —
so that it checks modelstore rather than repeating it.

Invariants:

* ``sources``: schema and table names are non-empty;
* ``statistics``: no two rows share a descriptor (source_id, family, lo_key, hi_key, filter_sql, target,
  params_key, columns); lo_key <= hi_key; n >= 0, null_rows >= 0; array lengths match the family
  (linear: mean k = len(columns), moments k·k; gaussian_nb: counts C = jsonb_array_length(classes),
  mean and moments C·d; multinomial_nb: counts C, moments C·d; logistic: mean K, moments K·d with K = 1
  for two classes, else C); n = sum(counts) for the Naive Bayes families; counts >= 0; no NaN or ±Infinity; only logistic rows
  are stale, and read_columns (when recorded) covers the columns, the class column and the ordering column;
* ``fitted_models``: the source exists, the statistics row (when stats_id is not NULL) exists, and is of
  the same source and of the model's family;
* ``stat_indexes`` / ``index_nodes``: ``levels`` is what ``n_chunks`` implies, the nodes are exactly
  level 0 at pos 0..n_chunks-1 and, above it, ceil(width/2) nodes per level up to a single root
  (node (L, p) covers chunks [p·2^L, (p+1)·2^L), modelstore/index.py); level-0 chunks are contiguous and
  end at the index's end_key; every node at level L > 0 spans its children and equals their sum (n, null_rows
  and class counts exactly, means and moments to rounding); the root accounts for every indexed row.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import psycopg
from psycopg.pq import TransactionStatus

FAMILIES = ("linear", "gaussian_nb", "multinomial_nb", "logistic")
KIND_FAMILY = {"linear": "linear", "gaussian_nb": "gaussian_nb", "multinomial_nb": "multinomial_nb",
               "logistic": "logistic"}
#: merged means and moments are compared to the stored ones to this fraction of each element's natural scale
FLOAT_RTOL = 1e-9


def check_catalog(conn: psycopg.Connection) -> dict:
    """Assert the catalog's invariants over one snapshot; return row counts per table (and per family)."""
    if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            return _check(conn)
    return _check(conn)


def _check(conn: psycopg.Connection) -> dict:
    summary: dict = {}
    summary["sources"] = _check_sources(conn)
    stats = _check_statistics(conn)
    summary["statistics"] = len(stats)
    summary["statistics_by_family"] = dict(Counter(row["family"] for row in stats.values()))
    summary["fitted_models"] = _check_models(conn, stats)
    summary["stat_indexes"], summary["index_nodes"] = _check_indexes(conn)
    return summary


def _rows(conn: psycopg.Connection, query: str, params=None) -> list[dict]:
    cur = conn.execute(query, params)
    names = [c.name for c in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


# -- sources ----------------------------------------------------------------------------------------------

def _check_sources(conn) -> int:
    rows = _rows(conn, "SELECT source_id, schema_name, table_name, order_by FROM modelstore.sources")
    for r in rows:
        assert r["schema_name"] and r["schema_name"].strip(), f"source #{r['source_id']} has no schema name: {r}"
        assert r["table_name"] and r["table_name"].strip(), f"source #{r['source_id']} has no table name: {r}"
        assert r["order_by"] and r["order_by"].strip(), f"source #{r['source_id']} has no ordering column: {r}"
    return len(rows)


# -- statistics -------------------------------------------------------------------------------------------

def _check_statistics(conn) -> dict[int, dict]:
    dupes = _rows(conn, """
        SELECT source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns,
               array_agg(stats_id ORDER BY stats_id) AS ids
        FROM modelstore.statistics
        GROUP BY source_id, family, lo_key, hi_key, filter_sql, target, params_key, columns
        HAVING count(*) > 1""")
    assert not dupes, f"statistics rows share a descriptor: {dupes}"
    have = {r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'modelstore' "
        "AND table_name = 'statistics'").fetchall()}
    # columns of later catalog versions (0005: freshness), checked when present
    stale = "s.stale" if "stale" in have else "false"
    read_columns = "s.read_columns" if "read_columns" in have else "NULL::text[]"
    rows = _rows(conn, f"""
        SELECT s.stats_id, s.source_id, s.family, s.lo_key, s.hi_key, s.filter_sql, s.target, s.params_key,
               s.columns, s.n, s.null_rows, s.classes, s.counts, s.mean, s.moments,
               CASE WHEN s.classes IS NULL THEN NULL ELSE jsonb_array_length(s.classes) END AS n_classes,
               src.source_id IS NOT NULL AS source_exists, src.order_by,
               {stale} AS stale, {read_columns} AS read_columns
        FROM modelstore.statistics s LEFT JOIN modelstore.sources src USING (source_id)
        ORDER BY s.stats_id""")
    out = {}
    for r in rows:
        _check_stats_row(r)
        out[r["stats_id"]] = r
    return out


def _finite(values, what: str) -> None:
    arr = np.asarray(values, dtype=float)
    assert np.isfinite(arr).all(), f"{what} holds NaN or ±Infinity: {values}"


def _check_stats_row(r: dict) -> None:
    sid, fam = f"statistics #{r['stats_id']}", r["family"]
    assert r["source_exists"], f"{sid} refers to a missing source #{r['source_id']}"
    assert fam in FAMILIES, f"{sid} has an unknown family {fam!r}"
    assert r["lo_key"] <= r["hi_key"], f"{sid}: lo_key {r['lo_key']} > hi_key {r['hi_key']}"
    assert r["n"] >= 0 and r["null_rows"] >= 0, f"{sid}: negative n ({r['n']}) or null_rows ({r['null_rows']})"
    columns = r["columns"]
    assert columns and len(set(columns)) == len(columns), f"{sid}: empty or repeated columns {columns}"
    # only logistic chunk models go stale; linear and Naive Bayes statistics absorb every change
    assert not r["stale"] or fam == "logistic", f"{sid}: a stale {fam} row"
    if r["read_columns"] is not None:
        needed = set(columns) | ({r["target"]} if r["target"] else set()) | {r["order_by"]}
        assert needed <= set(r["read_columns"]), \
            f"{sid}: read_columns {r['read_columns']} lacks {sorted(needed - set(r['read_columns']))}"
    d = len(columns)
    mean, moments, counts = r["mean"], r["moments"], r["counts"]
    assert moments is not None, f"{sid}: no moments"
    _finite(moments, f"{sid} moments")
    if mean is not None:
        _finite(mean, f"{sid} mean")
    if fam == "linear":
        assert r["target"] == "", f"{sid}: a linear row with a class column {r['target']!r}"
        assert r["classes"] is None and counts is None, f"{sid}: a linear row with classes or counts"
        assert mean is not None and len(mean) == d, f"{sid}: linear mean has {len(mean or [])} values, want {d}"
        assert len(moments) == d * d, f"{sid}: linear moments has {len(moments)} values, want {d * d}"
        cm = np.asarray(moments, dtype=float).reshape(d, d)
        assert (np.diag(cm) >= -1e-9 * max(1.0, float(np.max(np.abs(cm))))).all(), \
            f"{sid}: a negative sum of squares on the comoment's diagonal"
        return
    assert r["target"] != "", f"{sid}: a {fam} row without its class column"
    assert r["classes"] is not None and r["n_classes"] is not None, f"{sid}: a {fam} row without classes"
    c = r["n_classes"]
    assert c >= 1, f"{sid}: no classes"
    assert counts is not None and len(counts) == c, \
        f"{sid}: {len(counts or [])} class counts for {c} classes"
    assert all(x >= 0 for x in counts), f"{sid}: negative class counts {counts}"
    if fam == "gaussian_nb":
        assert mean is not None and len(mean) == c * d, f"{sid}: gaussian_nb mean has {len(mean or [])}, want {c * d}"
        assert len(moments) == c * d, f"{sid}: gaussian_nb moments has {len(moments)} values, want {c * d}"
        assert (np.asarray(moments, dtype=float) >= 0).all(), f"{sid}: negative second moments"
    elif fam == "multinomial_nb":
        assert len(moments) == c * d, f"{sid}: multinomial_nb moments has {len(moments)} values, want {c * d}"
    else:  # logistic chunk model: K intercepts, K×d coefficients
        k = 1 if c == 2 else c
        assert mean is not None and len(mean) == k, f"{sid}: logistic mean has {len(mean or [])} values, want {k}"
        assert len(moments) == k * d, f"{sid}: logistic moments has {len(moments)} values, want {k * d}"
    if fam in ("gaussian_nb", "multinomial_nb"):
        assert r["n"] == sum(counts), f"{sid}: n = {r['n']} but the class counts sum to {sum(counts)}"


# -- named models -----------------------------------------------------------------------------------------

def _check_models(conn, stats: dict[int, dict]) -> int:
    rows = _rows(conn, """
        SELECT m.model_id, m.name, m.kind, m.source_id, m.stats_id, m.rows_used, m.rows_skipped,
               src.source_id IS NOT NULL AS source_exists
        FROM modelstore.fitted_models m LEFT JOIN modelstore.sources src USING (source_id)""")
    names = Counter(r["name"] for r in rows)
    assert all(v == 1 for v in names.values()), f"model names repeat: {[k for k, v in names.items() if v > 1]}"
    for r in rows:
        mid = f"model {r['name']!r} (#{r['model_id']})"
        assert r["source_exists"], f"{mid} refers to a missing source #{r['source_id']}"
        assert r["rows_used"] >= 0 and r["rows_skipped"] >= 0, f"{mid}: negative row counts"
        if r["stats_id"] is not None:
            s = stats.get(r["stats_id"])
            assert s is not None, f"{mid} refers to missing statistics #{r['stats_id']}"
            assert s["source_id"] == r["source_id"], \
                f"{mid} (source #{r['source_id']}) refers to statistics #{r['stats_id']} of source #{s['source_id']}"
            assert s["family"] == KIND_FAMILY[r["kind"]], \
                f"{mid} of kind {r['kind']} refers to {s['family']} statistics #{r['stats_id']}"
    return len(rows)


# -- the statistics index ---------------------------------------------------------------------------------

def expected_nodes(n_chunks: int) -> set[tuple[int, int]]:
    """(level, pos) of every node of a binary hierarchy over n_chunks chunks (modelstore/index.py)."""
    nodes = {(0, p) for p in range(n_chunks)}
    level, width = 0, n_chunks
    while width > 1:
        width = (width + 1) // 2
        level += 1
        nodes |= {(level, p) for p in range(width)}
    return nodes


def expected_levels(n_chunks: int) -> int:
    return max(1, math.ceil(math.log2(n_chunks)) + 1) if n_chunks > 1 else 1


def _check_indexes(conn) -> tuple[int, int]:
    indexes = _rows(conn, """
        SELECT i.index_id, i.source_id, i.family, i.target, i.columns, i.chunk_rows, i.n_chunks, i.levels,
               i.rows_indexed, i.null_rows, i.end_key, src.source_id IS NOT NULL AS source_exists
        FROM modelstore.stat_indexes i LEFT JOIN modelstore.sources src USING (source_id)
        ORDER BY i.index_id""")
    orphans = conn.execute("""
        SELECT count(*) FROM modelstore.index_nodes n
        WHERE NOT EXISTS (SELECT 1 FROM modelstore.stat_indexes i WHERE i.index_id = n.index_id)""").fetchone()[0]
    assert orphans == 0, f"{orphans} index nodes belong to no index"
    total = 0
    for info in indexes:
        nodes = _rows(conn, """
            SELECT level, pos, lo_key, lo_side, hi_key, hi_side, n, null_rows, classes, counts, mean, moments
            FROM modelstore.index_nodes WHERE index_id = %s""", [info["index_id"]])
        _check_index(info, {(r["level"], r["pos"]): r for r in nodes})
        total += len(nodes)
    return len(indexes), total


def _check_index(info: dict, nodes: dict[tuple[int, int], dict]) -> None:
    iid = f"index #{info['index_id']}"
    assert info["source_exists"], f"{iid} refers to a missing source #{info['source_id']}"
    n_chunks, family = info["n_chunks"], info["family"]
    assert n_chunks >= 1 and info["chunk_rows"] >= 1, f"{iid}: n_chunks {n_chunks}, chunk_rows {info['chunk_rows']}"
    assert info["levels"] == expected_levels(n_chunks), \
        f"{iid}: {info['levels']} levels recorded for {n_chunks} chunks, want {expected_levels(n_chunks)}"
    want = expected_nodes(n_chunks)
    assert max(level for level, _ in want) + 1 == info["levels"]
    got = set(nodes)
    assert got == want, (f"{iid}: nodes missing {sorted(want - got)[:10]} / unexpected {sorted(got - want)[:10]} "
                         f"for {n_chunks} chunks")
    k = len(info["columns"])
    for (level, pos), node in sorted(nodes.items()):
        where = f"{iid} node ({level}, {pos})"
        assert node["n"] >= 0 and node["null_rows"] >= 0, f"{where}: negative n or null_rows"
        assert (node["lo_key"], node["lo_side"]) <= (node["hi_key"], node["hi_side"]), f"{where}: lo after hi"
        _check_node_arrays(where, family, k, node)
    # level 0: contiguous chunks, the last ending just after the index's end value
    for pos in range(n_chunks - 1):
        a, b = nodes[(0, pos)], nodes[(0, pos + 1)]
        assert (a["hi_key"], a["hi_side"]) == (b["lo_key"], b["lo_side"]), \
            f"{iid}: chunk {pos} ends at {(a['hi_key'], a['hi_side'])}, chunk {pos + 1} starts at " \
            f"{(b['lo_key'], b['lo_side'])}"
    last = nodes[(0, n_chunks - 1)]
    assert last["hi_key"] == info["end_key"], \
        f"{iid}: the last chunk ends at {last['hi_key']}, the index at end_key {info['end_key']}"
    # above level 0: each node spans and sums its children
    for (level, pos), node in sorted(nodes.items()):
        if level == 0:
            continue
        where = f"{iid} node ({level}, {pos})"
        left, right = nodes[(level - 1, 2 * pos)], nodes.get((level - 1, 2 * pos + 1))
        last_child = right if right is not None else left
        assert (node["lo_key"], node["lo_side"]) == (left["lo_key"], left["lo_side"]), f"{where}: starts off its children"
        assert (node["hi_key"], node["hi_side"]) == (last_child["hi_key"], last_child["hi_side"]), \
            f"{where}: ends off its children"
        children = [left] if right is None else [left, right]
        assert node["n"] == sum(c["n"] for c in children), \
            f"{where}: n = {node['n']}, its children hold {[c['n'] for c in children]}"
        assert node["null_rows"] == sum(c["null_rows"] for c in children), \
            f"{where}: null_rows = {node['null_rows']}, its children hold {[c['null_rows'] for c in children]}"
        _check_node_sum(where, family, k, node, children)
    root = nodes[(info["levels"] - 1, 0)]
    assert root["null_rows"] == info["null_rows"], \
        f"{iid}: null_rows = {info['null_rows']} but its chunks skipped {root['null_rows']}"
    assert root["n"] + root["null_rows"] == info["rows_indexed"], \
        f"{iid}: rows_indexed = {info['rows_indexed']} but its chunks hold {root['n']} + {root['null_rows']} NULL rows"


def _check_node_arrays(where: str, family: str, k: int, node: dict) -> None:
    moments, mean = node["moments"], node["mean"]
    _finite(moments, f"{where} moments")
    if mean is not None:
        _finite(mean, f"{where} mean")
    if family == "linear":
        assert mean is not None and len(mean) == k, f"{where}: linear mean has {len(mean or [])} values, want {k}"
        assert len(moments) == k * (k + 1) // 2, \
            f"{where}: linear moments has {len(moments)} values, want the upper triangle's {k * (k + 1) // 2}"
        return
    c = len(node["classes"] or [])
    assert node["counts"] is not None and len(node["counts"]) == c, f"{where}: {len(node['counts'] or [])} counts for {c} classes"
    assert node["n"] == sum(node["counts"]), f"{where}: n = {node['n']}, class counts sum to {sum(node['counts'])}"
    assert len(moments) == c * k, f"{where}: moments has {len(moments)} values, want {c * k}"
    if family == "gaussian_nb":
        assert mean is not None and len(mean) == c * k, f"{where}: mean has {len(mean or [])} values, want {c * k}"


def _close(where: str, what: str, got, want, scale) -> None:
    """got == want up to FLOAT_RTOL of each element's natural scale (an array of want's shape)."""
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, f"{where}: {what} shape {got.shape}, the children's sum has {want.shape}"
    scale = np.maximum(np.asarray(scale, dtype=float), 1e-300)
    excess = np.abs(got - want) / scale
    worst = int(np.argmax(excess)) if excess.size else 0
    assert not excess.size or excess.flat[worst] <= FLOAT_RTOL, (
        f"{where}: {what} differs from its children's sum by {excess.flat[worst]:.3g} of its scale at element "
        f"{tuple(int(i) for i in np.unravel_index(worst, want.shape))} ({float(got.flat[worst])!r} vs "
        f"{float(want.flat[worst])!r})")


def _comoment_scale(cm: np.ndarray) -> np.ndarray:
    """Per element: sqrt(C_ii·C_jj) + |C_ij| (Cauchy–Schwarz bounds |C_ij| by the first term)."""
    d = np.sqrt(np.maximum(np.diag(cm), 0.0))
    return np.outer(d, d) + np.abs(cm)


def _mean_scale(mean: np.ndarray, second: np.ndarray, n: int) -> np.ndarray:
    """Per element: |mean| + its standard deviation (second = sums of squared deviations)."""
    return np.abs(mean) + np.sqrt(np.maximum(second, 0.0) / max(n, 1))


def _linear_merge(parts: list[tuple[int, np.ndarray, np.ndarray]]):
    """Pairwise merge (Chan et al.) of (n, means, comoment) triples."""
    n, mean, cm = parts[0]
    for nb, mb, cb in parts[1:]:
        total = n + nb
        if total == 0:
            continue
        delta = mb - mean
        cm = cm + cb + np.outer(delta, delta) * (n * nb / total)
        mean = mean + delta * (nb / total)
        n = total
    return n, mean, cm


def _linear_parts(node: dict, k: int):
    cm = np.zeros((k, k))
    iu = np.triu_indices(k)
    cm[iu] = node["moments"]
    cm.T[iu] = node["moments"]
    return node["n"], np.asarray(node["mean"], dtype=float), cm


def _per_class(node: dict, k: int, family: str) -> dict:
    classes = node["classes"] or []
    moments = np.asarray(node["moments"], dtype=float).reshape(len(classes), k)
    means = (np.asarray(node["mean"], dtype=float).reshape(len(classes), k) if family == "gaussian_nb" else None)
    return {_class_key(cl): (node["counts"][i], None if means is None else means[i], moments[i])
            for i, cl in enumerate(classes)}


def _class_key(value):
    return repr(value)


def _check_node_sum(where: str, family: str, k: int, node: dict, children: list[dict]) -> None:
    if family == "linear":
        n, mean, cm = _linear_merge([_linear_parts(c, k) for c in children])
        _, got_mean, got_cm = _linear_parts(node, k)
        assert n == node["n"]
        if n:
            _close(where, "mean", got_mean, mean, _mean_scale(mean, np.diag(cm), n))
            _close(where, "comoment", got_cm, cm, _comoment_scale(cm))
        return
    have = _per_class(node, k, family)
    parts = [_per_class(c, k, family) for c in children]
    classes = set().union(*parts)
    nonempty = {cl for cl, v in have.items() if v[0] > 0}
    assert nonempty <= classes, f"{where}: classes {sorted(nonempty - classes)} are in no child"
    for cl in classes:
        got = have.get(cl)
        want_count = sum(p[cl][0] for p in parts if cl in p)
        if got is None:
            assert want_count == 0, f"{where}: class {cl} of its children ({want_count} rows) is missing"
            continue
        assert got[0] == want_count, f"{where}: class {cl} count {got[0]}, its children hold {want_count}"
        if family == "multinomial_nb":
            want = sum(p[cl][2] for p in parts if cl in p)
            _close(where, f"class {cl} feature sums", got[2], want, np.abs(want) + 1.0)
            continue
        n, mean, m2 = 0, np.zeros(k), np.zeros(k)
        for p in parts:
            if cl not in p or p[cl][0] == 0:
                continue
            nb, mb, m2b = p[cl]
            total = n + nb
            delta = mb - mean
            m2 = m2 + m2b + delta * delta * (n * nb / total)
            mean = mean + delta * (nb / total)
            n = total
        if n:
            _close(where, f"class {cl} means", got[1], mean, _mean_scale(mean, m2, n))
            _close(where, f"class {cl} second moments", got[2], m2, np.abs(m2) + 1e-300)


def descriptor_counts(conn: psycopg.Connection, table: str, schema: str = "public") -> dict[tuple, int]:
    """Statistics rows of one table per descriptor: {(family, lo_key, hi_key, filter_sql, target, params_key,
    columns): count}."""
    rows = conn.execute("""
        SELECT s.family, s.lo_key, s.hi_key, s.filter_sql, s.target, s.params_key, s.columns, count(*)
        FROM modelstore.statistics s JOIN modelstore.sources src USING (source_id)
        WHERE src.schema_name = %s AND src.table_name = %s
        GROUP BY 1, 2, 3, 4, 5, 6, 7""", [schema, table]).fetchall()
    return {(f, lo, hi, flt, t, pk, tuple(cols)): cnt for f, lo, hi, flt, t, pk, cols, cnt in rows}


def catalog_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Rows of every catalog table a request may write."""
    tables = ("sources", "statistics", "fitted_models", "stat_indexes", "index_nodes", "cost_model")
    row = conn.execute("SELECT " + ", ".join(f"(SELECT count(*) FROM modelstore.{t})" for t in tables)).fetchone()
    return dict(zip(tables, row))
