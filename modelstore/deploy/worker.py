"""``modelstore worker``: the process that keeps deployments current.

The continuous-deployment paper's platform (Derakhshan et al. §3.3) runs a *scheduler* beside the
serving path: it decides when the deployed model absorbs new data, so that serving never waits for
training. Here the worker is that scheduler, an ordinary long-running process:

* it LISTENs on ``modelstore_deployments``; the ``modelstore_deploy`` trigger of each deployed table
  notifies at every commit (and records the write as pending in the writer's own transaction, so a
  notification missed while no worker ran is never a change missed: the pending rows are the truth,
  the notification only a wake-up);
* on waking, and at least every ``interval`` seconds, it refreshes every deployment with pending writes
  not yet in its model, and every deployment whose window moves with the clock (``window_anchor='now'``);
  the due deployments of one table are refreshed together, in one transaction
  (:func:`modelstore.deploy.refresh.refresh_together`: one claim, their state read in one round trip, one
  COMMIT), which also scores the new rows (prequential) and records versions and drift events;
* several workers may run at once: a refresh claims the deployment's row with ``FOR NO KEY UPDATE SKIP
  LOCKED``, and a change already in the model (its transaction visible in the snapshot the last refresh
  read) never triggers another refresh — so no deployment is refreshed twice for one change;
* SIGTERM or SIGINT: the refresh in flight commits, then the worker exits 0; SIGKILL at any point: the
  open transaction is rolled back by PostgreSQL, the previous version keeps serving and the pending
  rows stay for the next worker;
* its log has one line per unit of work (a refresh, a skip, an error).
"""

from __future__ import annotations

import logging
import os
import signal
import time

import psycopg
from psycopg import sql

from modelstore.deploy.deployment import CHANNEL
from modelstore.deploy import proactive
from modelstore.deploy.refresh import load as load_spec
from modelstore.deploy.refresh import refresh, refresh_together

log = logging.getLogger("modelstore.worker")

#: deployments with committed writes not yet in their model, or whose window moves with the clock
_DUE = """
SELECT d.deployment_id, d.name, d.relid, (d.params -> 'proactive' ->> 'every_chunks')::int AS every_chunks
  FROM modelstore.deployments AS d
WHERE (EXISTS (SELECT 1 FROM modelstore.deployment_pending AS p
               WHERE p.deployment_id = d.deployment_id
                 AND (d.refreshed_snapshot IS NULL OR NOT pg_visible_in_snapshot(p.xid, d.refreshed_snapshot)))
       -- a proactive deployment's scheduler (docs/continuous.md): not before its next run
       AND (d.next_run_at IS NULL OR d.next_run_at <= clock_timestamp()))
   OR (d.window_kind = 'interval' AND d.window_anchor = 'now'
       AND (d.refreshed_at IS NULL OR d.refreshed_at < clock_timestamp() - make_interval(secs => %s)))
ORDER BY d.refreshed_at NULLS FIRST
"""


class Worker:
    """Keeps deployments fresh on ``store`` (its connection refreshes), woken through ``listen_dsn``."""

    def __init__(self, store, listen_dsn: str, *, interval: float = 5.0, poll: float = 0.25):
        self.store = store
        self.listen_dsn = listen_dsn
        self.interval = float(interval)
        self.poll = float(poll)
        self.stopping = False
        self.refreshes = 0

    def stop(self, *_args) -> None:
        self.stopping = True

    def run(self, *, max_seconds: float | None = None) -> int:
        """Serve until stopped (SIGTERM, SIGINT, :meth:`stop`) or ``max_seconds``; returns the refresh count."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        started = time.monotonic()
        with psycopg.connect(self.listen_dsn, autocommit=True) as listener:
            listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            log.info("worker %d: listening on %s", os.getpid(), CHANNEL)
            print(f"modelstore worker {os.getpid()}: listening", flush=True)
            while not self.stopping:
                self.work_once()
                if max_seconds is not None and time.monotonic() - started > max_seconds:
                    break
                deadline = time.monotonic() + self.interval
                while not self.stopping and time.monotonic() < deadline:
                    woken = any(True for _ in listener.notifies(timeout=self.poll, stop_after=1))
                    if woken:
                        # drain what else arrived: one pass over the due deployments serves them all
                        for _ in listener.notifies(timeout=0.0):
                            pass
                        break
        print(f"modelstore worker {os.getpid()}: stopped after {self.refreshes} refreshes", flush=True)
        return self.refreshes

    def work_once(self) -> int:
        """Refresh every due deployment once, a table's together; returns how many were refreshed."""
        conn = self.store.conn
        due = conn.execute(_DUE, [self.interval]).fetchall()
        tables: dict[int, list[tuple[int, str]]] = {}
        for deployment_id, name, relid, every_chunks in due:
            if every_chunks is not None and not self._chunks_pending(deployment_id, every_chunks):
                continue  # the static "every N chunks" schedule: not yet N chunks of new rows
            tables.setdefault(relid, []).append((deployment_id, name))
        done = 0
        for group in tables.values():
            if self.stopping:
                break
            if len(group) > 1:
                try:
                    outcomes = refresh_together(self.store, [deployment_id for deployment_id, _ in group])
                except psycopg.OperationalError:
                    raise
                except Exception:  # rolled back: one by one, so that one deployment's failure spares the others
                    log.exception("deployments %s: refreshing together failed", ", ".join(n for _, n in group))
                else:
                    held = {n for _, n in group} - {o.name for o in outcomes}
                    for name in sorted(held):
                        print(f"refresh {name}: skipped (another worker holds it)", flush=True)
                    done += sum(self._report(o.name, o) for o in outcomes)
                    continue
            for deployment_id, name in group:
                if self.stopping:
                    break
                try:
                    outcome = refresh(self.store, deployment_id)
                except psycopg.OperationalError:
                    raise
                except Exception as exc:  # one deployment's failure must not stop the others
                    log.exception("deployment %s: refresh failed", name)
                    print(f"refresh {name}: failed: {type(exc).__name__}: {exc}", flush=True)
                    continue
                done += self._report(name, outcome)
        return done

    def _chunks_pending(self, deployment_id: int, chunks: int) -> bool:
        """Whether a proactive deployment scheduled every ``chunks`` chunks has that many pending."""
        conn = self.store.conn
        spec = load_spec(conn, deployment_id=deployment_id)
        if spec is None:
            return False
        order_kind, filter_sql = conn.execute(
            "SELECT s.order_kind, m.filter_sql FROM modelstore.sources s JOIN modelstore.fitted_models m "
            "USING (source_id) WHERE m.model_id = %s", [spec.model_id]).fetchone()
        return proactive.chunks_pending(conn, spec, order_kind, filter_sql, chunks)

    def _report(self, name: str, outcome) -> int:
        """The log line of one unit of work; 1 if it refreshed the deployment."""
        if outcome is None:
            print(f"refresh {name}: skipped (another worker holds it)", flush=True)
            return 0
        if outcome.refreshed:
            self.refreshes += 1
            recorded = f", recorded v{outcome.version}" if outcome.version else ""
            print(f"refresh {name}: v{outcome.active_version} active{recorded}, {outcome.rows} rows, "
                  f"{outcome.seconds * 1000:.1f} ms ({outcome.detail})", flush=True)
            return 1
        print(f"refresh {name}: {outcome.detail}", flush=True)
        return 0
