"""Run the benchmark: load the table once, run the chosen experiments in order, write their JSON
and plots, regenerate ``SUMMARY.md`` (``modelstore bench``).

One table serves every experiment (it is reloaded only when its size, seed or generator changed);
between experiments the benchmark table's catalog is emptied. Experiments run in the order of
:data:`ORDER`, so that ``breakdown`` and ``index`` can reuse ``coverage``'s measurements of the same
queries in the same run.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from threadpoolctl import threadpool_limits
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from modelstore.benchmark import data, plots, report
from modelstore.benchmark.config import Config
from modelstore.benchmark.context import Context
from modelstore.benchmark.experiments import EXPERIMENTS

ORDER = tuple(EXPERIMENTS)
DEFAULT_OUT = Path("bench/results")


def parse_only(text: str | None) -> tuple[str, ...]:
    """``--only a,b`` → the experiments, checked, in run order."""
    if not text:
        return ORDER
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {', '.join(ORDER)}")
    return tuple(n for n in ORDER if n in names)


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                    transient=False)


#: experiments with their own tables: they need neither the synthetic table nor the full calibration
OWN_DATA = frozenset({"continuous"})


def run(store, config: Config, *, only: Sequence[str] | None = None, out_dir: Path | str = DEFAULT_OUT,
        console: Console | None = None, progress: bool = True, summary: bool = True) -> dict:
    """Run ``only`` (default: every experiment) at ``config``'s scale; returns {experiment: document}."""
    console = console or Console()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = tuple(only) if only else ORDER
    ctx = Context(store, config, console)
    env = report.environment(store.conn)
    docs = {}
    drawing = plots.available()
    bar = _progress(console) if progress else None
    if bar is not None:
        bar.start()
        ctx.progress = bar
    blas = threadpool_limits(limits=config.blas_threads)  # undone in the finally (config.blas_threads)
    try:
        # experiments that load their own data (and plan nothing over the synthetic table) skip its load
        # and the cost model's full calibration: `bench --full --only continuous` runs the flights year only
        shared_table = not set(names) <= OWN_DATA
        if shared_table:
            task = bar.add_task(f"loading {config.rows:,} rows", total=config.rows) if bar else None
            started = time.perf_counter()
            loaded = data.load(store.conn, config.rows, config.seed,
                               advance=(lambda n: bar.advance(task, n)) if bar else None)
            if bar:
                bar.remove_task(task)
            ctx.note(f"table {data.qualified()}: {config.rows:,} rows "
                     + (f"loaded in {time.perf_counter() - started:.1f} s" if loaded else "(already loaded)"))
            env["cache"] = data.prewarm(store.conn, [data.qualified()])
            ctx.note(f"cache: {env['cache']}")
        if config.calibrate and shared_table:
            ctx.note("calibrating the cost model (modelstore calibrate) …")
            store.calibrate()
        else:
            store.cost_model  # noqa: B018 — measured on first use, outside the timed requests
        if not drawing:
            ctx.note(f"[yellow]{escape(plots.MISSING)}[/yellow]")
        for name in names:
            ctx.experiment = name
            ctx.phases = {}
            t0 = time.perf_counter()
            began = dt.datetime.now(dt.timezone.utc)
            result = EXPERIMENTS[name](ctx)
            seconds = time.perf_counter() - t0
            files = plots.draw(name, result, out_dir) if drawing else []
            doc = report.document(name, result, config=config, env=env, started=began, seconds=seconds, plots=files,
                                  phases=ctx.phases)
            report.write_json(out_dir / f"{name}.json", doc)
            docs[name] = doc
            ctx.note(f"[bold]{name}[/bold] done in {seconds:.1f} s → {out_dir / (name + '.json')}")
    finally:
        blas.restore_original_limits()
        if bar is not None:
            bar.stop()
        data.clear_catalog(store.conn)
    if summary:
        write_summary(out_dir, config.mode)
    if not drawing:  # again at the end, where a long run's reader looks
        console.print(f"[yellow]{escape(plots.MISSING)}[/yellow]", highlight=False)
    return docs


def write_summary(out_dir: Path | str, mode: str) -> Path:
    """SUMMARY.md from every ``mode`` document in ``out_dir``."""
    out_dir = Path(out_dir)
    docs = report.read_documents(out_dir, mode)
    docs = {n: docs[n] for n in ORDER if n in docs}
    path = out_dir / "SUMMARY.md"
    path.write_text(report.summary_markdown(docs, mode))
    return path
