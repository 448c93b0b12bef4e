"""The shared store fixtures (a pytest plugin: ``pytest_plugins`` in tests/conftest.py).

``store``
    A :class:`modelstore.Store` on the test module's own database (``module_dsn``), shared by the
    module's tests and closed after them.
``fresh_store``
    The same on a fresh database per test (``dsn``), closed after the test.

Both open the store with :func:`open_store`, whose options a module (or a class, or a test, for
``fresh_store``) sets with the ``store`` marker::

    pytestmark = pytest.mark.store(cost_model=CostModel.default())

A module whose store needs data extends the shared fixture under the same name — pytest hands the
overriding fixture the shared one — and returns it; closing stays with the shared fixture::

    @pytest.fixture(scope="module")
    def store(store):
        load_frame(store.conn, "t", frame)
        return store
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import pytest

import modelstore
from modelstore.planner import costs
from modelstore.planner.costs import CostModel
from modelstore.server import EmbeddedServer
from modelstore.stats import engine as stats_engine


def open_store(dsn: str, *, cost_model: CostModel | None = None, saved_cost_model: CostModel | None = None,
               **connect) -> modelstore.Store:
    """``modelstore.connect(dsn, **connect)`` with a test's cost model.

    cost_model
        Pinned on this store, in memory: the planner uses these figures and never measures (plans do
        not depend on the machine's load), and nothing is written to the catalog.
    saved_cost_model
        Written to the catalog (``modelstore.cost_model``) instead, where every door reads it — PL/Python
        runs in the server and cannot see a store's memory.
    connect
        ``modelstore.connect``'s options, e.g. ``materialize=False`` for a store that writes neither
        statistics nor models.
    """
    store = modelstore.connect(dsn, **connect)
    try:
        if saved_cost_model is not None:  # stored for the engine the connection uses: the figures are pinned
            costs.save(store.conn, dataclasses.replace(saved_cost_model, engine=stats_engine.engine(store.conn)[0]))
        if cost_model is not None:
            store._cost_model = cost_model
    except BaseException:
        store.close()
        raise
    return store


def _options(request) -> dict:
    marker = request.node.get_closest_marker("store")
    if marker is None:
        return {}
    if marker.args:
        raise TypeError(f"the store marker takes keyword arguments only (open_store's), got {marker.args!r}")
    return dict(marker.kwargs)


@pytest.fixture(scope="module")
def store(request, module_dsn):
    """A store on the module's database, shared by its tests; options from the module's ``store`` marker."""
    s = open_store(module_dsn, **_options(request))
    yield s
    s.close()


@pytest.fixture
def fresh_store(request, dsn):
    """A store on a fresh database of the test's own; options from the nearest ``store`` marker."""
    s = open_store(dsn, **_options(request))
    yield s
    s.close()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "store(**options): options of the shared store fixtures (tests/fixtures.py, open_store)")


@pytest.fixture
def pg_home():
    """A directory the server user can reach, even as root (pytest's tmp_path is mode 700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="modelstore-test-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        for datadir in path.rglob("PG_VERSION"):
            leftover = EmbeddedServer(datadir.parent)
            if leftover.is_running():
                leftover._pg_ctl("-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(path, ignore_errors=True)
