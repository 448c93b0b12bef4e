"""Deployments: named models that follow their table (DESIGN.md §4 "Living models", docs/deployments.md).

``store.deploy(name, kind, table=…, window=…)`` fits the exact model of the window, records it as
version 1, and installs one statement-level trigger on the table (``modelstore_deploy``) that marks
every committed write as pending for the table's deployments and wakes the workers (``pg_notify``).
The deployment serves through the ordinary model row of its name, so ``modelstore.predict``,
``ML.PREDICT`` and ``store.model(name)`` score the active version; ``modelstore worker`` (or
:meth:`Deployment.refresh`) keeps it current (:mod:`.refresh`). Written against a store it is handed,
as :mod:`modelstore.language.runner` is: the :class:`~modelstore.store.Store` exposes thin methods.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from modelstore.deploy import monitor, versions
from modelstore.deploy import proactive as proactive_training
from modelstore.deploy.refresh import SELECT_DEPLOYMENT, Outcome, Spec, load, refresh
from modelstore.deploy.windows import check_window, parse_window, resolve
from modelstore.errors import (
    DeploymentError, InputError, ModelNotFoundError, NotDeployedError, SourceKindError, VersionNotFoundError,
)
from modelstore.families import family
from modelstore.models.grouped import check_group_l2
from modelstore.request.descriptor import bound_text
from modelstore.request.source import resolve_table

TRIGGER = "modelstore_deploy"
GROUP_TRIGGER = "modelstore_groups"
CHANNEL = "modelstore_deployments"
_RELKINDS = {"v": "a view", "m": "a materialized view", "p": "a partitioned table", "f": "a foreign table"}


class Deployment:
    """A handle on one deployment: ``d.model``, ``d.version``, ``d.versions()``, ``d.predict(X)``."""

    def __init__(self, store, name: str):
        self.store = store
        self.name = name

    def _spec(self) -> Spec:
        spec = load(self.store.conn, name=self.name)
        if spec is None:
            raise NotDeployedError(f"no deployment named {self.name!r}")
        return spec

    @property
    def model(self):
        """The active model (what modelstore.predict serves), rebuilt from the catalog."""
        return self.store.model(self.name)

    @property
    def version(self) -> int | None:
        """The active version's number."""
        return self._spec().active_version

    @property
    def info(self) -> dict:
        spec = self._spec()
        return {k: getattr(spec, k) for k in spec.__dataclass_fields__}

    def versions(self) -> pd.DataFrame:
        """One row per version: version, created_at, rows, lo, hi, reason, active, pinned, metrics."""
        spec = self._spec()
        cur = self.store.conn.execute(
            """
            SELECT v.version, v.created_at, v.rows_used AS rows, v.rows_skipped, v.lo, v.hi, v.reason,
                   v.version = %s AS active, v.version IS NOT DISTINCT FROM %s AS pinned, v.stats_id,
                   (SELECT sum(m.rows) FROM modelstore.deployment_metrics m
                     WHERE m.deployment_id = v.deployment_id AND m.version = v.version)::bigint AS scored_rows,
                   (SELECT sum(m.loss_sum) / nullif(sum(m.rows), 0) FROM modelstore.deployment_metrics m
                     WHERE m.deployment_id = v.deployment_id AND m.version = v.version) AS prequential_loss,
                   v.params, v.metrics
            FROM modelstore.deployment_versions v WHERE v.deployment_id = %s ORDER BY v.version
            """,
            [spec.active_version, spec.pinned_version, spec.deployment_id])
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])

    def predict(self, X, groups=None):
        """Predictions of the active version; ``groups`` (one value per row) scores each row with its
        group's model in a grouped deployment (group_by), the global model for an unseen group. The model
        comes from the store's model cache (``store.predict``), read again only after it changed."""
        # the kind from the cached model, not from the catalog: a predict makes no round trip when nothing changed
        if family(self.store.cached_model(self.name).kind).takes_text:
            if groups is not None:  # its pipeline reads a DataFrame or rows with text in them, as they are
                raise InputError("groups= needs a per-group deployment (group_by) of an exact family")
            return self.store.predict(self.name, X)
        return self.store.predict(self.name, np.asarray(X, dtype=float), groups=groups)

    def observe(self, X, y, *, groups=None, refresh: bool = True):
        """Write labelled rows to the deployment's table and absorb them (:func:`modelstore.deploy.observe.observe`)."""
        from modelstore.deploy.observe import observe

        return observe(self.store, self.name, X, y, groups=groups, refresh_now=refresh)

    def refresh(self, *, force: bool = False) -> Outcome | None:
        """Bring the deployment up to date now (what the worker does on a change); None if another
        process is refreshing it at this moment."""
        outcome = refresh(self.store, name=self.name, force=force)  # claimed by name: no round trip before
        if outcome is None:
            self._spec()  # NotDeployedError when it is gone; else another process holds it
        return outcome

    def pending(self) -> int:
        """Committed writes not yet in the model (0 when the model is current)."""
        spec = self._spec()
        return self.store.conn.execute(
            "SELECT count(*) FROM modelstore.deployment_pending WHERE deployment_id = %s AND "
            "(%s::pg_snapshot IS NULL OR NOT pg_visible_in_snapshot(xid, %s::pg_snapshot))",
            [spec.deployment_id, spec.refreshed_snapshot, spec.refreshed_snapshot]).fetchone()[0]

    def rollback(self, version: int | None) -> int | None:
        return rollback(self.store, self.name, version)

    def unpin(self) -> int | None:
        return rollback(self.store, self.name, None)

    def metrics(self, *, since=None, until=None, bucket: str | None = None) -> pd.DataFrame:
        """Prequential figures (:func:`modelstore.deploy.monitor.metrics_frame`)."""
        return monitor.metrics_frame(self.store.conn, self._spec().deployment_id, since=since, until=until,
                                     bucket=bucket)

    def events(self) -> pd.DataFrame:
        cur = self.store.conn.execute(
            "SELECT event_id, kind, version, detail, started_at, finished_at, pid FROM modelstore.deployment_events "
            "WHERE deployment_id = %s ORDER BY event_id", [self._spec().deployment_id])
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])

    def __repr__(self) -> str:
        return f"<Deployment {self.name!r}>"


