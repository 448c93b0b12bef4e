"""Where modelstore's PostgreSQL is, and how to connect to it.

:func:`resolve_dsn` decides which server to use — an explicit argument, ``MODELSTORE_DSN``,
``DATABASE_URL``, or else the embedded server (started on demand) — and turns SQLAlchemy URLs and
engines into plain libpq connection strings.  :func:`open_connection` opens a psycopg connection.
"""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from psycopg.conninfo import conninfo_to_dict

if TYPE_CHECKING:  # pragma: no cover
    from modelstore.server import EmbeddedServer

__all__ = ["DSN_ENV_VARS", "open_connection", "resolve_dsn", "to_libpq_dsn"]

#: environment variables consulted, in order, when no DSN is passed explicitly
DSN_ENV_VARS = ("MODELSTORE_DSN", "DATABASE_URL")

APPLICATION_NAME = "modelstore"

# scheme[+driver]://... ; libpq itself understands postgresql:// and postgres://
_URL_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9.\-]*)(?:\+(?P<driver>[A-Za-z0-9_.\-]+))?://")
_POSTGRES_SCHEMES = {"postgresql", "postgres"}


def _from_string(dsn: str, origin: str) -> str:
    text = dsn.strip()
    if not text:
        raise ValueError(f"{origin} is an empty string; expected a PostgreSQL DSN or URL")
    match = _URL_SCHEME.match(text)
    if match is None:
        return text  # a libpq keyword/value string such as "host=... dbname=..."
    scheme = match.group("scheme").lower()
    if scheme not in _POSTGRES_SCHEMES:
        raise ValueError(
            f"{origin} is a {scheme!r} URL; modelstore needs PostgreSQL "
            "(postgresql://user@host:port/dbname)"
        )
    # postgresql+psycopg://, postgresql+psycopg2://, postgres+asyncpg:// ... -> postgresql://
    return "postgresql://" + text[match.end():]


def _sqlalchemy_kind(value: Any) -> str | None:
    """'url' or 'engine' when value is a SQLAlchemy URL or Engine (without importing SQLAlchemy)."""
    if "sqlalchemy" not in sys.modules:
        return None  # nothing can be a SQLAlchemy object unless SQLAlchemy has been imported
    try:
        from sqlalchemy.engine import URL, Engine
    except ImportError:  # pragma: no cover
        return None
    if isinstance(value, URL):
        return "url"
    if isinstance(value, Engine):
        return "engine"
    return None


def _sqlalchemy_url_to_libpq(url: Any) -> str:
    """``postgresql://...`` from a SQLAlchemy URL, every component percent-encoded for libpq.

    (``URL.render_as_string(hide_password=False)`` is not enough: it leaves spaces and ``/`` in
    passwords and database names unencoded and writes spaces in the query as ``+``, which libpq
    reads literally.)
    """

    def q(value: Any) -> str:
        return quote(str(value), safe="")

    params: list[tuple[str, str]] = []
    netloc = ""
    if url.username is not None:
        netloc = q(url.username)
        if url.password is not None:
            netloc += ":" + q(url.password)
        netloc += "@"
    host = url.host or ""
    if host.startswith("/"):  # a Unix-socket directory
        params.append(("host", host))
        host = ""
    elif ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    netloc += host
    if url.port is not None:
        netloc += f":{url.port}"
    path = "/" + q(url.database) if url.database else ""
    for key, value in url.query.items():
        for item in value if isinstance(value, tuple) else (value,):
            params.append((key, item))
    query = "&".join(f"{q(k)}={q(v)}" for k, v in params)
    return f"postgresql://{netloc}{path}" + (f"?{query}" if query else "")


def to_libpq_dsn(dsn: Any, *, origin: str = "dsn") -> str:
    """A libpq connection string for a DSN/URL string, a SQLAlchemy ``URL`` or a SQLAlchemy ``Engine``.

    SQLAlchemy driver suffixes (``postgresql+psycopg://``) are removed. Raises :class:`TypeError` for
    any other kind of value and :class:`ValueError` for URLs of other databases.
    """
    if isinstance(dsn, str):
        return _from_string(dsn, origin)
    kind = _sqlalchemy_kind(dsn)
    if kind == "engine":
        dsn = dsn.url
        kind = "url"
    if kind == "url":
        backend = dsn.get_backend_name()
        if backend not in _POSTGRES_SCHEMES:
            raise ValueError(f"{origin} is a SQLAlchemy URL for {backend!r}; modelstore needs PostgreSQL")
        return _sqlalchemy_url_to_libpq(dsn)
    raise TypeError(
        f"{origin} must be a PostgreSQL DSN or URL string, a sqlalchemy.engine.URL or a "
        f"sqlalchemy Engine, not {type(dsn).__module__}.{type(dsn).__qualname__} ({dsn!r:.80})"
    )


def resolve_dsn(dsn: Any = None) -> tuple[str, EmbeddedServer | None]:
    """The libpq DSN to use and, when modelstore had to start its embedded server, that server.

    Order: the ``dsn`` argument; ``MODELSTORE_DSN``; ``DATABASE_URL``; else the embedded server
    (``EmbeddedServer().start()``).  The caller should ``stop()`` a returned server only when its
    ``started_by_us`` is true.
    """
    if dsn is not None:
        return to_libpq_dsn(dsn), None
    for var in DSN_ENV_VARS:
        value = os.environ.get(var)
        if value and value.strip():
            return to_libpq_dsn(value, origin=f"${var}"), None
    from modelstore.server import EmbeddedServer

    server = EmbeddedServer().start()
    return server.dsn, server


def open_connection(dsn: str, **kw: Any) -> psycopg.Connection:
    """A psycopg connection (``autocommit=False``, ``application_name='modelstore'`` unless the DSN sets one).

    Extra keyword arguments go to :func:`psycopg.connect` and override the defaults.
    """
    kw.setdefault("autocommit", False)
    if "application_name" not in kw:
        try:
            has_name = "application_name" in conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            has_name = False  # let psycopg.connect report the malformed DSN
        if not has_name:
            kw["application_name"] = APPLICATION_NAME
    return psycopg.connect(dsn, **kw)
