"""PNG figures in the shape of the paper's (matplotlib, no display needed).

matplotlib is an optional extra (``pip install 'modelstore[bench]'``), imported on the first figure
drawn, so that neither ``import modelstore`` nor ``modelstore bench`` needs it: without it
:func:`available` is False and the runner skips the figures, saying so.

One function per experiment, ``draw(name, result, out_dir) -> [file names]``: Fig. 2 gain vs
coverage (one panel per model kind), Fig. 3 gain vs materialised model size (S1, S2), Fig. 4 time vs
coverage for M1–M4 (small and large queries), Fig. 5 the stacked time breakdown, Figs. 6–7 the
logistic accuracy differences and gain by query size, Table 1 storage, planner time vs stored models,
and the index comparison. Medians are drawn with their interquartile range.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

#: what the benchmark says when it cannot draw
MISSING = ("matplotlib is not installed: the figures (PNG) are skipped; the JSON results and SUMMARY.md are "
           "written as usual. To draw them: pip install 'modelstore[bench]'")

_LABEL = {"linear": "Linear regression", "gaussian_nb": "Gaussian Naive Bayes", "logistic": "Logistic regression"}


def available() -> bool:
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


@functools.cache
def _pyplot():
    """pyplot on the Agg backend (files only: a benchmark on a server has no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, name: str) -> str:
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(Path(out_dir) / name, dpi=110)
    plt.close(fig)
    return name


def _median_iqr(summaries: list[dict]):
    med = [s.get("median", float("nan")) for s in summaries]
    lo = [m - s.get("p25", m) for m, s in zip(med, summaries)]
    hi = [s.get("p75", m) - m for m, s in zip(med, summaries)]
    return med, [lo, hi]


