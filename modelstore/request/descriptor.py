"""Descriptors: which rows a model summarises (paper §3.3, §5; DESIGN.md §3).

A descriptor is a source (schema-qualified table + ordering column), a range on the ordering column,
the residual filter (the rest of the WHERE clause) normalised with sqlglot so that equal filters
compare equal, and the model's target, features and kind. Ranges are closed [lo, hi] for requests
and stored models; the planner also needs half-open gaps, so :class:`Range` carries both flags.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers
from sqlglot.optimizer.simplify import simplify

from modelstore.errors import FilterError, RangeError, UnknownColumnError
from modelstore.families import FAMILIES, Family


_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_TZ = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Source:
    """A table or view and its ordering column; names are exact (already case-resolved)."""

    schema: str
    table: str
    order_by: str
    order_kind: str = "number"  # 'integer' | 'number' | 'timestamp' | 'timestamptz' | 'date'

    @property
    def qualified(self) -> str:
        """Display form, quoted as PostgreSQL would need it."""
        return exp.table_(self.table, db=self.schema, quoted=True).sql(dialect="postgres")


@dataclass(frozen=True, order=True)
class Range:
    """A range on the ordering column; ``lo``/``hi`` are Python values of the column's kind."""

    lo: object
    hi: object
    lo_closed: bool = True
    hi_closed: bool = True

    def __str__(self) -> str:
        return f"{'[' if self.lo_closed else '('}{_show(self.lo)}, {_show(self.hi)}{']' if self.hi_closed else ')'}"


def _show(v) -> str:
    return v.isoformat(sep=" ") if isinstance(v, dt.datetime) else str(v)


@dataclass(frozen=True)
class Descriptor:
    """Everything that decides which statistics a model needs (DESIGN.md §3)."""

    source: Source
    range: Range
    filter_sql: str  # normalised residual filter, '' for none
    kind: str
    target: str
    features: tuple[str, ...]
    params: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def family(self) -> Family:
        """The model family: what the statistics are and how they are computed, stored and solved."""
        return FAMILIES[self.kind]

    @property
    def stats_columns(self) -> tuple[str, ...]:
        """The columns the statistics are over: features + target for a regression, the features otherwise."""
        return self.family.stats_columns(self.features, self.target)

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Every column the statistics depend on: ordering column, features, target, filter columns —
        what a role must be allowed to read to reuse them (docs/security.md)."""
        names = [self.source.order_by, *self.features, self.target, *filter_columns(self.filter_sql)]
        return tuple(dict.fromkeys(names))

    @property
    def class_column(self) -> str:
        """The class column a classifier's statistics are grouped by ('' for a regression)."""
        return self.family.class_column(self.target)


# -- range bounds ---------------------------------------------------------------------------------

def coerce_bound(value, order_kind: str, which: str):
    """A range bound as the Python value of the ordering column's kind, or a clear error."""
    if order_kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise RangeError(f"{which} must be a number for a numeric ordering column, got {value!r} instead")
        if isinstance(value, float | Decimal) and not _finite(value):
            raise RangeError(f"{which} must be finite, got {value!r} instead")
        if order_kind == "integer" and not isinstance(value, int):
            if value != int(value):  # a fractional bound on an integer column: round inwards
                return math.ceil(value) if which == "lo" else math.floor(value)
            return int(value)
        return value
    given = value
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # UTC as JSON and JavaScript write it (Python < 3.11 does not parse it)
            text = text[:-1] + "+00:00"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError as exc:
            raise RangeError(f"{which} must be an ISO date or timestamp such as '2025-01-31' or "
                             f"'2025-01-31 23:59:59' (with '+02:00' or 'Z' for a timestamptz column), "
                             f"got {value!r} instead") from exc
    if order_kind == "date":
        if isinstance(value, dt.datetime):
            if value.time() != dt.time(0) or value.tzinfo is not None:
                raise RangeError(f"{which} must be a date for a date ordering column, got {value!r} instead")
            value = value.date()
        if not isinstance(value, dt.date):
            raise RangeError(f"{which} must be a date, got {value!r} instead")
        _check_representable(value, which)
        return value
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time(0))
    if not isinstance(value, dt.datetime):
        raise RangeError(f"{which} must be a timestamp, got {value!r} instead")
    if order_kind == "timestamptz" and value.tzinfo is None:
        raise RangeError(f"{which} must be timezone-aware for a timestamptz ordering column, got {given!r}: add the "
                         f"zone, e.g. '{value.isoformat(sep=' ')}Z' for UTC or '{value.isoformat(sep=' ')}+02:00'")
    if order_kind == "timestamp" and value.tzinfo is not None:
        raise RangeError(f"{which} must be naive for a timestamp (without time zone) ordering column, got {given!r}: "
                         f"the column has no time zone, so write the bound without one, e.g. "
                         f"'{value.replace(tzinfo=None).isoformat(sep=' ')}' (a 'Z' or '+00:00' suffix is for "
                         f"timestamptz columns)")
    _check_representable(value, which)
    return value


