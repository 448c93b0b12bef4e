"""A session's model cache (issue #18; docs/serving.md, "A session's model cache").

``store.predict(name, X, groups=…)`` scores with a model rebuilt from the catalog once and kept by the
store, so that a service answering many predictions reads the catalog only when a model changes. The
cache LISTENs on the store's connection to ``modelstore_models``: a trigger on the catalog's model rows
(migration 0009) notifies every change of a named model — a fit that replaces it, a deployment's
refresh, a rollback, DROP MODEL — at commit, and before every lookup the cache reads the notifications
that have arrived (without a round trip) and forgets the models they name. LISTEN is issued before the
first model is read, so a change committed after that read is always heard of.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

CHANNEL = "modelstore_models"


class ModelCache:
    """Models by name for one store, forgotten when the catalog says they changed."""

    def __init__(self, store):
        self.store = store
        self._models: dict[str, object] = {}
        self._listening = False
        self.loads = 0  # models read from the catalog (what the cache saves is every other lookup)

    def get(self, name: str):
        self._drain()
        model = self._models.get(name)
        if model is None:
            model = self._models[name] = self.store.model(name)
            self.loads += 1
        return model

    def forget(self, name: str | None = None) -> None:
        if name is None:
            self._models.clear()
        else:
            self._models.pop(name, None)

    def _drain(self) -> None:
        conn: psycopg.Connection = self.store.conn
        if not self._listening:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
            self._listening = True
            self._models.clear()  # read before LISTEN: not trusted
        # psycopg keeps the notifications that arrive with other statements' results and yields them
        # first; then it reads those waiting on the socket, without a round trip (timeout 0)
        for notify in conn.notifies(timeout=0):
            self._notified(notify)

    def _notified(self, notify) -> None:
        if notify.channel == CHANNEL:
            self._models.pop(notify.payload, None)


__all__ = ["ModelCache", "CHANNEL"]
