"""The experiments of the paper's §6 (and DESIGN.md §7), one function each.

Each takes the run's :class:`~modelstore.benchmark.context.Context`, leaves the benchmark table's
catalog empty behind it, and returns a JSON-able dict of results: figures as medians with spreads
(``measure.summarize``), per-query columns where a plot needs them, and the workload it ran.

=====================  ==========================================================================
``coverage``           Fig. 2: gain T0/T vs coverage, linear / Gaussian NB / logistic, and the
                       analyst's baseline (pandas + scikit-learn) on the same queries
``model_size``         Fig. 3: gain vs materialised model size at 50% coverage, query sets S1, S2
``distributions``      Fig. 4: time of small and large queries over model sizes M1–M4 vs coverage
``breakdown``          Fig. 5: time split into optimizer / I/O (stored, base rows) / the rest
``accuracy``           Figs. 6–7: logistic accuracy difference to a full fit, and gain, l = 10K/20K
``storage``            Table 1: stored models' size vs the base table, fixed 5K-row models
``planner``            planning time with 1,000 / 10,000 / 100,000 stored models
``index``              with and without the statistics index (when modelstore has one)
``engine``             the C statistics aggregate vs count(last column) vs the SQL aggregates, serial
                       and 2 workers (issue #15; :mod:`modelstore.benchmark.engine`)
``capture``            rows/s of INSERT / UPDATE / DELETE with and without change capture (issue #7;
                       :mod:`modelstore.benchmark.capture`)
``deployments``        deployed linear / Gaussian NB under an insert stream: rows/s, commit → model,
                       refresh vs refit of the window (issue #16; :mod:`modelstore.benchmark.deployments`)
``scaleout``           the statistics aggregate over a table sharded across 1–3 local PostgreSQL clusters
                       with postgres_fdw (issue #19; :mod:`modelstore.benchmark.scaleout`)
``serving``            HTTP predict p50/p99 at fixed request rates, modelstore serve vs a pickled
                       scikit-learn model; observe → predict (issue #18; :mod:`modelstore.benchmark.serving`)
``predict``            modelstore.predict p50/p99 one row at a time, batch ML.PREDICT rows/s, per group
                       (issue #18; :mod:`modelstore.benchmark.predict`)
``continuous``         continuous deployment (proactive training) vs online and periodical retraining on
                       the NYC flights of 2013: cost and prequential error (issue #17;
                       :mod:`modelstore.benchmark.continuous`)
=====================  ==========================================================================
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from modelstore.benchmark import (baselines, capture, continuous, data, deployments, engine, measure,
                                  predict, scaleout, serving, workloads)
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import gains, summarize
from modelstore.benchmark.workloads import Query
from modelstore.errors import ModelstoreError

KINDS = ("linear", "gaussian_nb", "logistic")
#: relative difference beyond which a linear / NB answer counts as *not* the from-scratch model
EXACT_TOLERANCE = 1e-9


# -- shared steps ---------------------------------------------------------------------------------------

def _query_set(ctx: Context, n: int) -> list[Query]:
    """The N(50K, 12.5K) query set of Figs. 2, 5, 6–7 and the index experiment (same tag: the
    same queries, so their from-scratch times are measured once)."""
    cfg = ctx.config
    mean, sd = cfg.query_size
    sizes = workloads.normal_size(cfg.size(mean), cfg.size(sd), cfg.rows)
    return workloads.queries(cfg.seed, "normal-queries", n, sizes, cfg.rows)


def _model_placement(ctx: Context, coverages: Sequence[float]) -> workloads.Placement:
    """Materialised models ~ N(50K, 12.5K) for the coverages (the same for every kind)."""
    cfg = ctx.config
    mean, sd = cfg.model_size
    sizes = workloads.normal_size(cfg.size(mean), cfg.size(sd), cfg.rows)
    return workloads.placement(cfg.seed, "normal-models", coverages, sizes, cfg.rows)


def _place(ctx: Context, kind: str, models: Sequence[Query], *, chunk_rows: int | None = None,
           label: str = "placing models") -> list[dict]:
    """Fit (and commit) the models a coverage needs, then refresh the catalog's planner statistics.
    Requests modelstore refuses are returned (and reported), not raised."""
    failures = []
    for q in ctx.track(models, f"{label} ({kind})"):
        try:
            with ctx.phase("placement"):
                measure.fit(ctx, kind, q, chunk_rows=chunk_rows)
        except ModelstoreError as exc:  # recorded and reported, never hidden
            failures.append({"lo": q.lo, "hi": q.hi, "error": f"{type(exc).__name__}: {exc}"})
    if models:
        with ctx.phase("placement"):
            ctx.conn.execute("ANALYZE modelstore.statistics")
    return failures


def _run(ctx: Context, kind: str, queries: Sequence[Query], label: str, *, chunk_rows: int | None = None,
         scratch: bool = True, sql_t0: int = 0) -> dict:
    """Time each query through modelstore (and from scratch, once per run); per-query columns.

    ``t0_ms`` is T0 on the best engine for every query; ``t0_sql_ms`` T0 on the SQL aggregates for the
    first ``sql_t0`` queries of the set (Fig. 2 and the index experiment; None after them, and for
    logistic, whose T0 uses no statistics aggregate), with ``t0_sql_error`` its model's difference to
    the best engine's."""
    cols: dict[str, list] = {k: [] for k in ("lo", "hi", "ms", "t0_ms", "t0_sql_ms", "t0_sql_error",
                                             "optimizer_ms", "io_stored_ms",
                                             "io_base_ms", "rest_ms", "rows_scanned", "stored_steps",
                                             "scan_steps", "subtractions", "relevant", "error", "est_ms",
                                             "actual_ms")}
    truncated = 0
    failures = []
    for i, q in enumerate(ctx.track(queries, label)):
        base = sql_base = None
        if scratch:
            with ctx.phase("T0, best engine"):
                base = baselines.scratch(ctx, kind, q, chunk_rows=chunk_rows)
            if kind != "logistic" and i < sql_t0:
                with ctx.phase("T0, SQL aggregates"):
                    sql_base = baselines.scratch(ctx, kind, q, chunk_rows=chunk_rows, which="sql")
        try:
            with ctx.phase("T, modelstore"):
                seconds, model = measure.timed_fit(ctx, kind, q, chunk_rows=chunk_rows)
        except ModelstoreError as exc:  # a request modelstore refuses: counted and reported, not timed
            failures.append({"lo": q.lo, "hi": q.hi, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rec = measure.split(model.plan, seconds)
        truncated += rec["truncated"]
        cols["lo"].append(q.lo)
        cols["hi"].append(q.hi)
        for k in ("ms", "optimizer_ms", "io_stored_ms", "io_base_ms", "rest_ms", "rows_scanned", "stored_steps",
                  "scan_steps", "subtractions", "relevant", "est_ms", "actual_ms"):
            cols[k].append(rec[k])
        cols["t0_ms"].append(None if base is None else base.seconds * 1000)
        cols["t0_sql_ms"].append(None if sql_base is None else sql_base.seconds * 1000)
        cols["t0_sql_error"].append(None if sql_base is None or base.parameters is None
                                    else measure.relative_error(sql_base.parameters, base.parameters))
        mine = measure.parameters(model, kind)
        cols["error"].append(None if base is None or base.parameters is None or mine is None
                             else measure.relative_error(mine, base.parameters))
    cols["truncated_plans"] = truncated
    cols["failures"] = failures
    if kind != "logistic":
        # untimed: the same requests again with the protocol traced (the trace's writes stay off the clock)
        traced = []
        for q in queries[: ctx.config.traced_queries]:
            try:
                traced.append(measure.traced_fit(ctx, kind, q, chunk_rows=chunk_rows))
            except ModelstoreError:
                continue  # refused above too, and counted there
        cols["round_trips"] = traced
    return cols


def _figures(cols: dict) -> dict:
    """Medians and spreads of one query set's columns."""
    out = {"ms": summarize(cols["ms"]), "rows_scanned": summarize(cols["rows_scanned"]),
           "breakdown_mean_ms": {k: float(np.mean(cols[k])) if cols[k] else None
                                 for k in ("optimizer_ms", "io_stored_ms", "io_base_ms", "rest_ms")},
           "breakdown_median_ms": {k: float(np.median(cols[k])) if cols[k] else None
                                   for k in ("optimizer_ms", "io_stored_ms", "io_base_ms", "rest_ms")},
           "plans_with_stored": int(sum(1 for s in cols["stored_steps"] if s)),
           "plans_with_subtraction": int(sum(1 for s in cols["subtractions"] if s)),
           "plans_without_base_rows": int(sum(1 for r in cols["rows_scanned"] if r == 0)),
           "relevant_models": summarize(cols["relevant"]),
           "truncated_plans": cols.get("truncated_plans", 0),
           "failed": len(cols.get("failures", ())),
           "cost_ratio": measure.cost_ratios(cols.get("est_ms", ()), cols.get("actual_ms", ())),
           "round_trips": measure.round_trip_figures(cols.get("round_trips", ()))}
    t0 = cols["t0_ms"]
    if t0 and all(v is not None for v in t0):
        out["t0_ms"] = summarize(t0)
        out["gain"] = gains(t0, cols["ms"])
        out.update(_sql_figures(cols))
    errors = [e for e in cols["error"] if e is not None]
    if errors:
        out["exact"] = {"checked": len(errors), "max_relative_error": float(max(errors)),
                        "tolerance": EXACT_TOLERANCE, "all_equal": bool(max(errors) <= EXACT_TOLERANCE)}
    return out


def _sql_figures(cols: dict) -> dict:
    """T0 on the SQL aggregates and the gain against it, over the queries where it was measured."""
    idx = [i for i, v in enumerate(cols.get("t0_sql_ms", ())) if v is not None]
    if not idx:
        return {}
    sql_t0 = [cols["t0_sql_ms"][i] for i in idx]
    errors = [cols["t0_sql_error"][i] for i in idx if cols["t0_sql_error"][i] is not None]
    return {"t0_sql_ms": summarize(sql_t0),
            "gain_vs_sql": gains(sql_t0, [cols["ms"][i] for i in idx]),
            "t0_sql_over_best": summarize([s / cols["t0_ms"][i] for s, i in zip(sql_t0, idx) if cols["t0_ms"][i]]),
            "t0_sql_max_relative_error": float(max(errors)) if errors else None}


def _t0_note(ctx: Context) -> dict:
    """How T0 was measured in this run: on which engines, and over which queries on the SQL aggregates."""
    cfg = ctx.config
    return {"engines": baselines.engines(ctx), "sql_t0_queries": cfg.sql_t0_queries,
            "sql_t0_large_queries": cfg.sql_t0_large_queries,
            "sql_sample": f"T0 on the SQL aggregates for the first {cfg.sql_t0_queries} queries of each "
                          f"N(50K) query set and the first {cfg.sql_t0_large_queries} of the index's 500K-row "
                          "set (the sets are seeded random draws, so these are deterministic random samples); "
                          "gain_vs_sql is over those queries",
            "logistic": "one T0 (training every chunk reads rows, no statistics aggregate)"}


def _stats_bytes(ctx: Context) -> dict:
    """Catalog bytes of the benchmark table's stored models: statistics rows and named-model rows."""
    row = ctx.conn.execute(
        """
        SELECT (SELECT count(*) FROM modelstore.statistics s WHERE s.source_id = src.source_id),
               (SELECT coalesce(sum(pg_column_size(s.*)), 0) FROM modelstore.statistics s
                 WHERE s.source_id = src.source_id),
               (SELECT coalesce(sum(pg_column_size(m.*)), 0) FROM modelstore.fitted_models m
                 WHERE m.source_id = src.source_id)
        FROM modelstore.sources src WHERE src.schema_name = %s AND src.table_name = %s
        """, [data.SCHEMA, data.TABLE]).fetchone()
    count, stats, models = row if row else (0, 0, 0)
    return {"statistics_rows": int(count), "statistics_bytes": int(stats), "named_model_bytes": int(models)}


def _clear(ctx: Context) -> None:
    data.clear_catalog(ctx.conn)


# -- Fig. 2: gain vs coverage -------------------------------------------------------------------------------

def _coverage_sweep(ctx: Context, kind: str, n_queries: int, *, analyst: int = 0) -> dict:
    cfg = ctx.config
    queries = _query_set(ctx, n_queries)
    placement = _model_placement(ctx, cfg.coverages)
    _clear(ctx)
    base_bytes = data.table_bytes(ctx.conn)
    points, placed, failed = [], 0, []
    try:
        for c in cfg.coverages:
            new = placement.models[placed : placement.prefix[c]]
            failed += _place(ctx, kind, new)
            placed = placement.prefix[c]
            cols = _run(ctx, kind, queries, f"{kind} at {c:.0%} coverage", sql_t0=cfg.sql_t0_queries)
            storage = _stats_bytes(ctx)
            storage["percent_of_base"] = 100.0 * storage["statistics_bytes"] / base_bytes
            points.append({"coverage": c, "achieved": placement.achieved[c], "models": placement.prefix[c],
                           "placement_failures": list(failed), "storage": storage, **_figures(cols),
                           "queries": cols})
    finally:
        _clear(ctx)
    out = {"queries": len(queries), "query_rows": summarize([q.rows for q in queries]),
           "placement": placement.to_json(), "points": points,
           # every executed plan of the sweep, all coverages together (issue #20: within 2× for 90%)
           "cost_ratio": measure.cost_ratios([e for p in points for e in p["queries"]["est_ms"]],
                                             [a for p in points for a in p["queries"]["actual_ms"]])}
    if analyst:
        sample = queries[:analyst]
        with ctx.phase("analyst"):
            times = [baselines.analyst(ctx, kind, q) * 1000 for q in ctx.track(sample, f"{kind}: analyst baseline")]
        out["analyst"] = {"queries": len(sample), "ms": summarize(times),
                          "vs_from_scratch": gains(times, points[0]["queries"]["t0_ms"][:len(sample)]),
                          "gain_at": {f"{p['coverage']:g}": gains(times, p["queries"]["ms"][:len(sample)])
                                      for p in points}}
    return out


def coverage(ctx: Context) -> dict:
    """Fig. 2 (a–c): the gain of modelstore over one from-scratch aggregate scan (training every
    chunk for logistic), for materialised models ~N(50K, 12.5K) placed for each coverage and
    queries ~N(50K, 12.5K); also the analyst's pandas + scikit-learn time for the same rows."""
    cfg = ctx.config
    kinds = {}
    for kind in KINDS:
        n = cfg.logistic_queries if kind == "logistic" else cfg.queries
        kinds[kind] = _coverage_sweep(ctx, kind, n, analyst=min(cfg.analyst_queries, n))
    ctx.shared["coverage"] = kinds
    every = [p["queries"] for sweep in kinds.values() for p in sweep["points"]]
    return {"figure": "Fig. 2", "kinds": kinds, "chunk_rows": cfg.logistic_chunk_rows, "t0": _t0_note(ctx),
            "cost_ratio": measure.cost_ratios([e for q in every for e in q["est_ms"]],
                                              [a for q in every for a in q["actual_ms"]])}


# -- Fig. 3: gain vs materialised model size ------------------------------------------------------------------

def model_size(ctx: Context) -> dict:
    """Fig. 3 (the paper's 2(d), 2(e)): gain at 50% coverage for materialised models of one fixed
    size, varied, and two query sets of fixed sizes S1 = 50K, S2 = 100K rows."""
    cfg = ctx.config
    out = {}
    for kind in cfg.size_kinds:
        n = cfg.size_logistic_queries if kind == "logistic" else cfg.size_queries
        sets = {s: workloads.queries(cfg.seed, f"fixed-queries-{s}", n, workloads.fixed_size(cfg.size(s), cfg.rows),
                                     cfg.rows) for s in cfg.size_query_sizes}
        points = []
        try:
            for size in cfg.model_sizes:
                _clear(ctx)
                placement = workloads.placement(cfg.seed, f"fixed-models-{size}", [cfg.size_coverage],
                                                workloads.fixed_size(cfg.size(size), cfg.rows), cfg.rows)
                failed = _place(ctx, kind, placement.models, label=f"{cfg.size(size):,}-row models")
                point = {"model_rows": cfg.size(size), "paper_model_rows": size, "models": len(placement.models),
                         "achieved": placement.achieved[cfg.size_coverage], "placement_failures": failed, "sets": {}}
                for s, queries in sets.items():
                    cols = _run(ctx, kind, queries, f"S={cfg.size(s):,} rows, models of {cfg.size(size):,}")
                    point["sets"][str(s)] = {"query_rows": cfg.size(s), **_figures(cols), "queries": cols}
                points.append(point)
        finally:
            _clear(ctx)
        out[kind] = {"queries_per_set": n, "points": points}
    return {"figure": "Fig. 3", "coverage": cfg.size_coverage, "kinds": out,
            "query_sets": {str(s): cfg.size(s) for s in cfg.size_query_sizes}}


# -- Fig. 4: size distributions M1–M4 --------------------------------------------------------------------------

def distributions(ctx: Context) -> dict:
    """Fig. 4 (a, b): Gaussian NB time for small U(50K, 100K) and large U(500K, 750K) queries when
    the materialised models' sizes follow M1 = U(25K, 50K) … M4 = U(250K, 500K), vs coverage."""
    cfg = ctx.config
    kind = "gaussian_nb"
    sets = {
        "small": workloads.queries(cfg.seed, "uniform-small", cfg.distribution_small,
                                   workloads.uniform_size(cfg.size(cfg.small_queries[0]), cfg.size(cfg.small_queries[1]),
                                                          cfg.rows), cfg.rows),
        "large": workloads.queries(cfg.seed, "uniform-large", cfg.distribution_large,
                                   workloads.uniform_size(cfg.size(cfg.large_queries[0]), cfg.size(cfg.large_queries[1]),
                                                          cfg.rows), cfg.rows),
    }
    out = {}
    for name, (lo, hi) in cfg.distributions.items():
        placement = workloads.placement(cfg.seed, f"uniform-models-{name}", cfg.distribution_coverages,
                                        workloads.uniform_size(cfg.size(lo), cfg.size(hi), cfg.rows), cfg.rows)
        points, placed, failed = [], 0, []
        _clear(ctx)
        try:
            for c in cfg.distribution_coverages:
                failed += _place(ctx, kind, placement.models[placed : placement.prefix[c]], label=f"{name} models")
                placed = placement.prefix[c]
                point = {"coverage": c, "achieved": placement.achieved[c], "models": placement.prefix[c],
                         "placement_failures": list(failed), "sets": {}}
                for set_name, queries in sets.items():
                    cols = _run(ctx, kind, queries, f"{name}, {set_name} queries at {c:.0%}")
                    point["sets"][set_name] = {**_figures(cols), "queries": cols}
                points.append(point)
        finally:
            _clear(ctx)
        out[name] = {"model_rows": [cfg.size(lo), cfg.size(hi)], "placement": placement.to_json(), "points": points}
    return {"figure": "Fig. 4", "kind": kind, "distributions": out,
            "query_sets": {"small": [cfg.size(v) for v in cfg.small_queries],
                           "large": [cfg.size(v) for v in cfg.large_queries]},
            "queries": {k: len(v) for k, v in sets.items()}}


# -- Fig. 5: time breakdown ----------------------------------------------------------------------------------

def breakdown(ctx: Context) -> dict:
    """Fig. 5: where the time goes — optimizer (planning), I/O of stored statistics, I/O of base rows
    (scans), and combination with the rest — vs coverage. Reuses Fig. 2's measurements of the same
    queries when ``coverage`` ran in this run; otherwise measures linear and Gaussian NB itself."""
    cfg = ctx.config
    source = ctx.shared.get("coverage")
    reused = source is not None
    if not reused:
        source = {kind: _coverage_sweep(ctx, kind, cfg.queries) for kind in ("linear", "gaussian_nb")}
    out = {}
    for kind in ("linear", "gaussian_nb"):
        sweep = source[kind]
        out[kind] = [{"coverage": p["coverage"], "mean_ms": p["breakdown_mean_ms"], "median_ms": p["breakdown_median_ms"],
                      "total_ms": p["ms"], "t0_ms": p.get("t0_ms")} for p in sweep["points"]]
    return {"figure": "Fig. 5", "reused_from_coverage": reused, "kinds": out,
            "components": {"optimizer_ms": "planning (relevant set in SQL + graph + Dijkstra)",
                           "io_stored_ms": "fetching stored statistics",
                           "io_base_ms": "aggregating base rows (scans) inside PostgreSQL",
                           "rest_ms": "combination, solving, validation and the catalog write"}}


# -- Figs. 6–7: logistic accuracy ----------------------------------------------------------------------------

def accuracy(ctx: Context) -> dict:
    """Figs. 6–7: for logistic models at 90% coverage with chunk size l = 10K (Fig. 6) and 20K (Fig. 7):
    the training-accuracy difference A0 − A between a model fitted on all the query's rows (A0, the
    same objective) and modelstore's mixture (A), its mean, mean of the positive ones and maximum
    by query size, and the gain."""
    from modelstore.models.logistic import train_chunk

    cfg = ctx.config
    queries = _query_set(ctx, cfg.accuracy_queries)
    placement = _model_placement(ctx, [cfg.accuracy_coverage])
    out = {}
    for paper_l in cfg.accuracy_chunk_rows:
        l = max(20, cfg.size(paper_l))
        _clear(ctx)
        try:
            placement_failures = _place(ctx, "logistic", placement.models, chunk_rows=l, label=f"l={l:,}")
            cols = {"lo": [], "hi": [], "rows": [], "ms": [], "t0_ms": [], "accuracy": [], "full_accuracy": [],
                    "diff_pt": [], "stored_chunks": []}
            failures = []
            for q in ctx.track(queries, f"accuracy, l={l:,}"):
                base = baselines.scratch(ctx, "logistic", q, chunk_rows=l)
                try:
                    seconds, model = measure.timed_fit(ctx, "logistic", q, chunk_rows=l)
                except ModelstoreError as exc:
                    failures.append({"lo": q.lo, "hi": q.hi, "error": f"{type(exc).__name__}: {exc}"})
                    continue
                rows = data.read_rows(ctx.conn, q.lo, q.hi, [*data.FEATURES, data.LABEL])
                X, y = rows[:, :-1], rows[:, -1].astype(int)
                a = float(np.mean(model.predict(X) == y))
                full = train_chunk(X, y, l2=model.l2, classes=[int(c) for c in model.classes_])
                cols["lo"].append(q.lo)
                cols["hi"].append(q.hi)
                cols["rows"].append(q.rows)
                cols["ms"].append(seconds * 1000)
                cols["t0_ms"].append(base.seconds * 1000)
                cols["accuracy"].append(a)
                cols["full_accuracy"].append(full.accuracy)
                cols["diff_pt"].append(100.0 * (full.accuracy - a))
                cols["stored_chunks"].append(sum(1 for r in model.plan.results if r.step.op == "stored"))
        finally:
            _clear(ctx)
        diffs = np.array(cols["diff_pt"])
        positive = diffs[diffs > 0]
        bins = []
        for lo, hi, idx in workloads.size_bins(cols["rows"], 8):
            d = diffs[idx]
            bins.append({"rows": [lo, hi], "queries": len(idx), "mean_diff_pt": float(d.mean()),
                         "mean_positive_diff_pt": float(d[d > 0].mean()) if (d > 0).any() else 0.0,
                         "max_diff_pt": float(d.max()),
                         "gain": gains([cols["t0_ms"][i] for i in idx], [cols["ms"][i] for i in idx])})
        out[str(paper_l)] = {
            "chunk_rows": l, "paper_chunk_rows": paper_l, "models": len(placement.models),
            "achieved": placement.achieved[cfg.accuracy_coverage], "placement_failures": placement_failures,
            "failed": len(failures), "failures": failures,
            "diff_pt": {"mean": float(diffs.mean()), "mean_positive": float(positive.mean()) if positive.size else 0.0,
                        "max": float(diffs.max()), "min": float(diffs.min()), "positive": int(positive.size),
                        "summary": summarize(diffs)},
            "accuracy": summarize(cols["accuracy"]), "gain": gains(cols["t0_ms"], cols["ms"]),
            "bins": bins, "queries": cols,
        }
    return {"figure": "Figs. 6–7", "coverage": cfg.accuracy_coverage, "chunk_sizes": out,
            "full_fit": "the chunks' objective (mean log-loss + λ‖w‖², λ = l2) minimised on all the query's rows",
            "queries": len(queries)}


# -- Table 1: storage ---------------------------------------------------------------------------------------

def storage(ctx: Context) -> dict:
    """Table 1: the catalog space of materialised linear models of a fixed 5K rows placed for each
    coverage, against the base table (``pg_total_relation_size``: heap and index)."""
    cfg = ctx.config
    size = cfg.size(cfg.storage_model_rows)
    placement = workloads.placement(cfg.seed, "table1-models", cfg.storage_coverages,
                                    workloads.fixed_size(size, cfg.rows), cfg.rows)
    base = data.table_bytes(ctx.conn)
    heap = ctx.conn.execute("SELECT pg_relation_size(%s::regclass)", [ctx.table]).fetchone()[0]
    rows, placed, failed = [], 0, []
    _clear(ctx)
    try:
        for c in cfg.storage_coverages:
            failed += _place(ctx, "linear", placement.models[placed : placement.prefix[c]], label=f"{c:.0%} coverage")
            placed = placement.prefix[c]
            b = _stats_bytes(ctx)
            rows.append({"coverage": c, "achieved": placement.achieved[c], "models": placement.prefix[c],
                         "placement_failures": len(failed), **b,
                         "percent_of_base": 100.0 * b["statistics_bytes"] / base,
                         "percent_of_base_with_named_models":
                             100.0 * (b["statistics_bytes"] + b["named_model_bytes"]) / base})
    finally:
        _clear(ctx)
    return {"figure": "Table 1", "model_rows": size, "paper_model_rows": cfg.storage_model_rows,
            "base_table_bytes": int(base), "base_heap_bytes": int(heap), "rows": rows}


# -- planner time with many stored models --------------------------------------------------------------------

def _synthetic_statistics(ctx: Context, source_id: int, count: int) -> int:
    """COPY ``count`` linear statistics rows (ranges ~N(50K, 12.5K) at uniform positions, distinct)
    for the benchmark source. Their values are zeros of the right shape: planning reads only the
    descriptors (ranges, columns, n, the number of values), never the arrays."""
    cfg = ctx.config
    mean, sd = cfg.model_size
    rng = workloads.rng_for(cfg.seed, f"synthetic-{count}")
    sizes = np.clip(np.round(rng.normal(cfg.size(mean), cfg.size(sd), count * 2)), 2, cfg.rows).astype(np.int64)
    los = np.array([rng.integers(1, cfg.rows - s + 2) for s in sizes], dtype=np.int64)
    pairs = np.unique(np.stack([los, los + sizes - 1], axis=1), axis=0)
    if len(pairs) < count:
        raise RuntimeError(f"could not draw {count} distinct ranges on {cfg.rows} rows")
    pairs = pairs[rng.permutation(len(pairs))[:count]]
    columns = "{" + ",".join((*data.FEATURES, data.TARGET)) + "}"
    k = len(data.FEATURES) + 1
    mean_txt = "{" + ",".join(["0"] * k) + "}"
    moments_txt = "{" + ",".join(["0"] * (k * k)) + "}"
    lines = [f"{source_id}\tlinear\t{lo}\t{hi}\t{lo}\t{hi}\t\t\t\t{columns}\t{hi - lo + 1}\t0\t{mean_txt}\t{moments_txt}\n"
             for lo, hi in pairs.tolist()]
    with ctx.conn.transaction():
        with ctx.conn.cursor().copy(
                "COPY modelstore.statistics (source_id, family, lo, hi, lo_key, hi_key, filter_sql, target, "
                "params_key, columns, n, null_rows, mean, moments) FROM STDIN") as copy:
            for i in range(0, len(lines), 10_000):
                copy.write("".join(lines[i : i + 10_000]))
    ctx.conn.execute("ANALYZE modelstore.statistics")
    return len(lines)


def planner(ctx: Context) -> dict:
    """Planning time (``plan.planning_seconds`` of ``store.explain``: Algorithm 3 in SQL, the graph
    and Dijkstra) with 1,000 / 10,000 / 100,000 stored linear models of ~N(50K, 12.5K) rows, inserted
    in bulk as synthetic catalog rows, for N(50K, 12.5K) queries. Every relevant model enters the
    graph (no truncation); the report says how many were relevant and how many rule 1 pruned."""
    cfg = ctx.config
    queries = _query_set(ctx, cfg.planner_queries)
    _clear(ctx)
    points = []
    try:
        measure.fit(ctx, "linear", queries[0])  # registers the source (and one real model)
        source_id = ctx.conn.execute(
            "SELECT source_id FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
            [data.SCHEMA, data.TABLE]).fetchone()[0]
        for count in cfg.planner_models:
            ctx.conn.execute("DELETE FROM modelstore.statistics WHERE source_id = %s", [source_id])
            started = time.perf_counter()
            inserted = _synthetic_statistics(ctx, source_id, count)
            load_s = time.perf_counter() - started
            args = [measure.request(ctx, "linear", q) for q in queries]
            ctx.store.explain("linear", **args[0])  # warm: row estimates, cost model, the catalog cache and cut graph
            plan_ms, wall_ms, relevant, truncated, nodes, edges, pruned = [], [], [], 0, [], [], []
            settled, fetched, hits = [], [], 0
            for a in ctx.track(args, f"{count:,} stored models"):
                t0 = time.perf_counter()
                plan = ctx.store.explain("linear", **a)
                wall_ms.append((time.perf_counter() - t0) * 1000)
                plan_ms.append(plan.planning_seconds * 1000)
                g = plan.graph or {}
                relevant.append(g.get("relevant", 0))
                pruned.append(g.get("pruned", 0))
                truncated += bool(g.get("truncated"))
                nodes.append(g.get("nodes", 0))
                edges.append(g.get("edges", 0))
                settled.append(g.get("settled", 0))
                fetched.append(g.get("catalog_fetched", 0))
                hits += bool(g.get("catalog_hit")) and bool(g.get("graph_hit"))
            # what explains the figure: the session's catalog cache (summaries read per plan, plans that read
            # nothing of the catalog (nothing changed) and reused the cut graph) and the nodes the search settled
            points.append({"stored_models": inserted, "insert_seconds": load_s, "planning_ms": summarize(plan_ms),
                           "explain_ms": summarize(wall_ms), "relevant": summarize(relevant),
                           "truncated_plans": truncated, "graph_nodes": summarize(nodes),
                           "graph_edges": summarize(edges), "pruned": summarize(pruned),
                           "settled_nodes": summarize(settled), "summaries_fetched": summarize(fetched),
                           "cache_hits": hits})
    finally:
        _clear(ctx)
    return {"figure": "planner time", "max_relevant": None, "queries": len(queries), "points": points}


# -- the statistics index -------------------------------------------------------------------------------------

def _schema_bytes(ctx: Context) -> int:
    return int(ctx.conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'modelstore' AND c.relkind = 'r'"
    ).fetchone()[0])


def _build_index(ctx: Context, kind: str):
    """``store.build_index`` over the benchmark table for ``kind`` (the index experiment's one call)."""
    return ctx.store.build_index(ctx.table, "id", list(data.FEATURES), measure.TARGETS[kind], kind=kind)


def _reused_zero_coverage(ctx: Context, kind: str, n: int) -> dict | None:
    """Fig. 2's measurements at 0% coverage of the first ``n`` queries of the same query set, if this
    run has them (an empty catalog is exactly "without the index")."""
    sweep = (ctx.shared.get("coverage") or {}).get(kind)
    if not sweep or sweep["points"][0]["coverage"] != 0.0 or sweep["queries"] < n:
        return None
    cols = sweep["points"][0]["queries"]
    out = {k: (v[:n] if isinstance(v, list) else v) for k, v in cols.items()}
    out["truncated_plans"] = 0
    return out


def index(ctx: Context) -> dict:
    """With and without the statistics index: gain for N(50K, 12.5K) and 500K-row queries, the end-to-end
    time of any range model, the index's build time and size. Records "not available" when this
    modelstore has no ``store.build_index``."""
    if not hasattr(ctx.store, "build_index"):
        return {"figure": "statistics index", "available": False,
                "reason": "this modelstore has no Store.build_index (the statistics index, issue 4)"}
    cfg = ctx.config
    normal = _query_set(ctx, cfg.index_queries)
    large = workloads.queries(cfg.seed, "index-large", cfg.index_large_queries,
                              workloads.fixed_size(cfg.size(cfg.index_large_size), cfg.rows), cfg.rows)
    anywhere = workloads.any_ranges(cfg.seed, "index-any", cfg.index_any_queries, cfg.rows)
    base = data.table_bytes(ctx.conn)
    kinds = {}
    for kind in ("linear", "gaussian_nb"):
        _clear(ctx)
        try:
            without = {"normal": _reused_zero_coverage(ctx, kind, len(normal))
                                 or _run(ctx, kind, normal, f"{kind}, no index, N(50K) queries",
                                         sql_t0=cfg.sql_t0_queries),
                       "large": _run(ctx, kind, large, f"{kind}, no index, large queries",
                                     sql_t0=cfg.sql_t0_large_queries)}
            before = _schema_bytes(ctx)
            started = time.perf_counter()
            try:
                with ctx.phase("index build"):
                    info = _build_index(ctx, kind)
            except Exception as exc:  # the index is another issue's work: record, do not crash the run
                kinds[kind] = {"available": False, "reason": f"build_index failed: {type(exc).__name__}: {exc}"}
                continue
            build_s = time.perf_counter() - started
            ctx.conn.execute("ANALYZE modelstore.statistics")
            disk_bytes = _schema_bytes(ctx) - before
            # rows' bytes (sum of pg_column_size), as Table 1 counts stored models; on-disk growth beside it
            index_bytes = int((info or {}).get("index_bytes", disk_bytes))
            with_index = {"normal": _run(ctx, kind, normal, f"{kind}, index, N(50K) queries",
                                         sql_t0=cfg.sql_t0_queries),
                          "large": _run(ctx, kind, large, f"{kind}, index, large queries",
                                        sql_t0=cfg.sql_t0_large_queries),
                          "any": _run(ctx, kind, anywhere, f"{kind}, index, any range", scratch=False)}
            kinds[kind] = {
                "available": True, "build_seconds": build_s, "index_bytes": index_bytes,
                "index_percent_of_base": 100.0 * index_bytes / base, "index_disk_bytes": disk_bytes,
                "index_disk_percent_of_base": 100.0 * disk_bytes / base,
                "index": {k: v for k, v in (info or {}).items() if isinstance(v, (int, float, str))},
                "without_index": {k: {**_figures(v), "queries": v} for k, v in without.items()},
                "with_index": {k: {**_figures(v), "queries": v} for k, v in with_index.items()},
            }
        finally:
            _clear(ctx)
    return {"figure": "statistics index", "available": any(k.get("available") for k in kinds.values()),
            "kinds": kinds, "large_query_rows": cfg.size(cfg.index_large_size), "base_table_bytes": int(base),
            "t0": _t0_note(ctx)}


EXPERIMENTS = {
    "coverage": coverage,
    "model_size": model_size,
    "distributions": distributions,
    "breakdown": breakdown,
    "accuracy": accuracy,
    "storage": storage,
    "planner": planner,
    "index": index,
    "capture": capture.capture,
    "deployments": deployments.deployments,
    "serving": serving.serving,
    "predict": predict.predict,
    "engine": engine.engine,
    "scaleout": scaleout.scaleout,
    "continuous": continuous.continuous,
}
