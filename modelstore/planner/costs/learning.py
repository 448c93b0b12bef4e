"""Learning the cost model from executed plans (issue #20): a robust correction per table and scan path.

Calibration (:mod:`.calibration`) measures the figures on a TEMP table of synthetic rows; a real table
differs — parallel workers, pages outside ``shared_buffers``, wider rows, other load — and a request
pays for more than its plan's steps (describing it, solving the model, writing the catalog). Every
executed plan records its estimate and its actual time; this module closes the loop.

**What is observed.** The planner splits a plan's estimate into three parts
(:func:`modelstore.planner.est_parts`): ``agg`` (aggregating or training on the scanned rows),
``read`` (reading them: the whole table and a test per range without an index, the matched rows
through it with one) and ``fixed`` (round trips, fetches, merges). An observation is those parts in
the *calibrated* figures and the request's actual execution time (what ``ExecutedPlan`` records and
the benchmark's estimated/actual ratio compares).

**What is learned.** Per (table, statistics engine, scan path — ``index``, ``seq`` or ``train``)
four numbers: factors ``a``, ``b``, ``c`` on the three parts and an ``overhead`` in ms, so that

    actual ≈ a·agg + b·read + c·fixed + overhead.

The fit (:func:`fit`) is robust and relative: residuals are ``log(estimate) − log(actual)`` (what
"within 2×" measures), under the ``soft_l1`` loss (scipy's ``least_squares`` objective), so that a plan slowed by a burst of load
pulls the fit linearly, not quadratically; an observation weighs less as it ages (half after
:data:`HALF_LIFE` plans), so the correction follows a drift of the machine's load. The factors are fitted as logarithms with a weak prior
toward 1 (a part the observations cannot tell apart from the others — a constant table read, say —
keeps its calibrated figure); the overhead is free (≥ 0). A correction is used once it rests on
:data:`MIN_OBSERVATIONS` plans; until then a table borrows the pooled correction of every table with
the same engine and path.

**Bounded, and off the hot path.** Each key keeps only its last :data:`WINDOW` observations (older
ones are dropped); recording one is a Python ``deque`` append. Every :data:`REFRESH_EVERY`
observations of a key (every eighth of its window once that is longer: 25 plans for a full window)
the fit is redone, from the previous fit (~0.3–1 ms of numpy on the loaded 2-core machine: :func:`fit`),
two keys (the table's and the pooled one) every 25 plans: ~50 µs a request on average. The correction and its window are written to ``modelstore.cost_corrections`` in
one statement, so another session starts from them (one read when it loads the cost model): when a
key's correction first becomes usable, then at most once per :data:`SAVE_INTERVAL_S` seconds, and by
:meth:`CostLearner.flush` (a write is a round trip: under load, one per few refits would cost a
request more than everything else here). Corrections are kept per calibration: a new calibration
starts learning afresh.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from modelstore.planner.costs.model import CostModel

log = logging.getLogger(__name__)

#: observations kept per (table, engine, path): the fit is over the last WINDOW executed plans
WINDOW = 200
#: the fit is redone after this many new observations of a key (or a REFRESH_FRACTION of its window,
#: when that is more: a full window of 200 plans is refitted every 25)
REFRESH_EVERY = 8
REFRESH_FRACTION = 8
#: a key's refitted correction is written to the catalog at most once per this many seconds (and always
#: when it first becomes usable): under load a write per few plans would be a round trip per few requests
SAVE_INTERVAL_S = 10.0
#: an observation this many plans old weighs half as much as the newest (the machine's load drifts)
HALF_LIFE = 50
#: a correction is used once it rests on this many observations
MIN_OBSERVATIONS = 4
#: the scan paths a correction is kept per (modelstore.planner.cost_path)
PATHS = ("index", "seq", "train")
#: the key of the correction pooled over every table
POOLED = ""
#: the weight of the prior pulling each log-factor toward 0 (factor 1), against observations of weight 1
PRIOR_WEIGHT = 0.3
#: soft_l1's scale on log residuals: beyond a ~30% miss an observation pulls linearly
LOSS_SCALE = 0.25
#: factors stay within [1/FACTOR_BOUND, FACTOR_BOUND] of the calibrated figures
FACTOR_BOUND = 1e4
_PARTS = ("agg", "read", "fixed")


@dataclass(frozen=True)
class Correction:
    """Factors on the estimate's three parts and the request overhead (ms), fitted on ``n`` plans."""

    agg: float = 1.0
    read: float = 1.0
    fixed: float = 1.0
    overhead_ms: float = 0.0
    n: int = 0

    def apply(self, model: CostModel) -> CostModel:
        """``model`` with this correction's factors and overhead (still monotone)."""
        return model.scaled(agg=self.agg, read=self.read, fixed=self.fixed, overhead_ms=self.overhead_ms)

    def estimate(self, parts) -> np.ndarray:
        """The corrected estimate (ms) of plans whose calibrated parts are the rows of ``parts``."""
        parts = np.asarray(parts, dtype=float).reshape(-1, 3)
        return parts @ np.array([self.agg, self.read, self.fixed]) + self.overhead_ms

    def to_json(self) -> dict:
        return {"agg": self.agg, "read": self.read, "fixed": self.fixed, "overhead_ms": self.overhead_ms, "n": self.n}

    @classmethod
    def from_json(cls, data: dict) -> "Correction":
        return cls(float(data["agg"]), float(data["read"]), float(data["fixed"]), float(data["overhead_ms"]),
                   int(data["n"]))


