"""Sources: resolve a table name and its columns in PostgreSQL's catalog, and type-check a request.

Table names are SQL names (``sales``, ``public.sales``, ``"Mixed Case"``): unquoted parts fold to
lower case as in PostgreSQL, and an unqualified name follows the search path. Column names in
``features``/``target``/``order_by`` are exact names, like DataFrame columns; a near miss in case is
suggested in the error.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import psycopg
from psycopg import sql
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from modelstore.errors import ColumnTypeError, InputError, UnknownColumnError, UnknownTableError

# pg_type.typcategory: N numeric, B boolean, D date/time, S string, E enum
_ORDER_KINDS = {"date": "date", "timestamp without time zone": "timestamp", "timestamp with time zone": "timestamptz"}


@dataclass(frozen=True)
class Column:
    name: str
    type_name: str  # format_type() output, e.g. 'double precision', 'numeric(10,2)'
    category: str  # pg_type.typcategory
    #: "attnum:type oid:typmod" — what stored statistics record to notice an ALTER COLUMN … TYPE or a
    #: column dropped and added again under the same name (modelstore.catalog.freshness)
    signature: str = ""

    @property
    def is_numeric(self) -> bool:
        return self.category in ("N", "B")

    def value_expr(self) -> sql.Composable:
        """The column as float8 (booleans as 0/1), the type every statistic is computed in."""
        if self.category == "B":
            return sql.SQL("{}::int::float8").format(sql.Identifier(self.name))
        return sql.SQL("{}::float8").format(sql.Identifier(self.name))


@dataclass(frozen=True)
class Partition:
    """A leaf of a partitioned table: an ordinary table, or a foreign table on a shard (docs/scale-out.md)."""

    schema: str
    name: str
    oid: int
    kind: str  # 'r' an ordinary table, 'f' a foreign table
    server: str | None = None  # a foreign partition's server
    extensions: tuple[str, ...] = ()  # the extensions the server's postgres_fdw options let it push down
    wrapper: str | None = None  # the foreign data wrapper (postgres_fdw for a shard)
    options: tuple[str, ...] = ()  # a foreign partition's options ('schema_name=…', 'table_name=…')

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return exp.table_(self.name, db=self.schema, quoted=True).sql(dialect="postgres")


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    oid: int
    columns: dict[str, Column]
    kind: str = "r"  # pg_class.relkind: r table, v view, m materialized view, p partitioned, f foreign
    partitions: tuple[Partition, ...] = ()  # a partitioned table's leaves

    @property
    def shards(self) -> tuple[Partition, ...]:
        """The foreign partitions: a partitioned table with any is sharded (docs/scale-out.md)."""
        return tuple(p for p in self.partitions if p.kind == "f")

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return exp.table_(self.name, db=self.schema, quoted=True).sql(dialect="postgres")

    def column(self, name: str, role: str) -> Column:
        """The column ``name`` (exact), or an error naming the role it was asked for."""
        if not isinstance(name, str) or not name:
            raise InputError(f"{role} must be a column name, got {name!r} instead")
        if name in self.columns:
            return self.columns[name]
        near = [c for c in self.columns if c.lower() == name.lower()]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise UnknownColumnError(f"{role} column {name!r} does not exist in table {self.display}{hint}")

    def order_kind(self, order_by: str) -> str:
        col = self.column(order_by, "order_by")
        if col.type_name in ("smallint", "integer", "bigint"):
            return "integer"
        if col.category == "N":
            return "number"
        if col.type_name in _ORDER_KINDS:
            return _ORDER_KINDS[col.type_name]
        raise ColumnTypeError(
            f"order_by column {order_by!r} must be a number, date or timestamp, got {col.type_name} instead"
        )


def parse_table_name(name: str) -> tuple[str | None, str]:
    """(schema or None, table) from a SQL name, folding unquoted parts as PostgreSQL does."""
    if not isinstance(name, str) or not name.strip():
        raise UnknownTableError(f"table must be a table name, got {name!r} instead")
    if "\x00" in name:
        raise UnknownTableError(f"table {name!r} is not a valid table name (it contains a NUL character)")
    return _parse_table_name(name)


@functools.lru_cache(maxsize=256)
def _parse_table_name(name: str) -> tuple[str | None, str]:
    """sqlglot's parse of a table name (about 0.3 ms; every request names its table: kept per name)."""
    try:
        table = normalize_identifiers(exp.to_table(name, dialect="postgres"), dialect="postgres")
    except (SqlglotError, ValueError) as exc:
        raise UnknownTableError(f"table {name!r} is not a valid table name") from exc
    if not isinstance(table, exp.Table) or table.args.get("catalog") or not table.name:
        raise UnknownTableError(f"table {name!r} must be 'table' or 'schema.table'")
    return (table.db or None), table.name