def deploy(store, name: str, kind: str, *, table: str, target: str, features, order_by: str, window=None,
           where: str | None = None, l2: float | None = None, group_by=None, group_l2: float | None = None,
           window_anchor: str = "newest",
           strategy: str = "most_recent", record_every=None, record_tolerance: float | None = None,
           gate: bool = False, gate_tolerance: float = 0.0, var_smoothing: float = 1e-9, alpha: float = 1.0,
           replace: bool = False, proactive: dict | None = None, **options) -> Deployment:
    """Deploy the exact model of ``window`` over ``table`` under ``name`` (docs/deployments.md).

    Everything is checked before anything is written, and written in one transaction.
    """
    fam = family(kind)
    if fam.deploy_kind is not None:  # a `logistic` deployment is trained by SGD (docs/continuous.md)
        kind = fam.deploy_kind
        fam = family(kind)
    if fam.trained:
        raise DeploymentError(f"{kind} models are trained, not solved from statistics; deployments keep the exact "
                              f"families (linear, gaussian_nb, multinomial_nb) current")
    if strategy not in versions.STRATEGIES:
        raise DeploymentError(f"strategy must be one of {versions.STRATEGIES}, got {strategy!r} instead")
    if record_tolerance is not None and (isinstance(record_tolerance, bool) or not record_tolerance >= 0):
        raise DeploymentError(f"record_tolerance must be a number ≥ 0, got {record_tolerance!r} instead")
    if isinstance(record_every, int | float) and not isinstance(record_every, bool):
        record_every = dt.timedelta(seconds=record_every)
    if record_every is not None and (not isinstance(record_every, dt.timedelta) or record_every < dt.timedelta(0)):
        raise DeploymentError(f"record_every must be seconds or a timedelta ≥ 0, got {record_every!r} instead")
    if isinstance(gate_tolerance, bool) or not isinstance(gate_tolerance, int | float) or not gate_tolerance >= 0:
        raise DeploymentError(f"gate_tolerance must be a number ≥ 0, got {gate_tolerance!r} instead")
    win = parse_window(window, window_anchor)
    unknown = sorted(set(options) - set(fam.options))
    if unknown:
        raise DeploymentError(f"{kind} takes no option(s) {unknown}")
    params = fam.params(l2=l2, var_smoothing=var_smoothing, alpha=alpha, **options)
    if group_by is not None:
        if fam.iterative:
            raise DeploymentError(f"group_by applies to the exact families (linear, Naive Bayes), not {kind}")
        params["group_l2"] = check_group_l2(group_l2)  # the refresh's store.fit is given params
    elif group_l2 is not None:
        raise DeploymentError("group_l2 applies to per-group deployments: give group_by too")
    if proactive is not None:  # proactive training instead of refits (docs/continuous.md)
        params["proactive"] = proactive_training.check_config(proactive, kind)
    conn = store.conn
    with conn.transaction():
        tbl = resolve_table(conn, table)
        if tbl.kind not in ("r", "p"):
            raise SourceKindError(f"cannot deploy over {tbl.display}: it is {_RELKINDS.get(tbl.kind, 'not a table')}; "
                                  f"deployments follow ordinary and partitioned tables, whose writes triggers can see")
        if tbl.kind == "p" and conn.execute(
                "SELECT cardinality(foreign_members) > 0 FROM modelstore._capture_members(%s::oid::regclass)",
                [tbl.oid]).fetchone()[0]:
            raise SourceKindError(f"cannot deploy over {tbl.display}: some of its partitions are foreign tables, "
                                  f"whose writes no trigger here can see (docs/scale-out.md)")
        order_kind = tbl.order_kind(order_by)
        check_window(win, order_by, order_kind)
        existing = load(conn, name=name)
        if existing is not None:
            if not replace:
                raise DeploymentError(f"a deployment named {name!r} exists; undeploy it or pass replace=True")
            _undeploy(conn, existing, drop_model=False)
        snapshot = conn.execute("SELECT pg_current_snapshot()::text").fetchone()[0]
        lo, hi = resolve(conn, tbl.identifier, order_by, order_kind, win)
        model = store.fit(kind, table=tbl.display, target=target, features=list(features), order_by=order_by,
                          lo=lo, hi=hi, where=where, l2=l2, var_smoothing=var_smoothing, alpha=alpha, name=name,
                          replace=replace, **options, **({} if group_by is None else
                                                         {"group_by": group_by, "group_l2": params["group_l2"],
                                                          "group_statistics": False}))
        model_id = conn.execute("SELECT model_id FROM modelstore.fitted_models WHERE name = %s", [name]).fetchone()[0]
        executed = model.plan
        one_read = len(executed.plan.steps) == 1 and executed.plan.steps[0].op == "stored"
        deployment_id = conn.execute(
            """
            INSERT INTO modelstore.deployments
                (name, model_id, kind, relid, table_name, order_by, target, features, filter, params, window_kind,
                 window_rows, window_interval, window_anchor, strategy, pinned_version, record_every,
                 record_tolerance, gate, gate_tolerance, latest_version, active_version, window_stats_id,
                 window_stats_owned, lo, hi, refreshed_snapshot, refreshed_at, refreshes, group_by)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::interval, %s, %s, %s, %s, %s, %s, %s, 1, 1,
                    %s, %s, %s, %s, %s::pg_snapshot, clock_timestamp(), 1, %s)
            RETURNING deployment_id
            """,
            [name, model_id, kind, tbl.oid, tbl.display, order_by, target, list(features), where, Jsonb(params),
             win.kind, win.rows, win.interval, win.anchor, strategy, 1 if strategy == "pinned" else None,
             record_every, record_tolerance, bool(gate), float(gate_tolerance), executed.stored_stats_id,
             executed.stored_stats_id is not None and not one_read, bound_text(lo), bound_text(hi), snapshot,
             group_by],
        ).fetchone()[0]
        versions.record(conn, deployment_id, 1, model, params=params, stats_id=executed.stored_stats_id,
                        plan=executed.to_json(), lo=bound_text(lo), hi=bound_text(hi), reason="deployed")
        conn.execute("INSERT INTO modelstore.deployment_events (deployment_id, kind, version, detail) "
                     "VALUES (%s, 'deploy', 1, %s)", [deployment_id, Jsonb({"window": str(win)})])
        _install_trigger(conn, tbl)
        if group_by is not None:
            _install_group_triggers(conn, tbl)
    return Deployment(store, name)


