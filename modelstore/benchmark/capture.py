"""What change capture costs writers (issue #7; docs/freshness.md): rows/s of bulk INSERT, UPDATE and
DELETE on a table whose stored statistics the capture triggers keep fresh, against the same statements
on an identical table that has none.

Two copies of the benchmark table's first ``capture_rows`` rows, with ids doubled so that odd ids fall
between existing rows: ``capture_plain`` never gets stored statistics (no triggers); ``capture_on`` gets
linear and Gaussian NB models over ranges covering about 90% of it (the Fig. 2 model sizes) and a
statistics index of each kind, so that a row in the middle lies in a few summaries and in every level of
two indexes. Each timed statement changes one batch of rows, inside a transaction that is rolled back,
the plain and the captured table in turn, at a seeded random place each time:

* ``append``: INSERT past every stored range and index (the common case: one catalog probe);
* ``insert``: INSERT between existing rows, inside the stored ranges;
* ``update``: UPDATE of one feature of rows inside the ranges;
* ``delete``: DELETE of rows inside the ranges;
* ``append one row``, ``insert one row``: single-row statements (capture's row-by-row path), five
  times as many of them.

Afterwards one batch of each is committed to ``capture_on`` and every stored linear summary's model is
compared with numpy's least squares on the table as it now is: capture must be exact, not only fast.
"""

from __future__ import annotations

import time

import numpy as np
from psycopg import sql

from modelstore.benchmark import data, measure, workloads
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import summarize

PLAIN, CAPTURED = "capture_plain", "capture_on"
OPERATIONS = ("append", "insert", "update", "delete", "append one row", "insert one row")
#: single-row statements run this many times as often as the batches
SINGLE_ROW_FACTOR = 5
KINDS = ("linear", "gaussian_nb")


def _drop_tables(ctx: Context) -> None:
    for table in (PLAIN, CAPTURED):
        ctx.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(table)))
        ctx.conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
                         [data.SCHEMA, table])


def _store_statistics(ctx: Context, rows: int) -> dict:
    """Linear and Gaussian NB models covering ~90% of ``capture_on``, and an index of each kind."""
    cfg = ctx.config
    mean, sd = cfg.model_size
    placement = workloads.placement(cfg.seed, "capture-models", (0.9,),
                                    workloads.normal_size(cfg.size(mean), cfg.size(sd), rows), rows)
    table = f"{data.SCHEMA}.{CAPTURED}"
    for kind in KINDS:
        for q in ctx.track(placement.upto(0.9), f"storing {kind} models"):
            ctx.store.fit(kind, table=table, target=measure.TARGETS[kind], features=list(data.FEATURES),
                          order_by="id", lo=2 * q.lo, hi=2 * q.hi, evaluate=False)
        ctx.store.build_index(table, "id", list(data.FEATURES), measure.TARGETS[kind], kind=kind)
    summaries, nodes = ctx.conn.execute(
        "SELECT (SELECT count(*) FROM modelstore.statistics t JOIN modelstore.sources s USING (source_id) "
        "        WHERE s.schema_name = %(s)s AND s.table_name = %(t)s), "
        "       (SELECT count(*) FROM modelstore.index_nodes n JOIN modelstore.stat_indexes i USING (index_id) "
        "        JOIN modelstore.sources s USING (source_id) WHERE s.schema_name = %(s)s AND s.table_name = %(t)s)",
        {"s": data.SCHEMA, "t": CAPTURED}).fetchone()
    return {"models_per_kind": len(placement.upto(0.9)), "coverage": placement.achieved[0.9],
            "summaries": int(summaries), "index_nodes": int(nodes)}


def _statement(op: str, table: str, lo: int, hi: int, past_end: int) -> tuple[sql.Composed, list]:
    """One batch's statement: the rows with ids in [lo, hi] (even ids) are the batch."""
    t = data.ident(table)
    features = sql.SQL(", ").join(sql.Identifier(c) for c in data.COPY_COLUMNS[1:])
    if op.startswith(("append", "insert")):
        shift = past_end if op.startswith("append") else 1  # past every range, or between two existing rows
        return (sql.SQL("INSERT INTO {} (id, {}) SELECT id + %s, {} FROM {} WHERE id BETWEEN %s AND %s").format(
            t, features, features, t), [shift, lo, hi])
    if op == "update":
        return sql.SQL("UPDATE {} SET x1 = x1 + 1 WHERE id BETWEEN %s AND %s").format(t), [lo, hi]
    return sql.SQL("DELETE FROM {} WHERE id BETWEEN %s AND %s").format(t), [lo, hi]


