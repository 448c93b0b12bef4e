"""The ``modelstore`` command line: demo, query, migrate, install-extension, worker, deployments, serve, calibrate, fit, explain, models, show, drop, index, bench, server.

Results go to standard output (``--format table|json|csv``), errors to standard error as one line.
Exit status: 0 success; 2 a request modelstore refused (bad input, unknown model …) or a usage error;
3 an error PostgreSQL raised that modelstore did not foresee; 130 interrupted (Ctrl-C; the request in
progress is rolled back).
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import psycopg
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from modelstore.errors import InputError, ModelstoreError
from modelstore.families import FAMILIES

console = Console()
if not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
    console = Console(width=120)
#: errors and warnings: standard error, one line each
err_console = Console(stderr=True, highlight=False)

#: exit statuses (README "Command line")
EXIT_OK, EXIT_INPUT, EXIT_DATABASE, EXIT_INTERRUPTED = 0, 2, 3, 130

EXIT_HELP = """exit status: 0 success; 2 bad input or usage (the request was refused, nothing written);
3 a database error modelstore did not foresee; 130 interrupted by Ctrl-C (the request in progress is
rolled back). Errors go to standard error, results to standard output."""

#: columns that hold names a user types back (show, drop, index refresh): never cut, never wrapped
IDENTIFIER_COLUMNS = ("name", "model", "source", "index_id", "order_by", "target")


def _error(message: str, prefix: str = "error", exc: BaseException | None = None) -> None:
    """One error on standard error (the message is printed as is: no markup is interpreted)."""
    notes = getattr(exc, "__notes__", None) or []
    err_console.print(Text.assemble((f"{prefix}: ", "bold red"), "; ".join([message, *notes])), soft_wrap=True)


def _bound(text: str | None):
    """A range bound from the command line: an integer, a number, or an ISO date/timestamp."""
    if text is None:
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


KINDS = tuple(FAMILIES)


def _add_request_args(p: argparse.ArgumentParser, *, statement_form: bool = False) -> None:
    required = not statement_form  # `explain "CREATE MODEL …"` needs none of them
    if not statement_form:
        p.add_argument("kind", choices=KINDS)
    p.add_argument("--table", required=required, help="table or view, e.g. public.sales")
    p.add_argument("--target", required=required, help="target (linear) or class column (Naive Bayes)")
    p.add_argument("--features", required=required, help="comma-separated feature columns")
    p.add_argument("--order-by", required=required, help="the ordering column the range is on")
    p.add_argument("--lo", help="first value of the range (default: the table's first)")
    p.add_argument("--hi", help="last value of the range (default: the table's last)")
    p.add_argument("--where", help="residual filter, a SQL predicate")
    p.add_argument("--l2", type=float, default=None,
                   help="ridge penalty (linear, default 0) or the chunks' λ (logistic, default 1e-4)")
    p.add_argument("--chunk-rows", type=int, default=None, help="logistic chunk size l (default 10000)")
    p.add_argument("--var-smoothing", type=float, default=1e-9, help="Gaussian NB variance smoothing")
    p.add_argument("--alpha", type=float, default=1.0, help="multinomial NB additive smoothing")


def _request(args) -> tuple[str, dict]:
    return args.kind, dict(
        table=args.table, target=args.target, features=[f.strip() for f in args.features.split(",") if f.strip()],
        order_by=args.order_by, lo=_bound(args.lo), hi=_bound(args.hi), where=args.where, l2=args.l2,
        var_smoothing=args.var_smoothing, alpha=args.alpha, chunk_rows=args.chunk_rows,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelstore", description=__doc__.split("\n\n")[0], epilog=EXIT_HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", help="PostgreSQL DSN or URL (default: $MODELSTORE_DSN, $DATABASE_URL, else embedded)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table",
                        help="how tables are printed: for the terminal (default), or JSON / CSV for scripts")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="build, reuse and explain models on a seeded synthetic table")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--seed", type=int, default=7)

    sub.add_parser("migrate", help="create or update the modelstore catalog schema")

    p = sub.add_parser("calibrate", help="measure the planner's cost model on this database and store it")
    p.add_argument("--quick", action="store_true", help="the ~1 s calibration done automatically on first use")

    p = sub.add_parser("fit", help="fit (and materialise) a model")
    _add_request_args(p)
    p.add_argument("--name", help="model name (default: generated)")
    p.add_argument("--replace", action="store_true", help="replace a model of the same name")

    p = sub.add_parser("query", help="run model-language statements (CREATE MODEL, ML.PREDICT, …; docs/language.md)")
    p.add_argument("statement", nargs="?", help="the statement(s), separated by semicolons")
    p.add_argument("-f", "--file", help="read the statements from FILE ('-' for standard input)")
    p.add_argument("--max-rows", type=int, default=50, help="rows of each result to print (default 50)")

    p = sub.add_parser("explain", help="show the plan of a CREATE MODEL statement, or of a request, without running it",
                       description="modelstore explain \"CREATE MODEL …\"  or  modelstore explain KIND --table … "
                                   "--target … --features … --order-by …")
    p.add_argument("what", help="a CREATE MODEL statement, or a model kind: " + ", ".join(KINDS))
    _add_request_args(p, statement_form=True)

    sub.add_parser("models", help="list stored models")
    p = sub.add_parser("show", help="show a stored model's coefficients and how it was built")
    p.add_argument("name")
    p = sub.add_parser("drop", help="drop a stored model")
    p.add_argument("name")
    p.add_argument("--if-exists", action="store_true")

    p = sub.add_parser("index", help="the statistics index: build, refresh, list, drop")
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser("build", help="build (or rebuild) a statistics index of a table")
    b.add_argument("--table", required=True)
    b.add_argument("--order-by", required=True)
    b.add_argument("--columns", required=True, help="comma-separated features")
    b.add_argument("--target", help="target (linear) or class column (Naive Bayes, logistic)")
    b.add_argument("--kind", default="linear", choices=KINDS)
    b.add_argument("--chunk-rows", type=int, help="rows per chunk (default: chosen by the cost model)")
    b.add_argument("--storage-budget", type=float, help="largest index size, as a fraction of the table's")
    b.add_argument("--l2", type=float, help="λ of logistic chunk models")
    b.add_argument("--group-by", help="also keep every node per value of this column (grouped fits; docs/index.md)")
    r = isub.add_parser("refresh", help="extend an index over rows appended past its end")
    r.add_argument("index_id", type=int)
    isub.add_parser("list", help="list statistics indexes with their size next to their table's")
    d = isub.add_parser("drop", help="drop a statistics index")
    d.add_argument("index_id", type=int)

    p = sub.add_parser("bench", help="the benchmark: the paper's experiments and DESIGN.md §7 targets (bench/README.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick", help="small CI smoke run (default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full", help="the paper's scale (hours)")
    p.add_argument("--only", help="comma-separated experiments (default: all)")
    p.add_argument("--rows", type=int, help="table rows; every size scales with it")
    p.add_argument("--queries", type=int, help="queries per point; every count scales with it")
    p.add_argument("--seed", type=int)
    p.add_argument("--out", default="bench/results", help="results directory (default: bench/results)")
    p.add_argument("--dsn", default=argparse.SUPPRESS, help="as the global --dsn")

    p = sub.add_parser("worker", help="keep deployments current: LISTEN for changes, refresh, score, record "
                                      "versions (docs/deployments.md); SIGTERM stops it")
    p.add_argument("--interval", type=float, default=5.0,
                   help="seconds between scheduled passes (clock-anchored windows, missed wake-ups); default 5")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: run until SIGTERM)")

    p = sub.add_parser("deployments", help="list deployments")

    p = sub.add_parser("serve", help="serve predictions over HTTP: predict, observe, model info, /healthz, /metrics "
                                     "(docs/serving.md); SIGTERM stops it",
                       description="The bearer token comes from $MODELSTORE_SERVE_TOKEN or --token-file; without one "
                                   "the server listens only on a loopback address unless --allow-unauthenticated.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one and prints it)")
    p.add_argument("--token-file", help="read the bearer token from this file (e.g. a systemd credential)")
    p.add_argument("--allow-unauthenticated", action="store_true",
                   help="listen on a non-loopback address without a token (something in front authenticates)")
    p.add_argument("--pool-size", type=int, default=4, help="database connections (default 4)")
    p.add_argument("--db-timeout", type=float, default=5.0,
                   help="seconds to wait for a database connection before answering 503 (default 5)")
    p.add_argument("--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug"))

    p = sub.add_parser("install-extension",
                       help="build and install the modelstore_stats C aggregate (PGXS) and create it in the database")
    p.add_argument("--pg-config", help="the server's pg_config (default: next to its binaries, on PATH, "
                                       "or the newest /usr/lib/postgresql/*/bin)")
    p.add_argument("--no-build", action="store_true", help="only CREATE EXTENSION (already installed on the server)")
    p.add_argument("--force", action="store_true", help="rebuild even if the current build is installed")

    p = sub.add_parser("server", help="the embedded PostgreSQL server; how psql and R connect to modelstore's database",
                       description="start | stop | status: the embedded server. url: the URL modelstore connects "
                                   "to (--dsn, $MODELSTORE_DSN, $DATABASE_URL, else the embedded server, started "
                                   "if needed), for psql \"$(modelstore server url)\". env: the same as libpq "
                                   "variables, for eval \"$(modelstore server env)\" before psql or R.")
    p.add_argument("action", choices=["start", "stop", "status", "url", "env"])
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on standard error as one line each (``warning: …``), not Python's file:line format."""
    err_console.print(Text.assemble(("warning: ", "bold yellow"), str(message)), soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    import warnings

    saved, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        return _main(argv)
    finally:
        warnings.showwarning = saved


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "server":
            return _server(args.action, args.dsn)
        if args.command == "serve":
            return _serve(args)
        if args.command == "install-extension" and not args.no_build:
            from pathlib import Path

            from modelstore import extension

            with console.status("building the modelstore_stats extension (make, make install) …"):
                pg_config = extension.build_and_install(Path(args.pg_config) if args.pg_config else None,
                                                        force=args.force)
            console.print(f"built and installed modelstore_stats for {pg_config}")
        from modelstore.store import Store

        with Store(args.dsn) as store:
            return _dispatch(store, args)
    except KeyboardInterrupt:  # Ctrl-C: psycopg cancels the running query; the open transaction rolls back
        _error("the request in progress was rolled back", prefix="interrupted")
        return EXIT_INTERRUPTED
    except ModelstoreError as exc:
        _error(str(exc), exc=exc)
        return EXIT_INPUT
    except psycopg.Error as exc:  # the database refused something modelstore did not foresee
        _error(str(exc).strip(), prefix="database error", exc=exc)
        return EXIT_DATABASE


def _serve(args) -> int:
    """``modelstore serve``: bring the catalog up to date once, then run the HTTP door until SIGTERM."""
    import os

    from modelstore.connection import resolve_dsn
    from modelstore.doors import http
    from modelstore.store import Store

    token = os.environ.get(http.TOKEN_ENV) or None
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip() or None
        except OSError as exc:
            _error(f"--token-file {args.token_file}: {exc.strerror}")
            return EXIT_INPUT
        if token is None:
            _error(f"--token-file {args.token_file} is empty")
            return EXIT_INPUT
    http.check_exposure(args.host, token, args.allow_unauthenticated)
    dsn, server = resolve_dsn(args.dsn)
    try:
        Store(dsn).close()  # migrations, on first connect
        http.serve(dsn, host=args.host, port=args.port, token=token, allow_unauthenticated=args.allow_unauthenticated,
                   pool_size=args.pool_size, db_timeout=args.db_timeout, log_level=args.log_level)
    finally:
        if server is not None and server.started_by_us:
            server.stop()
    return EXIT_OK


def _dispatch(store, args) -> int:
    if args.command == "demo":
        from modelstore.doors import demo

        demo.run(store, rows=args.rows, seed=args.seed, console=console)
    elif args.command == "worker":
        import logging

        from modelstore.deploy.worker import Worker

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        Worker(store, store.dsn, interval=args.interval).run(max_seconds=args.max_seconds)
    elif args.command == "deployments":
        _print_result(store.deployments(), max_rows=None, fmt=args.format)
    elif args.command == "install-extension":
        from psycopg import sql

        from modelstore.stats import engine

        with store.conn.transaction():
            store.conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA modelstore").format(
                sql.Identifier(engine.EXTENSION)))
            # a database created with an older build: its version gets the newer functions
            store.conn.execute(sql.SQL("ALTER EXTENSION {} UPDATE").format(sql.Identifier(engine.EXTENSION)))
        engine.forget(store.conn)
        name, _ = engine.engine(store.conn)
        console.print(f"statistics engine: {engine.DESCRIPTIONS[name]}")
    elif args.command == "migrate":
        from modelstore.catalog.migrate import migrate

        applied = migrate(store.conn)
        console.print("catalog is up to date" + (f" (applied: {', '.join(applied)})" if applied else ""))
    elif args.command == "calibrate":
        with console.status("measuring statement latency, scan, fetch, merge and training costs …"):
            model = store.calibrate(quick=args.quick)
        grid = RichTable(title=f"cost model ({model.method}, {model.server_version})")
        grid.add_column("parameter")
        grid.add_column("value (ms)", justify="right")
        for key, value in model.to_json().items():
            if key not in ("measured_at", "server_version", "method", "details"):
                grid.add_row(key, _figures(value))
        console.print(grid)
    elif args.command == "index":
        _index(store, args)
    elif args.command == "bench":
        from modelstore import benchmark

        try:
            config = benchmark.configure(args.mode or "quick", rows=args.rows, queries=args.queries, seed=args.seed)
            only = benchmark.parse_only(args.only)
        except ValueError as exc:
            _error(str(exc))
            return EXIT_INPUT
        benchmark.run(store, config, only=only, out_dir=args.out, console=console)
        console.print(f"results and SUMMARY.md in {args.out}")
    elif args.command == "fit":
        kind, request = _request(args)
        model = store.fit(kind, name=args.name, replace=args.replace, **request)
        console.print(f"[bold]{model.name}[/bold]")
        _print_model(model)
        console.print(str(model.plan), markup=False)
    elif args.command == "explain":
        if args.what in KINDS:
            missing = [f"--{n.replace('_', '-')}" for n in ("table", "target", "features", "order_by")
                       if getattr(args, n) is None]
            if missing:
                _error(f"explain {args.what} needs {', '.join(missing)}")
                return EXIT_INPUT
            args.kind = args.what
            kind, request = _request(args)
            _print_result(_plan_frame(store.explain(kind, **request)), max_rows=None, fmt=args.format)
        else:
            text = args.what.strip()
            if not text.upper().startswith("EXPLAIN"):
                text = "EXPLAIN " + text
            _print_result(store.query(text), max_rows=None, fmt=args.format)
    elif args.command == "query":
        if (args.statement is None) == (args.file is None):
            _error("give the statement(s) as an argument or with -f FILE")
            return EXIT_INPUT
        if args.file is not None:
            text = sys.stdin.read() if args.file == "-" else _read_file(args.file)
        else:
            text = args.statement
        from modelstore.language import run

        # a script is one transaction: a statement that fails rolls back the ones before it (docs/language.md)
        for result in run(store, text):
            _print_result(result, max_rows=args.max_rows, fmt=args.format)
    elif args.command == "models":
        columns = ["name", "kind", "source", "order_by", "lo", "hi", "filter", "target", "features", "rows_used"]
        frame = store.models()
        _print_frame(frame if args.format != "table" else frame[columns], fmt=args.format)
    elif args.command == "show":
        model = store.model(args.name)
        if args.format != "table":
            from modelstore.language.runner import describe

            _print_frame(describe(model), fmt=args.format)
            return EXIT_OK
        _print_model(model)
        console.print(str(model.plan), markup=False)
    elif args.command == "drop":
        dropped = store.drop(args.name, missing_ok=args.if_exists)
        console.print(f"dropped {args.name}" if dropped else f"no model named {args.name}")
    return 0