def _install_trigger(conn: psycopg.Connection, tbl) -> None:
    """One statement-level trigger per deployed table — on a partitioned table, on every member of its
    partition tree (a write to a partition fires that partition's triggers only; partitions attached later
    get it from the partition event trigger, docs/scale-out.md); the owner's fires ALWAYS, as capture's does."""
    members = conn.execute("SELECT m.members FROM modelstore._capture_members(%s::oid::regclass) AS m",
                           [tbl.oid]).fetchone()[0]
    for relid in members:
        target = _relation(conn, relid)
        state = conn.execute("SELECT tgenabled FROM pg_catalog.pg_trigger WHERE tgrelid = %s AND tgname = %s",
                             [relid, TRIGGER]).fetchone()
        if state is None:
            conn.execute(sql.SQL("CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {} "
                                 "FOR EACH STATEMENT EXECUTE FUNCTION modelstore._deployment_changed()").format(
                sql.Identifier(TRIGGER), target))
        owner = conn.execute("SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
                             "WHERE c.oid = %s", [relid]).fetchone()[0]
        if owner and (state is None or state[0] != "A"):
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(target, sql.Identifier(TRIGGER)))


def _install_group_triggers(conn: psycopg.Connection, tbl) -> None:
    """The triggers that record which groups a write touched (grouped deployments): one per operation,
    for their transition tables; fired ALWAYS by the owner's, as the deployment trigger is."""
    owner = conn.execute("SELECT pg_catalog.pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
                         "WHERE c.oid = %s", [tbl.oid]).fetchone()[0]
    for operation, rows in (("insert", "NEW TABLE AS new_rows"), ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows"),
                            ("delete", "OLD TABLE AS old_rows")):
        trigger = sql.Identifier(f"{GROUP_TRIGGER}_{operation}")
        exists = conn.execute("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = %s AND tgname = %s",
                              [tbl.oid, f"{GROUP_TRIGGER}_{operation}"]).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE TRIGGER {} AFTER {} ON {} REFERENCING {} FOR EACH STATEMENT "
                                 "EXECUTE FUNCTION modelstore._groups_changed()").format(
                trigger, sql.SQL(operation.upper()), tbl.identifier, sql.SQL(rows)))
            if owner:
                conn.execute(sql.SQL("ALTER TABLE {} ENABLE ALWAYS TRIGGER {}").format(tbl.identifier, trigger))


