"""``modelstore serve`` as a real subprocess on 127.0.0.1 (issue #18, docs/serving.md "HTTP"): the
contract of predict, observe, model info, /healthz and /metrics; the bearer token; 400 / 404 / 422 for
bad requests and 503 while the database is down, the server staying up throughout. Every wait is
bounded; servers are stopped by PID; no traffic leaves loopback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest

import modelstore
from modelstore.server import EmbeddedServer
from tests.helpers import rel_err
from tests.reference import ols

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0
TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WINDOW = 100


class ServeProcess:
    """``python -m modelstore --dsn … serve --port 0 …``, its output collected on a thread."""

    def __init__(self, dsn: str, *args: str, token: str | None = TOKEN):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        env.pop("MODELSTORE_SERVE_TOKEN", None)
        if token is not None:
            env["MODELSTORE_SERVE_TOKEN"] = token
        self.proc = subprocess.Popen([sys.executable, "-m", "modelstore", "--dsn", dsn, "serve", "--port", "0", *args],
                                     cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def url(self) -> str:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for line in self.lines:
                found = re.search(r"listening on (http://\S+)", line)
                if found:
                    return found.group(1)
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError("serve did not start:\n" + "\n".join(self.lines))

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=TIMEOUT)
        self._reader.join(timeout=5)
        return self.proc.returncode


@pytest.fixture(scope="module")
def served(module_dsn):
    with modelstore.Store(module_dsn) as store:
        store.conn.execute("SELECT setseed(0.125)")
        store.conn.execute("CREATE TABLE public.sales (id bigserial PRIMARY KEY, x1 float8, x2 float8, y float8, "
                           "label int)")
        store.conn.execute("""
            INSERT INTO public.sales (x1, x2, y, label)
            SELECT x1, x2, 2.0 + 1.5 * x1 - 0.5 * x2 + (random() - 0.5), (x1 > 0.5)::int
            FROM (SELECT random() AS x1, random() AS x2 FROM generate_series(1, 300) g) s""")
        store.deploy("sales_now", "linear", table="sales", target="y", features=["x1", "x2"], order_by="id",
                     window=WINDOW)
        store.deploy("sales_nb", "gaussian_nb", table="sales", target="label", features=["x1", "x2"], order_by="id")
        store.fit("linear", table="sales", target="y", features=["x1", "x2"], order_by="id", lo=1, hi=50, name="plain")
        server = ServeProcess(module_dsn)
        try:
            with httpx.Client(base_url=server.url(), timeout=30.0) as client:
                yield store, client, server
        finally:
            assert server.stop() == 0, "\n".join(server.lines)


def window(conn) -> np.ndarray:
    return np.array(conn.execute("SELECT x1, x2, y FROM (SELECT * FROM sales ORDER BY id DESC LIMIT %s) w",
                                 [WINDOW]).fetchall(), dtype=float)


def test_predict_scores_with_the_active_version(served):
    store, client, _ = served
    X = [[0.1, 0.2], [0.5, 0.5], [0.9, 0.3]]
    r = client.post("/v1/models/sales_now:predict", json={"instances": X}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    d = store.deployment("sales_now")
    assert body["model_version"] == d.version
    rows = window(store.conn)
    want = ols(rows[:, :2], rows[:, 2])
    assert rel_err(np.array(body["predictions"]), want[0] + np.array(X) @ want[1:]) < 1e-9
    r = client.post("/v1/models/sales_nb:predict", json={"instances": X}, headers=AUTH)
    assert r.json()["predictions"] == store.model("sales_nb").predict(np.array(X)).tolist()
    r = client.post("/v1/models/plain:predict", json={"instances": X}, headers=AUTH)
    assert r.status_code == 200 and r.json()["model_version"] is None
    assert np.allclose(r.json()["predictions"], store.model("plain").predict(np.array(X)), rtol=1e-12)


def test_observe_then_predict_uses_the_updated_exact_model(served, module_dsn):
    store, client, _ = served
    before = client.post("/v1/models/sales_now:predict", json={"instances": [[0.3, 0.6]]}, headers=AUTH).json()
    r = client.post("/v1/models/sales_now:observe", headers=AUTH,
                    json={"instances": [[0.95, 0.05], {"x1": 0.9, "x2": 0.1}], "labels": [30.0, 31.5]})
    assert r.status_code == 200, r.text
    observed = r.json()
    assert observed["observed"] == 2 and observed["refreshed"] is True
    after = client.post("/v1/models/sales_now:predict", json={"instances": [[0.3, 0.6]]}, headers=AUTH).json()
    assert after["model_version"] == observed["model_version"] == store.deployment("sales_now").version
    assert after["model_version"] > before["model_version"]
    rows = window(store.conn)
    assert sorted(rows[:, 2])[-2:] == [30.0, 31.5]
    want = ols(rows[:, :2], rows[:, 2])
    assert abs(after["predictions"][0] - (want[0] + 0.3 * want[1] + 0.6 * want[2])) < 1e-9 * abs(after["predictions"][0])
    with psycopg.connect(module_dsn, autocommit=True) as other:  # the same model from another session, in SQL
        got = other.execute("SELECT modelstore.predict('sales_now', ARRAY[0.3, 0.6])").fetchone()[0]
    assert abs(got - after["predictions"][0]) < 1e-9 * abs(got)


def test_a_rollback_is_served_at_once(served):
    """The server keeps the models it rebuilt, checked against the catalog row on every request: a
    rollback (and the unpin after it) is what the very next prediction uses."""
    store, client, _ = served
    body = {"instances": [[0.3, 0.6]]}
    client.post("/v1/models/sales_now:predict", json=body, headers=AUTH)  # the current version, cached
    client.post("/v1/models/sales_now:observe", json={"instances": [[0.5, 0.5]], "labels": [12.0]}, headers=AUTH)
    latest = client.post("/v1/models/sales_now:predict", json=body, headers=AUTH).json()
    store.rollback("sales_now", 1)
    pinned = client.post("/v1/models/sales_now:predict", json=body, headers=AUTH).json()
    assert pinned["model_version"] == 1 < latest["model_version"]
    v1 = store.deployment("sales_now").model
    assert abs(pinned["predictions"][0] - v1.predict(np.array([[0.3, 0.6]]))[0]) < 1e-12
    assert abs(pinned["predictions"][0] - latest["predictions"][0]) > 1e-6
    store.rollback("sales_now", 3 if latest["model_version"] != 3 else 2)
    d = store.deployment("sales_now")
    again = client.post("/v1/models/sales_now:predict", json=body, headers=AUTH).json()
    assert again["model_version"] == d.version != 1
    assert abs(again["predictions"][0] - d.model.predict(np.array([[0.3, 0.6]]))[0]) < 1e-12
    store.rollback("sales_now", None)
    d.refresh()  # the unpin takes effect at the next refresh (what the worker would do)


def test_model_info(served):
    store, client, _ = served
    r = client.get("/v1/models/sales_now", headers=AUTH)
    assert r.status_code == 200, r.text
    info = r.json()
    d = store.deployment("sales_now")
    assert info["kind"] == "linear" and info["features"] == ["x1", "x2"] and info["target"] == "y"
    assert info["model_version"] == d.version == info["deployment"]["active_version"]
    assert info["deployment"]["window"] == {"kind": "rows", "rows": WINDOW, "interval": None, "anchor": "newest"}
    assert info["deployment"]["pending_writes"] == 0 and info["rows_used"] == WINDOW
    model = d.model
    assert np.allclose(info["parameters"]["coef"], model.coef_, rtol=1e-15)
    plain = client.get("/v1/models/plain", headers=AUTH).json()
    assert plain["deployment"] is None and plain["model_version"] is None and plain["rows_used"] == 50


def test_token(served):
    _, client, _ = served
    assert client.post("/v1/models/sales_now:predict", json={"instances": [[0.1, 0.2]]}).status_code == 401
    r = client.get("/v1/models/sales_now", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/metrics").status_code == 401
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}  # probes carry no token


@pytest.mark.parametrize("path, body, status, field, message", [
    (":predict", b"{not json", 400, None, "not JSON"),
    (":predict", b"[1, 2]", 400, None, "must be a JSON object"),
    (":predict", {"rows": [[1, 2]]}, 400, "instances", "instances must be a non-empty list"),
    (":predict", {"instances": []}, 400, "instances", "non-empty"),
    (":predict", {"instances": [[0.1, 0.2], [0.1, "x"]]}, 400, "instances[1][1]", 'must be a number, got "x"'),
    (":predict", {"instances": [[0.1, 0.2], [0.1]]}, 400, "instances[1]", "has 1 values"),
    (":predict", b'{"instances": [[0.1, NaN]]}', 400, None, "NaN is not JSON"),
    (":predict", {"instances": [[0.1, 0.2]], "groups": ["a", "b"]}, 400, "groups", "list of 1 group"),
    (":predict", {"instances": [[0.1, 0.2, 0.3]]}, 422, "instances", "has 2 feature(s)"),
    (":predict", {"instances": [[0.1, 0.2]], "groups": ["a"]}, 422, "groups", "no per-group models"),
    (":observe", {"instances": [[0.1, 0.2]]}, 400, "labels", "labels must be a list of 1"),
    (":observe", {"instances": [[0.1, 0.2]], "labels": [1.0], "refresh": "yes"}, 400, "refresh", "true or false"),
    (":observe", {"instances": [5], "labels": [1.0]}, 400, "instances[0]", "must be a list of values or an object"),
    (":observe", {"instances": [[0.1, "x"]], "labels": [1.0]}, 422, None, "'x2' must be a number"),
    (":observe", {"instances": [{"x1": 0.1, "x2": 0.2, "nope": 1}], "labels": [1.0]}, 422, None, "names column 'nope'"),
])
def test_bad_requests_name_the_problem(served, path, body, status, field, message):
    store, client, server = served
    rows = store.conn.execute("SELECT count(*) FROM sales").fetchone()[0]
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = client.post(f"/v1/models/sales_now{path}", headers=AUTH, **kwargs)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    if field is not None:
        assert r.json()["field"] == field
    assert store.conn.execute("SELECT count(*) FROM sales").fetchone()[0] == rows
    assert server.proc.poll() is None


def test_unknown_models_are_404(served):
    _, client, _ = served
    r = client.post("/v1/models/nothing:predict", json={"instances": [[0.1, 0.2]]}, headers=AUTH)
    assert r.status_code == 404 and "no model named 'nothing'" in r.json()["error"]
    assert client.get("/v1/models/nothing", headers=AUTH).status_code == 404
    r = client.post("/v1/models/plain:observe", json={"instances": [[0.1, 0.2]], "labels": [1.0]}, headers=AUTH)
    assert r.status_code == 404 and "no deployment named 'plain'" in r.json()["error"]
    assert client.post("/v1/models/sales_now:explode", json={}, headers=AUTH).status_code in (404, 405)


def test_metrics(served):
    _, client, _ = served
    for _ in range(3):
        client.post("/v1/models/sales_now:predict", json={"instances": [[0.1, 0.2]]}, headers=AUTH)
    client.post("/v1/models/sales_now:predict", json={"instances": "no"}, headers=AUTH)
    client.post("/v1/models/sales_now:predict", json={"instances": [[0.1, 0.2]]})
    text = client.get("/metrics", headers=AUTH).text
    found = dict(re.findall(r'modelstore_http_requests_total\{endpoint="/v1/models/\{name\}:predict",'
                            r'method="POST",status="(\d+)"\} (\S+)', text))
    assert float(found["200"]) >= 3 and float(found["400"]) >= 1 and float(found["401"]) >= 1
    count = re.search(r'modelstore_http_request_duration_seconds_count\{endpoint="/v1/models/\{name\}:predict"\} (\S+)',
                      text)
    assert count and float(count.group(1)) >= 5
    assert re.search(r'modelstore_http_request_duration_seconds_bucket\{endpoint="/v1/models/\{name\}:predict",'
                     r'le="0.01"\} \S+', text)
    version = re.search(r'modelstore_model_version\{model="sales_now"\} (\S+)', text)
    assert version and float(version.group(1)) >= 1


def test_a_non_loopback_address_needs_a_token(module_dsn):
    server = ServeProcess(module_dsn, "--host", "0.0.0.0", token=None)
    assert server.proc.wait(timeout=TIMEOUT) == 2
    server._reader.join(timeout=5)
    assert any("refusing to listen on 0.0.0.0 without a bearer token" in line for line in server.lines), server.lines


def test_503_while_the_database_is_down_and_back_after(pg_home):
    cluster = EmbeddedServer(pg_home / "pg").start()
    server = None
    try:
        with modelstore.Store(cluster.dsn) as store:
            store.conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, x float8, y float8)")
            store.conn.execute("INSERT INTO t (x, y) SELECT g, 2 * g + 1 FROM generate_series(1, 20) g")
            store.deploy("t_now", "linear", table="t", target="y", features=["x"], order_by="id")
        server = ServeProcess(cluster.dsn, "--db-timeout", "1")
        with httpx.Client(base_url=server.url(), timeout=30.0, headers=AUTH) as client:
            r = client.post("/v1/models/t_now:predict", json={"instances": [[10.0]]})
            assert r.status_code == 200 and abs(r.json()["predictions"][0] - 21.0) < 1e-9
            cluster.stop()
            for _ in range(2):  # the pooled connection is gone, and no new one can be made
                r = client.post("/v1/models/t_now:predict", json={"instances": [[10.0]]})
                assert r.status_code == 503 and "database is unavailable" in r.json()["error"], r.text
            assert client.get("/healthz").status_code == 503
            r = client.post("/v1/models/t_now:observe", json={"instances": [[1.0]], "labels": [3.0]})
            assert r.status_code == 503
            assert server.proc.poll() is None
            cluster = EmbeddedServer(pg_home / "pg").start()
            deadline = time.monotonic() + TIMEOUT
            while True:  # the pool reconnects in the background
                r = client.post("/v1/models/t_now:predict", json={"instances": [[10.0]]})
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 200 and abs(r.json()["predictions"][0] - 21.0) < 1e-9
            text = client.get("/metrics").text
            failed = re.search(r'modelstore_http_requests_total\{endpoint="/v1/models/\{name\}:predict",method="POST",'
                               r'status="503"\} (\S+)', text)
            assert failed and float(failed.group(1)) >= 2
    finally:
        if server is not None:
            assert server.stop() == 0, "\n".join(server.lines)
        cluster.stop()
