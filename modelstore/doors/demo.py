"""``modelstore demo``: build, reuse and explain models on a seeded synthetic table.

The table ``modelstore_demo.sales`` is (re)loaded with COPY on every run and its earlier catalog
entries are removed, so the first request always scans and the reuse that follows is this run's.
"""

from __future__ import annotations

import time

import numpy as np
from psycopg import sql
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from modelstore.execution.executor import scan
from modelstore.store import Store

SCHEMA = "modelstore_demo"
TABLE = "sales"


def load_sales(conn, rows: int, seed: int) -> None:
    """A seeded sales table: revenue linear in price, promo, ads (plus noise); a segment class; whether
    the customer came back (logistic in the same features)."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(5, 50, rows)
    promo = rng.binomial(1, 0.3, rows).astype(float)
    ads = rng.gamma(2.0, 3.0, rows) + 0.2 * price  # correlated with price, as real features are
    region = rng.choice(np.array(["EU", "US", "APAC"]), rows, p=[0.4, 0.4, 0.2])
    revenue = 120 - 1.8 * price + 35 * promo + 4.2 * ads + rng.normal(0, 12, rows)
    segment = np.digitize(revenue + rng.normal(0, 15, rows), [110, 150])  # 0, 1, 2
    came_back = (0.8 - 0.05 * price + 1.2 * promo + 0.1 * ads + rng.logistic(size=rows) > 0).astype(int)
    ts = np.datetime64("2025-01-01T00:00:00") + np.arange(rows) * np.timedelta64(60, "s")
    ident = sql.Identifier(SCHEMA, TABLE)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s", [SCHEMA, TABLE])
        conn.execute(sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, ts timestamp NOT NULL, price float8, promo float8, "
            "ads float8, region text, revenue float8, segment int, came_back int)").format(ident))
        with conn.cursor().copy(sql.SQL(
                "COPY {} (id, ts, price, promo, ads, region, revenue, segment, came_back) FROM STDIN").format(ident)) as copy:
            for i in range(rows):
                copy.write_row((i + 1, ts[i].item(), price[i], promo[i], ads[i], region[i], revenue[i],
                                int(segment[i]), int(came_back[i])))
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(ident))  # hint bits set now, not by the first request


def run(store: Store, rows: int = 200_000, seed: int = 7, console: Console | None = None) -> list[dict]:
    console = console or Console()
    with console.status(f"loading {rows:,} seeded rows into {SCHEMA}.{TABLE} …"):
        load_sales(store.conn, rows, seed)
    table = f"{SCHEMA}.{TABLE}"
    half = rows // 2
    base = dict(table=table, order_by="id")
    lin = dict(base, target="revenue", features=["price", "promo", "ads"])
    nb = dict(base, target="segment", features=["price", "promo", "ads"])
    lg = dict(base, target="came_back", features=["price", "promo", "ads"], chunk_rows=max(2, rows // 20))
    quarter = rows // 4
    requests = [
        ("linear, first half", "linear", dict(lin, lo=1, hi=half)),
        ("same request again", "linear", dict(lin, lo=1, hi=half)),
        ("subset of its features", "linear", dict(lin, features=["price", "ads"], lo=1, hi=half)),
        ("ridge, l2 = 50", "linear", dict(lin, lo=1, hi=half, l2=50.0)),
        ("linear, second half", "linear", dict(lin, lo=half + 1, hi=rows)),
        ("whole table: two halves merged", "linear", dict(lin, lo=1, hi=rows)),
        ("first half without its first tenth", "linear", dict(lin, lo=half // 10 + 1, hi=half)),
        ("middle: stored ± edge scans", "linear", dict(lin, lo=quarter // 2, hi=half + quarter // 2)),
        ("linear, EU only", "linear", dict(lin, lo=1, hi=rows, where="region = 'EU'")),
        ("same filter, differently written", "linear", dict(lin, lo=1, hi=rows, where="('EU' = Region)")),
        ("Gaussian NB, whole table", "gaussian_nb", dict(nb)),
        ("Gaussian NB again", "gaussian_nb", dict(nb)),
        ("logistic, first half (chunks)", "logistic", dict(lg, lo=1, hi=half)),
        ("logistic, whole: reuse + train", "logistic", dict(lg, lo=1, hi=rows)),
        ("logistic, a chunk-aligned range", "logistic", dict(lg, lo=quarter + 1, hi=rows)),
        ("index built: an arbitrary range", "linear", dict(lin, lo=rows // 17, hi=rows - rows // 13)),
        ("index built: another range", "linear", dict(lin, features=["price", "ads"], lo=rows // 7, hi=rows // 3)),
    ]
    # the planner's cost model is measured once per database, on first use: do it now, so that the first
    # timed request below does not include it
    from modelstore.planner import costs

    measured = costs.load(store.conn) is None
    t0 = time.perf_counter()
    with console.status("measuring this database's cost model for the planner (once per database) …"):
        store.cost_model  # noqa: B018
    if measured:
        console.print(f"cost model measured in {(time.perf_counter() - t0) * 1000:.0f} ms (once per database; "
                      "`modelstore calibrate` measures it again), before the timed requests below", highlight=False)
    report = []
    grid = RichTable(title=f"modelstore demo — {rows:,} rows, embedded in PostgreSQL")
    grid.add_column("request")
    grid.add_column("plan", no_wrap=True)
    for col in ("rows read", "ms", "scratch ms", "gain"):
        grid.add_column(col, justify="right", no_wrap=True)
    grid.caption = ("ms: modelstore end to end (plan, run, solve, store); scratch ms: the same model from scratch "
                    "(linear, NB: one aggregate scan; logistic: training all its chunks)")
    models = {}
    for label, kind, args in requests:
        if label.startswith("index built:") and not store.indexes().source.eq(f"{SCHEMA}.{TABLE}").any():
            with console.status("building the statistics index …"):
                store.build_index(table, "id", lin["features"], "revenue")
        t0 = time.perf_counter()
        model = store.fit(kind, **args)
        elapsed = time.perf_counter() - t0
        scratch = _from_scratch_seconds(store, model, kind, args)
        models[label] = model
        report.append({"request": label, "model": model.name, "plan": _shape(model.plan),
                       "rows_read": model.plan.rows_scanned, "ms": elapsed * 1000, "scratch_ms": scratch * 1000})
        grid.add_row(label, _shape(model.plan), f"{model.plan.rows_scanned:,}", f"{elapsed * 1000:.1f}",
                     f"{scratch * 1000:.1f}", f"{scratch / elapsed:.1f}×")
    console.print(grid)
    first = models["linear, first half"]
    console.print(f"\n[bold]{first.name}[/bold] (revenue ~ price + promo + ads):")
    console.print(first.summary().to_string(float_format=lambda v: f"{v:.6g}"), markup=False)
    console.print("\n[bold]EXPLAIN ANALYZE[/bold] of the middle request:")
    console.print(str(models["middle: stored ± edge scans"].plan), markup=False)
    console.print("\n[bold]EXPLAIN ANALYZE[/bold] of an arbitrary range with the statistics index built:")
    console.print(str(models["index built: an arbitrary range"].plan), markup=False)
    console.print("\n[bold]EXPLAIN ANALYZE[/bold] of the whole-table logistic request:")
    console.print(str(models["logistic, whole: reuse + train"].plan), markup=False)
    report += groups_demo(store, lin, rows, console)
    report += deployment_demo(store, rows, seed, console)
    return report


def groups_demo(store: Store, lin: dict, rows: int, console: Console) -> list[dict]:
    """Per-group models (docs/serving.md): one model per region from one grouped aggregate, each shrunk
    toward the global model; predictions for two regions and an unseen one (served the global model);
    then a request for one region's rows alone, planned over the group's stored statistics (0 rows read)."""
    args = dict(lin, lo=1, hi=rows)
    t0 = time.perf_counter()
    m = store.fit("linear", **args, group_by="region", group_l2=1.0, name="demo_revenue_by_region", replace=True)
    grouped_ms = (time.perf_counter() - t0) * 1000
    x = [20.0, 1.0, 10.0]
    regions = ["EU", "US", "Mars"]
    predicted = m.predict([x] * len(regions), groups=regions)
    t0 = time.perf_counter()
    us = store.fit("linear", **args, where="region = 'US'", name="demo_revenue_us", replace=True)
    us_ms = (time.perf_counter() - t0) * 1000
    console.print(f"\n[bold]per-group models[/bold]: store.fit(…, group_by='region') fitted {len(m.groups)} regions "
                  f"({', '.join(f'{g}: {m.rows[g]:,} rows' for g in m.groups)}) from one grouped aggregate "
                  f"({m.group_plan['rows_scanned']:,} rows read, {grouped_ms:.1f} ms); "
                  f"predict(price 20, promo 1, ads 10) by region: "
                  + ", ".join(f"{g} {v:.3f}" for g, v in zip(regions, predicted))
                  + " (Mars: unseen, served the global model)", highlight=False)
    console.print(f"then store.fit(…, where=\"region = 'US'\"): plan {escape(_shape(us.plan))}, "
                  f"{us.plan.rows_scanned:,} rows read, {us_ms:.1f} ms: the group's stored statistics",
                  highlight=False)
    return [{"request": "per-group models by region", "model": m.name, "plan": f"groups: {m.group_plan['groups']}",
             "rows_read": m.group_plan["rows_scanned"], "ms": grouped_ms, "scratch_ms": None,
             "predictions": dict(zip(regions, map(float, predicted)))},
            {"request": "one region from its group's statistics", "model": us.name, "plan": _shape(us.plan),
             "rows_read": us.plan.rows_scanned, "ms": us_ms, "scratch_ms": None}]


def deployment_demo(store: Store, rows: int, seed: int, console: Console) -> list[dict]:
    """A deployment following inserts (docs/deployments.md): the exact model of the last half of the rows,
    refreshed after each committed batch — what `modelstore worker` does on every commit."""
    from modelstore.execution.executor import scan
    from modelstore.request.source import resolve_table

    table, ident = f"{SCHEMA}.{TABLE}", sql.Identifier(SCHEMA, TABLE)
    name = "sales_live"
    if not store.deployments().name.eq(name).any():
        d = store.deploy(name, "linear", table=table, target="revenue", features=["price", "promo", "ads"],
                         order_by="id", window=rows // 2, replace=True)
    else:
        d = store.deployment(name)
    grid = RichTable(title=f"a deployment following inserts — window: the last {rows // 2:,} rows")
    for col in ("commit", "version", "window rows", "plan", "rows read", "refresh ms", "refit ms",
                "predict(20, 1, 10)"):
        grid.add_column(col, justify="right" if col not in ("commit", "plan") else "left", no_wrap=True)
    rng = np.random.default_rng(seed + 1)
    report = []
    late = rows - rows // 4  # inside the window
    batches = [("1,000 rows appended", range(rows + 1, rows + 1001), 1), ("2,000 more: promo pays more",
               range(rows + 1001, rows + 3001), 3), ("50 late rows inside the window", range(late, late + 50), 3),
               ("100 prices corrected", None, 3)]
    for label, ids, promo_gain in batches:
        with store.conn.transaction():
            if ids is None:
                store.conn.execute(sql.SQL("UPDATE {} SET price = price * 1.1 WHERE id % 997 = 0").format(ident))
            else:
                n = len(ids)
                price, ads, promo = rng.uniform(5, 50, n), rng.gamma(2.0, 3.0, n), rng.binomial(1, 0.3, n)
                revenue = 120 - 1.8 * price + 35 * promo_gain * promo + 4.2 * ads + rng.normal(0, 12, n)
                # late rows: the ids arrive again with their final values (deleted and re-sent)
                store.conn.execute(sql.SQL("DELETE FROM {} WHERE id BETWEEN %s AND %s").format(ident),
                                   [ids[0], ids[-1]])
                with store.conn.cursor().copy(sql.SQL("COPY {} (id, ts, price, promo, ads, region, revenue, "
                                                      "segment, came_back) FROM STDIN").format(ident)) as copy:
                    for i, key in enumerate(ids):
                        copy.write_row((key, "2025-06-01", price[i], float(promo[i]), ads[i], "EU", revenue[i], 1, 1))
        outcome = d.refresh()
        model = d.model
        scratch = time.perf_counter()
        scan(store.conn, resolve_table(store.conn, table), model.descriptor, model.descriptor.range)
        scratch = time.perf_counter() - scratch
        plan = model.plan
        prediction = store.conn.execute("SELECT modelstore.predict(%s, ARRAY[20, 1, 10]::float8[])", [name]).fetchone()[0]
        grid.add_row(label, str(d.version), f"{model.n_obs:,}", _shape(plan), f"{plan.rows_scanned:,}",
                     f"{outcome.seconds * 1000:.1f}", f"{scratch * 1000:.1f}", f"{prediction:.3f}")
        report.append({"request": f"deployment: {label}", "model": name, "plan": _shape(plan),
                       "rows_read": plan.rows_scanned, "ms": outcome.seconds * 1000, "scratch_ms": scratch * 1000})
    console.print(grid)
    console.print(d.versions()[["version", "rows", "lo", "hi", "reason", "active", "scored_rows",
                                "prequential_loss"]].to_string(index=False), markup=False)
    report.append(observe_demo(store, name, console))
    return report


def observe_demo(store: Store, name: str, console: Console) -> dict:
    """Observe → predict (docs/serving.md): one labelled row written through ``store.observe`` (mapped to
    the table's columns by name), absorbed at once, and the next prediction — here in SQL, from the
    catalog — already uses the model that includes it. ``modelstore serve`` does the same over HTTP."""
    table = sql.Identifier(SCHEMA, TABLE)
    predict = "SELECT modelstore.predict(%s, ARRAY[20, 1, 10]::float8[])"
    before = store.conn.execute(predict, [name]).fetchone()[0]
    next_id, ts = store.conn.execute(sql.SQL("SELECT max(id) + 1, max(ts) FROM {}").format(table)).fetchone()
    row = {"id": next_id, "ts": ts, "price": 20.0, "promo": 1.0, "ads": 10.0, "region": "EU"}
    done = store.observe(name, [row], [400.0])
    after = store.conn.execute(predict, [name]).fetchone()[0]
    console.print(f"\n[bold]observe → predict[/bold]: store.observe({name!r}, \\[price 20, promo 1, ads 10], "
                  f"\\[revenue 400]) wrote row id {next_id:,} and refreshed in {done.seconds * 1000:.1f} ms "
                  f"(version {done.version}); modelstore.predict({name!r}, ARRAY[20, 1, 10]): "
                  f"{before:.3f} → {after:.3f}")
    return {"request": "deployment: observe 1 row, then predict", "model": name, "plan": "observe",
            "rows_read": None, "ms": done.seconds * 1000, "scratch_ms": None, "before": before, "after": after}


def _shape(executed) -> str:
    """A plan in one line: '+#1 +#2', '+#3 −scan', 'scan', 'train'."""
    parts = []
    for step in executed.plan.steps:
        sign = "+" if step.sign > 0 else "−"
        parts.append(f"{sign}#{step.stats_id}" if step.op == "stored" else f"{sign}{step.op}")
    text = " ".join(parts)
    return text if len(text) <= 28 else text[:25] + "…"


def _from_scratch_seconds(store: Store, model, kind: str, args: dict) -> float:
    """The baseline: linear and Naive Bayes by one in-database aggregate scan (the paper's); logistic by
    training every chunk of the range (nothing stored: a store that materialises nothing)."""
    from modelstore.request.source import resolve_table

    d = model.descriptor
    if d.family.trained:
        with Store(store.dsn, materialize=False, migrate=False) as fresh:
            fresh._cost_model = store.cost_model
            fresh.conn.execute("BEGIN")
            try:  # train everything, then roll the chunk models back so that nothing is stored
                fresh.conn.execute("DELETE FROM modelstore.statistics WHERE family = %s", [kind])
                t0 = time.perf_counter()
                fresh.fit(kind, **args)
                return time.perf_counter() - t0
            finally:
                fresh.conn.execute("ROLLBACK")
    tbl = resolve_table(store.conn, d.source.qualified)
    t0 = time.perf_counter()
    scan(store.conn, tbl, d, d.range)
    return time.perf_counter() - t0
