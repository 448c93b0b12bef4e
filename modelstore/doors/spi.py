"""PL/Python's SPI as the part of a psycopg 3 connection that modelstore's core uses.

:class:`SpiConnection` wraps the ``plpy`` module a SQL function is handed: every statement goes
through SPI, inside the caller's transaction and with the caller's privileges, so the core (the same
:class:`~modelstore.store.Store` as the Python API; :mod:`modelstore.doors.plpython`) sees the
caller's uncommitted rows and obeys row-level security.

What the adapter does, and why:

* queries (``str`` with ``%s``/``%(name)s`` placeholders, or ``psycopg.sql`` objects) are rendered
  with their parameters bound client-side as literals, because SPI's ``plpy.execute`` takes a
  statement's text: :func:`bind` finds psycopg's placeholders and each value is quoted by psycopg
  itself (``sql.Literal(value).as_string(context)``, what a ``ClientCursor`` sends): the same
  quoting as psycopg, none of our own;
* PL/Python returns rows as dicts, which lose columns of equal name (the aggregate scans return
  ``avg, avg, …``), so a SELECT is first described (``LIMIT 0``, planned but not run) and, when its
  names repeat, run with positional aliases; rows come back as tuples in column order;
* values PL/Python hands over as strings (dates, timestamps, jsonb, uuid, interval…) are loaded by
  psycopg's text loaders for the column's type OID, so the core sees psycopg's Python types;
* ``transaction()`` is a PL/Python subtransaction: a failed block rolls back what it wrote; SPI runs
  every statement in a subtransaction of its own, where ``SET TRANSACTION READ ONLY`` would end with
  that statement, so a block that asks for it gets it prefixed to each of its statements instead;
* SPI errors become the psycopg exception of the same SQLSTATE (the core catches some of them);
* COPY (the statistics index build) and transaction control are not available through SPI and say so.

The SQL functions' own SET clauses (``sql/plpython.sql``) pin ``DateStyle`` to ISO output and
``IntervalStyle`` to ``postgres`` for the duration of a call, the formats psycopg's loaders read.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.adapt import Transformer
from psycopg.pq import Format, TransactionStatus
from psycopg.rows import tuple_row

__all__ = ["INDEX_HINT", "Column", "SpiConnection", "SpiCursor", "SpiInfo", "bind"]

#: what to run instead of what SPI cannot do
INDEX_HINT = ("build statistics indexes from Python (store.build_index) or the command line "
              "(modelstore index build); see docs/plpython.md")

# Types whose PL/Python conversion already is psycopg's (bool, integers, oid, floats, numeric as
# Decimal, text-like as str, bytea as bytes) and their arrays: their values are used as they come.
_NATIVE_OIDS = frozenset({
    16, 17, 18, 19, 20, 21, 23, 25, 26, 700, 701, 705, 1042, 1043, 1700,  # scalars
    1000, 1001, 1002, 1003, 1005, 1007, 1009, 1014, 1015, 1016, 1021, 1022, 1028, 1231,  # their arrays
})
_TIMESTAMPTZ_OIDS = frozenset({1184, 1185})  # timestamptz, timestamptz[]

#: psycopg's way to make a transaction() block read-only (the model language's SELECTs)
_SET_READ_ONLY = re.compile(r"^\s*SET\s+TRANSACTION\s+READ\s+ONLY\s*;?\s*$", re.IGNORECASE)

#: statements seen to return distinctly named columns (per backend): these run without being described
#: first, since their result's own column names and types are then complete
_UNIQUE_NAMES: "OrderedDict[str, None]" = OrderedDict()
_UNIQUE_NAMES_SIZE = 512
_UNIQUE_NAMES_MAX_TEXT = 4096

#: first keyword of a statement whose result can be described by wrapping it in a subquery
_ROW_STATEMENT = re.compile(r"^\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*\(*\s*(select|with|values|table)\b",
                            re.IGNORECASE | re.DOTALL)

#: a placeholder as psycopg reads one: ``%s`` (``%t``, ``%b``), ``%(name)s``, ``%%`` for a ``%``; a
#: lone ``%`` at the end matches with an empty format, and is refused like any other stray ``%``
_PLACEHOLDER = re.compile(r"%(?:\(([^)]+)\))?(.|$)", re.DOTALL)


def bind(query: str, params, context) -> str:
    """``query`` with its placeholders replaced by ``params`` as SQL literals (quoted by psycopg in
    ``context``): the text psycopg's ``ClientCursor`` sends for ``execute(query, params)``.

    As psycopg: without ``params`` the text is left as it is (``%%`` included); otherwise ``%%``
    becomes ``%``, positional placeholders take a sequence and named ones a mapping (a name may
    repeat), and a stray ``%``, mixed kinds or a count that does not match raise.
    """
    if params is None:
        return query
    pieces, keys, start = [""], [], 0  # pieces[i] is the text before keys[i]; the last one ends the query
    for m in _PLACEHOLDER.finditer(query):
        name, fmt = m.groups()
        pieces[-1] += query[start:m.start()]
        start = m.end()
        if name is None and fmt == "%":
            pieces[-1] += "%"
        elif fmt in ("s", "t", "b"):  # the format only matters server-side: client-side all are literals
            keys.append(len(keys) if name is None else name)
            pieces.append("")
        elif name is None and fmt == "(":
            raise psycopg.ProgrammingError(f"incomplete placeholder: {query[m.start():].split()[0]!r}")
        elif name is None and fmt in (" ", ""):
            raise psycopg.ProgrammingError("incomplete placeholder: '%'; if you want to use '%' as an operator "
                                           "you can double it up, i.e. use '%%'")
        else:
            raise psycopg.ProgrammingError(f"only '%s', '%b', '%t' are allowed as placeholders, got {m.group(0)!r}")
    pieces[-1] += query[start:]
    if len({type(k) for k in keys}) > 1:
        raise psycopg.ProgrammingError("positional and named placeholders cannot be mixed")
    if isinstance(params, Sequence) and not isinstance(params, str | bytes):
        if len(params) != len(keys):
            raise psycopg.ProgrammingError(
                f"the query has {len(keys)} placeholders but {len(params)} parameters were passed")
        if keys and isinstance(keys[0], str):
            raise TypeError("named placeholders require a mapping of parameters")
        values = list(params)
    elif keys and isinstance(keys[0], int):
        raise TypeError("positional placeholders (%s) require a sequence of parameters")
    else:
        missing = sorted({k for k in keys if k not in params})
        if missing:
            raise psycopg.ProgrammingError(f"query parameter missing: {', '.join(missing)}")
        values = [params[k] for k in keys]
    literals = ["NULL" if v is None else sql.Literal(v).as_string(context) for v in values]
    return "".join(piece + literal for piece, literal in zip(pieces, literals)) + pieces[-1]


# -- the connection -------------------------------------------------------------------------------------

class SpiInfo:
    """The ``conn.info`` fields the core reads, from the server session itself."""

    transaction_status = TransactionStatus.INTRANS  # a SQL function always runs inside a transaction
    host = "(inside the server)"
    encoding = "utf-8"  # SPI takes and returns Python str; the server converts to its encoding

    def __init__(self, conn: "SpiConnection"):
        self._conn = conn

    def parameter_status(self, name: str) -> str | None:
        return self._conn.execute("SELECT pg_catalog.current_setting(%s, true)", [name]).fetchone()[0]

    @property
    def dbname(self) -> str:
        return self._conn.execute("SELECT pg_catalog.current_database()").fetchone()[0]

    @property
    def user(self) -> str:
        return self._conn.execute("SELECT current_user").fetchone()[0]

    @property
    def port(self) -> int:
        return int(self.parameter_status("port"))

    @property
    def server_version(self) -> int:
        return int(self.parameter_status("server_version_num"))


class SpiConnection:
    """PL/Python's SPI behind the subset of ``psycopg.Connection`` that modelstore's core uses.

    It never commits, rolls back or closes anything: the caller's transaction is the caller's.
    """

    #: statements outside transaction() blocks run at once, as on an autocommit psycopg connection; here
    #: "at once" means inside the caller's transaction, which commits or rolls back with the caller
    autocommit = True
    #: psycopg's AdaptContext protocol, so that ``sql.Composable.as_string(conn)`` works: no libpq connection
    connection = None
    adapters = psycopg.adapters

    def __init__(self, plpy):
        self.plpy = plpy
        self.closed = False
        self.info = SpiInfo(self)
        self._session_tz: dt.tzinfo | None = None
        self._blocks: list[bool] = []  # open transaction() blocks: read-only or not

    @property
    def read_only(self) -> bool:
        """Whether the innermost transaction() block (or one around it) asked for READ ONLY."""
        return any(self._blocks)

    def execute(self, query, params=None, *, prepare: bool | None = None, binary: bool = False) -> "SpiCursor":
        """Run one statement (``prepare`` and ``binary`` are accepted and have no effect: SPI hands
        values over already converted)."""
        return self.cursor().execute(query, params)

    def cursor(self, name: str = "", *, row_factory=None, binary: bool = False, **_ignored) -> "SpiCursor":
        """A cursor; a named one streams its rows from a server-side portal ``itersize`` at a time."""
        return SpiCursor(self, name=name or None, row_factory=row_factory)

    @contextlib.contextmanager
    def transaction(self, savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[None]:
        """A PL/Python subtransaction: committed into the caller's transaction on success, rolled back
        on an exception (re-raised) or ``psycopg.Rollback`` (swallowed, as psycopg does)."""
        sub = self.plpy.subtransaction()
        sub.__enter__()
        self._blocks.append(False)
        try:
            yield None
        except psycopg.Rollback as exc:
            sub.__exit__(type(exc), exc, exc.__traceback__)
            if exc.transaction is not None:
                raise
        except BaseException as exc:
            sub.__exit__(type(exc), exc, exc.__traceback__)
            raise
        else:
            if force_rollback:
                exc = psycopg.Rollback()
                sub.__exit__(type(exc), exc, None)
            else:
                sub.__exit__(None, None, None)
        finally:
            self._blocks.pop()

    def commit(self) -> None:
        raise psycopg.NotSupportedError("a SQL function cannot commit: the caller's transaction decides")

    def rollback(self) -> None:
        raise psycopg.NotSupportedError("a SQL function cannot roll back: the caller's transaction decides")

    def close(self) -> None:
        self.closed = True  # nothing to release: the SPI connection belongs to the server

    # -- SPI ----------------------------------------------------------------------------------------

    def _render(self, query, params) -> str:
        """The statement's text with its parameters bound as literals, as psycopg's ClientCursor sends it."""
        if self.closed:
            raise psycopg.OperationalError("the connection is closed")
        # one Transformer for the statement, as a psycopg cursor has: its dumpers are looked up once per type
        context = Transformer(self)
        if isinstance(query, sql.Composable):
            query = query.as_string(context)
        elif isinstance(query, bytes):
            query = query.decode("utf-8")
        return bind(query, params, context)

    def _spi(self, call, *args):
        """A plpy call, its SPI error raised as the psycopg exception of the same SQLSTATE."""
        try:
            return call(*args)
        except self.plpy.SPIError as exc:
            raise _psycopg_error(exc) from exc

    def _describe(self, text: str) -> tuple[list[str], list[int], str] | None:
        """(names, type OIDs, the text to run) of a row-returning statement, without running it; the
        text gets positional column aliases when names repeat. None when the statement is not a plain
        query (DML, utility, several statements): it is then run as it is."""
        if text in _UNIQUE_NAMES:
            _UNIQUE_NAMES.move_to_end(text)
            return None
        if not _ROW_STATEMENT.match(text):
            return None
        body = text.rstrip().rstrip(";")
        try:
            probe = self.plpy.execute(sql.SQL("SELECT * FROM (\n{}\n) AS modelstore_q LIMIT 0").format(
                sql.SQL(body)).as_string(None))
        except self.plpy.SPIError:
            return None  # e.g. a WITH holding INSERT … RETURNING: run it as it is and report what it gives
        names, types = list(probe.colnames()), list(probe.coltypes())
        if len(set(names)) == len(names):
            if len(text) <= _UNIQUE_NAMES_MAX_TEXT:
                _UNIQUE_NAMES[text] = None
                if len(_UNIQUE_NAMES) > _UNIQUE_NAMES_SIZE:
                    _UNIQUE_NAMES.popitem(last=False)
            return names, types, text
        aliases = sql.SQL(", ").join(sql.Identifier(f"c{i}") for i in range(len(names)))
        return names, types, sql.SQL("SELECT * FROM (\n{}\n) AS modelstore_q ({})").format(
            sql.SQL(body), aliases).as_string(None)

    def _session_timezone(self) -> dt.tzinfo:
        """The session's TimeZone: psycopg gives timestamptz values in the connection's time zone."""
        if self._session_tz is None:
            name = self.execute("SELECT pg_catalog.current_setting('TimeZone')").fetchone()[0]
            try:
                self._session_tz = dt.timezone.utc if name == "UTC" else ZoneInfo(name)  # as psycopg's get_tzinfo
            except (KeyError, ValueError, OSError):
                self._session_tz = dt.timezone.utc  # psycopg's fallback for a zone Python does not know
        return self._session_tz

    def _converters(self, types: Sequence[int]) -> list:
        """Per column: None (PL/Python's value is psycopg's) or a function making it psycopg's."""
        tx = None
        out = []
        for oid in types:
            if oid in _NATIVE_OIDS:
                out.append(None)
                continue
            tx = tx or Transformer(self)
            info = psycopg.adapters.types.get(oid)
            element = info.oid if info is not None and info.array_oid == oid else None
            loader = tx.get_loader(element or oid, Format.TEXT)
            tz = self._session_timezone() if oid in _TIMESTAMPTZ_OIDS else None
            out.append(_converter(loader, tz))
        return out

    def __repr__(self) -> str:
        return "<SpiConnection (PL/Python SPI, the caller's transaction)>"


