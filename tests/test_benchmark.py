"""The benchmark harness (issue 5) on a tiny table against a real database: every experiment runs,
its JSON has the promised shape with finite positive timings, SUMMARY.md states every DESIGN.md §7
target, the plots are written, and the models the benchmark times are the from-scratch models.

Speed itself is never asserted here: figures come from ``modelstore bench``, not from tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from psycopg import sql
from sklearn.linear_model import LinearRegression
from sklearn.naive_bayes import GaussianNB

import modelstore
from modelstore.planner.costs import CostModel
from modelstore.stats.engine import engine as engine_of
from modelstore import benchmark
from modelstore.benchmark import baselines, data, experiments, measure, report, workloads
from modelstore.benchmark.config import Config
from modelstore.benchmark.context import Context
from modelstore.benchmark.workloads import Query

REPO = Path(__file__).resolve().parents[1]

#: every experiment in miniature: a 4,000-row table, sizes × 0.004, a few queries per point; queries,
#: models and logistic chunks a few hundred rows (tiny chunks make L-BFGS slow, not the test better)
TINY = Config(
    mode="test", rows=4000, size_scale=0.004, seed=11,
    coverages=(0.0, 0.5, 0.9), queries=4, logistic_queries=3, analyst_queries=2,
    sql_t0_queries=3, sql_t0_large_queries=1,
    query_size=(100_000, 20_000), model_size=(100_000, 20_000), chunk_rows=50_000,
    model_sizes=(50_000, 100_000), size_queries=3, size_logistic_queries=2,
    distribution_coverages=(0.0, 0.9), distribution_small=2, distribution_large=2,
    accuracy_chunk_rows=(50_000,), accuracy_queries=3,
    storage_model_rows=50_000, storage_coverages=(0.5,),
    planner_models=(1_000,), planner_queries=2,
    index_queries=3, index_large_queries=2, index_any_queries=3,
    capture_batch=400, capture_repeats=2, deploy_worker_commits=3,
    scaleout_repeats=2,
    serve_rates=(50,), serve_seconds=0.5, serve_observes=2,
    serve_search_start=50.0, serve_search_ceiling=100.0, serve_search_seconds=0.3, serve_search_steps=2,
    predict_calls=30, predict_server_calls=500, predict_group_rows=4000, predict_groups=20,
    flights_deploy_days=2, flights_stream_days=2, flights_retrain_days=1, flights_row_step=4,
    flights_db_refreshes=2, flights_epochs=1, flights_sample_chunks=4,
)

#: DESIGN.md §7's rows, as the phrases SUMMARY.md must carry
DESIGN_TARGETS = (
    "gain at 90% coverage, planner over stored models only",
    "gain at 0% coverage, nothing stored",
    "gain with the statistics index built, N(50K) queries",
    "gain with the statistics index built, 500K-row queries",
    "any range model on the 5M-row table, statistics index built",
    "planner time with 1,000 stored models",
    "planner time with 100,000 stored models",
    "round trips of a request answered from stored statistics",  # issue #20
    "storage of stored models",
    "storage of the statistics index",
    "logistic at 90% coverage: ≥ 3× gain",
    "accuracy gap to a full fit",
    "appends past every stored range with change capture",  # issue #7, beside §7
    "HTTP predict p99 < 10 ms at 500 requests/s",  # issue #18
    "modelstore.predict p99 < 1 ms in the database",  # §7 serving (issue #18)
    "batch ML.PREDICT ≥ 1M rows/s",
    "statistics aggregate within 2.5× of reading the columns",  # issue #15
    "statistics aggregate ≥ 5× faster than the SQL aggregates",
)


@pytest.fixture(scope="module")
def run(module_dsn, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    with modelstore.connect(module_dsn) as store:
        docs = benchmark.run(store, TINY, out_dir=out, progress=False)
        stats_engine = engine_of(store.conn)[0]
    return types.SimpleNamespace(dsn=module_dsn, out=out, docs=docs, engine=stats_engine)


def _summaries(node, parent=""):
    """Every (key, summary) pair in a result: dicts with a 'median'."""
    if isinstance(node, dict):
        if "median" in node and "n" in node:
            yield parent, node
        for k, v in node.items():
            yield from _summaries(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _summaries(v, parent)


def test_every_experiment_writes_its_json(run):
    assert set(run.docs) == set(benchmark.ORDER)
    for name in benchmark.ORDER:
        doc = json.loads((run.out / f"{name}.json").read_text())
        for key in ("experiment", "mode", "figure", "started_at", "seconds", "parameters", "machine", "versions",
                    "postgresql_settings", "plots", "results"):
            assert key in doc, (name, key)
        assert doc["experiment"] == name and doc["mode"] == "test"
        assert doc["parameters"]["rows"] == TINY.rows and doc["parameters"]["seed"] == TINY.seed
        assert doc["machine"]["cores"] >= 1 and doc["versions"]["postgresql"]
        assert doc["seconds"] > 0


def test_timings_and_gains_are_finite_and_positive(run):
    checked = 0
    for name, doc in run.docs.items():
        for key, s in _summaries(doc["results"]):
            if key in ("ms", "t0_ms", "gain", "planning_ms", "explain_ms"):
                assert s["n"] > 0, (name, key)
                for stat in ("median", "p25", "p75", "min", "max", "mean"):
                    assert math.isfinite(s[stat]) and s[stat] > 0, (name, key, stat, s)
                checked += 1
    assert checked > 50
    cov = run.docs["coverage"]["results"]["kinds"]
    for kind in ("linear", "gaussian_nb", "logistic"):
        points = cov[kind]["points"]
        assert [p["coverage"] for p in points] == list(TINY.coverages)
        assert points[-1]["achieved"] >= 0.9 and points[0]["models"] == 0
        assert all("gain" in p and p["gain"]["ratio_of_means"] > 0 for p in points)
        assert cov[kind]["analyst"]["ms"]["median"] > 0
        # every executed plan's estimated/actual cost enters the distribution (issue #20)
        ratio = points[-1]["cost_ratio"]
        assert ratio["n"] > 0 and ratio["median"] > 0 and 0 <= ratio["within_2x"] <= 1
        if run.engine == "sql":
            # at 90% coverage the planner does use stored models; with the C aggregate a scan of a few
            # hundred rows is genuinely cheaper than fetching stored models, and the planner rightly scans
            # (the reuse path under C is test_timed_models_match_scikit_learn… and tests/test_engine.py's)
            assert points[-1]["plans_with_stored"] > 0, (kind, points[-1])
        else:
            assert points[-1]["failed"] == 0, (kind, points[-1])
    bd = run.docs["breakdown"]["results"]
    assert bd["reused_from_coverage"]
    for p in bd["kinds"]["linear"]:
        assert all(v is not None and v >= 0 for v in p["mean_ms"].values())
    acc = run.docs["accuracy"]["results"]["chunk_sizes"]["50000"]
    assert math.isfinite(acc["diff_pt"]["max"]) and acc["bins"]
    assert run.docs["storage"]["results"]["rows"][0]["statistics_bytes"] > 0
    planner = run.docs["planner"]["results"]["points"]
    assert [p["stored_models"] for p in planner] == [1000]
    assert planner[-1]["relevant"]["median"] > 0


def test_linear_and_nb_answers_equal_the_from_scratch_models(run):
    """The benchmark checks every linear and NB answer it times against its from-scratch model."""
    cov = run.docs["coverage"]["results"]["kinds"]
    for kind in ("linear", "gaussian_nb"):
        for p in cov[kind]["points"]:
            assert p["exact"]["checked"] == p["ms"]["n"] == TINY.queries
            assert p["exact"]["all_equal"], (kind, p["coverage"], p["exact"])
    for p in run.docs["model_size"]["results"]["kinds"]["gaussian_nb"]["points"]:
        for s in p["sets"].values():
            assert s["exact"]["all_equal"]


def test_t0_is_measured_on_both_engines_and_the_engine_is_recorded(run):
    """Issue #15: Fig. 2 and the index experiment measure T0 on the best engine for every query and on the
    SQL aggregates for the documented sample; the SQL model is the same model; every document says which
    engine computed modelstore's statistics, and where the experiment's time went."""
    c_installed = run.docs["engine"]["results"]["extension"]
    for name in ("coverage", "index"):
        doc = run.docs[name]
        assert doc["machine"]["statistics_engine"]["modelstore"] == run.engine
        assert doc["machine"]["statistics_engine"]["t0_best"] == ("c" if c_installed else "sql")
        t0 = doc["results"]["t0"]
        assert t0["engines"]["t0_best"] == ("c" if c_installed else "sql") and t0["engines"]["t0_sql"] == "sql"
        assert t0["sql_t0_queries"] == TINY.sql_t0_queries and t0["sql_t0_large_queries"] == TINY.sql_t0_large_queries
        phases = doc["phase_seconds"]
        assert {"T0, best engine", "T0, SQL aggregates", "T, modelstore"} <= set(phases)
        assert all(v >= 0 for v in phases.values()) and sum(phases.values()) <= doc["seconds"]
    cov = run.docs["coverage"]["results"]["kinds"]
    for kind in ("linear", "gaussian_nb"):
        for p in cov[kind]["points"]:
            q = p["queries"]
            measured = [i for i, v in enumerate(q["t0_sql_ms"]) if v is not None]
            assert measured == list(range(TINY.sql_t0_queries)), (kind, q["t0_sql_ms"])
            assert p["t0_sql_ms"]["n"] == p["gain_vs_sql"]["n"] == TINY.sql_t0_queries
            assert p["gain_vs_sql"]["median"] > 0
            # the paper's baseline computes the same model as the best engine's scratch fit
            assert p["t0_sql_max_relative_error"] < 1e-9
            if not c_installed:  # one engine: one measurement
                assert q["t0_sql_ms"][: TINY.sql_t0_queries] == q["t0_ms"][: TINY.sql_t0_queries]
    for p in cov["logistic"]["points"]:  # training chunks uses no statistics aggregate: one T0
        assert all(v is None for v in p["queries"]["t0_sql_ms"]) and "gain_vs_sql" not in p
    for kind, k in run.docs["index"]["results"]["kinds"].items():
        assert k["with_index"]["large"]["gain_vs_sql"]["n"] == TINY.sql_t0_large_queries, kind
        assert k["with_index"]["normal"]["gain_vs_sql"]["n"] == TINY.sql_t0_queries, kind
        assert "gain_vs_sql" not in k["with_index"]["any"]
    text = (run.out / "SUMMARY.md").read_text()
    assert "Statistics engine of modelstore's own statistics in every run" in text
    assert "vs SQL: median gain (queries)" in text and "vs SQL-aggregate T0" in text


def test_summary_says_when_documents_come_from_different_engines(run):
    docs = {name: json.loads(json.dumps(run.docs[name])) for name in ("coverage", "index")}
    docs["index"]["machine"]["statistics_engine"].update(modelstore="sql", description="SQL aggregates X")
    text = report.summary_markdown(docs, "test")
    assert "**The documents below come from runs on different statistics engines**" in text
    assert "SQL aggregates X" in text and "coverage" in text


def test_timed_models_match_scikit_learn_and_leave_the_catalog_alone(run, monkeypatch):
    """Independently of modelstore's own code: the models the benchmark times (and its from-scratch
    baseline) are scikit-learn's fits of the same rows; a timed request leaves nothing stored.

    On the SQL statistics engine and its default cost figures: with the C aggregate a 1,000-row scan is cheaper than fetching the
    stored 300-row models, so the planner rightly scans and the reuse path would go unexercised here
    (the C engine's exactness on every path is tests/test_engine.py's)."""
    monkeypatch.setenv("MODELSTORE_STATS_ENGINE", "sql")
    with modelstore.connect(run.dsn) as store:
        store._cost_model = CostModel.default()  # the SQL engine's figures, not a calibration under load
        ctx = Context(store, TINY)
        placement = workloads.placement(TINY.seed, "test-models", [0.8], workloads.fixed_size(300, TINY.rows),
                                        TINY.rows)
        for q in placement.models:
            measure.fit(ctx, "linear", q)
            measure.fit(ctx, "gaussian_nb", q)
        count = store.conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0]
        for q in (Query(101, 1300), Query(1777, 2345), Query(3001, 4000)):
            frame = _frame(store, q)
            X = frame[list(data.FEATURES)].to_numpy()
            _, lin = measure.timed_fit(ctx, "linear", q)
            assert lin.plan.plan.stored, "the placement should let the planner reuse stored models"
            ref = LinearRegression().fit(X, frame[data.TARGET])
            np.testing.assert_allclose(lin.coef_, ref.coef_, rtol=1e-8)
            np.testing.assert_allclose(lin.intercept_, ref.intercept_, rtol=1e-8)
            for which in baselines.T0_ENGINES:  # the best engine's T0 and the SQL aggregates' (issue #15)
                scratch = baselines.scratch(ctx, "linear", q, which=which)
                np.testing.assert_allclose(scratch.parameters, np.r_[ref.coef_, ref.intercept_], rtol=1e-8)
            _, nb = measure.timed_fit(ctx, "gaussian_nb", q)
            ref_nb = GaussianNB().fit(X, frame[data.LABEL])
            np.testing.assert_allclose(nb.theta_, ref_nb.theta_, rtol=1e-9)
            np.testing.assert_allclose(nb.var_, ref_nb.var_, rtol=1e-7)
            np.testing.assert_array_equal(nb.predict(X), ref_nb.predict(X))
        assert store.conn.execute("SELECT count(*) FROM modelstore.statistics").fetchone()[0] == count
        data.clear_catalog(store.conn)


def _frame(store, q: Query) -> pd.DataFrame:
    query = sql.SQL("SELECT {} FROM {} WHERE id BETWEEN %s AND %s ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in (*data.FEATURES, data.TARGET, data.LABEL)),
        sql.Identifier(data.SCHEMA, data.TABLE))
    with store.conn.cursor() as cur:
        cur.execute(query, [q.lo, q.hi])
        return pd.DataFrame(cur.fetchall(), columns=[*data.FEATURES, data.TARGET, data.LABEL])


def test_capture_experiment_times_every_operation_and_stays_exact(run):
    r = run.docs["capture"]["results"]
    assert r["rows"] == TINY.rows and r["batch"] == 400
    assert r["stored"]["summaries"] == 2 * r["stored"]["models_per_kind"] > 0 and r["stored"]["index_nodes"] > 0
    assert r["stored"]["coverage"] >= 0.9
    for op in ("append", "insert", "update", "delete", "append one row", "insert one row"):
        o = r["operations"][op]
        one = op.endswith("one row")
        assert o["rows_per_statement"] == (1 if one else 400), op
        assert o["plain_rows_per_s"]["n"] == o["captured_rows_per_s"]["n"] == TINY.capture_repeats * (5 if one else 1)
        assert o["ratio"]["median"] > 0
    e = r["exact"]
    assert e["checked"] == r["stored"]["models_per_kind"] == e["answered_from_stored_statistics"]
    assert e["max_relative_error"] < 1e-9
    # the copies are gone, with their catalog rows
    with modelstore.connect(run.dsn) as store:
        assert store.conn.execute("SELECT to_regclass('modelstore_bench.capture_on'), "
                                  "to_regclass('modelstore_bench.capture_plain')").fetchone() == (None, None)
        assert store.conn.execute("SELECT count(*) FROM modelstore.sources WHERE table_name LIKE 'capture%'"
                                  ).fetchone()[0] == 0
    assert "## Change capture" in (run.out / "SUMMARY.md").read_text()


def test_summary_states_every_design_target(run):
    text = (run.out / "SUMMARY.md").read_text()
    for phrase in DESIGN_TARGETS:
        assert phrase in text, phrase
    rows = [line for line in text.splitlines() if line.startswith("| ") and any(p in line for p in DESIGN_TARGETS)]
    assert len(rows) == len(DESIGN_TARGETS)
    for line in rows:
        assert "**met**" in line or "**not met**" in line or "not measured" in line
    targets = report.evaluate(run.docs)
    assert len(targets) == len(report.TARGETS) == len(DESIGN_TARGETS)
    # every target was measured in this run (the index exists in this modelstore) but the 100,000-model one,
    # and the C aggregate's where the extension is not installed
    unmeasured = [t["target"] for t in targets if t["met"] is None]
    expected = ["planner time with 100,000 stored models: < 20 ms median"]
    if not any(t["shape"] in ("stored", "index") for v in report._traced(run.docs).values() for t in v):
        expected.append("round trips of a request answered from stored statistics, with or without the index: ≤ 2")
    if not run.docs["engine"]["results"]["extension"]:
        expected += [t.target for t in report.TARGETS if t.figure == "engine"]
    assert unmeasured == expected, unmeasured


def test_round_trips_are_traced_per_request_and_reported(run):
    """Issue #20's "statements per request": every timed linear / NB set is traced again (untimed), and a
    request answered from stored statistics or the index waits for the server at most twice."""
    traced = report._traced(run.docs)
    assert {("Fig. 2", "linear"), ("Fig. 2", "gaussian_nb"), ("index", "linear"), ("index", "gaussian_nb")} <= set(traced)
    records = [t for v in traced.values() for t in v]
    assert all(t["round_trips"] >= 1 and t["statements"] >= t["round_trips"] for t in records), records
    assert {t["shape"] for t in records} <= {"stored", "index", "scratch", "mixed"}
    # (on this tiny table the planner seldom prefers stored statistics or the index to a 400-row scan:
    # tests/test_planner_roundtrips.py forces those plans)
    answered = [t["round_trips"] for t in records if t["shape"] in ("stored", "index")]
    assert max(answered, default=0) <= 2, answered
    # at 0% coverage nothing is stored: the from-scratch scan rides in the first round trip, the writes in the
    # second (with stored statistics about, a plan that scans anyway runs its scan in a round trip of its own)
    for sweep in run.docs["coverage"]["results"]["kinds"].values():
        first = sweep["points"][0]
        if first["coverage"] == 0.0 and first["queries"].get("round_trips"):
            assert [t["round_trips"] for t in first["queries"]["round_trips"]] == [2] * len(first["queries"]["round_trips"])
    text = (run.out / "SUMMARY.md").read_text()
    assert "## Round trips per request" in text and "| Fig. 2 | linear | scratch |" in text


def test_predict_experiment_measures_single_rows_batches_and_groups(run):
    r = run.docs["predict"]["results"]
    for kind in ("linear", "gaussian_nb", "per_group"):
        single = r["single_row_ms"][kind]
        assert single["calls"] == TINY.predict_calls and single["p99"] >= single["p50"] > 0
        assert r["server_us_per_call"][kind] > 0 and r["batch_ml_predict"][kind]["rows_per_s"] > 0
    assert r["batch_ml_predict"]["linear"]["rows"] == TINY.rows
    assert r["groups"] == {"rows": TINY.predict_group_rows, "groups": TINY.predict_groups,
                           "fit_seconds": r["groups"]["fit_seconds"]}
    assert r["read_rows_per_s"] > 0 and r["predict_per_row_rows_per_s"] > 0


def test_serving_experiment_searches_the_highest_rate_for_both_services(run):
    r = run.docs["serving"]["results"]
    assert set(r["max_rate_search"]) == {"modelstore", "pickled"}  # the baseline under the same load
    for service, found in r["max_rate_search"].items():
        steps = found["steps"]
        assert 1 <= len(steps) <= TINY.serve_search_steps
        assert steps[0]["rate"] == TINY.serve_search_start and found["requests"] == sum(p["requests"] for p in steps)
        passing = [p["rate"] for p in steps if p["meets"]]
        assert found["max_rate"] == (max(passing) if passing else None) == r["max_rate_p99_under_10ms"][service]
        for p in steps:  # each step is bounded: rate × seconds requests, all accounted for
            assert p["requests"] == max(1, round(p["rate"] * TINY.serve_search_seconds))
            assert p["ok"] + p["errors"] == p["requests"]


def _synthetic_service(knee: float, calls: list):
    """A stand-in for one bounded run against a service whose p99 crosses 10 ms at ``knee`` requests/s."""
    def measure(rate: float) -> dict:
        calls.append(rate)
        return {"requests": int(rate), "ok": int(rate), "errors": 0, "p99_ms": 2.0 if rate <= knee else 50.0}
    return measure


@pytest.mark.parametrize("knee", [30.0, 100.0, 730.0, 5000.0, 10_000.0])
def test_rate_search_doubles_then_bisects_within_its_bounds(knee):
    from modelstore.benchmark.load import find_max_rate

    calls: list = []
    found = find_max_rate(_synthetic_service(knee, calls), p99_ms=10.0, start=100.0, ceiling=8000.0,
                          max_steps=12, resolution=0.05)
    assert len(calls) == len(found["steps"]) <= 12
    assert all(1.0 <= rate <= 8000.0 for rate in calls)
    if knee >= 8000.0:
        assert found["max_rate"] == 8000.0 and found["first_failing_rate"] is None and found["stopped"] == "ceiling"
    else:
        # the answer passes, the rate just above it fails, and they bracket the knee within 5% (or the steps ran out)
        assert found["max_rate"] <= knee < found["first_failing_rate"]
        assert found["stopped"] == "resolution"
        assert found["first_failing_rate"] - found["max_rate"] <= 0.05 * found["max_rate"]
    assert found["requests"] == sum(int(rate) for rate in calls)


def test_rate_search_reports_errors_as_failures_and_stops_at_its_step_budget():
    from modelstore.benchmark.load import find_max_rate

    def erroring(rate):
        return {"requests": 10, "ok": 9, "errors": 1, "p99_ms": 1.0}

    found = find_max_rate(erroring, p99_ms=10.0, start=100.0, ceiling=1000.0, max_steps=3)
    assert found["max_rate"] is None and [p["rate"] for p in found["steps"]] == [100.0, 50.0, 25.0]
    assert found["stopped"] == "max_steps"
    with pytest.raises(ValueError):
        find_max_rate(erroring, p99_ms=10.0, start=100.0, ceiling=50.0, max_steps=3)


def test_plots_are_written_where_asked(run):
    files = [f for doc in run.docs.values() for f in doc["plots"]]
    assert len(files) >= 8
    for f in files:
        path = run.out / f
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert run.out.resolve() != (REPO / "bench" / "results").resolve()
    assert {f for f in files} <= {p.name for p in run.out.glob("*.png")}


def test_without_matplotlib_the_figures_are_skipped_and_it_says_how_to_draw_them(run, tmp_path, monkeypatch):
    """matplotlib is the optional ``bench`` extra: without it the results are written, no figure, and
    the run names the install command (at its start and its end)."""
    from rich.console import Console

    from modelstore.benchmark import plots

    monkeypatch.setattr(plots, "available", lambda: False)
    console = Console(record=True, width=200)
    with modelstore.connect(run.dsn) as store:
        docs = benchmark.run(store, TINY, only=("storage",), out_dir=tmp_path, console=console, progress=False)
    assert docs["storage"]["plots"] == [] and not list(tmp_path.glob("*.png"))
    assert (tmp_path / "storage.json").exists() and (tmp_path / "SUMMARY.md").exists()
    assert console.export_text().count("pip install 'modelstore[bench]'") == 2


def test_index_hook_without_an_index():
    """A modelstore without ``build_index`` gets "not available", and nothing runs."""
    ctx = Context(types.SimpleNamespace(conn=None), TINY)
    result = experiments.index(ctx)
    assert result == {"figure": "statistics index", "available": False,
                      "reason": "this modelstore has no Store.build_index (the statistics index, issue 4)"}
    measured, met = dict((t.figure + t.target, t.measure) for t in report.TARGETS)[
        "index" + report.TARGETS[2].target]({"index": {"results": result}})
    assert met is None and "not available" in measured


def test_workloads():
    p = workloads.placement(3, "t", [0.2, 0.6, 0.9], workloads.normal_size(500, 125, 20_000), 20_000)
    assert p.prefix[0.2] <= p.prefix[0.6] <= p.prefix[0.9] == len(p.models)
    for c in (0.2, 0.6, 0.9):
        assert p.achieved[c] >= c
        assert workloads.coverage_of(p.upto(c), 20_000) == pytest.approx(p.achieved[c])
    qs = workloads.queries(3, "q", 50, workloads.uniform_size(100, 900, 1000), 1000)
    assert all(1 <= q.lo <= q.hi <= 1000 and 100 <= q.rows <= 900 for q in qs)
    assert qs[:10] == workloads.queries(3, "q", 10, workloads.uniform_size(100, 900, 1000), 1000)
    assert all(1 <= q.lo < q.hi <= 1000 for q in workloads.any_ranges(1, "a", 100, 1000))


def test_configuration():
    quick, full = benchmark.quick(), benchmark.full()
    assert full.rows == 5_000_000 and full.queries == 1000 and full.size(50_000) == 50_000
    assert full.coverages == (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)
    scaled = benchmark.configure("full", rows=1_000_000, queries=100, seed=5)
    assert scaled.size(50_000) == 10_000 and scaled.queries == 100 and scaled.logistic_queries == 25
    assert scaled.seed == 5
    assert quick.size(50_000) == 5_000
    with pytest.raises(ValueError):
        benchmark.parse_only("coverage,nope")
    assert benchmark.parse_only("index,coverage") == ("coverage", "index")
    assert dataclasses.asdict(quick)["mode"] == "quick"


def test_generator_is_seeded_and_batched():
    a = data.generate_batch(7, 0, 0, 1000, 1000)
    b = data.generate_batch(7, 0, 0, 1000, 1000)
    np.testing.assert_array_equal(a["X"], b["X"])
    assert a["X"].shape == (1000, 10) and set(np.unique(a["label"])) == {0, 1}
    corr = np.corrcoef(a["X"], rowvar=False)
    assert np.max(np.abs(corr - np.eye(10))) > 0.3  # interdependent features


def test_cli_bench(run, tmp_path):
    out = tmp_path / "results"
    args = [sys.executable, "-m", "modelstore", "--dsn", run.dsn, "bench", "--quick", "--only", "storage",
            "--rows", "2000", "--queries", "2", "--out", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads((out / "storage.json").read_text())
    assert doc["mode"] == "quick" and doc["parameters"]["rows"] == 2000
    assert "Quick mode" in (out / "SUMMARY.md").read_text()
    bad = subprocess.run([sys.executable, "-m", "modelstore", "--dsn", run.dsn, "bench", "--only", "nope"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown experiment" in bad.stdout + bad.stderr


def test_scaleout_merges_the_shards_exactly_and_moves_one_row_per_shard(run):
    """Issue #19: the aggregate over 1–3 local shard clusters equals the local aggregate, and only the
    shards' aggregate rows cross the wire (speed is measured by `modelstore bench`, not asserted)."""
    r = run.docs["scaleout"]["results"]
    if r.get("skipped"):
        pytest.skip(r["skipped"])
    assert [p["shards"] for p in r["points"]] == [1, 2, 3]
    for p in r["points"]:
        assert p["rows_over_wire"] == p["shards"] and p["rows_scanned"] == r["rows"]
        assert p["exact"]["n_equal"] and p["exact"]["max_relative_error"] < 1e-9
        assert p["aggregate_in_remote_sql"] and p["wall_ms"] > 0 and len(p["per_shard_ms"]) == p["shards"]
    assert r["points"][-1]["async_foreign_scans"] == 3
    assert set(r["projection"]["rows"]) == {str(r["rows"]), "5000000"}


def test_continuous_experiment_compares_the_three_approaches(run):
    """Issue #17: online, periodical and continuous over the flights stream, cost and prequential error."""
    r = run.docs["continuous"]["results"]
    assert set(r["models"]) == {"linear", "logistic", "svm"}
    for m in r["models"].values():
        runs = m["runs"]
        assert set(runs) == {"online", "periodical", "continuous"}
        assert runs["periodical"]["retrains"] >= 1 and runs["continuous"]["proactive_steps"] >= 1
        for v in runs.values():
            assert v["cost_s"]["total"] > 0 and math.isfinite(v["final_error"]) and v["rows_scored"] > 0
            assert v["curve"][-1]["chunk"] == v["chunks"] == r["stream_chunks"]
        assert m["periodical_over_continuous_cost"] > 0
    mu = r["materialization_utilization"]["uniform"]
    assert 0 <= mu["measured"] <= 1 and 0 < mu["expected_for_schedule"] <= 1
    assert r["db_proactive"]["refreshes"] >= 1
    assert "## Continuous deployment (NYC flights 2013)" in (run.out / "SUMMARY.md").read_text()
