"""The store layer: :class:`Store`, the façade every door calls (Python, the language, PL/Python, the CLI)."""

from modelstore.store.store import Store, connect

__all__ = ["Store", "connect"]