def coverage(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    kinds = result["kinds"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), squeeze=False)
    for ax, (kind, sweep) in zip(axes[0], kinds.items()):
        pts = [p for p in sweep["points"] if "gain" in p]
        x = [100 * p["achieved"] for p in pts]
        med, err = _median_iqr([p["gain"] for p in pts])
        ax.errorbar(x, med, yerr=err, marker="o", capsize=3, label="median gain (IQR)")
        ax.plot(x, [p["gain"]["ratio_of_means"] for p in pts], "s--", alpha=0.7, label="ratio of mean times")
        vs_sql = [p for p in pts if p.get("gain_vs_sql", {}).get("n")]
        if vs_sql:  # issue #15: T0 on the SQL aggregates, the paper's baseline (a sample of the queries)
            med, err = _median_iqr([p["gain_vs_sql"] for p in vs_sql])
            ax.errorbar([100 * p["achieved"] for p in vs_sql], med, yerr=err, marker="^", capsize=3, alpha=0.8,
                        label=f"median gain vs SQL-aggregate T0 ({vs_sql[0]['gain_vs_sql']['n']} queries)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"{_LABEL[kind]}")
        ax.set_xlabel("coverage (%)")
        ax.set_ylabel("performance gain T0/T")
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 2 — performance gain vs coverage", fontsize=10)
    return [_save(fig, out_dir, "fig2_gain_vs_coverage.png")]


def model_size(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    kinds = result["kinds"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.4 * len(kinds), 3.6), squeeze=False)
    for ax, (kind, k) in zip(axes[0], kinds.items()):
        for s, rows in result["query_sets"].items():
            pts = [p for p in k["points"] if "gain" in p["sets"][s]]
            med, err = _median_iqr([p["sets"][s]["gain"] for p in pts])
            ax.errorbar([p["model_rows"] for p in pts], med, yerr=err, marker="o", capsize=3, label=f"S: {rows:,} rows")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(f"{_LABEL[kind]}, {result['coverage']:.0%} coverage")
        ax.set_xlabel("materialised model size (rows)")
        ax.set_ylabel("performance gain T0/T")
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 3 — gain vs materialised model size", fontsize=10)
    return [_save(fig, out_dir, "fig3_gain_vs_model_size.png")]


def distributions(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, (set_name, title) in zip(axes, (("small", "small queries"), ("large", "large queries"))):
        t0 = None
        for name, d in result["distributions"].items():
            pts = d["points"]
            ax.plot([100 * p["achieved"] for p in pts], [p["sets"][set_name]["ms"]["median"] for p in pts], "o-",
                    label=f"{name} U{tuple(d['model_rows'])}")
            t0 = t0 or pts[0]["sets"][set_name].get("t0_ms")
        if t0:
            ax.axhline(t0["median"], color="grey", ls="--", lw=0.9, label="from scratch")
        rows = result["query_sets"][set_name]
        ax.set_title(f"{title} U({rows[0]:,}, {rows[1]:,})")
        ax.set_xlabel("coverage (%)")
        ax.set_ylabel("median time (ms)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 4 — Gaussian NB time for materialised size distributions M1–M4", fontsize=10)
    return [_save(fig, out_dir, "fig4_time_vs_size_distribution.png")]


_PARTS = (("optimizer_ms", "optimizer"), ("io_stored_ms", "I/O: stored statistics"),
          ("io_base_ms", "I/O: base rows"), ("rest_ms", "combination & rest"))


def breakdown(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    kinds = result["kinds"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 3.6), squeeze=False)
    for ax, (kind, points) in zip(axes[0], kinds.items()):
        labels = [f"{100 * p['coverage']:.0f}" for p in points]
        bottom = [0.0] * len(points)
        for key, label in _PARTS:
            vals = [p["mean_ms"][key] or 0.0 for p in points]
            ax.bar(labels, vals, bottom=bottom, label=label)
            bottom = [b + v for b, v in zip(bottom, vals)]
        ax.set_title(_LABEL[kind])
        ax.set_xlabel("coverage (%)")
        ax.set_ylabel("mean time per query (ms)")
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 5 — distribution of time across optimizer, I/O and combination", fontsize=10)
    return [_save(fig, out_dir, "fig5_time_breakdown.png")]


def accuracy(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    sizes = result["chunk_sizes"]
    fig, axes = plt.subplots(len(sizes), 4, figsize=(14, 3.2 * len(sizes)), squeeze=False)
    panels = (("mean_diff_pt", "average diff. in accuracy (pt)"),
              ("mean_positive_diff_pt", "average of positive diff. (pt)"),
              ("max_diff_pt", "maximum diff. in accuracy (pt)"), ("gain", "performance gain"))
    for row, (paper_l, c) in zip(axes, sizes.items()):
        labels = [f"{b['rows'][0] / 1000:.1f}–{b['rows'][1] / 1000:.1f}K" for b in c["bins"]]
        x = list(range(len(labels)))  # positions, not labels: two bins may print alike
        for ax, (key, title) in zip(row, panels):
            vals = [b[key]["median"] if key == "gain" else b[key] for b in c["bins"]]
            ax.bar(x, vals, color="tab:green" if key == "gain" else "tab:blue")
            ax.set_xticks(x, labels)
            ax.axhline(0, color="grey", lw=0.8)
            ax.set_title(f"{title}\nl = {c['chunk_rows']:,}", fontsize=9)
            ax.set_xlabel("query size (rows)")
            ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    fig.suptitle("Figs. 6–7 — logistic regression accuracy and gain at "
                 f"{result['coverage']:.0%} coverage (A0 − A, percentage points)", fontsize=10)
    return [_save(fig, out_dir, "fig6_7_logistic_accuracy.png")]


def storage(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = [f"{100 * r['achieved']:.0f}%" for r in rows]
    ax.bar(x, [r["statistics_bytes"] / 2**20 for r in rows], label="stored statistics")
    ax.bar(x, [r["named_model_bytes"] / 2**20 for r in rows], bottom=[r["statistics_bytes"] / 2**20 for r in rows],
           label="named-model rows", alpha=0.6)
    for i, r in enumerate(rows):
        ax.annotate(f"{r['percent_of_base']:.2f}%", (i, r["statistics_bytes"] / 2**20), ha="center", va="bottom",
                    fontsize=7)
    ax.set_xlabel("coverage")
    ax.set_ylabel("MB")
    ax.set_title(f"Table 1 — storage of {result['model_rows']:,}-row models\n(base table "
                 f"{result['base_table_bytes'] / 2**20:.0f} MB; labels: % of it)", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "table1_storage.png")]


def planner(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    pts = result["points"]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    med, err = _median_iqr([p["planning_ms"] for p in pts])
    ax.errorbar([p["stored_models"] for p in pts], med, yerr=err, marker="o", capsize=3, label="planning (median, IQR)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("stored models in the catalog")
    ax.set_ylabel("planning time (ms)")
    cap = result.get("max_relevant")
    ax.set_title("Planner time (every relevant model)" if cap is None else
                 f"Planner time (relevant set capped at {cap:,})", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "planner_time.png")]


def index(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    if not result.get("available"):
        return []
    kinds = {k: v for k, v in result["kinds"].items() if v.get("available")}
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 3.6), squeeze=False)
    for ax, (kind, k) in zip(axes[0], kinds.items()):
        names = ["normal", "large"]
        without = [k["without_index"][n].get("gain", {}).get("median", 0) for n in names]
        with_ = [k["with_index"][n].get("gain", {}).get("median", 0) for n in names]
        vs_sql = [k["with_index"][n].get("gain_vs_sql", {}).get("median", 0) for n in names]
        xs = range(len(names))
        width = 0.27 if any(vs_sql) else 0.4
        ax.bar([x - width for x in xs] if any(vs_sql) else [x - 0.2 for x in xs], without, width=width,
               label="without index")
        ax.bar(list(xs) if any(vs_sql) else [x + 0.2 for x in xs], with_, width=width, label="with index")
        if any(vs_sql):  # issue #15: the same requests against T0 on the SQL aggregates (a sample)
            ax.bar([x + width for x in xs], vs_sql, width=width, label="with index, vs SQL-aggregate T0")
        ax.set_xticks(list(xs), ["N(50K) queries", f"{result['large_query_rows']:,}-row queries"])
        ax.set_yscale("log")
        ax.set_ylabel("median gain T0/T")
        ax.set_title(_LABEL[kind])
        ax.legend(fontsize=7)
    fig.suptitle("With and without the statistics index", fontsize=10)
    return [_save(fig, out_dir, "index_gain.png")]


def capture(result: dict, out_dir: Path) -> list[str]:
    plt = _pyplot()
    ops = list(result["operations"])
    plain = [result["operations"][o]["plain_rows_per_s"]["median"] for o in ops]
    captured = [result["operations"][o]["captured_rows_per_s"]["median"] for o in ops]
    xs = range(len(ops))
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    ax.bar([x - 0.2 for x in xs], plain, width=0.4, label="without capture")
    ax.bar([x + 0.2 for x in xs], captured, width=0.4, label="with capture")
    ax.set_xticks(list(xs), ops, rotation=20, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("rows/s (median)")
    ax.set_title(f"Change capture on a {result['rows']:,}-row table: statements of {result['batch']:,} rows and of one",
                 fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "capture_overhead.png")]


def deployments(result: dict, out_dir: Path) -> list[str]:
    """Refresh of a deployed model after a commit vs refitting its window from scratch, per kind."""
    import matplotlib.pyplot as plt

    kinds = list(result["refresh_ms"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    xs = range(len(kinds))
    ax.bar([x - 0.2 for x in xs], [result["refresh_ms"][k]["median"] for k in kinds], width=0.4, label="refresh")
    ax.bar([x + 0.2 for x in xs], [result["refit_window_ms"][k]["median"] for k in kinds], width=0.4,
           label="refit of the window (one scan)")
    ax.set_xticks(list(xs), kinds)
    ax.set_yscale("log")
    ax.set_ylabel("ms (median)")
    ax.set_title(f"Deployments: {result['window_rows']:,}-row window, commits of {result['batch']:,} rows", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "deployments_refresh.png")]


def serving(result: dict, out_dir: Path) -> list[str]:
    """HTTP predict p50 and p99 against the request rate, modelstore serve and the pickled baseline."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for service, points in result["services"].items():
        pts = [(p["rate"], p["p50_ms"], p["p99_ms"]) for p in points if p["p99_ms"] is not None]
        if pts:
            rates, p50, p99 = zip(*pts)
            line = ax.plot(rates, p99, marker="o", label=f"{service} p99")[0]
            ax.plot(rates, p50, "--", marker=".", color=line.get_color(), label=f"{service} p50")
    ax.axhline(10.0, color="grey", linewidth=0.8, linestyle=":", label="p99 target, 10 ms")
    ax.set_xlabel("requests/s (single-row predict, open loop)")
    ax.set_ylabel("latency, ms")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "serving_latency.png")]


def engine(result: dict, out_dir: Path) -> list[str]:
    """The statistics engines: ms per range size, serial and 2 workers, log-log."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for workers, style in ((0, "-"), (2, "--")):
        rows = [r for r in result["results"] if r["workers"] == workers]
        for name in ("count_last_column", "c_aggregate", "sql_aggregates"):
            pts = [(r["rows"], r["ms"][name]) for r in rows if name in r["ms"]]
            if pts:
                ax.plot(*zip(*pts), style, marker="o", label=f"{name}, {workers} workers")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("rows in the range (10 features + target)")
    ax.set_ylabel("ms (median)")
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "engine.png")]


def predict(result: dict, out_dir: Path) -> list[str]:
    """Batch ML.PREDICT rows/s per model beside the table's read rate and one modelstore.predict per row."""
    import matplotlib.pyplot as plt

    labels = [f"ML.PREDICT {k}" for k in result["batch_ml_predict"]] + ["modelstore.predict per row", "read (count)"]
    rates = [v["rows_per_s"] for v in result["batch_ml_predict"].values()] + [
        result["predict_per_row_rows_per_s"], result["read_rows_per_s"]]
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    ax.barh(range(len(labels)), rates)
    ax.axvline(1e6, color="k", linestyle="--", linewidth=0.8, label="target: 1M rows/s")
    ax.set_yticks(list(range(len(labels))), labels, fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("rows/s (median of 3)")
    ax.set_title(f"Predicting in the database: {result['rows']:,} rows × {result['features']} features", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "predict_batch.png")]


def scaleout(result: dict, out_dir: Path) -> list[str]:
    """Wall time of the statistics aggregate over 1–3 shards, with the slowest shard's own time."""
    if not result.get("points"):
        return []
    import matplotlib.pyplot as plt

    pts = result["points"]
    xs = [p["shards"] for p in pts]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(xs, [p["wall_ms"] for p in pts], marker="o", label="through the coordinator (wall)")
    ax.plot(xs, [p["slowest_shard_ms"] for p in pts], marker="s", label="slowest shard on its own")
    ax.axhline(result["local_ms"], color="grey", linestyle="--", label="one local table")
    ax.set_xticks(xs)
    ax.set_xlabel("shards (separate PostgreSQL clusters on one machine)")
    ax.set_ylabel("ms (median)")
    ax.set_title(f"Statistics aggregate over {result['rows']:,} rows sharded with postgres_fdw", fontsize=9)
    ax.legend(fontsize=7)
    return [_save(fig, out_dir, "scaleout.png")]


def continuous(result: dict, out_dir: Path) -> list[str]:
    """The paper's Figure 4: cumulative prequential error and cumulative cost over the stream, per model."""
    import matplotlib.pyplot as plt

    models = list(result["models"])
    fig, axes = plt.subplots(2, len(models), figsize=(4 * len(models), 6), squeeze=False)
    for col, label in enumerate(models):
        runs = result["models"][label]["runs"]
        for approach, run in runs.items():
            xs = [p["chunk"] for p in run["curve"]]
            axes[0][col].plot(xs, [p["error"] for p in run["curve"]], label=approach)
            axes[1][col].plot(xs, [p["cost_s"] for p in run["curve"]], label=approach)
        axes[0][col].set_title(f"{label}: {next(iter(runs.values()))['metric']}", fontsize=9)
        axes[1][col].set_xlabel("hourly chunks streamed")
        axes[0][col].set_ylabel("cumulative prequential error")
        axes[1][col].set_ylabel("cumulative cost (s)")
        axes[0][col].legend(fontsize=7)
    return [_save(fig, out_dir, "continuous.png")]


DRAW = {"continuous": continuous, "scaleout": scaleout, "predict": predict, "serving": serving, "deployments": deployments, "engine": engine, "coverage": coverage, "model_size": model_size, "distributions": distributions, "breakdown": breakdown,
        "accuracy": accuracy, "storage": storage, "planner": planner, "index": index, "capture": capture}


def draw(name: str, result: dict, out_dir: Path) -> list[str]:
    """The experiment's PNG files written to ``out_dir`` (their names)."""
    return DRAW[name](result, Path(out_dir))