def fit(parts, actual_ms, start: Correction | None = None) -> Correction:
    """The robust fit of ``actual ≈ a·agg + b·read + c·fixed + overhead`` on log residuals (module
    docstring). ``parts``: n × 3 calibrated estimates; ``actual_ms``: n positive times; ``start``: a
    previous fit of the same key to start from (a refit then takes a few steps).

    The objective is scipy's ``least_squares(loss='soft_l1')`` on these residuals (the prior's included),
    minimised here by iteratively reweighted Gauss–Newton steps with Marquardt damping on the four
    parameters, the bounds kept by projection (an active bound is frozen while the gradient pushes
    against it): the same minimum to ~5 digits, in ~0.2 ms for 200 plans where ``least_squares``'
    generic machinery (numerical Jacobians, a trust region) took ~10 ms on the request's path."""
    X = np.asarray(parts, dtype=float).reshape(-1, 3)
    y = np.asarray(actual_ms, dtype=float)
    ok = np.isfinite(y) & (y > 0) & np.isfinite(X).all(axis=1) & (X >= 0).all(axis=1)
    X, y = X[ok], y[ok]
    n = len(y)
    if n == 0:
        return Correction()
    log_y = np.log(y)
    tiny = 1e-6  # ms: keeps log() finite for a plan estimated at nothing
    # oldest first: recent plans weigh more, so the correction follows a drift of the machine's load
    weight = np.sqrt(0.5 ** ((n - 1 - np.arange(n)) / HALF_LIFE))
    bound = math.log(FACTOR_BOUND)
    lower = np.array([-bound, -bound, -bound, 0.0])
    upper = np.array([bound, bound, bound, np.inf])
    c2 = LOSS_SCALE ** 2

    def residuals(theta):
        factors = np.exp(theta[:3])
        estimate = X @ factors + theta[3]
        clipped = np.maximum(estimate, tiny)
        r = np.empty(n + 3)
        r[:n] = weight * (np.log(clipped) - log_y)
        r[n:] = PRIOR_WEIGHT * theta[:3]
        return r, factors, estimate > tiny, clipped

    def cost(r):  # soft_l1: ρ(r²) = 2C²(√(1 + r²/C²) − 1), halved as least_squares does
        return c2 * float(np.sum(np.sqrt(1.0 + r * r / c2) - 1.0))

    if start is None:
        theta = np.array([0.0, 0.0, 0.0, max(float(np.median(y - X.sum(axis=1))), 0.0)])
    else:
        theta = np.array([math.log(start.agg), math.log(start.read), math.log(start.fixed), start.overhead_ms])
    theta = np.clip(theta, lower, upper)
    r, factors, live, clipped = residuals(theta)
    F = cost(r)
    damping = 1e-3
    for _ in range(_MAX_STEPS):
        # the Jacobian of the plans' residuals (a plan estimated below `tiny` does not move), the
        # prior's added on the diagonal; soft_l1 as weights on the squares (IRLS)
        scale = weight * live / clipped
        J = np.empty((n, 4))
        J[:, :3] = X * factors * scale[:, None]
        J[:, 3] = scale
        w = 1.0 / np.sqrt(1.0 + r * r / c2)
        Jw = J * w[:n, None]
        H = J.T @ Jw
        g = Jw.T @ r[:n]
        H[_DIAG3] += PRIOR_WEIGHT ** 2 * w[n:]
        g[:3] += PRIOR_WEIGHT * w[n:] * r[n:]
        free = ~(((theta <= lower) & (g > 0)) | ((theta >= upper) & (g < 0)))
        Hf, gf = H[np.ix_(free, free)], g[free]
        accepted = False
        while damping < 1e10:
            step = np.zeros(4)
            try:
                step[free] = -np.linalg.solve(Hf + damping * np.diag(np.diag(Hf) + 1e-12), gf)
            except np.linalg.LinAlgError:
                damping *= 10
                continue
            new = np.clip(theta + step, lower, upper)
            r_new, factors_new, live_new, clipped_new = residuals(new)
            F_new = cost(r_new)
            if F_new <= F:
                accepted = True
                break
            damping *= 4
        if not accepted:
            break
        moved = np.max(np.abs(new - theta))
        gain = F - F_new
        theta, r, factors, live, clipped, F = new, r_new, factors_new, live_new, clipped_new, F_new
        damping = max(damping / 3, 1e-9)
        if moved < _STEP_TOL or gain <= _COST_RTOL * F:
            break
    if not np.all(np.isfinite(theta)):
        theta = np.array([0.0, 0.0, 0.0, max(float(np.median(y - X.sum(axis=1))), 0.0)])
    return Correction(*(float(v) for v in np.exp(theta[:3])), float(theta[3]), n=n)