def _check_representable(value, which: str) -> None:
    """Refuse the very last date or timestamp Python can hold: the planner works with the position just
    after a bound (the next day or microsecond), which does not exist past it."""
    if isinstance(value, dt.datetime):
        if value.replace(tzinfo=None) == dt.datetime.max:
            raise RangeError(f"{which} {value.isoformat(sep=' ')} is at the end of the timestamps modelstore can "
                             f"represent; give a bound before {dt.datetime.max.isoformat(sep=' ')}")
    elif value == dt.date.max:
        raise RangeError(f"{which} {value} is the last date modelstore can represent; give a bound before it")


def _finite(v) -> bool:
    return v == v and v not in (float("inf"), float("-inf"))


def bound_key(value) -> Decimal:
    """An exact numeric key for a bound, consistent within one ordering column (for the catalog)."""
    if isinstance(value, bool):
        raise TypeError("boolean bounds are not supported")
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(value)  # exact binary value
    if isinstance(value, dt.datetime):
        delta = value - (_EPOCH_TZ if value.tzinfo else _EPOCH)
        return Decimal(delta.days) * 86400 + Decimal(delta.seconds) + Decimal(delta.microseconds) / 1_000_000
    if isinstance(value, dt.date):
        return Decimal((value - _EPOCH.date()).days)
    raise TypeError(f"unsupported bound {value!r}")


def bound_text(value) -> str:
    """The bound as PostgreSQL literal text of the ordering column's type (stored for display)."""
    return value.isoformat(sep=" ") if isinstance(value, dt.datetime) else str(value)


def parse_bound(text: str, order_kind: str):
    """Inverse of :func:`bound_text`."""
    if order_kind == "integer":
        return int(text)
    if order_kind == "number":
        d = Decimal(text)
        return int(d) if d == d.to_integral_value() and "." not in text and "e" not in text.lower() else float(text)
    if order_kind == "date":
        return dt.date.fromisoformat(text)
    return dt.datetime.fromisoformat(text)


def check_range(lo, hi) -> Range:
    if lo > hi:
        raise RangeError(f"lo must be <= hi, got lo={lo!r} > hi={hi!r}")
    return Range(lo, hi)


# -- residual filter ----------------------------------------------------------------------------------

#: immutable built-ins a filter may call; anything else (volatile, side effects, unknown) is refused
ALLOWED_FUNCTIONS = (
    exp.Abs, exp.Lower, exp.Upper, exp.Coalesce, exp.Length, exp.Round, exp.Floor, exp.Ceil, exp.Extract,
    exp.TimestampTrunc, exp.DateTrunc, exp.Substring, exp.Trim, exp.Sqrt, exp.Ln, exp.Log, exp.Exp, exp.Pow,
    exp.Greatest, exp.Least, exp.Nullif, exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Sign, exp.Concat,
)

_REFUSED_NODES = (exp.Query, exp.Subquery, exp.AggFunc, exp.Window, exp.Star, exp.Placeholder, exp.Parameter,
                  exp.Command, exp.Dot)


