"""A bounded HTTP load generator and the services it drives (issue #18, "Load"; docs/serving.md).

Open loop: request *i* is due at ``start + i / rate`` whatever happened to the earlier ones, and its
latency is measured from that due time, not from when it was actually sent — so a server (or a client)
that falls behind shows it in the tail instead of silently lowering the rate ("coordinated omission").
Bounded in every way: ``rate × seconds`` requests, ``threads`` connections (keep-alive, one per
thread, each taking the next due request), each request with a timeout; loopback addresses only.
The client is a thread pool over the standard library's ``http.client`` (httpx's async client spent
more CPU per request than the server on this machine and could not hold 200 requests/s), in the
benchmark's own process, so it shares the machine's cores with the server and PostgreSQL; the figures
say so.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np

from modelstore.doors.http import is_loopback

START_TIMEOUT = 60.0


@dataclass
class Load:
    """What one open-loop run measured."""

    rate: float
    seconds: float
    requests: int
    ok: int
    errors: dict = field(default_factory=dict)
    latencies_ms: list = field(default_factory=list)
    wall_seconds: float = 0.0

    def to_json(self) -> dict:
        lat = np.asarray(self.latencies_ms, dtype=float)

        def pct(q):
            return float(np.percentile(lat, q)) if lat.size else None

        return {"rate": self.rate, "seconds": self.seconds, "requests": self.requests, "ok": self.ok,
                "errors": sum(self.errors.values()), "error_kinds": dict(self.errors),
                "achieved_rate": self.requests / self.wall_seconds if self.wall_seconds else None,
                "p50_ms": pct(50), "p90_ms": pct(90), "p99_ms": pct(99), "max_ms": pct(100)}


def run_load(url: str, path: str, bodies: Sequence[bytes], *, rate: float, seconds: float,
             headers: dict | None = None, timeout: float = 5.0, threads: int = 32) -> Load:
    """POST ``bodies`` (cycled) to ``url + path`` at ``rate`` requests/s for ``seconds``."""
    parts = urlsplit(url)
    if not is_loopback(parts.hostname or ""):
        raise ValueError(f"the load generator only drives loopback addresses, got {parts.hostname!r}")
    n = max(1, int(round(rate * seconds)))
    result = Load(rate=rate, seconds=seconds, requests=n, ok=0)
    errors: Counter = Counter()
    lock = threading.Lock()
    issued = iter(range(n))
    headers = {"Content-Type": "application/json", **(headers or {})}
    start = time.perf_counter() + 0.05

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        conn.connect()
        # Nagle's algorithm off, as curl and wrk do (http.client sends a bytes body with its headers anyway)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def worker() -> None:
        conn = None
        while True:
            with lock:
                i = next(issued, None)
            if i is None:
                break
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                if conn is None:
                    conn = connect()
                conn.request("POST", path, body=bodies[i % len(bodies)], headers=headers)
                response = conn.getresponse()
                response.read()
                elapsed = (time.perf_counter() - due) * 1000
                with lock:
                    if response.status == 200:
                        result.latencies_ms.append(elapsed)
                        result.ok += 1
                    else:
                        errors[f"HTTP {response.status}"] += 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(threads, n)))]
    began = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=seconds + 10 * timeout + 30)
    result.wall_seconds = time.perf_counter() - began
    result.errors = dict(errors)
    return result


def meets(point: dict, p99_ms: float) -> bool:
    """A run meets the latency target: every request answered, p99 strictly under ``p99_ms``."""
    return point["errors"] == 0 and point["ok"] > 0 and point["p99_ms"] is not None and point["p99_ms"] < p99_ms


def find_max_rate(measure: Callable[[float], dict], *, p99_ms: float, start: float, ceiling: float,
                  max_steps: int, resolution: float = 0.1, floor: float = 1.0) -> dict:
    """The highest request rate whose run meets ``p99_ms`` (:func:`meets`), by a bounded search.

    ``measure(rate)`` runs one bounded open-loop load (:func:`run_load`) and returns its ``to_json()``.
    Doubling from ``start`` while runs meet the target (up to ``ceiling``; halving instead while they
    do not, down to ``floor``), then bisection between the highest rate that met it and the lowest that
    did not, until they are within ``resolution`` of each other. At most ``max_steps`` runs in all, so
    the search is bounded in requests (Σ rate × seconds) and in time whatever the service does. One run
    per rate: a rate is judged by one sample of its tail, so on a loaded machine the answer is as noisy
    as the tail itself (docs/serving.md, "Measured").

    Returns ``max_rate`` (None: no rate down to ``floor`` met it), ``first_failing_rate`` (None: the
    ceiling met it), ``steps`` (every run, in order) and why it stopped (``stopped``)."""
    if not 0 < floor <= start <= ceiling or max_steps < 1 or not 0 < resolution < 1:
        raise ValueError("find_max_rate needs 0 < floor <= start <= ceiling, max_steps >= 1 and 0 < resolution < 1")
    good = bad = None
    steps: list[dict] = []
    rate = float(start)
    stopped = "max_steps"
    while len(steps) < max_steps:
        point = measure(rate)
        point = {**point, "rate": rate, "meets": meets(point, p99_ms)}
        steps.append(point)
        if point["meets"]:
            good = rate
        else:
            bad = rate
        if bad is None:
            if good >= ceiling:
                stopped = "ceiling"
                break
            rate = min(good * 2, ceiling)
        elif good is None:
            if rate / 2 < floor:
                stopped = "floor"
                break
            rate = rate / 2
        else:
            if bad - good <= resolution * good:
                stopped = "resolution"
                break
            rate = (good + bad) / 2
    return {"max_rate": good, "first_failing_rate": bad, "p99_target_ms": p99_ms, "start": start,
            "ceiling": ceiling, "resolution": resolution, "max_steps": max_steps, "stopped": stopped,
            "requests": sum(p["requests"] for p in steps), "steps": steps}


class ServiceProcess:
    """An HTTP service as a subprocess that prints ``listening on http://…`` once it accepts requests;
    stopped by PID (SIGTERM, then SIGKILL after a timeout)."""

    def __init__(self, argv: list[str], env: dict | None = None):
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = re.search(r"listening on (http://\S+)", line)
                if found:
                    return found.group(1)
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("the service did not start:\n" + "\n".join(self.lines[-20:]))

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> "ServiceProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def cpu_seconds(pids) -> float | None:
    """User + system CPU seconds the processes have used so far (Linux /proc), None where unreadable."""
    total = 0.0
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, ValueError, IndexError):
        return None
    return total


def python_env() -> dict:
    """The environment for a service subprocess: this interpreter's modelstore importable, no token."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MODELSTORE_SERVE_TOKEN", None)
    return env


def modelstore_serve(dsn: str, *, pool_size: int = 4) -> ServiceProcess:
    return ServiceProcess([sys.executable, "-m", "modelstore", "--dsn", dsn, "serve", "--port", "0",
                           "--pool-size", str(pool_size)], env=python_env())


def pickled_service(model_path: str) -> ServiceProcess:
    return ServiceProcess([sys.executable, "-m", "modelstore.benchmark.baseline_service", "--model", model_path,
                           "--port", "0"], env=python_env())


__all__ = ["Load", "run_load", "meets", "find_max_rate", "cpu_seconds", "ServiceProcess", "modelstore_serve", "pickled_service", "python_env"]
