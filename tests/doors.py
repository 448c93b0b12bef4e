"""What the tests of the SQL doors need from the server: plpython3u, and a Python that imports modelstore.

Where the server lacks either, those tests skip and say why (issue #21): the wheel that ships PostgreSQL has
no plpython3u, and an embedded server that could not stage modelstore for its unprivileged user (as root,
with the checkout under a directory of mode 0700) says so in ``EmbeddedServer.python_problem``.
"""

from __future__ import annotations

import psycopg
import pytest

#: why the session's embedded server cannot import modelstore in PL/Python (set by conftest's pg_cluster)
SERVER_PYTHON_PROBLEM: str | None = None


def require_plpython(dsn: str) -> None:
    """Skip the calling test, saying why, when the server at ``dsn`` cannot run the PL/Python door."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        available = conn.execute(
            "SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'plpython3u')").fetchone()[0]
        major = conn.info.server_version // 10000
    if not available:
        pytest.skip(f"this PostgreSQL {major} server has no plpython3u (a wheel's server has none; Debian: "
                    f"apt-get install postgresql-plpython3-{major}): the PL/Python door is absent there")
    if SERVER_PYTHON_PROBLEM:
        pytest.skip(SERVER_PYTHON_PROBLEM)