def normalize_filter(text: str | None, columns: set[str] | None = None) -> str:
    """The residual filter as canonical PostgreSQL SQL ('' for none), or a :class:`FilterError`.

    Unquoted identifiers are folded to lower case as PostgreSQL does, comments are dropped, the
    expression is simplified (conjuncts sorted, constants folded, ``1 < x`` → ``x > 1``) so that
    equal filters written differently compare equal. Only bare column references, literals,
    operators and the immutable functions in :data:`ALLOWED_FUNCTIONS` are accepted: a filter is a
    row predicate, never a place to run statements. ``columns``, when given, are the table's
    columns; a filter naming any other column is refused.

    >>> normalize_filter("Region = 'EU' and 1 < x")
    "region = 'EU' AND x > 1"
    """
    if text is None or not str(text).strip():
        return ""
    if not isinstance(text, str):
        raise FilterError(f"where must be a SQL predicate string, got {type(text).__name__} instead")
    if "\x00" in text:
        raise FilterError(f"where must not contain a NUL character, got {text!r}")
    try:
        tree = sqlglot.condition(text, dialect="postgres")
    except (ParseError, SqlglotError) as exc:
        raise FilterError(f"where does not parse as a SQL predicate: {text!r} ({_first_line(exc)})") from exc
    tree = normalize_identifiers(tree, dialect="postgres")
    for node in tree.walk():
        if isinstance(node, _REFUSED_NODES):
            raise FilterError(f"where may only compare columns with values; {node.key.upper()} is not allowed: {text!r}")
        if isinstance(node, exp.Func) and not isinstance(node, ALLOWED_FUNCTIONS + (exp.Connector, exp.Binary, exp.Not, exp.Paren)):
            name = node.sql_name() if not isinstance(node, exp.Anonymous) else node.name
            raise FilterError(f"function {name}() is not allowed in a filter (only immutable built-ins); got {text!r}")
        if isinstance(node, exp.Column):
            if node.table:
                raise FilterError(f"where must use bare column names, got {node.sql(dialect='postgres')!r}")
            if not node.this.quoted and node.name.lower() in _BARE_FUNCTIONS:
                raise FilterError(f"{node.name} without quotes is PostgreSQL's {node.name.upper()} function, not a "
                                  f"column; write \"{node.name}\" to mean the column: {text!r}")
            if columns is not None and node.name not in columns:
                raise UnknownColumnError(f"where refers to column {node.name!r}, which the table does not have")
    _check_condition(tree, text)
    for column in tree.find_all(exp.Column):  # one spelling per name: quoted exactly when PostgreSQL needs it
        column.this.set("quoted", _needs_quotes(column.name))
    try:
        tree = simplify(tree, dialect="postgres")
    except Exception:  # simplify is an optimisation: keep the parsed tree if it gives up
        pass
    return tree.sql(dialect="postgres", comments=False)


#: words PostgreSQL reads as a function call without parentheses, where sqlglot reads some as a column
_BARE_FUNCTIONS = frozenset({"user", "current_user", "session_user", "system_user", "current_role", "current_catalog",
                             "current_schema", "current_date", "current_time", "current_timestamp", "localtime",
                             "localtimestamp"})

#: PostgreSQL 15's keywords that are not unreserved (pg_get_keywords() catcode R, T, C): quoted as names
_PG_KEYWORDS = frozenset("""
    all analyse analyze and any array as asc asymmetric both case cast check collate column constraint create
    current_catalog current_date current_role current_time current_timestamp current_user default deferrable desc
    distinct do else end except false fetch for foreign from grant group having in initially intersect into lateral
    leading limit localtime localtimestamp not null offset on only or order placing primary references returning
    select session_user some symmetric table then to trailing true union unique user using variadic when where window
    with
    authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull join left like
    natural notnull outer overlaps right similar tablesample verbose
    between bigint bit boolean char character coalesce dec decimal exists extract float greatest grouping inout int
    integer interval least national nchar none normalize nullif numeric out overlay position precision real row setof
    smallint substring time timestamp treat trim values varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest
    xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable system_user
""".split())

_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")

