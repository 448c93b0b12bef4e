"""Plans as plain data: signed steps over stored statistics and base-row scans (paper §5, Fig. 1c).

A plan answers one descriptor as a signed sum: ``+ stored #12 [1, 50000]``, ``− scan [40001, 50000]``…
The planner produces a :class:`Plan` with estimated rows and costs; the executor runs it and returns
an :class:`ExecutedPlan` with what each step actually read and cost. ``str()`` of either reads like
PostgreSQL's EXPLAIN (ANALYZE).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from modelstore.stats.engine import DESCRIPTIONS as ENGINE_DESCRIPTIONS
from modelstore.request.descriptor import Descriptor, Range, bound_text, parse_bound


@dataclass(frozen=True)
class Step:
    """Add (sign +1) or subtract (sign −1) the statistics of ``range``, from the catalog or a scan.

    Logistic requests have ``train`` steps instead of scans: the range's rows are fetched and cut into
    chunks, one model trained per chunk (paper §4, Algorithm 2).
    """

    sign: int
    op: str  # 'stored' | 'scan' | 'train'
    range: Range
    stats_id: int | None = None  # for 'stored'
    stored_columns: tuple[str, ...] = ()  # for 'stored': the columns the stored statistics cover
    est_rows: int | None = None  # rows the step summarises, estimated before running it
    est_cost_ms: float | None = None
    nodes: tuple[tuple[int, int], ...] = ()  # for 'index': the (level, pos) nodes of index #stats_id

    def __post_init__(self):
        if self.sign not in (1, -1):
            raise ValueError(f"sign must be +1 or -1, got {self.sign!r} instead")
        if self.op not in ("stored", "index", "scan", "train"):
            raise ValueError(f"op must be 'stored', 'index', 'scan' or 'train', got {self.op!r} instead")
        if (self.op in ("stored", "index")) != (self.stats_id is not None):
            raise ValueError("a 'stored' or 'index' step needs a stats_id; a 'scan' or 'train' step has none")
        if (self.op == "index") != bool(self.nodes):
            raise ValueError("an 'index' step, and only it, lists the index nodes it adds up")

    def label(self) -> str:
        sign = "+" if self.sign > 0 else "−"
        if self.op == "stored":
            what = f"stored #{self.stats_id}"
        elif self.op == "index":
            what = f"index #{self.stats_id} ({len(self.nodes)} node{'s' if len(self.nodes) > 1 else ''})"
        else:
            what = self.op
        return f"{sign} {what} {self.range}"

    def estimate(self) -> str:
        rows = "?" if self.est_rows is None else f"{self.est_rows}"
        cost = "" if self.est_cost_ms is None else f" cost={self.est_cost_ms:.3f} ms"
        return f"(rows={rows}{cost})"

    def to_json(self) -> dict:
        return {
            "sign": self.sign,
            "op": self.op,
            "range": _range_json(self.range),
            "stats_id": self.stats_id,
            "stored_columns": list(self.stored_columns),
            "est_rows": self.est_rows,
            "est_cost_ms": self.est_cost_ms,
            "nodes": [list(n) for n in self.nodes],
        }

    @classmethod
    def from_json(cls, data: dict, order_kind: str) -> "Step":
        return cls(data["sign"], data["op"], _range_from_json(data["range"], order_kind), data.get("stats_id"),
                   tuple(data.get("stored_columns", ())), data.get("est_rows"), data.get("est_cost_ms"),
                   tuple(tuple(n) for n in data.get("nodes", ())))


def _range_json(r: Range) -> dict:
    return {"lo": bound_text(r.lo), "hi": bound_text(r.hi), "lo_closed": r.lo_closed, "hi_closed": r.hi_closed}


def _range_from_json(data: dict, order_kind: str) -> Range:
    return Range(parse_bound(data["lo"], order_kind), parse_bound(data["hi"], order_kind),
                 data["lo_closed"], data["hi_closed"])


@dataclass(frozen=True)
class Plan:
    """The steps that produce the statistics of ``descriptor``, with the planner's estimates."""

    descriptor: Descriptor
    steps: tuple[Step, ...]
    strategy: str  # why this path: 'one scan is cheapest', 'stored statistics and scans', …
    planning_seconds: float = 0.0
    est_cost_ms: float | None = None
    scratch_cost_ms: float | None = None  # the from-scratch plan (one scan of the request), estimated
    graph: dict = field(default_factory=dict, compare=False)  # relevant models, nodes, edges, truncated
    #: why stored statistics were not used or not stored (row-level security, a view, …)
    notes: tuple[str, ...] = field(default=(), compare=False)
    #: which engine computes the plan's scans ('c': the modelstore_stats extension, 'sql': SQL aggregates;
    #: '' for families whose scans train models)
    engine: str = field(default="", compare=False)

    @property
    def scans(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.op in ("scan", "train"))

    @property
    def stored(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.op in ("stored", "index"))

    @property
    def touches_base_rows(self) -> bool:
        return bool(self.scans)

    def header(self) -> str:
        d = self.descriptor
        where = f" WHERE {d.filter_sql}" if d.filter_sql else ""
        cost = "" if self.est_cost_ms is None else f"  (cost={self.est_cost_ms:.3f} ms)"
        return f"Plan for {d.kind} on {d.source.qualified} {d.range}{where}{cost}"

    def footer(self) -> list[str]:
        lines = [f"Strategy: {self.strategy}"]
        if self.scratch_cost_ms is not None:
            lines.append(f"From scratch ({self.descriptor.family.scratch_text}): cost={self.scratch_cost_ms:.3f} ms")
        if self.graph:
            g = self.graph
            lines.append(f"Relevant stored models: {g.get('relevant', 0)}"
                         + (" (truncated)" if g.get("truncated") else "")
                         + f"; graph: {g.get('nodes', 0)} nodes, {g.get('edges', 0)} edges")
        lines += [f"Note: {note}" for note in self.notes]
        if self.engine:
            lines.append(f"Statistics engine: {ENGINE_DESCRIPTIONS.get(self.engine, self.engine)}")
        lines.append(f"Planning time: {self.planning_seconds * 1000:.3f} ms")
        return lines

    def __str__(self) -> str:
        width = max((len(s.label()) for s in self.steps), default=0)
        lines = [self.header()] + [f"  ->  {s.label():<{width}}  {s.estimate()}" for s in self.steps]
        return "\n".join(lines + self.footer())

    def to_json(self) -> dict:
        return {
            "strategy": self.strategy,
            "steps": [s.to_json() for s in self.steps],
            "planning_ms": self.planning_seconds * 1000,
            "est_cost_ms": self.est_cost_ms,
            "scratch_cost_ms": self.scratch_cost_ms,
            "graph": self.graph,
            "notes": list(self.notes),
            "engine": self.engine,
        }


