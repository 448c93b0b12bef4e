"""The store layer: :class:`Store`, the façade every door calls (Python, the language, PL/Python, the CLI)."""

from modelstore.store.store import MODEL_CLASSES, Store, connect

__all__ = ["MODEL_CLASSES", "Store", "connect"]
