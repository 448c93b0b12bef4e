"""Per-group models: ``store.fit(…, group_by=column, group_l2=λ)`` (issue #18; docs/serving.md).

In one transaction: the global model is fitted and materialised as any request is (planned over the
stored statistics); one grouped aggregate (:mod:`modelstore.execution.groups`) gives every group's
statistics; each group's model is solved with shrinkage toward the global one (the family's
``shrink``, :mod:`modelstore.models.shrinkage`); and the groups are written in one batched statement
(:mod:`modelstore.catalog.groups`). Written against a store it is handed, as the deployments are.

``only_groups`` (what a grouped deployment's refresh passes): re-aggregate just these groups; the other
groups keep their stored statistics and are only re-solved, because the global model they shrink
toward has changed — a write changes only its own group's statistics.
"""

from __future__ import annotations

import dataclasses

from modelstore.catalog import freshness
from modelstore.catalog import groups as group_rows
from modelstore.errors import InputError, SingularMatrixError
from modelstore.execution import group_index as group_index_exec
from modelstore.execution.groups import scan_groups
from modelstore.families import FAMILIES, family
from modelstore.models.grouped import DEFAULT_GROUP_L2, GroupedModel, check_group_l2
from modelstore.request.descriptor import group_filter, group_filters
from modelstore.request.source import resolve_table
from modelstore.store.request import FitRequest

def check_group_by(conn, request: FitRequest, group_by) -> str:
    """The group column: a column of the table, neither a feature nor the target; a family that can
    solve per-group models."""
    if not request.family.groupable:
        groupable = sorted(kind for kind, f in FAMILIES.items() if f.groupable)
        raise InputError(f"group_by: per-group models are solved for {groupable}, not {request.kind!r}")
    table = resolve_table(conn, request.table)
    table.column(group_by, "group_by")
    if group_by in request.features or group_by == request.target:
        raise InputError(f"group_by column {group_by!r} cannot also be a feature or the target")
    return group_by


def fit_grouped(store, request: FitRequest, group_by, group_l2=None, *, only_groups=None,
                group_statistics: bool = True) -> GroupedModel:
    """The global model and one shrunk model per group (module docstring). ``group_statistics``: reuse
    and store each group's statistics as a stored summary of its own (docs/serving.md, "The planner
    reuses them per group"); a grouped deployment passes False (its range moves at every refresh)."""
    lam = check_group_l2(group_l2)
    conn = store.conn
    with conn.transaction():
        check_group_by(conn, request, group_by)
        global_model = store.run(request)
        descriptor = global_model.descriptor
        table = resolve_table(conn, request.table)
        fam = descriptor.family
        model_id = source_id = None
        if store.materialize:
            model_id, source_id = conn.execute(
                "SELECT model_id, source_id FROM modelstore.fitted_models WHERE name = %s",
                [global_model.name]).fetchone()
            group_rows.mark_grouped(conn, model_id, group_by, lam)
        column = table.columns[group_by]

        def filters(keys) -> dict | None:  # each group's normalised filter (None: the type has none)
            return group_filters(descriptor.filter_sql, group_by, keys, column.category, column.type_name)

        some_filter = group_filter(descriptor.filter_sql, group_by, "0", column.category, column.type_name)
        reused = None
        if group_statistics and only_groups is None and store.materialize and some_filter is not None:
            reused = group_rows.find_group_stats(conn, source_id, descriptor, group_by, filters)
        if reused is not None:  # every group's statistics stored by an earlier fit of this descriptor: no scan
            fresh = {key: stats for key, (_, stats) in reused.items()}
            grouped_plan = {"groups": "stored", "stats_ids": sorted(sid for sid, _ in reused.values()),
                            "rows_scanned": 0}
        else:
            # locked before the scan (when they will be stored), so that no write commits unseen in between
            storing = (group_statistics and only_groups is None and store.materialize and some_filter is not None
                       and _prepare_group_write(conn, table, descriptor, some_filter))
            # an index with per-group nodes serves the whole chunks of the range (docs/index.md); else one scan
            from_index = group_index_exec.group_statistics(conn, table, descriptor, group_by, source_id,
                                                           only=only_groups, max_classes=request.max_classes)
            if from_index is not None:
                fresh, grouped_plan = from_index
                grouped_plan["stats_ids"] = []
            else:
                fresh = scan_groups(conn, table, descriptor, group_by, only=only_groups,
                                    max_classes=request.max_classes)
                grouped_plan = {"groups": "scan", "stats_ids": [], "rows_scanned": sum(s.n + s.null_rows
                                                                                      for s in fresh.values())}
            if storing and fresh:
                by_key = filters(sorted(fresh))
                group_rows.store_group_stats(conn, storing, descriptor, group_by,
                                             [(key, by_key[key], fresh[key]) for key in sorted(fresh)])
        stats = dict(fresh)
        if only_groups is not None and model_id is not None:
            kept = {key: fam.statistics.from_state(s) for key, _, _, s in group_rows.read(conn, model_id, with_stats=True)
                    if key not in set(only_groups) and s}
            stats = {**kept, **fresh}
        models, rows, written = {}, {}, []
        for key in sorted(stats):
            try:
                model = fam.shrink(stats[key], global_model, lam, descriptor.params)
            except SingularMatrixError:
                continue  # λ = 0 and too few rows for its own fit: the group is served the global model
            model.name = global_model.name
            models[key], rows[key] = model, stats[key].n
            coef, intercept = fam.native_parameters(model)
            written.append((key, stats[key].n, stats[key].to_state() if key in fresh else None, model.to_state(),
                            coef, intercept))
        if model_id is not None:
            group_rows.write(conn, model_id, written,
                             keep_only=list(models) if only_groups is None else None)
            if only_groups is not None:
                gone = [key for key in only_groups if key not in models]
                if gone:
                    conn.execute("DELETE FROM modelstore.group_models WHERE model_id = %s AND group_key = ANY(%s)",
                                 [model_id, gone])
    grouped = GroupedModel(global_model, models, rows, group_by=group_by, group_l2=lam)
    grouped.model_id = model_id
    grouped.group_plan = grouped_plan
    return grouped


def _prepare_group_write(conn, table, descriptor, some_filter: str) -> int | None:
    """The source id, captured and locked, when the caller may store the groups' statistics (the access
    rules of any request, modelstore.catalog.freshness, checked with a group's filter: it reads the group
    column too); None when it may not."""
    first = dataclasses.replace(descriptor, filter_sql=some_filter)
    access = freshness.check_access(conn, table, first)
    if not access.store:
        return None
    source_id = freshness.usable_source(conn, first, table, access)
    return freshness.prepare_write(conn, first, table, access, source_id)


def load_grouped(store, global_model, model_id: int, group_by: str, group_l2: float) -> GroupedModel:
    """A stored grouped model from the catalog (one query for every group)."""
    fam = family(global_model.descriptor.kind)
    models, rows = {}, {}
    for key, rows_used, state in group_rows.read(store.conn, model_id):
        models[key], rows[key] = fam.from_state(state), int(rows_used)
    grouped = GroupedModel(global_model, models, rows, group_by=group_by, group_l2=group_l2)
    grouped.model_id = model_id  # where its group rows are (ML.PREDICT joins them)
    return grouped


__all__ = ["fit_grouped", "load_grouped", "check_group_l2", "DEFAULT_GROUP_L2"]
