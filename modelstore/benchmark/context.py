"""The state one benchmark run shares between its experiments: the store, the scale, the caches,
the progress display."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from rich.console import Console
from rich.progress import Progress

from modelstore.benchmark import data
from modelstore.benchmark.config import Config

T = TypeVar("T")


@dataclass
class Context:
    store: object  # modelstore.Store
    config: Config
    console: Console = field(default_factory=Console)
    progress: Progress | None = None
    #: from-scratch timings (and the scratch model's parameters) by query: baselines.scratch
    scratch: dict = field(default_factory=dict)
    #: what an experiment leaves for a later one (e.g. Fig. 2's per-query records for Fig. 5)
    shared: dict = field(default_factory=dict)
    #: the experiment running now (for progress labels)
    experiment: str = ""
    #: wall seconds of the current experiment by phase (``phase``): where a run's time goes
    phases: dict = field(default_factory=dict)

    @property
    def conn(self):
        return self.store.conn

    @property
    def table(self) -> str:
        return data.qualified()

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate with a progress bar (a no-op without a progress display)."""
        if self.progress is None:
            yield from items
            return
        if total is None:
            try:
                total = len(items)  # type: ignore[arg-type]
            except TypeError:
                total = None
        label = f"{self.experiment}: {description}" if self.experiment else description
        task = self.progress.add_task(label, total=total)
        try:
            for item in items:
                yield item
                self.progress.advance(task)
        finally:
            self.progress.remove_task(task)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the wall time of the block to ``phases[name]`` (written to the experiment's JSON as
        ``phase_seconds``, so a reader sees where a run's time goes: T0, modelstore, placement …)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - started

    def note(self, text: str) -> None:
        (self.progress.console if self.progress is not None else self.console).print(text, highlight=False)
