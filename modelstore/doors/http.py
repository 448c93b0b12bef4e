"""``modelstore serve``: predictions over HTTP (issue #18, DESIGN.md §4; docs/serving.md, "HTTP").

Velox (Crankshaw et al., CIDR 2015) puts the model-serving tier next to the data, with ``predict`` and
``observe`` as its interface. This door is that tier for modelstore: an ASGI application (Starlette)
on uvicorn, over a psycopg connection pool, speaking the KServe / TF-Serving v1 convention:

=============================  =============================================================================
``POST /v1/models/{name}:predict``  ``{"instances": [[…], …], "groups": […]}`` → ``{"predictions": […],
                                    "model_version": n}`` (the active version; null for a plain model)
``POST /v1/models/{name}:observe``  ``{"instances": […], "labels": […], "groups": […], "refresh": true}`` →
                                    ``{"observed": n, "refreshed": …, "model_version": n, …}``
``GET /v1/models/{name}``           kind, features, target, parameters, freshness; for a deployment its
                                    active version, window, pending writes and prequential metrics
``GET /healthz``                    200 when the database answers, 503 when it does not (no token needed)
``GET /metrics``                    Prometheus text: request counts by endpoint, method and status,
                                    latency histograms by endpoint, the version each model served last
=============================  =============================================================================

Errors are JSON, ``{"error": "…", "field": "…"}``: 400 for a body that is not the JSON the endpoint
takes (the field named), 401 without the bearer token when one is configured, 404 for an unknown
model or deployment, 422 for a request modelstore refuses (wrong feature count, a non-numeric value, a
row the deployment's filter rejects — :class:`~modelstore.errors.InputError`), 503 when the database
cannot be reached, 500 for anything unforeseen (logged). The process stays up in every case.

Every call into the store goes through :mod:`modelstore.doors.serving`, in a worker thread, on one
pooled connection; the event loop only parses, checks and answers.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import weakref

import psycopg
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelstore.doors import serving
from modelstore.errors import InputError, ModelNotFoundError, ModelstoreError, NotDeployedError

log = logging.getLogger("modelstore.serve")

#: the environment variable that holds the bearer token (``--token-file`` and ``--token`` also set it)
TOKEN_ENV = "MODELSTORE_SERVE_TOKEN"
#: rows one request may carry (a bound on memory and on the time one request holds a connection)
MAX_INSTANCES = 10_000
#: latency buckets, seconds: sub-millisecond to seconds (the §7 target is p99 < 10 ms)
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: endpoints that answer without the token: liveness probes carry none
OPEN_ENDPOINTS = ("/healthz",)


class BadRequest(Exception):
    """A body that is not what the endpoint takes; ``field`` names the part at fault."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class Service:
    """The state of one server: the pool, the token, the metrics, and a store per pooled connection."""

    def __init__(self, dsn: str, *, token: str | None = None, pool_size: int = 4, db_timeout: float = 5.0,
                 max_instances: int = MAX_INSTANCES):
        self.dsn = dsn
        self.token = token or None
        self.db_timeout = float(db_timeout)
        self.max_instances = int(max_instances)
        self.pool = ConnectionPool(dsn, min_size=1, max_size=max(1, int(pool_size)), open=False,
                                   timeout=self.db_timeout, name="modelstore-serve",
                                   kwargs={"autocommit": True, "application_name": "modelstore serve"})
        self._stores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.registry = CollectorRegistry()
        self.requests = Counter("modelstore_http_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=self.registry)
        self.latency = Histogram("modelstore_http_request_duration_seconds", "HTTP request latency by endpoint",
                                 ["endpoint"], buckets=BUCKETS, registry=self.registry)
        self.versions = Gauge("modelstore_model_version", "The model version the last request to a model used "
                              "(0: a plain model, not a deployment)", ["model"], registry=self.registry)
        self.rows = Counter("modelstore_predicted_rows", "Rows scored, by model", ["model"], registry=self.registry)

    # -- the store, on a pooled connection ---------------------------------------------------------------

    def call(self, fn, *args, retry: bool = False, **kwargs):
        """``fn(store, *args)`` on a pooled connection. ``retry``: a read that failed on a connection the
        server had closed (a restart) is tried once more on a fresh one; writes are never retried."""
        from modelstore.store import Store

        for attempt in (0, 1):
            try:
                with self.pool.connection() as conn:
                    store = self._stores.get(conn)
                    if store is None:
                        store = self._stores[conn] = Store.on_connection(conn)
                    return fn(store, *args, **kwargs)
            except PoolTimeout:  # no connection within db_timeout: the database is down, do not wait twice
                raise
            except psycopg.OperationalError:
                if not retry or attempt:
                    raise

    # -- the endpoints -----------------------------------------------------------------------------------

    async def predict(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await _body(request)
        instances = self._instances(body, numeric=True)
        groups = _groups(body, len(instances))
        result = await run_in_threadpool(self.call, serving.predict, name, instances, groups, retry=True)
        self.versions.labels(name).set(result["model_version"] or 0)
        self.rows.labels(name).inc(len(instances))
        return JSONResponse(result)

    async def observe(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await _body(request)
        instances = self._instances(body, numeric=False)
        labels = body.get("labels")
        if not isinstance(labels, list) or len(labels) != len(instances):
            raise BadRequest(f"labels must be a list of {len(instances)} label(s), one per instance", "labels")
        groups = _groups(body, len(instances))
        refresh = body.get("refresh", True)
        if not isinstance(refresh, bool):
            raise BadRequest("refresh must be true or false", "refresh")
        result = await run_in_threadpool(self.call, serving.observe, name, instances, labels, groups, refresh=refresh)
        if result["model_version"] is not None:
            self.versions.labels(name).set(result["model_version"])
        return JSONResponse(result)

    async def describe(self, request: Request) -> Response:
        name = request.path_params["name"]
        return JSONResponse(await run_in_threadpool(self.call, serving.describe, name, retry=True))

    async def healthz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.call, serving.healthy, retry=True)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            return JSONResponse({"status": "unavailable", "database": _first_line(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok"})

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    # -- the frame around every endpoint: token, errors, metrics ------------------------------------------

    def route(self, path: str, handler, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if path not in OPEN_ENDPOINTS and not self._authorized(request):
                    response = JSONResponse({"error": "missing or wrong bearer token (Authorization: Bearer …)"},
                                            status_code=401, headers={"WWW-Authenticate": 'Bearer realm="modelstore"'})
                else:
                    response = await handler(request)
            except Exception as exc:  # every failure becomes an answer; the server stays up
                response = _error_response(exc)
            self.requests.labels(path, request.method, str(response.status_code)).inc()
            self.latency.labels(path).observe(time.perf_counter() - started)
            return response

        return Route(path, endpoint, methods=methods)

    def _authorized(self, request: Request) -> bool:
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def _instances(self, body: dict, *, numeric: bool) -> list:
        instances = body.get("instances")
        if not isinstance(instances, list) or not instances:
            raise BadRequest("instances must be a non-empty list of rows", "instances")
        if len(instances) > self.max_instances:
            raise BadRequest(f"instances: at most {self.max_instances:,} rows per request, got {len(instances):,}",
                             "instances")
        for i, row in enumerate(instances):
            if numeric:
                if not isinstance(row, list) or not row:
                    raise BadRequest(f"instances[{i}] must be a non-empty list of numbers", f"instances[{i}]")
                for j, v in enumerate(row):
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        raise BadRequest(f"instances[{i}][{j}] must be a number, got {json.dumps(v)}",
                                         f"instances[{i}][{j}]")
                if len(row) != len(instances[0]):
                    raise BadRequest(f"instances[{i}] has {len(row)} values, instances[0] has {len(instances[0])}",
                                     f"instances[{i}]")
            elif not isinstance(row, list | dict):
                raise BadRequest(f"instances[{i}] must be a list of values or an object of column: value",
                                 f"instances[{i}]")
        return instances

    def app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app):
            self.pool.open(wait=False)
            try:
                yield
            finally:
                self.pool.close(timeout=5.0)

        routes = [
            self.route("/v1/models/{name}:predict", self.predict, ["POST"]),
            self.route("/v1/models/{name}:observe", self.observe, ["POST"]),
            self.route("/v1/models/{name}", self.describe, ["GET"]),
            self.route("/healthz", self.healthz, ["GET"]),
            self.route("/metrics", self.metrics, ["GET"]),
        ]
        return Starlette(routes=routes, lifespan=lifespan)


def create_app(dsn: str, **options) -> Starlette:
    """The ASGI application over ``dsn`` (options: :class:`Service`'s): for uvicorn, or any ASGI server."""
    return Service(dsn, **options).app()


# -- request bodies and error answers -------------------------------------------------------------------------

def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


async def _body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _groups(body: dict, n: int) -> list | None:
    groups = body.get("groups")
    if groups is None:
        return None
    if not isinstance(groups, list) or len(groups) != n:
        raise BadRequest(f"groups must be a list of {n} group value(s), one per instance", "groups")
    for i, g in enumerate(groups):
        if isinstance(g, bool) or not isinstance(g, str | int | float):
            raise BadRequest(f"groups[{i}] must be a string or a number, got {json.dumps(g)}", f"groups[{i}]")
    return groups


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _error_response(exc: BaseException) -> JSONResponse:
    if isinstance(exc, BadRequest):
        return JSONResponse({"error": str(exc), "field": exc.field}, status_code=400)
    if isinstance(exc, ModelNotFoundError | NotDeployedError):
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=404)
    if isinstance(exc, InputError):
        field = str(exc).split(":", 1)[0] if str(exc).startswith(("instances", "groups", "labels")) else None
        return JSONResponse({"error": str(exc), "type": type(exc).__name__, "field": field}, status_code=422)
    if isinstance(exc, psycopg.OperationalError | PoolTimeout):
        return JSONResponse({"error": f"the database is unavailable: {_first_line(exc)}"}, status_code=503,
                            headers={"Retry-After": "1"})
    if isinstance(exc, ModelstoreError):  # e.g. a singular system on refresh: the request cannot be answered
        return JSONResponse({"error": str(exc), "type": type(exc).__name__}, status_code=422)
    log.exception("unforeseen error")
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {_first_line(exc)}"}, status_code=500)


# -- the process ----------------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, allow_unauthenticated: bool) -> None:
    """Refuse to listen beyond loopback without a token, unless told so explicitly (docs/serving.md)."""
    if token is None and not is_loopback(host) and not allow_unauthenticated:
        raise InputError(f"refusing to listen on {host} without a bearer token: set ${TOKEN_ENV} (or --token-file), "
                         f"or pass --allow-unauthenticated if something in front of the server authenticates")


def serve(dsn: str, *, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
          allow_unauthenticated: bool = False, pool_size: int = 4, db_timeout: float = 5.0,
          log_level: str = "warning") -> None:
    """Run the server until SIGTERM / SIGINT (uvicorn finishes the requests in flight, then exits)."""
    import uvicorn

    check_exposure(host, token, allow_unauthenticated)
    app = create_app(dsn, token=token, pool_size=pool_size, db_timeout=db_timeout)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    # proto=IPPROTO_TCP: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that say they
    # are TCP; with proto 0 a response's body waits for the client's delayed ACK of its headers (40 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))  # bound here so that --port 0 can say which port it got
    bound = sock.getsockname()[1]

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            """SIGTERM / SIGINT: finish the requests in flight and exit 0, as ``modelstore worker`` does
            (uvicorn's own handler re-raises the signal after shutdown, so the exit status would be -15)."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            saved = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                yield
            finally:
                for sig, handler in saved.items():
                    signal.signal(sig, handler)

        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                where = f"[{host}]" if family == socket.AF_INET6 else host
                print(f"modelstore serve {os.getpid()}: listening on http://{where}:{bound}"
                      f"{' (bearer token required)' if token else ''}", flush=True)

    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=10)
    Server(config).run(sockets=[sock])
    print(f"modelstore serve {os.getpid()}: stopped", file=sys.stdout, flush=True)


__all__ = ["Service", "create_app", "serve", "check_exposure", "is_loopback", "TOKEN_ENV", "MAX_INSTANCES"]
