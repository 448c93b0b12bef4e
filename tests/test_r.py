"""The R door: examples/r_session.R through DBI + RPostgreSQL, using only modelstore's SQL functions,
gives the same model as Python (coefficients equal) and the same predictions, and explains a plan."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from psycopg.conninfo import conninfo_to_dict

import modelstore
from modelstore.planner import costs
from modelstore.planner.costs import CostModel
from tests.helpers import load_frame
from tests.doors import require_plpython

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "examples", "r_session.R")


def _r_ready() -> str | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    probe = subprocess.run([rscript, "-e", "library(DBI); library(RPostgreSQL)"], capture_output=True, timeout=120)
    return rscript if probe.returncode == 0 else None


@pytest.fixture(scope="module")
def rscript():
    path = _r_ready()
    if path is None:  # .ci/run installs r-base-core r-cran-dbi r-cran-rpostgresql
        pytest.skip("Rscript with DBI and RPostgreSQL is not installed (Debian: r-base-core r-cran-dbi r-cran-rpostgresql)")
    return path


def test_r_session_creates_reads_predicts_and_explains(rscript, dsn):
    require_plpython(dsn)  # modelstore.create_model needs PL/Python
    store = modelstore.connect(dsn)
    costs.save(store.conn, CostModel.default())
    rng = np.random.default_rng(3)
    n = 1000
    frame = pd.DataFrame({"id": np.arange(1, n + 1), "price": rng.normal(10, 2, n), "promo": rng.normal(size=n)})
    frame["revenue"] = 100 - 2.5 * frame.price + 7 * frame.promo + rng.normal(size=n)
    store.conn.execute("CREATE SCHEMA shop")
    load_frame(store.conn, "sales", frame, schema="shop")

    params = conninfo_to_dict(dsn)
    env = dict(os.environ, PGHOST=params.get("host", "localhost"), PGPORT=str(params.get("port", 5432)),
               PGDATABASE=params["dbname"], PGUSER=params.get("user", ""), PGPASSWORD=params.get("password", ""))
    proc = subprocess.run([rscript, SCRIPT, "shop.sales"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]

    assert ["CREATED", "TRUE"] in lines
    python = store.fit("linear", table="shop.sales", target="revenue", features=["price", "promo"], order_by="id",
                       lo=1, hi=800)
    for model in ("r_linear", "r_language"):  # both R doors give exactly the Python model
        weights = {f: float(w) for tag, m, f, w in (x for x in lines if x[0] == "WEIGHT") if m == model}
        assert weights["(intercept)"] == python.intercept_
        assert [weights["price"], weights["promo"]] == list(python.coef_)
    predicted = [(int(i), float(p)) for tag, i, p in (x for x in lines if x[0] == "PREDICT")]
    rows = frame[frame.id > 800].head(5)
    assert [i for i, _ in predicted] == list(rows.id)
    np.testing.assert_allclose([p for _, p in predicted], python.predict(rows[["price", "promo"]]), rtol=1e-12)
    plan = [x[1] for x in lines if x[0] == "PLAN"]
    assert plan[0].startswith('Plan for linear on "shop"."sales" [1, 1000]')
    assert any(line.lstrip().startswith("->") for line in plan) and any(line.startswith("Strategy:") for line in plan)
    store.close()