def _index(store, args) -> None:
    if args.index_command == "build":
        columns = [c.strip() for c in args.columns.split(",") if c.strip()]
        out = store.build_index(args.table, args.order_by, columns, args.target, kind=args.kind,
                                chunk_rows=args.chunk_rows, storage_budget=args.storage_budget, l2=args.l2,
                                progress=console.is_terminal, group_by=args.group_by)
        if "chunks_trained" in out:  # a trained family stores chunk models instead of an index
            console.print(f"{out['kind']} chunk models on {out['source']}: {out['chunks_trained']} trained, "
                          f"{out['chunks_reused']} already stored (chunk_rows={out['chunk_rows']}, l2={out['l2']:g})")
        else:
            console.print(f"index #{out['index_id']} on {out['source']}: {out['n_chunks']} chunks of "
                          f"~{out['chunk_rows']} rows, {out['levels']} levels, {out['index_bytes']:,} bytes "
                          f"({out['size_ratio']:.2%} of the table's {out['table_bytes']:,})")
    elif args.index_command == "refresh":
        out = store.refresh_index(args.index_id, progress=console.is_terminal)
        console.print(f"index #{args.index_id}: {out['rows_added']:,} rows added, {out['n_chunks']} chunks")
    elif args.index_command == "list":
        columns = ["index_id", "source", "order_by", "family", "target", "columns", "chunk_rows", "n_chunks",
                   "rows_indexed", "end_value", "index_bytes", "table_bytes", "size_ratio", "status"]
        frame = store.indexes()
        _print_frame(frame if args.format != "table" else frame[columns], fmt=args.format)
    else:
        dropped = store.drop_index(args.index_id)
        console.print(f"dropped index #{args.index_id}" if dropped else f"no index #{args.index_id}")


