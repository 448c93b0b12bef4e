"""Predictions served, counted: the measured prediction rate and latency of the dynamic scheduler.

The continuous-deployment paper's dynamic scheduler (Derakhshan et al. §4.1, formula (6)) sets the time
to the next proactive training to T′ = S·T·p_r·p_l, with p_r the rate of prediction queries and p_l
their latency: training is spread so that serving keeps up. Both are measured here, on the predictions
the doors actually serve: ``store.predict`` / ``Deployment.predict`` (Python) and ``modelstore serve``'s
``:predict`` (HTTP) add the rows they scored and the seconds they took to a per-process tally, which is
added to ``modelstore.served_predictions`` at most once every :data:`FLUSH_SECONDS` — one statement a
second at most, none on a predict in between, so the counter costs the serving path nothing it would
notice. A proactive refresh reads the model's counts and keeps them on the deployment; the difference
to the counts of the previous run gives p_r (predictions per second of wall time between the two runs)
and p_l (seconds per prediction). The SQL doors (``modelstore.predict``, ``ML.PREDICT``) run inside
read-only functions and queries and are not counted.
"""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg import pq

#: the longest a tally waits before it is added to the catalog (seconds)
FLUSH_SECONDS = 1.0

_UPSERT = """
INSERT INTO modelstore.served_predictions AS s (model_name, predictions, seconds)
SELECT * FROM unnest(%s::text[], %s::bigint[], %s::float8[])
ON CONFLICT (model_name) DO UPDATE
   SET predictions = s.predictions + excluded.predictions, seconds = s.seconds + excluded.seconds,
       updated_at = clock_timestamp()
"""


class ServedCounter:
    """The predictions this process served, per model name, not yet added to the catalog."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS):
        self.flush_seconds = float(flush_seconds)
        self._pending: dict[str, list] = {}
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()
        self.disabled = False  # set when the role may not write the counter (it then counts nothing)

    def record(self, conn, name: str, rows: int, seconds: float) -> None:
        """Add ``rows`` predictions that took ``seconds``; flush when the tally is old enough and the
        connection is idle outside a transaction (a predict inside the caller's transaction never writes)."""
        if self.disabled or rows <= 0:
            return
        with self._lock:
            tally = self._pending.setdefault(name, [0, 0.0])
            tally[0] += int(rows)
            tally[1] += float(seconds)
            due = time.monotonic() - self._last_flush >= self.flush_seconds
        if due and conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE:
            self.flush(conn)

    def flush(self, conn) -> int:
        """Add the tally to ``modelstore.served_predictions`` in one statement; returns the rows added."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._last_flush = time.monotonic()
        if not pending:
            return 0
        names = list(pending)
        try:
            conn.execute(_UPSERT, [names, [pending[n][0] for n in names], [pending[n][1] for n in names]])
        except psycopg.errors.InsufficientPrivilege:
            self.disabled = True  # a role without modelstore.grant_usage: serving goes on, uncounted
            return 0
        return sum(v[0] for v in pending.values())


#: this process's counter (the doors record into it)
COUNTER = ServedCounter()


def record(conn, name: str, rows: int, seconds: float) -> None:
    COUNTER.record(conn, name, rows, seconds)


def read(conn, name: str) -> tuple[int, float]:
    """(predictions, seconds) served by the named model so far, as the catalog has them."""
    row = conn.execute("SELECT predictions, seconds FROM modelstore.served_predictions WHERE model_name = %s",
                       [name]).fetchone()
    return (0, 0.0) if row is None else (int(row[0]), float(row[1]))


def measured_rate_and_latency(previous: tuple[int, float] | None, current: tuple[int, float],
                              elapsed: float) -> tuple[float, float]:
    """(p_r, p_l) between two readings ``elapsed`` seconds apart: predictions per second, seconds per
    prediction. No previous reading, or nothing served in between: (0, 0) — no queries to keep up with."""
    if previous is None or elapsed <= 0:
        return 0.0, 0.0
    served = current[0] - previous[0]
    if served <= 0:
        return 0.0, 0.0
    return served / elapsed, max(0.0, current[1] - previous[1]) / served


__all__ = ["COUNTER", "FLUSH_SECONDS", "ServedCounter", "measured_rate_and_latency", "read", "record"]
