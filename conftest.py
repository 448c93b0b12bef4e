"""pytest's project-wide set-up.

The shared store fixtures (tests/fixtures.py) are a plugin, registered here, in the top-level
conftest, where ``pytest_plugins`` is allowed whatever paths pytest is given.
"""

from __future__ import annotations

pytest_plugins = ["tests.fixtures"]