def _converter(loader, tz):
    def convert(value):
        if isinstance(value, list):  # an array: PL/Python made the list, psycopg would load each element
            return [convert(v) for v in value]
        if not isinstance(value, str):  # e.g. a composite (dict): left as PL/Python gives it
            return value
        loaded = loader.load(value.encode("utf-8"))
        return loaded.astimezone(tz) if tz is not None and isinstance(loaded, dt.datetime) else loaded
    return convert


def _copy_error() -> psycopg.NotSupportedError:
    return psycopg.NotSupportedError(
        "COPY is not available inside a SQL function (PostgreSQL's SPI has no COPY), so a statistics index "
        f"cannot be built from modelstore's SQL functions; {INDEX_HINT}")


def _psycopg_error(exc) -> psycopg.Error:
    """The psycopg exception class of the SPI error's SQLSTATE, with its message."""
    try:
        cls = psycopg.errors.lookup(exc.sqlstate)
    except (KeyError, TypeError, AttributeError):
        cls = psycopg.DatabaseError
    return cls(str(exc))


class Column:
    """A ``cursor.description`` entry: the name and type OID the core reads."""

    def __init__(self, name: str, type_code: int):
        self.name, self.type_code = name, type_code

    def __repr__(self) -> str:
        return f"<Column {self.name!r} oid={self.type_code}>"


