"""What the rest of modelstore asks of a model family, in one place (docs/architecture.md, "Adding a family").

A *family* is a kind of model together with the statistics that serve it: linear regression and its
comoments, Gaussian and multinomial Naive Bayes and their per-class moments, mixture-weight logistic
regression and its chunk models (paper §3.1, §4). The planner, executor, index, catalog, language and
SQL doors ask a :class:`Family` object what to do; they do not branch on a family's name. A new family
is its own module here, its statistics in :mod:`modelstore.stats`, its model in :mod:`modelstore.models`,
and one line in :data:`modelstore.families.FAMILIES`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from psycopg import sql

from modelstore.errors import InputError, TooManyClassesError


class Family:
    """One model family. Subclasses set the class attributes and implement the methods they need;
    a family without mergeable statistics (``statistics is None``) raises where it has none."""

    #: the name used in ``store.fit(kind, …)`` and stored in the catalog
    kind: str = ""
    #: its names in the model language's ``OPTIONS (model_type = …)``
    model_types: tuple[str, ...] = ()
    #: the fitted model's class (``from_stats`` / ``from_state`` / ``to_state``)
    model_class: type = object
    #: the mergeable statistics class, or None when the family stores trained chunk models instead
    statistics: type | None = None
    #: whether the target is a class label (statistics grouped by it) rather than a number
    classifier: bool = False
    #: whether stored statistics may be subtracted (a plan may take ``a − b``)
    subtractable: bool = True
    #: whether the family stores trained chunk models (forward-only plans with ``train`` steps)
    trained: bool = False
    #: whether the statistics index (docs/index.md) can hold this family's statistics
    indexable: bool = True
    #: the degree in k of one row's aggregate cost (the cost model's per-row polynomial)
    cost_degree: int = 1
    #: whether the model has standard errors, t values and p-values (ML.ADVANCED_WEIGHTS)
    has_inference: bool = False
    #: what a from-scratch build does, for EXPLAIN's "From scratch (…)" line
    scratch_text: str = "one scan"
    #: whether the model is trained iteratively over the rows it reads (SGD, docs/continuous.md): no
    #: statistics plan, and a deployment continues training from the previous version (warm start)
    iterative: bool = False
    #: the kind a deployment of this kind runs as (mixture-weight logistic deploys as SGD logistic)
    deploy_kind: str | None = None
    #: whether features may be text columns (encoded by the model's own pipeline)
    takes_text: bool = False
    #: the options the family takes beyond ``params``' common ones (``store.fit(kind, …, **options)``)
    options: tuple[str, ...] = ()

    # -- requests ---------------------------------------------------------------------------------------

    def params(self, *, l2=None, var_smoothing=1e-9, alpha=1.0, chunk_rows=None) -> dict:
        """The family's options, validated and with defaults (stored with the model)."""
        raise NotImplementedError

    def stats_columns(self, features: tuple[str, ...], target: str) -> tuple[str, ...]:
        """The columns the statistics are over."""
        return features if self.classifier else features + (target,)

    def fit_options(self, params: dict) -> dict:
        """The ``store.fit`` keyword arguments that reproduce stored ``params`` (a deployment's refresh)."""
        return dict(params)

    def text_inputs(self, model) -> set[str]:
        """The input columns the model reads as text (its SQL scores take them uncast)."""
        return set()

    def class_column(self, target: str) -> str:
        """The column the statistics are grouped by ('' when the target is a number)."""
        return target if self.classifier else ""

    # -- statistics from rows -----------------------------------------------------------------------------

    def aggregate_query(self, relation: sql.Composable, values: list[sql.Composable], where: sql.Composable,
                        target: str, max_classes: int, part: sql.Composable | None = None,
                        parts: int = 1, engine: tuple[str, str] = ("sql", "")) -> sql.Composed:
        """The one aggregate statement that computes the statistics of the rows ``where`` selects
        (grouped by ``part`` when given: each result row then starts with its part number).
        ``engine`` is ``(name, schema)`` from :func:`modelstore.stats.engine.engine`: ``("c", schema)``
        uses the modelstore_stats C aggregates in ``schema``, ``("sql", "")`` the standard ones."""
        raise NotImplementedError(f"{self.kind} has no statistics aggregate")

    def aggregate_terms(self, k: int) -> int:
        """Output columns of the aggregate over k columns (what planning it scales with)."""
        raise NotImplementedError(f"{self.kind} has no statistics aggregate")

    def from_aggregate(self, columns: Sequence[str], rows: list, *, target: str, where: str,
                       max_classes: int, engine: tuple[str, str] = ("sql", "")):
        """The statistics from the rows :meth:`aggregate_query` returned for one part; ``where``
        describes the rows for error messages."""
        raise NotImplementedError(f"{self.kind} has no statistics aggregate")

    def from_values(self, columns: Sequence[str], X: np.ndarray, labels: list, *, null_rows: int, target: str,
                    where: str, max_classes: int):
        """The same statistics computed in Python from fetched complete rows (a few hundred rows)."""
        raise NotImplementedError(f"{self.kind} has no statistics")

    def empty(self, columns: Sequence[str], null_rows: int = 0):
        return self.statistics(columns, null_rows=null_rows)

    def sum(self, columns: Sequence[str], items):
        """The statistics over ``columns`` of the union of ``items``' rows: ``empty(columns)`` plus each of
        them, in one vectorised merge where the family has one (an index span's nodes, docs/statistics.md)."""
        return self.statistics.merge_many(columns, items)

    # -- storage ----------------------------------------------------------------------------------------------

    def pack(self, stats, *, triangle: bool = False) -> dict:
        """The catalog arrays of ``stats``: classes, counts, mean, moments (a symmetric matrix as its
        upper triangle when ``triangle``, as the index stores it), and mean_lo, moments_lo: the low
        parts of double-double statistics in the same layout (None for float64 statistics)."""
        raise NotImplementedError(f"{self.kind} has no statistics")

    def unpack(self, columns: Sequence[str], n: int, null_rows: int, classes, counts, mean, moments,
               mean_lo=None, moments_lo=None, *, triangle: bool = False):
        """The statistics object from its catalog arrays (:meth:`pack`'s inverse)."""
        raise NotImplementedError(f"{self.kind} has no statistics")

    def stored_values(self, k: int, classes: int = 1, *, triangle: bool = False) -> int:
        """Floats stored for statistics over ``k`` columns (what fetching and merging them touches)."""
        raise NotImplementedError(f"{self.kind} has no statistics")

    def catalog_values(self, k: int, classes: int = 1) -> int:
        """Floats in the ``mean`` and ``moments`` of a catalog row over ``k`` columns (its ``n_values``,
        migration 0013): what the planner's fetch cost of a stored model is computed from."""
        raise NotImplementedError(f"{self.kind} has no statistics")

    def magnitudes(self, stats) -> np.ndarray:
        """The scale of each statistic that subtraction can cancel (the numerical guard)."""
        raise NotImplementedError(f"{self.kind} has no statistics")

    # -- models -------------------------------------------------------------------------------------------------

    def solve(self, stats, params: dict):
        """The fitted model of ``stats`` (paper §3.1: exactly the from-scratch fit)."""
        return self.model_class.from_stats(stats, **params)

    def from_state(self, state: dict):
        return self.model_class.from_state(state)

    # -- per-group models (group_by; docs/serving.md) -----------------------------------------------------

    #: whether per-group models shrunk toward the global model can be solved (:meth:`shrink`)
    groupable: bool = False

    def shrink(self, stats, global_model, lam: float, params: dict):
        """The model of one group's ``stats`` shrunk toward ``global_model`` with penalty ``lam``
        (:mod:`modelstore.models.shrinkage`)."""
        raise NotImplementedError(f"no per-group models for model kind {self.kind!r}")

    def native_parameters(self, model) -> tuple[list[float] | None, float | None]:
        """(coef, intercept) stored as native arrays beside a group's state, for scoring in SQL
        without parsing JSON; (None, None) for families scored from their state."""
        return None, None

    # -- scoring in SQL (ML.PREDICT, ML.EVALUATE, ML.WEIGHTS) --------------------------------------------------------

    def sql_scores(self, model, xs: list) -> list:
        """sqlglot expressions, one score per output: the prediction, or per class (paper-free: the
        model's decision function written out as arithmetic over the input columns)."""
        raise NotImplementedError(f"no SQL scoring for model kind {self.kind!r}")

    def weights(self, model) -> tuple[list[tuple], list[str], list[str]]:
        """ML.WEIGHTS: rows, column names and SQL types."""
        raise NotImplementedError(f"no ML.WEIGHTS for model kind {self.kind!r}")

    def summary(self, model) -> dict:
        """The model's parameters as JSON-ready data (``modelstore.create_model``'s answer)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<family {self.kind}>"


def check_class_count(rows_with_class: int, max_classes: int, target: str, where: str) -> None:
    """Refuse a class column with more distinct values than ``max_classes`` (it is probably not a label)."""
    if rows_with_class > max_classes:
        raise TooManyClassesError(
            f"class column {target!r} has more than {max_classes} distinct values in {where}; "
            f"is it really a class label? (raise max_classes to allow more)"
        )


def check_nonnegative_counts(negative_rows: int, where: str) -> None:
    if negative_rows:
        raise InputError(
            f"multinomial Naive Bayes needs non-negative feature counts; {negative_rows} row(s) in {where} have a "
            f"negative value"
        )
