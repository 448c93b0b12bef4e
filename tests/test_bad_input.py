"""Every bad input gets a clear error that names the problem, and nothing is written to the catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from psycopg import sql

import modelstore
from modelstore import errors
from tests.helpers import catalog_counts, load_frame

N = 50


@pytest.fixture(scope="module")
def store(module_dsn):
    s = modelstore.connect(module_dsn)
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({
        "id": np.arange(1, N + 1),
        "x1": rng.normal(size=N), "x2": rng.normal(size=N), "y": rng.normal(size=N),
        "label": rng.choice(["a", "b"], N), "note": ["t"] * N, "counts": rng.poisson(3, N),
        "neg": rng.integers(-3, 3, N), "many": np.arange(N), "flag": rng.random(N) > 0.5,
    })
    frame["dup"] = frame.x1  # collinear with x1
    frame["combo"] = frame.x1 + 2 * frame.x2  # a linear combination of x1, x2
    frame["const"] = 4.0
    load_frame(s.conn, "t", frame)
    with s.conn.transaction():  # one row with NaN and one with Infinity, past the clean range
        s.conn.execute("INSERT INTO t (id, x1, x2, y, label) VALUES (101, 'NaN', 0, 1, 'a'), (102, 'Infinity', 1, 2, 'b')")
    s.conn.execute("CREATE TABLE nulls (id int, x float8, y float8)")
    s.conn.execute("INSERT INTO nulls SELECT g, NULL, g FROM generate_series(1, 5) g")
    yield s
    s.close()


BASE = dict(table="t", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=N)


def fit(store, kind="linear", **changes):
    return store.fit(kind, **{**BASE, **changes})


CASES = [
    ("unknown table", dict(table="no_such_table"), errors.UnknownTableError, "no_such_table"),
    ("unknown schema", dict(table="nope.t"), errors.UnknownTableError, "nope.t"),
    ("unknown feature", dict(features=["x1", "x9"]), errors.UnknownColumnError, "'x9'"),
    ("case near miss", dict(features=["X1"]), errors.UnknownColumnError, "did you mean 'x1'"),
    ("unknown target", dict(target="yy"), errors.UnknownColumnError, "'yy'"),
    ("unknown order_by", dict(order_by="idx"), errors.UnknownColumnError, "'idx'"),
    ("text feature", dict(features=["x1", "note"]), errors.ColumnTypeError, "'note' must be numeric, got text"),
    ("text target", dict(target="label"), errors.ColumnTypeError, "'label' must be numeric"),
    ("text order_by", dict(order_by="note"), errors.ColumnTypeError, "number, date or timestamp"),
    ("empty features", dict(features=[]), errors.InputError, "non-empty list"),
    ("features as a string", dict(features="x1"), errors.InputError, "non-empty list"),
    ("repeated feature", dict(features=["x1", "x1"]), errors.InputError, "must not repeat"),
    ("target among features", dict(features=["x1", "y"]), errors.InputError, "cannot also be a feature"),
    ("lo > hi", dict(lo=40, hi=10), errors.RangeError, "lo must be <= hi"),
    ("empty range", dict(lo=200, hi=300), errors.RangeError, "no rows"),
    ("empty after filter", dict(where="x1 > 1000"), errors.RangeError, "no rows"),
    ("bound of the wrong type", dict(lo="2024-01-01"), errors.RangeError, "must be a number"),
    ("NaN bound", dict(hi=float("nan")), errors.RangeError, "finite"),
    ("NaN in the rows", dict(lo=1, hi=101), errors.NonFiniteValueError, "'x1'"),
    ("Infinity in the rows", dict(lo=102, hi=102), errors.NonFiniteValueError, "'x1'"),
    ("filter does not parse", dict(where="x1 >> AND ("), errors.FilterError, "does not parse"),
    ("filter with a statement", dict(where="x1 > 0; DROP TABLE t"), errors.FilterError, "does not parse"),
    ("filter with a subquery", dict(where="x1 > (SELECT max(x1) FROM t)"), errors.FilterError, "not allowed"),
    ("filter with a volatile function", dict(where="random() < 0.5"), errors.FilterError, "not allowed"),
    ("filter with a side effect", dict(where="pg_terminate_backend(1)"), errors.FilterError, "pg_terminate_backend"),
    ("filter on an unknown column", dict(where="zz = 1"), errors.UnknownColumnError, "'zz'"),
    ("negative l2", dict(l2=-1.0), errors.InputError, "l2 must be a finite number >= 0"),
    ("infinite l2", dict(l2=float("inf")), errors.InputError, "l2 must be"),
    ("duplicate column", dict(features=["x1", "dup"]), errors.SingularMatrixError, "dup"),
    ("linear combination", dict(features=["x1", "x2", "combo"]), errors.SingularMatrixError, "combo"),
    ("constant column", dict(features=["x1", "const"]), errors.SingularMatrixError, "const"),
    ("all rows NULL", dict(table="nulls", features=["x"], lo=1, hi=5), errors.RangeError, "NULL"),
]


@pytest.mark.parametrize("label,changes,error,message", CASES, ids=[c[0] for c in CASES])
def test_bad_linear_request(store, label, changes, error, message):
    before = catalog_counts(store.conn)
    with pytest.raises(error, match=_escape(message)):
        fit(store, **changes)
    assert catalog_counts(store.conn) == before
    assert store.conn.info.transaction_status.name == "IDLE"  # nothing left half-done


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_unknown_kind(store):
    with pytest.raises(errors.InputError, match="kind must be one of"):
        store.fit("svm", **BASE)


def test_too_many_classes(store):
    before = catalog_counts(store.conn)
    with pytest.raises(errors.TooManyClassesError, match="more than 10 distinct values"):
        fit(store, "multinomial_nb", target="many", features=["counts"], max_classes=10)
    with pytest.raises(errors.TooManyClassesError):
        fit(store, "gaussian_nb", target="many", features=["x1"], max_classes=10)
    assert catalog_counts(store.conn) == before


def test_negative_counts_for_multinomial(store):
    with pytest.raises(errors.InputError, match="non-negative"):
        fit(store, "multinomial_nb", target="label", features=["neg"])


def test_bad_smoothing(store):
    with pytest.raises(errors.InputError, match="alpha"):
        fit(store, "multinomial_nb", target="label", features=["counts"], alpha=-0.5)
    with pytest.raises(errors.InputError, match="var_smoothing"):
        fit(store, "gaussian_nb", target="label", features=["x1"], var_smoothing=float("nan"))


def test_singular_is_fine_with_ridge(store):
    m = fit(store, features=["x1", "dup"], l2=1.0)
    assert np.isfinite(m.coef_).all()


def test_boolean_feature_is_numeric(store):
    m = fit(store, features=["x1", "flag"])
    assert m.n_features_in_ == 2


def test_hostile_identifiers_are_never_executed(store):
    """Names with quotes and semicolons are identifiers, never SQL: nothing runs, nothing changes."""
    tables_before = store.conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()[0]
    for hostile in ['t"; DROP TABLE t; --', "t'; DROP TABLE t; --", "t; DROP TABLE t"]:
        with pytest.raises(errors.UnknownTableError):
            fit(store, table=hostile)
        with pytest.raises(errors.UnknownColumnError):
            fit(store, features=[hostile])
        with pytest.raises(errors.UnknownColumnError):
            fit(store, order_by=hostile)
    assert store.conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("t"))).fetchone()[0] == N + 2
    assert store.conn.execute("SELECT count(*) FROM pg_class WHERE relkind = 'r'").fetchone()[0] == tables_before
