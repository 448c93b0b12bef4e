"""Golden-file tests of EXPLAIN output: a safety net for refactoring the planner, executor and plan text.

Each test builds a deterministic situation in a fresh database (``fresh_store``), renders a plan —
``str(store.explain(...))``, ``str(model.plan)`` (EXPLAIN ANALYZE style) or the ``QUERY PLAN`` column of
``store.query("EXPLAIN CREATE MODEL …")`` — normalises it (:func:`normalise`) and compares it with
``tests/golden/<name>.txt``. A mismatch fails with a unified diff of golden vs. actual.

Regenerate the golden files after an *intended* change of the output, then review ``git diff tests/golden``::

    MODELSTORE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_explain_golden.py

What makes the plans deterministic
----------------------------------
* **Data**: generated in PostgreSQL by ``generate_series`` with integer formulas (no randomness);
  20,000 rows, ordered by a dense ``bigint`` id with a btree index.
* **Row estimates**: the tables are ``ANALYZE``\\ d right after loading. They are smaller than ANALYZE's
  sample (300 × ``default_statistics_target`` = 30,000 rows), so ``pg_stats`` is computed from every row
  rather than a random sample, and the dense id is estimated exactly anyway (docs/planner.md, rowcount.py).
  Estimated rows (``rows=…``) are therefore kept in the golden files.
* **Plan choice**: the planner's cost model is normally *measured* on first use, so a loaded machine
  could pick another plan. Each database gets a fixed cost model instead, written the way an operator
  would: a ``method = 'manual'`` row in ``modelstore.cost_model`` (migrations/0002_cost_model.sql), with the
  built-in figures of the 2-core development machine. The stored situations are also chosen so that the
  asserted plan wins by a wide margin (e.g. subtracting a 500-row scan instead of scanning 4,000 rows).

What the normaliser keeps and masks
-----------------------------------
Kept (the plan's structure — what a refactor must not change by accident): the header (family, table,
range, filter), every step's sign, kind (``stored`` / ``index`` / ``scan`` / ``train``), range and
number of index nodes, estimated rows, actual rows, the strategy, the from-scratch line's wording, the
relevant-model and graph-size line, notes, rejected plans, logistic chunk counts, and the presence and
order of every line.

Masked (volatile across runs, machines or databases):

* every figure in milliseconds — estimated costs, actual step times, planning and execution time —
  becomes ``… ms``: times are measured, and costs, though fixed here, are not the plan's structure;
* catalog ids: ``stored #12``, ``index #3``, ``statistics #230`` depend on what ran before in the
  database. Ids the test knows (e.g. the stored model ``D1`` of Figure 1) are replaced by that name
  (``#D1``), so the golden still says *which* stored model a step uses; any other id becomes ``#N``;
* alignment padding after a step's label (it depends on the width of the ids);
* floating figures of numerical diagnostics — digits lost to subtraction, the Theorem 1 bound, training
  accuracy — become ``…`` (the line itself stays: whether a plan subtracted is structure).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MODELSTORE_UPDATE_GOLDEN", "") not in ("", "0")

N = 20_000
FEATURES = ["x1", "x2", "x3"]
TABLE = "public.golden_p"

#: CostModel.default()'s figures, as an operator would store them (written out, not imported)
FIXED_COST_MODEL = {
    "statement_ms": 0.25, "term_ms": 0.038, "seq_row_ms": 6.7e-5, "index_row_ms": 6.0e-5,
    "fetch_row_ms": 3.0e-3, "fetch_value_ms": 5.0e-4, "merge_op_ms": 4.8e-3, "merge_value_ms": 1.5e-6,
    "scan_row_ms": {"linear": [2.0e-5, 0.0, 5.5e-5], "gaussian_nb": [1.0e-4, 1.9e-4],
                    "multinomial_nb": [4.0e-5, 1.2e-4]},
    "train_row_ms": [6.3e-4, 4.0e-4], "train_chunk_ms": [2.1, 0.0],
    "measured_at": "2025-01-01T00:00:00+00:00", "server_version": "golden", "method": "manual", "details": {},
}


@pytest.fixture(autouse=True)
def _sql_engine(monkeypatch):
    """The goldens are written on the SQL aggregates: which lines appear (e.g. digits lost to a
    subtraction, which double-double statistics do not lose) must not depend on the server having the
    C extension."""
    from modelstore.stats import engine as stats_engine

    monkeypatch.setenv(stats_engine.ENV, "sql")
    stats_engine.forget()
    yield
    stats_engine.forget()


# -- the normaliser ---------------------------------------------------------------------------------

_MS = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)? ms\b")
_ID = re.compile(r"\b(stored|index|statistics) #(\d+)")
_PADDING = re.compile(r"\s{2,}(?=\(rows=)")
_FLOAT = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_DIAGNOSTICS = ("Digits lost to subtraction:", "Theorem 1 bound", "Training accuracy:")


def normalise(text: str, stats: dict[int, str] | None = None, indexes: dict[int, str] | None = None) -> str:
    """``text`` with volatile figures masked (see the module docstring); ``stats`` / ``indexes`` name
    known statistics and index ids."""
    stats, indexes = stats or {}, indexes or {}

    def ident(m: re.Match) -> str:
        names = indexes if m.group(1) == "index" else stats
        return f"{m.group(1)} #{names.get(int(m.group(2)), 'N')}"

    out = []
    for line in text.splitlines():
        line = _ID.sub(ident, line)
        line = _MS.sub("… ms", line)
        line = _PADDING.sub("  ", line)
        if line.startswith(_DIAGNOSTICS):
            head, _, tail = line.partition(":")
            line = f"{head}: {_FLOAT.sub('…', tail.strip())}"
        elif line.startswith(("Statistics engine:", "Statistics:")):
            line = line.partition(":")[0] + ": …"  # which engine computed the statistics: the server's
        elif line.startswith("Rejected:"):
            line = re.sub(r"would lose \S+ digits", "would lose … digits", line)
        out.append(line.rstrip())
    return "\n".join(out) + "\n"


def check_golden(name: str, actual: str, *, directory: Path = GOLDEN_DIR, update: bool = UPDATE) -> None:
    """Compare ``actual`` (normalised) with ``tests/golden/<name>.txt``; rewrite it when updating."""
    path = directory / f"{name}.txt"
    if update:
        directory.mkdir(exist_ok=True)
        path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path}; create it with MODELSTORE_UPDATE_GOLDEN=1 pytest {__file__}\n"
                    f"actual output:\n{actual}", pytrace=False)
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(keepends=True), actual.splitlines(keepends=True),
                                            fromfile=f"golden/{name}.txt", tofile="actual"))
        pytest.fail(f"EXPLAIN output differs from its golden file (if intended, regenerate with "
                    f"MODELSTORE_UPDATE_GOLDEN=1 and review the diff):\n{diff}", pytrace=False)


def test_normaliser_masks_volatile_figures_and_keeps_structure():
    raw = (
        'Plan for linear on "public"."t" [6001, 14000]  (cost=1.315 ms)\n'
        "  ->  − stored #230 [1, 6000]      (rows=6000 cost=0.012 ms) (actual rows=6000 time=0.511 ms)\n"
        "  ->  + stored #7 [1, 5000]        (rows=5000 cost=0.012 ms)\n"
        "  ->  + index #3 (2 nodes) [1, 9]  (rows=9 cost=2e-05 ms)\n"
        "  ->  − scan [14001, 14500]        (rows=500 cost=0.713 ms)\n"
        "Strategy: stored statistics and scans\n"
        "Planning time: 1.554 ms\n"
        "Rejected: stored statistics and scans (would lose 14.2 digits to subtraction)\n"
        "Digits lost to subtraction: 0.06\n"
        "Theorem 1 bound (δ=0.05): ‖w_μ − w‖ ≤ 0.1234 (R=3.2, λ=0.001, p=4, l=3)\n"
        "Materialized as statistics #231\n"
    )
    assert normalise(raw, stats={230: "D1"}, indexes={3: "I"}) == (
        'Plan for linear on "public"."t" [6001, 14000]  (cost=… ms)\n'
        "  ->  − stored #D1 [1, 6000]  (rows=6000 cost=… ms) (actual rows=6000 time=… ms)\n"
        "  ->  + stored #N [1, 5000]  (rows=5000 cost=… ms)\n"
        "  ->  + index #I (2 nodes) [1, 9]  (rows=9 cost=… ms)\n"
        "  ->  − scan [14001, 14500]  (rows=500 cost=… ms)\n"
        "Strategy: stored statistics and scans\n"
        "Planning time: … ms\n"
        "Rejected: stored statistics and scans (would lose … digits to subtraction)\n"
        "Digits lost to subtraction: …\n"
        "Theorem 1 bound (δ=0.05): ‖w_μ − w‖ ≤ … (R=…, λ=…, p=…, l=…)\n"
        "Materialized as statistics #N\n"
    )


def test_a_differing_golden_fails_with_a_diff_and_update_rewrites_it(tmp_path):
    (tmp_path / "x.txt").write_text("a\nb\n", encoding="utf-8")
    check_golden("x", "a\nb\n", directory=tmp_path, update=False)
    with pytest.raises(pytest.fail.Exception, match=r"(?s)--- golden/x\.txt.*\n-b\n\+c\n"):
        check_golden("x", "a\nc\n", directory=tmp_path, update=False)
    with pytest.raises(pytest.fail.Exception, match="no golden file"):
        check_golden("y", "a\n", directory=tmp_path, update=False)
    check_golden("x", "a\nc\n", directory=tmp_path, update=True)
    assert (tmp_path / "x.txt").read_text(encoding="utf-8") == "a\nc\n"


# -- deterministic databases ----------------------------------------------------------------------------

def use_fixed_cost_model(store) -> None:
    """Make the planner of ``store`` (not yet planned with) use the fixed cost model: a 'manual' catalog row."""
    store.conn.execute(
        "INSERT INTO modelstore.cost_model (measured_at, server_version, method, params) "
        "VALUES (now(), current_setting('server_version'), 'manual', %s)",
        [Jsonb(FIXED_COST_MODEL)],
    )
    assert store.cost_model.method == "manual"  # the planner took it instead of measuring


def create_table(store, table: str) -> None:
    """``table``: ids 1..N; x1, x2, x3, y and a 3-valued class ``cls`` and a 0/1 ``label`` from integer
    formulas of the id only; a btree index on id; analyzed (every row, see the module docstring)."""
    ident = sql.Identifier("public", table)  # not the search path's first schema: that may be "$user"
    store.conn.execute(sql.SQL(
        """
        CREATE TABLE {t} AS
        SELECT i AS id, x1, x2, x3,
               2.0 + 0.5 * x1 - 0.3 * x2 + 4.0 * x3 + (mod(i * 7 + 3, 101) - 50) / 100.0 AS y,
               mod(mod(i * 13, 7) + mod(i, 5), 3) AS cls,
               CASE WHEN x1 - 5.0 + 0.2 * x2 + (mod(i * 17, 23) - 11) / 2.0 > 0 THEN 1 ELSE 0 END AS label
        FROM (SELECT i, mod(i * 7919, 1000) / 100.0 AS x1, mod(i * 104729, 997) / 50.0 - 10.0 AS x2,
                     mod(i * 31, 211) / 211.0 AS x3
              FROM generate_series(1::bigint, %s::bigint) AS i) AS g
        """).format(t=ident), [N])
    store.conn.execute(sql.SQL("CREATE INDEX ON {} (id)").format(ident))
    store.conn.execute(sql.SQL("ANALYZE {}").format(ident))
    rows, classes, positive = store.conn.execute(
        sql.SQL("SELECT count(*), count(DISTINCT cls), sum(label) FROM {}").format(ident)).fetchone()
    assert (rows, classes) == (N, 3) and N // 4 < positive < 3 * N // 4


def fit_linear(store, lo, hi, table=TABLE):
    return store.fit("linear", table=table, target="y", features=FEATURES, order_by="id", lo=lo, hi=hi)


@pytest.fixture
def store(fresh_store):
    """A store on a fresh database (tests/fixtures.py), with the fixed cost model and the table golden_p."""
    use_fixed_cost_model(fresh_store)
    create_table(fresh_store, "golden_p")
    return fresh_store


# -- 1. the paper's Figure 1 ---------------------------------------------------------------------------

# D1 = [a, c), D2 = [a, b), D3 = [b, d), D4 = [d, f); the request [c, e) is −D1 + D2 + D3 + D4 − scan [e, f)
A, B, C, D, E, F = 1, 5001, 6001, 10001, 14001, 14501
FIGURE_1 = {"D1": (A, C - 1), "D2": (A, B - 1), "D3": (B, D - 1), "D4": (D, F - 1)}


def figure_1(store) -> dict[int, str]:
    """Store D1…D4; returns their statistics ids → names."""
    return {fit_linear(store, lo, hi).plan.stored_stats_id: name for name, (lo, hi) in FIGURE_1.items()}


def test_figure_1_explain(store):
    names = figure_1(store)
    plan = store.explain("linear", table=TABLE, target="y", features=FEATURES, order_by="id", lo=C, hi=E - 1)
    assert [(s.op, s.sign) for s in plan.steps] == [("stored", -1), ("stored", 1), ("stored", 1), ("stored", 1),
                                                    ("scan", -1)]
    check_golden("figure1_explain", normalise(str(plan), stats=names))


def test_figure_1_explain_analyze(store):
    """``str(model.plan)`` of the executed Figure 1 plan, and the model it materialised."""
    names = figure_1(store)
    m = fit_linear(store, C, E - 1)
    assert m.n_obs == E - C and m.plan.rows_scanned == F - E
    assert m.plan.stored_stats_id not in names
    check_golden("figure1_explain_analyze", normalise(str(m.plan), stats={**names, m.plan.stored_stats_id: "R"}))


# -- 2. a statistics index (Gaussian Naive Bayes) ------------------------------------------------------

def test_index_plan_gaussian_nb(store):
    info = store.build_index(TABLE, "id", FEATURES, "cls", kind="gaussian_nb", chunk_rows=1000)
    indexes = {int(info["index_id"]): "I"}
    plan = store.explain("gaussian_nb", table=TABLE, target="cls", features=FEATURES, order_by="id",
                         lo=1234, hi=15678)
    assert {s.op for s in plan.steps} <= {"index", "scan"} and any(s.op == "index" for s in plan.steps)
    check_golden("index_gaussian_nb_explain", normalise(str(plan), indexes=indexes))


# -- 3. logistic: stored chunk models reused, a gap trained ---------------------------------------------

def test_logistic_plan_reuses_chunks_and_trains_a_gap(store):
    kw = dict(table=TABLE, target="label", features=FEATURES, order_by="id", chunk_rows=3000)
    first = store.fit("logistic", lo=1, hi=9000, **kw)
    assert [s.op for s in first.plan.plan.steps] == ["train"]
    plan = store.explain("logistic", lo=1, hi=12_000, **kw)
    assert [(s.op, s.sign) for s in plan.steps] == [("stored", 1)] * 3 + [("train", 1)]
    check_golden("logistic_explain", normalise(str(plan)))


# -- 4. EXPLAIN through the model language ---------------------------------------------------------------

def test_model_language_explain(store):
    first = store.query("CREATE MODEL golden_first OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], "
                        "order_by = 'id') AS SELECT x1, x2, y FROM public.golden_p "
                        "WHERE id BETWEEN 1 AND 10000 AND x3 > 0.5")
    # the same filter written differently, a wider range: the stored model plus a scan
    frame = store.query("EXPLAIN CREATE MODEL golden_q OPTIONS (model_type = 'linear_reg', input_label_cols = ['y'], "
                        "order_by = 'id') AS SELECT x1, x2, y FROM public.golden_p "
                        "WHERE 0.5 < x3 AND id >= 1 AND id <= 12000")
    assert list(frame.columns) == ["QUERY PLAN"]
    text = "\n".join(frame["QUERY PLAN"])
    assert text == str(frame.attrs["plan"])
    assert [s.op for s in frame.attrs["plan"].steps] == ["stored", "scan"]
    check_golden("language_explain", normalise(text, stats={first.plan.stored_stats_id: "golden_first"}))
    names = set(store.models()["name"])
    assert "golden_first" in names and "golden_q" not in names  # EXPLAIN builds nothing