#: nodes that cannot be a row's true/false value at the top of a filter (or under AND / OR / NOT)
_NOT_CONDITIONS = (exp.Literal, exp.Neg, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.IntDiv, exp.DPipe,
                   exp.BitwiseAnd, exp.BitwiseOr, exp.BitwiseXor, exp.BitwiseNot, exp.BitwiseLeftShift,
                   exp.BitwiseRightShift)


def _needs_quotes(name: str) -> bool:
    """Whether PostgreSQL needs ``name`` quoted to read it as that exact column name."""
    return not _PLAIN_NAME.fullmatch(name) or name in _PG_KEYWORDS


def _check_condition(tree: exp.Expression, text: str) -> None:
    """Refuse a filter that is plainly not a condition: a number, a string or arithmetic at the top."""
    node = tree.unnest()
    if isinstance(node, exp.And | exp.Or):
        _check_condition(node.left, text)
        _check_condition(node.right, text)
    elif isinstance(node, exp.Not):
        _check_condition(node.this, text)
    elif isinstance(node, _NOT_CONDITIONS):
        raise FilterError(f"where must be a condition that is true or false for each row, but "
                          f"{node.sql(dialect='postgres')!r} is a value: {text!r}")


def filter_columns(filter_sql: str) -> list[str]:
    """The columns a normalised filter reads, in order of appearance."""
    if not filter_sql:
        return []
    tree = sqlglot.condition(filter_sql, dialect="postgres")
    return list(dict.fromkeys(col.name for col in tree.find_all(exp.Column)))


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


#: integer types whose text form is a number literal a request would write (``carrier_id = 42``)
_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})


def group_filter(filter_sql: str, column: str, key: str, category: str, type_name: str) -> str | None:
    """The normalised filter of one group's rows: ``filter AND column = key`` (docs/serving.md, "The
    planner reuses them per group") — the filter a request for that group alone writes, so that the
    group's stored statistics match it exactly. The key is the value as text (``value::text``): a string
    literal for text and enum columns, a number for integer columns; None for other types (their
    literals are not written one way), whose groups keep no statistics of their own."""
    if category in ("S", "E"):
        literal = exp.Literal.string(key)
    elif type_name in _INTEGER_TYPES and re.fullmatch(r"-?[0-9]+", key):
        literal = exp.Literal.number(key) if not key.startswith("-") else exp.Neg(this=exp.Literal.number(key[1:]))
    else:
        return None
    equal = exp.EQ(this=exp.column(column, quoted=_needs_quotes(column)), expression=literal)
    tree = exp.and_(sqlglot.condition(filter_sql, dialect="postgres"), equal) if filter_sql else equal
    return normalize_filter(tree.sql(dialect="postgres"))


_SENTINEL = "7319046285301746"


def group_filters(filter_sql: str, column: str, keys, category: str, type_name: str) -> dict[str, str] | None:
    """:func:`group_filter` of many keys at once: normalised once, with a placeholder value, and the
    keys' literals put in its place (normalising costs ~0.4 ms; a grouped fit may have 10⁵ groups).
    The placeholder's place is the key's whenever the filter does not name the group column (then no
    other conjunct's text begins like the group's, so sorting them never looks at the value); else,
    and whenever the first key's filter normalised in full differs, each key is normalised."""
    keys = list(keys)
    if not keys or group_filter(filter_sql, column, "0", category, type_name) is None:
        return None
    if column not in filter_columns(filter_sql):
        text = (_SENTINEL if category not in ("S", "E") else "k" + _SENTINEL)
        template = group_filter(filter_sql, column, text, category, type_name)
        placeholder = (_SENTINEL if category not in ("S", "E")
                       else exp.Literal.string(text).sql(dialect="postgres"))
        if template.count(placeholder) == 1:
            def literal(key: str) -> str:
                return key if category not in ("S", "E") else exp.Literal.string(key).sql(dialect="postgres")

            if all(category in ("S", "E") or re.fullmatch(r"-?[0-9]+", k) for k in keys):
                out = {k: template.replace(placeholder, literal(k)) for k in keys}
                if out[keys[0]] == group_filter(filter_sql, column, keys[0], category, type_name):
                    return out
    return {k: group_filter(filter_sql, column, k, category, type_name) for k in keys}
