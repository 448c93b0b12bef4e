"""Statistics: merge/unmerge equals numpy on the same rows (property tests), in-database aggregates
equal numpy's, and the catalog stores and returns them bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from modelstore.catalog import records
from modelstore.execution.executor import scan
from modelstore.stats import GaussianNBStats, LinearStats, MultinomialNBStats
from tests.helpers import load_frame

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)


def close(a, b, rtol=1e-9):
    """Equal to rtol relative to the magnitude of the reference as a whole (comoments mix scales)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(float(np.max(np.abs(b))) if b.size else 0.0, 1e-12)
    return a.shape == b.shape and float(np.max(np.abs(a - b), initial=0.0)) <= rtol * scale


def comoment_close(got, ref, z, rtol=1e-9):
    """Comoments agree to rtol of their magnitude, above the rounding floor every reference carries:
    the mean is rounded, so Σ(z − mean)² has an error of about n·(ε·|z|)² even for constant columns."""
    floor = len(z) * (1e-14 * max(1.0, float(np.max(np.abs(z))))) ** 2
    return float(np.max(np.abs(got - ref))) <= rtol * float(np.max(np.abs(ref))) + floor


@st.composite
def matrices_with_split(draw):
    k = draw(st.integers(1, 5))
    n = draw(st.integers(2, 40))
    z = draw(arrays(np.float64, (n, k), elements=finite))
    offset = draw(st.sampled_from([0.0, 1e4, -3e5]))  # large means stress the centered updates
    cut = draw(st.integers(0, n))
    return z + offset, cut


# -- merge / unmerge (River-style property tests) -------------------------------------------------------

@given(matrices_with_split())
def test_linear_merge_equals_numpy(data):
    z, cut = data
    cols = [f"c{i}" for i in range(z.shape[1])]
    a, b = LinearStats.from_rows(cols, z[:cut]), LinearStats.from_rows(cols, z[cut:])
    merged = a + b
    assert merged.n == len(z)
    assert close(merged.mean, z.mean(axis=0))
    centered = z - z.mean(axis=0)
    assert comoment_close(merged.comoment, centered.T @ centered, z, rtol=1e-8)


@given(matrices_with_split())
def test_linear_unmerge_inverts_merge(data):
    z, cut = data
    cols = [f"c{i}" for i in range(z.shape[1])]
    a, b = LinearStats.from_rows(cols, z[:cut]), LinearStats.from_rows(cols, z[cut:])
    back = (a + b) - b
    assert back.n == a.n
    if a.n:
        # subtraction cancels: the error is relative to what was subtracted from, not to the result
        whole = a + b
        assert np.max(np.abs(back.mean - a.mean)) <= 1e-12 * max(1.0, np.max(np.abs(whole.mean)))
        assert np.max(np.abs(back.comoment - a.comoment)) <= 1e-9 * max(1.0, np.max(np.abs(whole.comoment)))
    zero = (a + b) - (a + b)
    assert zero.n == 0 and not zero.comoment.any()


def test_unmerge_below_zero_raises():
    a = LinearStats.from_rows(["x", "y"], np.arange(6.0).reshape(3, 2))
    b = LinearStats.from_rows(["x", "y"], np.arange(8.0).reshape(4, 2))
    with pytest.raises(ValueError, match="cannot remove 4 rows"):
        a - b
    with pytest.raises(ValueError, match="different columns"):
        a + LinearStats.from_rows(["x", "z"], np.arange(6.0).reshape(3, 2))


def test_subset_requires_no_skipped_rows():
    s = LinearStats.from_rows(["a", "b", "y"], np.random.default_rng(1).normal(size=(10, 3)))
    sub = s.select(["b", "y"])
    assert sub.columns == ("b", "y") and sub.comoment[0, 1] == s.comoment[1, 2]
    s.null_rows = 2
    assert not s.can_serve(["b", "y"]) and s.can_serve(["y", "a", "b"])
    with pytest.raises(ValueError):
        s.select(["b", "y"])