def deployment(store, name: str) -> Deployment:
    if load(store.conn, name=name) is None:
        raise NotDeployedError(_not_deployed(store, name))
    return Deployment(store, name)


def deployments(store) -> pd.DataFrame:
    cur = store.conn.execute(
        """
        SELECT d.name, d.kind, d.table_name AS "table", d.order_by, d.window_kind,
               coalesce(d.window_rows::text, d.window_interval::text, 'all') AS "window", d.window_anchor,
               d.strategy, d.active_version, d.latest_version, d.pinned_version, d.lo, d.hi, d.refreshes,
               d.refreshed_at, (SELECT count(*) FROM modelstore.deployment_pending p
                                WHERE p.deployment_id = d.deployment_id) AS pending_writes, d.created_at, d.group_by
        FROM modelstore.deployments d ORDER BY d.created_at, d.name
        """)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def undeploy(store, name: str, *, drop_model: bool = True) -> None:
    """End a deployment: its versions, metrics and events go; its model row too unless ``drop_model=False``
    (then it stays as a plain model of its last window); the table's trigger goes with its last deployment."""
    conn = store.conn
    with conn.transaction():
        spec = load(conn, name=name)
        if spec is None:
            raise NotDeployedError(_not_deployed(store, name))
        _undeploy(conn, spec, drop_model=drop_model)