def _figures(value) -> str:
    """A cost-model figure for the terminal: floats to 4 significant digits, per family on lines."""
    if isinstance(value, dict):
        return "\n".join(f"{k}: {_figures(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_figures(v) for v in value)
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_model(model) -> None:
    if hasattr(model, "summary"):
        console.print(model.summary().to_string(float_format=lambda v: f"{v:.6g}"), markup=False)
    else:
        console.print(f"classes: {list(model.classes_)}  rows used: {model.rows_used}", markup=False)


def _read_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read statements from {path!r}: {exc.strerror}") from None


def _plan_frame(plan):
    import pandas as pd

    return pd.DataFrame({"QUERY PLAN": str(plan).splitlines()})


def _print_result(result, *, max_rows: int | None, fmt: str = "table") -> None:
    """A model-language result: a model with its plan, a plan, or a table (``fmt``: table, json, csv)."""
    import pandas as pd

    if not isinstance(result, pd.DataFrame):  # CREATE MODEL: the fitted model
        if fmt != "table":
            from modelstore.language.runner import describe

            _print_frame(describe(result), fmt=fmt)
            return
        console.print(Text(f"{result.name} ({result.kind})", style="bold"))
        _print_model(result)
        console.print(str(result.plan), markup=False)
        return
    if list(result.columns) == ["QUERY PLAN"] and fmt == "table":
        console.print("\n".join(result["QUERY PLAN"]), markup=False)
        return
    shown = result if max_rows is None or fmt != "table" else result.head(max_rows)
    _print_frame(shown, fmt=fmt)
    more = len(result) - len(shown)
    if fmt == "table":
        console.print(f"({len(result)} row{'s' if len(result) != 1 else ''}"
                      + (f", {more} not shown: --max-rows)" if more else ")"), highlight=False)


def _missing(value) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        return bool(pd.isna(value)) if not isinstance(value, list | tuple | dict) else False
    except (TypeError, ValueError):
        return False


def _cell(value) -> str:
    """A cell for the terminal: nothing for a missing value (never 'nan' or 'None')."""
    if _missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return _figures(value)


def _plain(value):
    """A cell as a JSON value: missing → null, numpy → Python, the rest as text unless JSON has it."""
    if _missing(value):
        return None
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return str(value)


def _print_frame(frame, *, fmt: str) -> None:
    """A DataFrame on standard output: a table that fits the terminal without cutting an identifier,
    or JSON (an array of objects) or CSV for scripts."""
    records = [{str(c): _plain(v) for c, v in zip(frame.columns, row)} for row in frame.itertuples(index=False)]
    if fmt == "json":
        sys.stdout.write(json.dumps(records, ensure_ascii=False) + "\n")
        sys.stdout.flush()
        return
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([str(c) for c in frame.columns])
        for record in records:
            writer.writerow(["" if v is None else json.dumps(v) if isinstance(v, list | dict) else v
                             for v in record.values()])
        sys.stdout.flush()
        return
    import pandas as pd

    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    widths = [max([len(str(c))] + [max((len(x) for x in cell[i].splitlines()), default=0) for cell in cells])
              for i, c in enumerate(frame.columns)]
    if sum(widths) + 3 * len(widths) + 1 > console.width:  # too wide: one block per row, as psql's \x
        label = max((len(str(c)) for c in frame.columns), default=0)
        for number, row in enumerate(cells, 1):
            console.print(Text(f"-[ RECORD {number} ]" + "-" * max(0, min(console.width, 40) - 14), style="dim"))
            for col, value in zip(frame.columns, row):
                console.print(Text.assemble((f"{str(col):<{label}} | ", "bold"), value), soft_wrap=True)
        return
    grid = RichTable()
    for col in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[col])
        if str(col) in IDENTIFIER_COLUMNS:  # the names typed back into show/drop: whole, on one line
            width = max([len(str(col))] + [len(_cell(v)) for v in frame[col]])
            grid.add_column(str(col), no_wrap=True, min_width=width, overflow="fold")
        else:
            grid.add_column(str(col), justify="right" if numeric else "left", overflow="fold")
    for row in cells:
        grid.add_row(*(Text(v) for v in row))
    console.print(grid)


def _server(action: str, dsn: str | None = None) -> int:
    from modelstore.server import EmbeddedServer

    if action in ("url", "env"):
        import shlex

        from psycopg.conninfo import conninfo_to_dict

        from modelstore.connection import resolve_dsn

        url, _ = resolve_dsn(dsn)  # an embedded server started here keeps running, as `server start`
        if action == "url":
            sys.stdout.write(url + "\n")
            return EXIT_OK
        names = {"host": "PGHOST", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
                 "password": "PGPASSWORD"}
        for key, value in conninfo_to_dict(url).items():
            if key in names:
                sys.stdout.write(f"export {names[key]}={shlex.quote(str(value))}\n")
        return EXIT_OK
    server = EmbeddedServer()
    if action == "start":
        server.start()
        console.print(f"embedded PostgreSQL running at {server.dsn}", markup=False, highlight=False, soft_wrap=True)
    elif action == "stop":
        server.stop()
        console.print("embedded PostgreSQL stopped")
    else:
        console.print(f"running at {server.dsn}" if server.is_running() else "not running", markup=False,
                      highlight=False, soft_wrap=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