@st.composite
def labelled(draw):
    d = draw(st.integers(1, 4))
    n = draw(st.integers(2, 50))
    X = draw(arrays(np.float64, (n, d), elements=st.floats(0, 50, allow_nan=False)))
    y = draw(arrays(np.int64, n, elements=st.integers(0, 3)))
    return X, y, draw(st.integers(0, n))


@given(labelled())
def test_gaussian_nb_merge_unmerge(data):
    X, y, cut = data
    feats = [f"f{i}" for i in range(X.shape[1])]
    a, b = GaussianNBStats.from_rows(feats, X[:cut], y[:cut]), GaussianNBStats.from_rows(feats, X[cut:], y[cut:])
    full, merged = GaussianNBStats.from_rows(feats, X, y), a + b
    assert merged.classes == full.classes and np.array_equal(merged.counts, full.counts)
    assert close(merged.means, full.means) and close(merged.m2, full.m2, rtol=1e-8)
    back = merged - b
    assert back.classes == a.classes and np.array_equal(back.counts, a.counts)
    if a.n:
        assert np.max(np.abs(back.means - a.means)) <= 1e-12 * max(1.0, np.max(np.abs(full.means)))
        assert np.max(np.abs(back.m2 - a.m2)) <= 1e-9 * max(1.0, np.max(full.m2))


@given(labelled())
def test_multinomial_nb_merge_unmerge(data):
    X, y, cut = data
    X = np.floor(X)
    feats = [f"f{i}" for i in range(X.shape[1])]
    a, b = MultinomialNBStats.from_rows(feats, X[:cut], y[:cut]), MultinomialNBStats.from_rows(feats, X[cut:], y[cut:])
    assert a + b == MultinomialNBStats.from_rows(feats, X, y)
    assert (a + b) - b == a


# -- in-database aggregates equal numpy's ----------------------------------------------------------------
# (``store``: the shared fixture of tests/fixtures.py, on the module's database)

@settings(max_examples=25)
@given(matrices_with_split())
def test_linear_aggregate_in_postgres_equals_numpy(store, data):
    z, _ = data
    frame = pd.DataFrame(z, columns=[f"c{i}" for i in range(z.shape[1])])
    frame.insert(0, "id", np.arange(1, len(z) + 1))
    load_frame(store.conn, "agg", frame)
    cols = list(frame.columns[1:])
    descriptor, table = store._describe("linear", "agg", cols[-1], cols[:-1] or ["id"], "id", 1, len(z), None, {"l2": 0.0})
    stats = scan(store.conn, table, descriptor, descriptor.range)
    ref = LinearStats.from_rows(descriptor.stats_columns, frame[list(descriptor.stats_columns)].to_numpy(float))
    assert stats.n == ref.n and stats.null_rows == 0
    assert close(stats.mean, ref.mean, rtol=1e-12)
    assert comoment_close(stats.comoment, ref.comoment, z)


def test_nb_aggregates_in_postgres_equal_numpy(store):
    rng = np.random.default_rng(3)
    n = 500
    frame = pd.DataFrame({"id": np.arange(1, n + 1), "a": rng.normal(5, 2, n), "b": rng.poisson(3, n).astype(float),
                          "label": rng.choice(["x", "y", "z"], n)})
    load_frame(store.conn, "nb", frame)
    for kind, cls in (("gaussian_nb", GaussianNBStats), ("multinomial_nb", MultinomialNBStats)):
        descriptor, table = store._describe(kind, "nb", "label", ["a", "b"] if kind == "gaussian_nb" else ["b"],
                                            "id", 1, n, None, {})
        got = scan(store.conn, table, descriptor, descriptor.range)
        sel = frame[list(descriptor.features)].to_numpy(float)
        ref = cls.from_rows(descriptor.features, sel, frame["label"].to_numpy())
        assert got.classes == ref.classes == ("x", "y", "z")
        assert np.array_equal(got.counts, ref.counts)
        if kind == "gaussian_nb":
            assert close(got.means, ref.means, 1e-12) and close(got.m2, ref.m2, 1e-10)
        else:
            assert np.array_equal(got.feature_sums, ref.feature_sums)


