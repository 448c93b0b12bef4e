"""A model per group (issue #18; docs/serving.md, "Per-group models"): the global model plus one
shrunk model per value of a column (:mod:`modelstore.models.shrinkage`), scored row by row with the
model of each row's group — the global one for a group it has not seen (Velox's new user).
"""

from __future__ import annotations

import math

import numpy as np

from modelstore.errors import InputError


#: the default shrinkage penalty λ (in the units of XᵀX: about λ pseudo-rows of the global model)
DEFAULT_GROUP_L2 = 1.0


def check_group_l2(group_l2) -> float:
    """λ of the shrinkage toward the global model: a finite number ≥ 0 (None: the default)."""
    if group_l2 is None:
        return DEFAULT_GROUP_L2
    if isinstance(group_l2, bool) or not isinstance(group_l2, int | float) or not math.isfinite(group_l2) \
            or group_l2 < 0:
        raise InputError(f"group_l2 must be a finite number ≥ 0, got {group_l2!r} instead")
    return float(group_l2)


def group_key(value) -> str:
    """A group value as the catalog stores it, PostgreSQL's ``value::text``: '7' for 7 and 7.0,
    'true' for True, the string itself for text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


class GroupedModel:
    """The global model (``global_model``, whose attributes this object also answers) and the
    per-group models ``models`` by group key; ``rows[g]`` is the rows group g was fitted on."""

    def __init__(self, global_model, models: dict, rows: dict, *, group_by: str, group_l2: float):
        self.global_model = global_model
        self.models = dict(models)
        self.rows = dict(rows)
        self.group_by = group_by
        self.group_l2 = float(group_l2)
        self.model_id = None  # its catalog row, when stored (ML.PREDICT joins its group rows)
        #: how a fit got the groups' statistics: {"groups": "scan" | "stored", "stats_ids": [...],
        #: "rows_scanned": n} (docs/serving.md); None for a model loaded from the catalog
        self.group_plan = None

    def __getattr__(self, attribute):
        if attribute in ("global_model", "models", "rows", "group_by", "group_l2", "model_id", "group_plan"):
            raise AttributeError(attribute)  # not yet set (unpickling): no recursion through global_model
        return getattr(self.global_model, attribute)

    @property
    def groups(self) -> list[str]:
        return sorted(self.models)

    def model_for(self, group):
        """The model that scores ``group``: its own, or the global model for an unseen group."""
        return self.models.get(group_key(group), self.global_model)

    def predict(self, X, groups=None) -> np.ndarray:
        """Predictions of each row's group model (``groups``: one value per row); without ``groups``,
        the global model's."""
        return self._by_group("predict", X, groups)

    def predict_proba(self, X, groups=None) -> np.ndarray:
        return self._by_group("predict_proba", X, groups)

    def _by_group(self, method: str, X, groups):
        if groups is None:
            return getattr(self.global_model, method)(X)
        keys = np.array([group_key(g) for g in (groups.tolist() if hasattr(groups, "tolist") else list(groups))],
                        dtype=object)
        n = len(X)
        if len(keys) != n:
            raise InputError(f"groups has {len(keys)} value(s) but X has {n} row(s); give one group per row")
        out = None
        for key in dict.fromkeys(keys.tolist()):
            rows = np.flatnonzero(keys == key)
            part = X.iloc[rows] if hasattr(X, "iloc") else np.asarray(X)[rows]
            scored = getattr(self.model_for(key), method)(part)
            if out is None:
                out = np.empty((n, *np.shape(scored)[1:]), dtype=np.asarray(scored).dtype)
            out[rows] = scored
        return out if out is not None else getattr(self.global_model, method)(X)

    def __repr__(self) -> str:
        return (f"<GroupedModel {getattr(self.global_model, 'name', None)!r}: {len(self.models)} groups by "
                f"{self.group_by!r}, group_l2={self.group_l2:g}; global {self.global_model!r}>")


__all__ = ["GroupedModel", "group_key", "check_group_l2", "DEFAULT_GROUP_L2"]