@dataclass(frozen=True)
class StepResult:
    step: Step
    rows: int  # rows the step's statistics summarise (n + rows skipped for NULLs)
    seconds: float  # its share of the fetch or scan statement, plus its merge


@dataclass(frozen=True)
class ExecutedPlan:
    """A plan with what running it cost: per step rows and time, the totals, the numerical check."""

    plan: Plan
    results: tuple[StepResult, ...]
    execution_seconds: float
    stored_stats_id: int | None = None  # where the result's statistics were materialised
    digits_lost: float = 0.0  # decimal digits the plan's subtractions cost (0 without subtraction)
    rejected: tuple[dict, ...] = ()  # plans refused by the numerical guard before this one
    extra: dict = field(default_factory=dict, compare=False)  # family-specific figures (logistic)

    @property
    def rows_scanned(self) -> int:
        return sum(r.rows for r in self.results if r.step.op in ("scan", "train"))

    @property
    def stats_used(self) -> list[int]:
        return [r.step.stats_id for r in self.results if r.step.op == "stored"]

    @property
    def index_nodes_used(self) -> int:
        return sum(len(r.step.nodes) for r in self.results if r.step.op == "index")

    @property
    def total_seconds(self) -> float:
        return self.plan.planning_seconds + self.execution_seconds

    def __str__(self) -> str:
        width = max((len(r.step.label()) for r in self.results), default=0)
        lines = [self.plan.header()]
        for r in self.results:
            lines.append(f"  ->  {r.step.label():<{width}}  {r.step.estimate()} "
                         f"(actual rows={r.rows} time={r.seconds * 1000:.3f} ms)")
        lines += self.plan.footer()
        for rej in self.rejected:
            lines.append(f"Rejected: {rej['strategy']} (would lose {rej['digits_lost']:.1f} digits to subtraction)")
        if self.digits_lost > 0:
            lines.append(f"Digits lost to subtraction: {self.digits_lost:.2f}")
        for key, value in self.extra.items():
            lines.append(f"{key}: {value}")
        lines.append(f"Execution time: {self.execution_seconds * 1000:.3f} ms")
        if self.stored_stats_id is not None:
            lines.append(f"Materialized as statistics #{self.stored_stats_id}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        out = self.plan.to_json()
        out["results"] = [{"rows": r.rows, "ms": r.seconds * 1000} for r in self.results]
        out["execution_ms"] = self.execution_seconds * 1000
        out["rows_scanned"] = self.rows_scanned
        out["stored_stats_id"] = self.stored_stats_id
        out["digits_lost"] = self.digits_lost
        out["rejected"] = list(self.rejected)
        out["extra"] = self.extra
        return out

    @classmethod
    def from_json(cls, data: dict, descriptor: Descriptor) -> "ExecutedPlan":
        """Rebuild the record :meth:`to_json` stored in the catalog (for a model loaded by name)."""
        steps = tuple(Step.from_json(s, descriptor.source.order_kind) for s in data["steps"])
        plan = Plan(descriptor, steps, data["strategy"], data["planning_ms"] / 1000, data.get("est_cost_ms"),
                    data.get("scratch_cost_ms"), data.get("graph") or {}, tuple(data.get("notes", ())),
                    data.get("engine", ""))
        results = tuple(StepResult(step, r["rows"], r["ms"] / 1000) for step, r in zip(steps, data["results"]))
        return cls(plan, results, data["execution_ms"] / 1000, data.get("stored_stats_id"),
                   data.get("digits_lost", 0.0), tuple(data.get("rejected", ())), data.get("extra") or {})
