"""One model request, validated in one place: every door (Python, the model language, PL/Python, the
CLI) ends in a :class:`FitRequest` before anything reaches the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from modelstore.errors import InputError
from modelstore.families import family

#: the longest model name the catalog takes
MAX_NAME_LENGTH = 128


@dataclass(frozen=True)
class FitRequest:
    """What ``store.fit`` / ``store.explain`` were asked, checked for everything that needs no query:
    the kind and its options (with defaults, :meth:`Family.params`), the feature list, the name.
    Checks against the table (columns, types, bounds, filter) come next, in ``Store._describe``."""

    kind: str
    table: str
    target: str
    features: tuple[str, ...]
    order_by: str
    lo: object = None
    hi: object = None
    where: str | None = None
    params: dict | None = None  # the family's options, validated, with defaults
    evaluate: bool = True
    name: str | None = None
    replace: bool = False
    max_classes: int = 1000
    notes: tuple[str, ...] = ()  # what a door decided for the request (the language's default order_by)
    warm_start: str | None = None  # an iterative family's stored model to continue training from

    @classmethod
    def make(cls, kind: str, *, table: str, target: str, features: Sequence[str], order_by: str, lo=None,
             hi=None, where: str | None = None, l2: float | None = None, var_smoothing: float = 1e-9,
             alpha: float = 1.0, chunk_rows: int | None = None, evaluate: bool = True, name: str | None = None,
             replace: bool = False, max_classes: int = 1000, notes: Sequence[str] = (),
             warm_start: str | None = None, **options) -> "FitRequest":
        """The request of ``store.fit(kind, …)``'s keyword arguments; raises an :class:`InputError`
        naming the first problem. ``options``: the family's own (``Family.options``: SGD's optimizer, …)."""
        fam = family(kind)
        unknown = sorted(set(options) - set(fam.options))
        if unknown:
            raise InputError(f"{kind} takes no option(s) {unknown}" + (f"; its options: {list(fam.options)}"
                                                                      if fam.options else ""))
        params = fam.params(l2=l2, var_smoothing=var_smoothing, alpha=alpha, chunk_rows=chunk_rows, **options)
        if name is not None:
            check_name(name)
        if warm_start is not None:
            if not fam.iterative:
                raise InputError(f"warm_start is for the SGD-trained kinds; {kind} models are fitted exactly")
            check_name(warm_start)
        check_max_classes(max_classes)
        return cls(kind, table, target, check_features(features, target), order_by, lo, hi, where, params,
                   bool(evaluate), name, bool(replace), max_classes, tuple(notes), warm_start)

    @property
    def family(self):
        return family(self.kind)


def check_name(name) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InputError(f"name must be 1–{MAX_NAME_LENGTH} printable characters, got {name!r} instead")


def check_max_classes(max_classes) -> None:
    if isinstance(max_classes, bool) or not isinstance(max_classes, int) or max_classes < 1:
        raise InputError(f"max_classes must be a positive integer, got {max_classes!r} instead")


def check_features(features, target) -> tuple[str, ...]:
    if isinstance(features, str) or not isinstance(features, Sequence) or not features:
        raise InputError(f"features must be a non-empty list of column names, got {features!r} instead")
    features = tuple(features)
    for f in features:
        if not isinstance(f, str) or not f:
            raise InputError(f"every feature must be a column name, got {f!r} instead")
    dupes = sorted({f for f in features if features.count(f) > 1})
    if dupes:
        raise InputError(f"features must not repeat, got {dupes} more than once")
    if not isinstance(target, str) or not target:
        raise InputError(f"target must be a column name, got {target!r} instead")
    if target in features:
        raise InputError(f"target {target!r} cannot also be a feature")
    return features


__all__ = ["FitRequest", "MAX_NAME_LENGTH", "check_features", "check_max_classes", "check_name"]
