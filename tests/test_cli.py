"""The `modelstore` command line against a real database: fit, explain, models, show, drop, migrate, demo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import modelstore
from modelstore.doors.cli import main
from tests.helpers import load_frame


@pytest.fixture(scope="module")
def db(module_dsn):
    with modelstore.connect(module_dsn) as store:
        rng = np.random.default_rng(4)
        frame = pd.DataFrame({"id": np.arange(1, 501), "a": rng.normal(size=500), "b": rng.normal(size=500)})
        frame["y"] = 1 + 2 * frame.a - frame.b + rng.normal(0, 0.1, 500)
        frame["k"] = (frame.y > 1).astype(int)
        load_frame(store.conn, "cli_obs", frame)
    return module_dsn


def run(db, *args) -> tuple[int, str]:
    """Run the CLI in a subprocess, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "modelstore", "--dsn", db, *args],
                          capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


REQUEST = ["linear", "--table", "cli_obs", "--target", "y", "--features", "a,b", "--order-by", "id", "--lo", "1", "--hi", "400"]


def test_fit_explain_show_drop(db):
    code, out = run(db, "explain", *REQUEST)
    assert code == 0 and "scan [1, 400]" in out
    code, out = run(db, "fit", *REQUEST, "--name", "cli_model")
    assert code == 0 and "cli_model" in out and "intercept" in out and "scan [1, 400]" in out
    code, out = run(db, "explain", *REQUEST)
    assert code == 0 and "+ stored #" in out
    code, out = run(db, "models")
    assert code == 0 and "cli_model" in out and "public.cli_obs" in out
    code, out = run(db, "show", "cli_model")
    assert code == 0 and "coef" in out and "scan [1, 400]  (rows=400" in out
    code, out = run(db, "drop", "cli_model")
    assert code == 0 and "dropped cli_model" in out
    code, out = run(db, "drop", "cli_model")
    assert code == 2 and "no model named 'cli_model'" in out
    assert run(db, "drop", "cli_model", "--if-exists")[0] == 0


def test_bad_request_exits_2_with_a_clear_message(db):
    code, out = run(db, "fit", "linear", "--table", "nope", "--target", "y", "--features", "a", "--order-by", "id")
    assert code == 2 and "error:" in out and "'nope' does not exist" in out


def test_migrate_and_demo(db):
    assert main(["--dsn", db, "migrate"]) == 0
    code, out = run(db, "demo", "--rows", "2000")
    assert code == 0, out
    assert "same request again" in out and "stored #" in out and "Materialized as statistics" in out
    # per-group models: two regions and an unseen one; one region's request reads no row
    flat = " ".join(out.split())  # the console wraps lines at its width
    assert "per-group models" in flat and "by region: EU " in flat and ", US " in flat and ", Mars " in flat
    assert "where=\"region = 'US'\"): plan +#" in flat and ", 0 rows read" in flat
