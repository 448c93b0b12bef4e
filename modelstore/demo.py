"""``modelstore demo``: build, reuse and explain models on a seeded synthetic table.

The table ``modelstore_demo.sales`` is (re)loaded with COPY on every run and its earlier catalog
entries are removed, so the first request always scans and the reuse that follows is this run's.
"""

from __future__ import annotations

import time

import numpy as np
from psycopg import sql
from rich.console import Console
from rich.table import Table as RichTable

from modelstore.executor import scan
from modelstore.store import Store

SCHEMA = "modelstore_demo"
TABLE = "sales"


def load_sales(conn, rows: int, seed: int) -> None:
    """A seeded sales table: revenue linear in price, promo, ads (plus noise); a segment class."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(5, 50, rows)
    promo = rng.binomial(1, 0.3, rows).astype(float)
    ads = rng.gamma(2.0, 3.0, rows) + 0.2 * price  # correlated with price, as real features are
    region = rng.choice(np.array(["EU", "US", "APAC"]), rows, p=[0.4, 0.4, 0.2])
    revenue = 120 - 1.8 * price + 35 * promo + 4.2 * ads + rng.normal(0, 12, rows)
    segment = np.digitize(revenue + rng.normal(0, 15, rows), [110, 150])  # 0, 1, 2
    ts = np.datetime64("2025-01-01T00:00:00") + np.arange(rows) * np.timedelta64(60, "s")
    ident = sql.Identifier(SCHEMA, TABLE)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s", [SCHEMA, TABLE])
        conn.execute(sql.SQL(
            "CREATE TABLE {} (id bigint PRIMARY KEY, ts timestamp NOT NULL, price float8, promo float8, "
            "ads float8, region text, revenue float8, segment int)").format(ident))
        with conn.cursor().copy(sql.SQL(
                "COPY {} (id, ts, price, promo, ads, region, revenue, segment) FROM STDIN").format(ident)) as copy:
            for i in range(rows):
                copy.write_row((i + 1, ts[i].item(), price[i], promo[i], ads[i], region[i], revenue[i], int(segment[i])))
    conn.execute(sql.SQL("ANALYZE {}").format(ident))


def run(store: Store, rows: int = 200_000, seed: int = 7, console: Console | None = None) -> list[dict]:
    console = console or Console()
    with console.status(f"loading {rows:,} seeded rows into {SCHEMA}.{TABLE} …"):
        load_sales(store.conn, rows, seed)
    table = f"{SCHEMA}.{TABLE}"
    half = rows // 2
    base = dict(table=table, order_by="id")
    lin = dict(base, target="revenue", features=["price", "promo", "ads"])
    nb = dict(base, target="segment", features=["price", "promo", "ads"])
    requests = [
        ("linear, first half", "linear", dict(lin, lo=1, hi=half)),
        ("same request again", "linear", dict(lin, lo=1, hi=half)),
        ("subset of its features", "linear", dict(lin, features=["price", "ads"], lo=1, hi=half)),
        ("ridge, l2 = 50", "linear", dict(lin, lo=1, hi=half, l2=50.0)),
        ("linear, second half", "linear", dict(lin, lo=half + 1, hi=rows)),
        ("linear, EU only", "linear", dict(lin, lo=1, hi=rows, where="region = 'EU'")),
        ("same filter, differently written", "linear", dict(lin, lo=1, hi=rows, where="('EU' = Region)")),
        ("Gaussian NB, whole table", "gaussian_nb", dict(nb)),
        ("Gaussian NB again", "gaussian_nb", dict(nb)),
    ]
    report = []
    grid = RichTable(title=f"modelstore demo — {rows:,} rows, embedded in PostgreSQL")
    grid.add_column("request")
    grid.add_column("plan", no_wrap=True)
    for col in ("rows read", "ms", "scan ms", "gain"):
        grid.add_column(col, justify="right", no_wrap=True)
    grid.caption = "ms: modelstore end to end (plan, run, solve, store); scan ms: the same statistics from scratch by one aggregate scan"
    for label, kind, args in requests:
        t0 = time.perf_counter()
        model = store.fit(kind, **args)
        elapsed = time.perf_counter() - t0
        scratch = _from_scratch_seconds(store, model)
        plan = model.plan
        how = "stored #" + ",".join(map(str, plan.stats_used)) if not plan.rows_scanned else "scan"
        report.append({"request": label, "model": model.name, "plan": how, "rows_scanned": plan.rows_scanned,
                       "ms": elapsed * 1000, "scratch_ms": scratch * 1000})
        grid.add_row(label, how, f"{plan.rows_scanned:,}", f"{elapsed * 1000:.1f}", f"{scratch * 1000:.1f}",
                     f"{scratch / elapsed:.1f}×")
    console.print(grid)
    first = store.model(report[0]["model"])
    console.print(f"\n[bold]{report[0]['model']}[/bold] (revenue ~ price + promo + ads):")
    console.print(first.summary().to_string(float_format=lambda v: f"{v:.6g}"))
    again = store.fit("linear", **dict(lin, lo=1, hi=half, name=None))
    console.print("\n[bold]EXPLAIN[/bold] of the same request once more:")
    console.print(str(again.plan), markup=False)
    return report


def _from_scratch_seconds(store: Store, model) -> float:
    """The paper's baseline: the same statistics by one in-database aggregate scan."""
    from modelstore.source import resolve_table

    d = model.descriptor
    tbl = resolve_table(store.conn, d.source.qualified)
    t0 = time.perf_counter()
    scan(store.conn, tbl, d, d.range)
    return time.perf_counter() - t0
