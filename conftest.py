"""pytest's project-wide set-up (pyproject.toml: ``testpaths = ["tests", "modelstore"]``, ``--doctest-modules``).

* The shared store fixtures (tests/fixtures.py) are a plugin, registered here, in the top-level
  conftest, where ``pytest_plugins`` is allowed whatever paths pytest is given.
* The doctests import every module under ``modelstore/``; a module that needs an optional extra which
  is not installed is left out rather than failing to import: ``modelstore/benchmark`` needs matplotlib.
* ``pytest .`` collects nothing more than ``pytest`` does: not this file (its basename would clash with
  tests/conftest.py's when imported for doctests) nor the scripts of ``bench/``.
"""

from __future__ import annotations

import importlib.util

pytest_plugins = ["tests.fixtures"]

#: module folder → the distribution it cannot be imported without
_NEEDS = {"modelstore/benchmark": "matplotlib"}


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent package missing; blocked with sys.modules[name] = None
        return True


collect_ignore = ["conftest.py", "bench"] + [path for path, module in _NEEDS.items() if _missing(module)]