def _undeploy(conn, spec: Spec, *, drop_model: bool) -> None:
    conn.execute("SELECT 1 FROM modelstore.deployments WHERE deployment_id = %s FOR UPDATE", [spec.deployment_id])
    conn.execute("DELETE FROM modelstore.deployments WHERE deployment_id = %s", [spec.deployment_id])
    if drop_model:
        conn.execute("DELETE FROM modelstore.fitted_models WHERE model_id = %s", [spec.model_id])
    others = conn.execute("SELECT count(*) FROM modelstore.deployments WHERE relid = %s", [spec.relid]).fetchone()[0]
    if not others:
        # the table's trigger, and on a partitioned table its members' (docs/scale-out.md)
        holders = conn.execute(
            "SELECT g.tgrelid FROM pg_catalog.pg_trigger g WHERE g.tgname = %s AND (g.tgrelid = %s "
            "OR g.tgrelid IN (SELECT t.relid FROM pg_catalog.pg_partition_tree(%s::oid) AS t))",
            [TRIGGER, spec.relid, spec.relid]).fetchall()
        for (relid,) in holders:
            conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(sql.Identifier(TRIGGER), _relation(conn, relid)))
    grouped = conn.execute("SELECT count(*) FROM modelstore.deployments WHERE relid = %s AND group_by IS NOT NULL",
                           [spec.relid]).fetchone()[0]
    if not grouped:
        for operation in ("insert", "update", "delete"):
            if conn.execute("SELECT 1 FROM pg_catalog.pg_trigger WHERE tgrelid = %s AND tgname = %s",
                            [spec.relid, f"{GROUP_TRIGGER}_{operation}"]).fetchone():
                conn.execute(sql.SQL("DROP TRIGGER {} ON {}").format(
                    sql.Identifier(f"{GROUP_TRIGGER}_{operation}"), _relation(conn, spec.relid)))


def _relation(conn, relid: int) -> sql.Composable:
    schema, name = conn.execute("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                                "ON n.oid = c.relnamespace WHERE c.oid = %s", [relid]).fetchone()
    return sql.Identifier(schema, name)


def rollback(store, name: str, version: int | None) -> int | None:
    """Pin ``name`` to ``version`` (None: unpin) — the same function as SQL's modelstore.rollback."""
    if version is not None and (isinstance(version, bool) or not isinstance(version, int | np.integer)):
        raise DeploymentError(f"version must be an integer version number or None, got {version!r} instead")
    conn = store.conn
    try:
        with conn.transaction():
            return conn.execute("SELECT modelstore.rollback(%s, %s)",
                                [name, None if version is None else int(version)]).fetchone()[0]
    except psycopg.errors.UndefinedObject:
        raise NotDeployedError(_not_deployed(store, name)) from None
    except psycopg.errors.NoDataFound as exc:
        raise VersionNotFoundError(f"deployment {name!r} has no version {version}; "
                                   f"{exc.diag.message_hint or ''}".strip()) from None


def _not_deployed(store, name: str) -> str:
    try:
        store.model(name)
    except (ModelNotFoundError, InputError):
        return f"no deployment named {name!r} (store.deployments() lists them)"
    return f"{name!r} is a plain model, not a deployment (store.deployments() lists deployments; DROP MODEL drops it)"


__all__ = ["Deployment", "deploy", "deployment", "deployments", "undeploy", "rollback", "SELECT_DEPLOYMENT",
           "TRIGGER", "CHANNEL"]