#: the fit's steps at most, and when it stops: a step that moves the log-factors (and the overhead, in ms)
#: by less than _STEP_TOL, or gains less than _COST_RTOL of the objective (the planner needs 3 digits)
_MAX_STEPS = 50
_STEP_TOL = 1e-4
_COST_RTOL = 1e-7
_DIAG3 = (np.arange(3), np.arange(3))


class CostLearner:
    """The observations and corrections of one store (one session); see the module docstring.

    ``observe`` records an executed plan (in memory) and refits its keys every ``refresh_every``
    observations; ``model_for`` gives the planner the corrected cost model of a table.
    """

    def __init__(self, *, window: int = WINDOW, refresh_every: int = REFRESH_EVERY,
                 min_observations: int = MIN_OBSERVATIONS):
        if window < 1 or refresh_every < 1 or min_observations < 1:
            raise ValueError("window, refresh_every and min_observations must be positive")
        self.window, self.refresh_every, self.min_observations = window, refresh_every, min_observations
        self._observations: dict[tuple, collections.deque] = {}
        self._corrections: dict[tuple, Correction] = {}
        self._pending: dict[tuple, int] = {}
        self._saved_at: dict[tuple, float] = {}  # when each key was last written (time.monotonic())
        self._unsaved: set[tuple] = set()  # keys refitted since their last write
        self._base: str | None = None  # the calibration the observations are relative to
        self._loaded: set[str] = set()

    # -- the planner's side --------------------------------------------------------------------------

    def correction(self, table: str, engine: str, path: str) -> Correction | None:
        """The correction in force for ``table`` (its own, else the pooled one), or None."""
        for key in ((table, engine, path), (POOLED, engine, path)):
            c = self._corrections.get(key)
            if c is not None and c.n >= self.min_observations:
                return c
        return None

    def model_for(self, base: CostModel, table: str, path: str) -> CostModel:
        """``base`` as corrected for ``table`` and ``path`` (``base`` itself until there is a correction)."""
        self._rebase(base)
        c = self.correction(table, base.engine, path)
        return base if c is None else c.apply(base)

    # -- the executor's side -------------------------------------------------------------------------

    def observe(self, conn: psycopg.Connection | None, base: CostModel, table: str, plan_graph: dict,
                actual_ms: float) -> bool:
        """Record an executed plan of ``table`` (its ``Plan.graph``, with the planner's ``est_parts`` and
        ``cost_path``) that took ``actual_ms``; refit (and store, when ``conn`` is given) the keys that
        are due. Returns whether a refit ran. Plans without parts (an old record) are ignored."""
        parts, path = plan_graph.get("est_parts"), plan_graph.get("cost_path")
        if not parts or path not in PATHS or not (math.isfinite(actual_ms) and actual_ms > 0):
            return False
        self._rebase(base)
        # the parts were estimated with the correction in force: back to the calibrated figures
        c = self.correction(table, base.engine, path) or Correction()
        row = (parts["agg"] / c.agg, parts["read"] / c.read, parts["fixed"] / c.fixed, float(actual_ms))
        refit = False
        to_save = []
        for key in ((table, base.engine, path), (POOLED, base.engine, path)):
            window = self._observations.setdefault(key, collections.deque(maxlen=self.window))
            window.append(row)
            self._pending[key] = self._pending.get(key, 0) + 1
            due = self._pending[key] >= max(self.refresh_every, len(window) // REFRESH_FRACTION) or (
                key not in self._corrections and len(window) >= self.min_observations)
            if due:
                if self._refit(conn, key):
                    to_save.append(key)
                refit = True
        if to_save:  # the table's key and the pooled one in one transaction (one round trip where it can)
            self._save(conn, to_save, time.monotonic())
        return refit

    def observations(self, table: str, engine: str, path: str) -> list[tuple]:
        """The observations kept for a key (calibrated agg, read, fixed, actual ms), oldest first."""
        return list(self._observations.get((table, engine, path), ()))

    def _refit(self, conn, key: tuple) -> bool:
        """Refit ``key``; returns whether its correction is due to be written now."""
        window = np.array(self._observations[key], dtype=float)
        previous = self._corrections.get(key)
        self._corrections[key] = fit(window[:, :3], window[:, 3], start=previous)
        self._pending[key] = 0
        self._unsaved.add(key)
        # the first usable correction is written at once (another session starts from it); later refits at
        # most every SAVE_INTERVAL_S, the last ones by flush()
        first = previous is None or previous.n < self.min_observations
        return conn is not None and (
            first or time.monotonic() - self._saved_at.get(key, -math.inf) >= SAVE_INTERVAL_S)

    def _save(self, conn, keys: list[tuple], now: float) -> None:
        rows = [(key, self._corrections[key], np.array(self._observations[key], dtype=float)) for key in keys]
        if save_many(conn, self._base or "", rows):
            self._unsaved.difference_update(keys)
        for key in keys:
            self._saved_at[key] = now  # a role that may not write is not asked again at once either

    def flush(self, conn: psycopg.Connection) -> int:
        """Write the corrections refitted since their last write (a store calls it when it closes);
        returns how many keys were written."""
        keys = [key for key in sorted(self._unsaved) if key in self._corrections and key in self._observations]
        if not keys:
            return 0
        self._save(conn, keys, time.monotonic())
        return sum(1 for key in keys if key not in self._unsaved)

    def _rebase(self, base: CostModel) -> None:
        stamp = calibration_stamp(base)
        if stamp != self._base:  # another calibration: what was learned against the old one is void
            self._observations.clear()
            self._corrections.clear()
            self._pending.clear()
            self._unsaved.clear()
            self._saved_at.clear()
            self._base = stamp

    # -- the catalog's side --------------------------------------------------------------------------

    def load(self, conn: psycopg.Connection, base: CostModel) -> int:
        """Start from the corrections stored for ``base``'s calibration and engine (once per calibration
        per store); returns how many keys were loaded (0 when the catalog has no such table)."""
        self._rebase(base)
        stamp = calibration_stamp(base)
        if stamp in self._loaded:
            return 0
        self._loaded.add(stamp)
        try:
            with conn.transaction():
                rows = conn.cursor(row_factory=tuple_row).execute(
                    "SELECT table_name, path, correction, observations FROM modelstore.cost_corrections "
                    "WHERE base_model = %s AND engine = %s", [stamp, base.engine]).fetchall()
        except psycopg.Error as exc:  # no table yet, a role that may not read it: learn from scratch
            log.info("stored cost corrections not loaded: %s", exc)
            return 0
        for table, path, correction, observations in rows:
            key = (table, base.engine, path)
            self._corrections[key] = Correction.from_json(correction)
            self._observations[key] = collections.deque((tuple(o) for o in observations[-self.window:]),
                                                        maxlen=self.window)
        return len(rows)