def resolve_table(conn: psycopg.Connection, name: str) -> Table:
    """Look the table up (tables, views, materialized views, partitioned and foreign tables)."""
    schema, relname = parse_table_name(name)
    if schema is None:
        row = conn.execute(
            """
            SELECT c.oid, n.nspname, c.relname, c.relkind
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
              AND n.nspname = ANY (pg_catalog.current_schemas(false))
            ORDER BY pg_catalog.array_position(pg_catalog.current_schemas(false), n.nspname)
            LIMIT 1
            """,
            [relname],
        ).fetchone()
    else:
        row = conn.execute(
            """
            SELECT c.oid, n.nspname, c.relname, c.relkind
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
            """,
            [schema, relname],
        ).fetchone()
    if row is None:
        raise UnknownTableError(f"table {name!r} does not exist (or is not visible to this role)")
    oid, nspname, relname, relkind = row
    cols = conn.execute(
        """
        SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory,
               a.attnum || ':' || a.atttypid || ':' || a.atttypmod
        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attnum
        """,
        [oid],
    ).fetchall()
    partitions = ()
    if relkind == "p":
        partitions = tuple(Partition(*row[:5], tuple(row[5] or ()), row[6], tuple(row[7] or ())) for row in conn.execute(
            """
            SELECT n.nspname, c.relname, c.oid, c.relkind, s.srvname,
                   (SELECT string_to_array(replace(substr(o, 12), ' ', ''), ',')
                      FROM unnest(s.srvoptions) AS o WHERE o LIKE 'extensions=%%'),
                   w.fdwname, f.ftoptions
            FROM pg_catalog.pg_partition_tree(%s::oid) AS t
            JOIN pg_catalog.pg_class c ON c.oid = t.relid
            JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_catalog.pg_foreign_table f ON f.ftrelid = c.oid
            LEFT JOIN pg_catalog.pg_foreign_server s ON s.oid = f.ftserver
            LEFT JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
            WHERE t.isleaf
            ORDER BY c.oid
            """,
            [oid],
        ).fetchall())
    return Table(nspname, relname, oid, {n: Column(n, t, c, sig) for n, t, c, sig in cols}, relkind, partitions)


def check_numeric(table: Table, names, role: str) -> list[Column]:
    """The columns, each required to be numeric (or boolean)."""
    cols = []
    for name in names:
        col = table.column(name, role)
        if not col.is_numeric:
            raise ColumnTypeError(f"{role} column {name!r} must be numeric, got {col.type_name} instead")
        cols.append(col)
    return cols


def check_encodable(table: Table, names) -> list[Column]:
    """Feature columns a pipeline can encode: numbers and booleans (scaled) or text and enums (one-hot or hashed)."""
    cols = []
    for name in names:
        col = table.column(name, "feature")
        if col.category not in ("N", "B", "S", "E"):
            raise ColumnTypeError(f"feature column {name!r} must be numeric, boolean or text, got {col.type_name} instead")
        cols.append(col)
    return cols


def check_class_column(table: Table, name: str) -> Column:
    col = table.column(name, "target")
    if col.category not in ("N", "B", "S", "E"):
        raise ColumnTypeError(f"class column {name!r} must hold numbers, booleans or text, got {col.type_name} instead")
    return col
