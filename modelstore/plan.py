"""Plans as plain data: signed steps over stored statistics and base-row scans (paper §5, Fig. 1c).

A plan answers one descriptor as a signed sum: ``+ stored #12 [1, 50000]``, ``− scan (40000, 50000]``…
The planner produces a :class:`Plan`; the executor runs it and returns an :class:`ExecutedPlan`
with what each step actually cost. ``str()`` of either reads like PostgreSQL's EXPLAIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelstore.descriptor import Descriptor, Range, bound_text, parse_bound


@dataclass(frozen=True)
class Step:
    """Add (sign +1) or subtract (sign −1) the statistics of ``range``, from the catalog or a scan."""

    sign: int
    op: str  # 'stored' | 'scan'
    range: Range
    stats_id: int | None = None  # for 'stored'
    stored_columns: tuple[str, ...] = ()  # for 'stored': the columns the stored statistics cover
    est_rows: int | None = None  # rows the step summarises, when known before running it

    def __post_init__(self):
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign!r} instead")
        if self.op not in ("stored", "scan"):
            raise ValueError(f"op must be 'stored' or 'scan', got {self.op!r} instead")
        if (self.op == "stored") != (self.stats_id is not None):
            raise ValueError("a 'stored' step needs a stats_id and a 'scan' step must not have one")

    def label(self) -> str:
        sign = "+" if self.sign > 0 else "−"
        what = f"stored statistics #{self.stats_id}" if self.op == "stored" else "scan"
        return f"{sign} {what} {self.range}"

    def to_json(self) -> dict:
        return {
            "sign": self.sign,
            "op": self.op,
            "range": _range_json(self.range),
            "stats_id": self.stats_id,
            "stored_columns": list(self.stored_columns),
            "est_rows": self.est_rows,
        }


    @classmethod
    def from_json(cls, data: dict, order_kind: str) -> "Step":
        return cls(data["sign"], data["op"], _range_from_json(data["range"], order_kind), data.get("stats_id"),
                   tuple(data.get("stored_columns", ())), data.get("est_rows"))


def _range_json(r: Range) -> dict:
    return {"lo": bound_text(r.lo), "hi": bound_text(r.hi), "lo_closed": r.lo_closed, "hi_closed": r.hi_closed}


def _range_from_json(data: dict, order_kind: str) -> Range:
    return Range(parse_bound(data["lo"], order_kind), parse_bound(data["hi"], order_kind),
                 data["lo_closed"], data["hi_closed"])


@dataclass(frozen=True)
class Plan:
    """The steps that produce the statistics of ``descriptor``."""

    descriptor: Descriptor
    steps: tuple[Step, ...]
    strategy: str  # a short reason: 'exact stored statistics', 'scan: nothing stored covers the range'
    planning_seconds: float = 0.0

    @property
    def scans(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.op == "scan")

    @property
    def stored(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.op == "stored")

    @property
    def touches_base_rows(self) -> bool:
        return bool(self.scans)

    def header(self) -> str:
        d = self.descriptor
        where = f" WHERE {d.filter_sql}" if d.filter_sql else ""
        return f"Plan for {d.kind} on {d.source.qualified} {d.range}{where}  ({self.strategy})"

    def __str__(self) -> str:
        lines = [self.header()] + [f"  -> {s.label()}" for s in self.steps]
        lines.append(f"Planning time: {self.planning_seconds * 1000:.3f} ms")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "strategy": self.strategy,
            "steps": [s.to_json() for s in self.steps],
            "planning_ms": self.planning_seconds * 1000,
        }


@dataclass(frozen=True)
class StepResult:
    step: Step
    rows: int  # rows the step's statistics summarise (n + rows skipped for NULLs)
    seconds: float


@dataclass(frozen=True)
class ExecutedPlan:
    """A plan with what running it cost: per step rows and time, and the totals."""

    plan: Plan
    results: tuple[StepResult, ...]
    execution_seconds: float
    stored_stats_id: int | None = None  # where the result's statistics were materialised
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def rows_scanned(self) -> int:
        return sum(r.rows for r in self.results if r.step.op == "scan")

    @property
    def stats_used(self) -> list[int]:
        return [r.step.stats_id for r in self.results if r.step.op == "stored"]

    @property
    def total_seconds(self) -> float:
        return self.plan.planning_seconds + self.execution_seconds

    def __str__(self) -> str:
        lines = [self.plan.header()]
        for r in self.results:
            lines.append(f"  -> {r.step.label()}  (rows={r.rows} time={r.seconds * 1000:.3f} ms)")
        lines.append(f"Planning time: {self.plan.planning_seconds * 1000:.3f} ms")
        lines.append(f"Execution time: {self.execution_seconds * 1000:.3f} ms")
        if self.stored_stats_id is not None:
            lines.append(f"Materialized as statistics #{self.stored_stats_id}")
        return "\n".join(lines)

    @classmethod
    def from_json(cls, data: dict, descriptor: Descriptor) -> "ExecutedPlan":
        """Rebuild the record :meth:`to_json` stored in the catalog (for a model loaded by name)."""
        steps = tuple(Step.from_json(s, descriptor.source.order_kind) for s in data["steps"])
        plan = Plan(descriptor, steps, data["strategy"], data["planning_ms"] / 1000)
        results = tuple(StepResult(step, r["rows"], r["ms"] / 1000) for step, r in zip(steps, data["results"]))
        return cls(plan, results, data["execution_ms"] / 1000, data.get("stored_stats_id"))

    def to_json(self) -> dict:
        out = self.plan.to_json()
        out["results"] = [{"rows": r.rows, "ms": r.seconds * 1000} for r in self.results]
        out["execution_ms"] = self.execution_seconds * 1000
        out["rows_scanned"] = self.rows_scanned
        out["stored_stats_id"] = self.stored_stats_id
        return out
