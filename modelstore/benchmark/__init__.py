"""The benchmark of issue 5: the paper's §6 experiments on PostgreSQL against from-scratch baselines,
and the targets of DESIGN.md §7 (``modelstore bench --quick|--full``, ``bench/README.md``).

Modules, one concept each: :mod:`.config` (the scale of a run), :mod:`.data` (the seeded table and
its COPY loader), :mod:`.workloads` (query sets and coverage placements), :mod:`.baselines` (from
scratch and the analyst's way), :mod:`.measure` (timing a request and its breakdown),
:mod:`.experiments` (one function per figure), :mod:`.report` (JSON and SUMMARY.md),
:mod:`.plots` (PNG figures) and :mod:`.runner` (putting it together).
"""

from modelstore.benchmark.config import Config, configure, for_mode, full, quick
from modelstore.benchmark.experiments import EXPERIMENTS
from modelstore.benchmark.runner import ORDER, parse_only, run, write_summary

__all__ = ["EXPERIMENTS", "ORDER", "Config", "configure", "for_mode", "full", "parse_only", "quick", "run", "write_summary"]
