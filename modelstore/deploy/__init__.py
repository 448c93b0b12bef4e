"""Living models (issue #16, DESIGN.md §4, docs/deployments.md): deployments that stay the exact model
of a moving window, with versions, rollback, prequential monitoring and the worker that keeps them
current. Layer 6, beside the language: written against a store it is handed.

- :mod:`.windows` — every row, the last N rows, the last interval; resolved to a range;
- :mod:`.refresh` — one refresh in one transaction: plan the window like any request, solve, record;
- :mod:`.versions` — when a change is a version, which version serves (strategies, the gate);
- :mod:`.monitor` — prequential evaluation and the Page-Hinkley drift signal;
- :mod:`.deployment` — deploy, the handle, rollback, undeploy;
- :mod:`.observe` — labelled rows written to the table and absorbed (Velox's observe);
- :mod:`.worker` — ``modelstore worker``: LISTEN, refresh what changed, scheduled work.
"""

from modelstore.deploy.deployment import Deployment, deploy, deployment, deployments, rollback, undeploy
from modelstore.deploy.observe import Observed, observe
from modelstore.deploy.windows import Window, parse_window

__all__ = ["Deployment", "deploy", "deployment", "deployments", "rollback", "undeploy", "observe", "Observed", "Window", "parse_window"]