def test_nulls_are_skipped_and_counted(store):
    frame = pd.DataFrame({"id": np.arange(1, 9), "x": [1.0, 2, None, 4, 5, 6, 7, 8], "y": [2.0, 4, 6, None, 10, 12, 15, 16]})
    load_frame(store.conn, "holes", frame)
    descriptor, table = store._describe("linear", "holes", "y", ["x"], "id", 1, 8, None, {"l2": 0.0})
    stats = scan(store.conn, table, descriptor, descriptor.range)
    complete = frame.dropna()
    assert (stats.n, stats.null_rows) == (6, 2)
    assert close(stats.comoment, LinearStats.from_rows(["x", "y"], complete[["x", "y"]].to_numpy()).comoment, 1e-12)


@pytest.mark.parametrize("cls,args", [
    (LinearStats, (["a", "b", "y"], np.random.default_rng(5).normal(size=(30, 3)) * 1e3 + np.pi)),
    (GaussianNBStats, (["a", "b"], np.random.default_rng(6).normal(size=(30, 2)), np.arange(30) % 3)),
    (MultinomialNBStats, (["a", "b"], np.random.default_rng(7).poisson(4, size=(30, 2)), np.arange(30) % 2)),
])
def test_catalog_round_trip_is_exact(store, cls, args):
    """Statistics come back from the catalog bit for bit (float8 arrays, shortest round-trip text)."""
    stats = cls.from_rows(*args)
    frame = pd.DataFrame({"id": np.arange(1, 31), "a": 0.0, "b": 0.0, "y": 0})
    load_frame(store.conn, "rt", frame)
    kind = {"linear": "linear", "gaussian_nb": "gaussian_nb", "multinomial_nb": "multinomial_nb"}[cls.family]
    target = "y"
    feats = ["a", "b"]
    descriptor, _ = store._describe(kind, "rt", target, feats, "id", 1, 30, None, {})
    with store.conn.transaction():
        source_id = records.ensure_source(store.conn, descriptor.source)
        stats_id = records.store_stats(store.conn, source_id, descriptor, stats)
        again = records.store_stats(store.conn, source_id, descriptor, stats)
    assert again == stats_id  # one row per descriptor
    assert records.fetch_stats(store.conn, [stats_id])[stats_id] == stats


@pytest.mark.parametrize("kind,target,features", [
    ("linear", "y", ["a", "b"]), ("gaussian_nb", "label", ["a", "b"]), ("multinomial_nb", "label", ["b"])])
def test_rows_fetched_to_python_give_the_aggregates_statistics(store, kind, target, features):
    """The executor's two ways to summarise a scan — PostgreSQL aggregates, or rows fetched and summed
    in numpy (chosen by the cost model for small scans) — agree, NULL counts included."""
    from modelstore.request.descriptor import Range
    from modelstore.execution.executor import fetch_many, scan_many

    rng = np.random.default_rng(9)
    n = 300
    frame = pd.DataFrame({"id": np.arange(1, n + 1), "a": rng.normal(50, 3, n), "b": rng.poisson(4, n).astype(float),
                          "y": rng.normal(size=n), "label": rng.choice(["p", "q"], n)})
    frame.loc[[5, 77, 150], "a"] = None
    load_frame(store.conn, "both", frame)
    descriptor, table = store._describe(kind, "both", target, features, "id", 1, n, None, {})
    ranges = [Range(1, 90), Range(120, 260)]
    fetched = fetch_many(store.conn, table, descriptor, ranges)
    aggregated = scan_many(store.conn, table, descriptor, ranges)
    for f, a in zip(fetched, aggregated):
        assert (f.n, f.null_rows) == (a.n, a.null_rows)
        for name in ("mean", "comoment", "means", "m2", "feature_sums", "counts"):
            if hasattr(a, name):
                assert close(getattr(f, name), getattr(a, name), rtol=1e-10), name
