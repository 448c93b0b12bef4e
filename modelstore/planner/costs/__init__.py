"""The planner's cost model, calibrated against the actual database (paper §5).

Three concepts, one module each:

- :mod:`.model` — the value: :class:`CostModel`'s calibrated figures, and the monotone costs the
  planner composes from them (C(M) of a stored model, F(n) of a scan, a logistic chunk's training);
- :mod:`.calibration` — :func:`calibrate`: measuring those figures on the server, with the very
  statements the executor runs;
- :mod:`.persist` — :func:`save`, :func:`load` and :func:`load_or_calibrate`: the figures kept in
  ``modelstore.cost_model``, once per server version;
- :mod:`.learning` — :class:`~.learning.CostLearner`: a robust correction of those figures per table
  and scan path, fitted on the last executed plans and kept in ``modelstore.cost_corrections``.

Callers import from here (``from modelstore.planner import costs``; ``costs.load_or_calibrate(conn)``).
"""

from modelstore.planner.costs.calibration import calibrate
from modelstore.planner.costs.model import FAMILY_DEGREE, FLOOR_MS, MAX_K, CostModel, aggregate_terms
from modelstore.planner.costs.persist import load, load_or_calibrate, save

__all__ = ["FAMILY_DEGREE", "FLOOR_MS", "MAX_K", "CostModel", "aggregate_terms", "calibrate", "load",
           "load_or_calibrate", "save"]