class SpiCursor:
    """A cursor over SPI: rows are tuples in column order (or what ``row_factory`` makes of them)."""

    arraysize = 1

    def __init__(self, conn: SpiConnection, *, name: str | None = None, row_factory=None):
        self.connection = conn
        self.name = name
        self.row_factory = row_factory or tuple_row
        self.itersize = 100  # psycopg's default for server-side cursors
        self.description: list[Column] | None = None
        self.rowcount = -1
        self.closed = False
        self._rows: list = []
        self._pos = 0
        self._portal = None  # a plpy cursor, for named cursors
        self._names: list[str] = []
        self._convert: list = []
        self._make = None

    # -- running --------------------------------------------------------------------------------------

    def execute(self, query, params=None, *, prepare: bool | None = None, binary: bool | None = None) -> "SpiCursor":
        conn, plpy = self.connection, self.connection.plpy
        text = conn._render(query, params)
        self._rows, self._pos, self._portal, self.description, self.rowcount = [], 0, None, None, -1
        if _SET_READ_ONLY.match(text):
            if not conn._blocks:
                raise psycopg.NotSupportedError(
                    "SET TRANSACTION READ ONLY outside a transaction() block would change the caller's transaction")
            conn._blocks[-1] = True
            return self
        if self.name is not None:  # server-side: a portal, fetched itersize rows at a time
            _UNIQUE_NAMES.pop(text, None)  # a portal needs the columns before its first fetch
            described = conn._spi(conn._describe, text)
            if described is None:
                raise psycopg.ProgrammingError(f"a named cursor needs a query that returns rows, got {text[:80]!r}")
            if conn.read_only:
                raise psycopg.NotSupportedError("a named cursor cannot be read-only inside the server (a portal "
                                                "runs one statement, without SET TRANSACTION READ ONLY before it)")
            names, types, runnable = described
            self._portal = conn._spi(plpy.cursor, runnable)
            self._set_columns(names, types, len(set(names)) < len(names))
            return self
        described = conn._spi(conn._describe, text)
        runnable = described[2] if described else text
        if conn.read_only:  # one SPI call, one subtransaction: the SET holds for the statement after it
            runnable = "SET TRANSACTION READ ONLY;\n" + runnable
        result = conn._spi(plpy.execute, runnable)
        self.rowcount = result.nrows()
        aliased = described is not None and len(set(described[0])) < len(described[0])
        if aliased:
            names, types = described[0], described[1]
        else:
            try:
                names, types = list(result.colnames()), list(result.coltypes())
            except plpy.Error:  # "command did not produce a result set"
                return self
            if len(set(names)) < len(names):
                _UNIQUE_NAMES.pop(text, None)  # its columns changed since it was seen: describe it next time
                raise psycopg.NotSupportedError(
                    f"the statement returns several columns named alike ({names}); PL/Python keeps only one of "
                    "them — give its columns distinct names")
        self._set_columns(names, types, aliased)
        self._rows = self._tuples(result)
        return self

    def executemany(self, query, params_seq, *, returning: bool = False) -> None:
        for params in params_seq:
            self.execute(query, params)

    def copy(self, statement, params=None, **_ignored):
        raise _copy_error()

    def _set_columns(self, names: list[str], types: list[int], aliased: bool) -> None:
        self.description = [Column(n, t) for n, t in zip(names, types)]
        self._names = [f"c{i}" for i in range(len(names))] if aliased else names
        self._convert = self.connection._converters(types)
        self._make = None if self.row_factory is tuple_row else self.row_factory(self)

    def _tuples(self, result) -> list:
        keys, convert = self._names, self._convert
        rows = []
        for row in result:
            values = tuple(row[k] if f is None or row[k] is None else f(row[k]) for k, f in zip(keys, convert))
            rows.append(values if self._make is None else self._make(values))
        return rows

    # -- fetching -------------------------------------------------------------------------------------

    def _check_result(self) -> None:
        if self.description is None:
            raise psycopg.ProgrammingError("the last operation didn't produce a result")

    def _more(self) -> bool:
        """Refill from the portal (named cursors); False when no row is left."""
        if self._pos < len(self._rows):
            return True
        if self._portal is None:
            return False
        batch = self.connection._spi(self._portal.fetch, max(1, int(self.itersize)))
        self._rows, self._pos = self._tuples(batch), 0
        if not self._rows:
            self._portal.close()
            self._portal = None
            return False
        return True

    def fetchone(self):
        self._check_result()
        if not self._more():
            return None
        self._pos += 1
        return self._rows[self._pos - 1]

    def fetchmany(self, size: int = 0) -> list:
        self._check_result()
        out = []
        for _ in range(size or self.arraysize):
            row = self.fetchone()
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> list:
        self._check_result()
        out = []
        while self._more():
            out.extend(self._rows[self._pos:])
            self._pos = len(self._rows)
        return out

    def __iter__(self):
        self._check_result()
        while self._more():
            self._pos += 1
            yield self._rows[self._pos - 1]

    def close(self) -> None:
        if self._portal is not None:
            self._portal.close()
            self._portal = None
        self.closed = True

    def __enter__(self) -> "SpiCursor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