def _timed(ctx: Context, statement, params) -> tuple[float, int]:
    """(seconds, rows changed) of one statement, rolled back afterwards."""
    conn = ctx.conn
    conn.execute("BEGIN")
    try:
        started = time.perf_counter()
        cur = conn.execute(statement, params)
        seconds = time.perf_counter() - started
        return seconds, cur.rowcount
    finally:
        conn.execute("ROLLBACK")


def _max_error_of_stored_linear_models(ctx: Context) -> dict:
    """Every stored linear summary of ``capture_on`` as a model, against numpy on today's rows."""
    ranges = ctx.conn.execute(
        "SELECT t.lo::bigint, t.hi::bigint FROM modelstore.statistics t JOIN modelstore.sources s USING (source_id) "
        "WHERE s.schema_name = %s AND s.table_name = %s AND t.family = 'linear' AND t.filter_sql = '' ORDER BY 1, 2",
        [data.SCHEMA, CAPTURED]).fetchall()
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in (*data.FEATURES, data.TARGET))
    errors, stored = [], 0
    for lo, hi in ranges:
        model = ctx.store.fit("linear", table=f"{data.SCHEMA}.{CAPTURED}", target=data.TARGET,
                              features=list(data.FEATURES), order_by="id", lo=lo, hi=hi, evaluate=False)
        stored += not model.plan.plan.scans
        with ctx.conn.cursor(binary=True) as cur:
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE id BETWEEN %s AND %s").format(columns, data.ident(CAPTURED)),
                        [lo, hi])
            rows = np.array(cur.fetchall(), dtype=float)
        A = np.c_[rows[:, :-1], np.ones(len(rows))]
        want = np.linalg.lstsq(A, rows[:, -1], rcond=None)[0]
        errors.append(measure.relative_error(measure.parameters(model, "linear"), want))
    return {"checked": len(errors), "answered_from_stored_statistics": stored,
            "max_relative_error": float(max(errors)) if errors else None}


def capture(ctx: Context) -> dict:
    """Rows/s of INSERT / UPDATE / DELETE batches with and without change capture (issue #7)."""
    cfg = ctx.config
    rows = min(cfg.capture_rows, cfg.rows)
    batch = min(cfg.capture_batch, rows // 4)
    rng = workloads.rng_for(cfg.seed, "capture-batches")
    try:
        for table in (PLAIN, CAPTURED):
            data.copy_table(ctx, table, rows)
        stored = _store_statistics(ctx, rows)
        past_end = 2 * rows + 2
        times: dict[str, dict[str, list[float]]] = {op: {"plain": [], "captured": [], "rows": []} for op in OPERATIONS}
        plan = [(op, int(rng.integers(rows // 10, rows - rows // 10 - batch)))
                for rep in range(cfg.capture_repeats * SINGLE_ROW_FACTOR) for op in OPERATIONS
                if op.endswith("one row") or rep < cfg.capture_repeats]
        for op, start in ctx.track(plan, "timing statements"):
            size = 1 if op.endswith("one row") else batch
            lo, hi = 2 * start, 2 * (start + size - 1)  # ``size`` rows (even ids) in the middle of the table
            plain_s, n_plain = _timed(ctx, *_statement(op, PLAIN, lo, hi, past_end))
            captured_s, n_captured = _timed(ctx, *_statement(op, CAPTURED, lo, hi, past_end))
            if n_plain != n_captured:
                raise RuntimeError(f"{op}: {n_plain} rows changed without capture, {n_captured} with it")
            times[op]["plain"].append(plain_s)
            times[op]["captured"].append(captured_s)
            times[op]["rows"].append(n_plain)
        operations = {}
        for op, t in times.items():
            n = np.asarray(t["rows"], dtype=float)
            plain, captured = np.asarray(t["plain"]), np.asarray(t["captured"])
            operations[op] = {
                "rows_per_statement": int(np.median(n)),
                "plain_rows_per_s": summarize(list(n / plain)),
                "captured_rows_per_s": summarize(list(n / captured)),
                "ratio": summarize(list(plain / captured)),  # captured rows/s ÷ plain rows/s, per pair
                "overhead_us_per_row": summarize(list((captured - plain) / n * 1e6)),
            }
        # one batch of each, committed: the maintained statistics must still be exact
        for op in ("insert", "update", "delete", "append"):
            start = int(rng.integers(rows // 10, rows - rows // 10 - batch))
            statement, params = _statement(op, CAPTURED, 2 * start, 2 * (start + batch - 1), past_end)
            ctx.conn.execute(statement, params)
        exact = _max_error_of_stored_linear_models(ctx)
    finally:
        _drop_tables(ctx)
    return {"figure": "change capture overhead", "rows": rows, "batch": batch, "repeats": cfg.capture_repeats,
            "stored": stored, "operations": operations, "exact": exact}