def table_key(source) -> str:
    """The key a table's correction is kept under: ``schema.table`` as named in the catalog."""
    return f"{source.schema}.{source.table}"


def calibration_stamp(model: CostModel) -> str:
    """What names a calibration: when it was measured, on which server and engine."""
    return f"{model.measured_at.isoformat()}|{model.server_version}|{model.engine}|{model.method}"


_UPSERT = ("INSERT INTO modelstore.cost_corrections (table_name, engine, path, base_model, correction, "
           "observations, updated_at) VALUES (%s, %s, %s, %s, %s, %s, now()) "
           "ON CONFLICT (table_name, engine, path) DO UPDATE SET base_model = EXCLUDED.base_model, "
           "correction = EXCLUDED.correction, observations = EXCLUDED.observations, updated_at = now()")


def save_many(conn, base: str, rows: list[tuple]) -> bool:
    """Upsert corrections and their (bounded) windows in ``modelstore.cost_corrections`` — (key, correction,
    window) each — all or none; a role that may not write the catalog (or a catalog without the table) keeps
    them in memory only. On a psycopg connection the
    transaction (or, inside the caller's, a savepoint), the upserts and its end are one pipeline: one round
    trip, where ``conn.transaction()`` would wait after BEGIN and before COMMIT too — a request that refits its
    table's key and the pooled one pays one round trip for both, not six (issue #20)."""
    values = [[table, engine, path, base, Jsonb(correction.to_json()),
               Jsonb([[float(v) for v in row] for row in np.asarray(window, dtype=float)])]
              for (table, engine, path), correction, window in rows]
    if not (isinstance(conn, psycopg.Connection) and psycopg.Pipeline.is_supported()):  # PL/Python's SPI
        try:
            with conn.transaction():
                for v in values:
                    conn.execute(_UPSERT, v)
        except psycopg.Error as exc:  # the request it learned from has succeeded: never fail it here
            log.info("cost correction learned but not stored: %s", exc)
            return False
        return True
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # (outside autocommit psycopg begins the transaction itself, in a round trip of its own)
    begin, end, undo = ((("BEGIN",) if conn.autocommit else (), "COMMIT", ("ROLLBACK",)) if idle else
                        (("SAVEPOINT modelstore_costs",), "RELEASE SAVEPOINT modelstore_costs",
                         ("ROLLBACK TO SAVEPOINT modelstore_costs", "RELEASE SAVEPOINT modelstore_costs")))
    try:
        with conn.pipeline():
            for statement in begin:
                conn.execute(statement)
            for v in values:
                conn.execute(_UPSERT, v)
            conn.execute(end)
    except psycopg.Error as exc:  # the request it learned from has succeeded: never fail it here
        log.info("cost correction learned but not stored: %s", exc)
        if not conn.closed:
            for statement in undo:
                conn.execute(statement)
        return False
    return True


__all__ = ["FACTOR_BOUND", "HALF_LIFE", "MIN_OBSERVATIONS", "PATHS", "POOLED", "REFRESH_EVERY", "REFRESH_FRACTION",
           "SAVE_INTERVAL_S", "WINDOW", "CostLearner",
           "Correction", "calibration_stamp", "fit", "save_many", "table_key"]
