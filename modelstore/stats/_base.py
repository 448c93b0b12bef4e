"""What every statistics family shares: ``+``/``−`` as copies around the in-place operators (the
math lives in ``__iadd__``/``__isub__``), and the rule for serving a subset of the columns."""

from __future__ import annotations

from collections.abc import Sequence


class Statistics:
    """Base of the families; subclasses define ``columns``, ``null_rows``, ``copy``, ``__iadd__``, ``__isub__``."""

    __slots__ = ()

    def __add__(self, other):
        result = self.copy()
        result += other
        return result

    def __sub__(self, other):
        result = self.copy()
        result -= other
        return result

    @classmethod
    def merge_many(cls, columns: Sequence[str], items):
        """The sum of ``items`` over ``columns``, as adding each to empty statistics gives it (families
        override it with one vectorised step)."""
        total = cls(columns)
        for item in items:
            total += item
        return total

    def can_serve(self, columns: Sequence[str]) -> bool:
        """Whether these statistics answer a model over ``columns``.

        A proper subset is exact only when no row was skipped for a NULL: a row skipped because a
        dropped column was NULL would belong to the smaller model.
        """
        wanted, held = set(columns), set(self.columns)
        return wanted <= held and (wanted == held or self.null_rows == 0)
