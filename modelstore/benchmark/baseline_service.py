"""The baseline a user would otherwise build (issue #18, "Benchmark"): a small Starlette service on
uvicorn that loads a scikit-learn model from a pickle and answers the same
``POST /v1/models/{name}:predict`` with ``{"instances": …}`` → ``{"predictions": …}``.

No database, no versions, no observe: the model is whatever was pickled when the service started.
Run by the ``serving`` experiment as ``python -m modelstore.benchmark.baseline_service --model FILE
--port 0``; it prints ``listening on http://…`` once it accepts requests and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import socket

import numpy as np


def app(model):
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict(request):
        try:
            body = json.loads(await request.body())
            X = np.asarray(body["instances"], dtype=float)
            return JSONResponse({"predictions": model.predict(X).tolist()})
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)

    return Starlette(routes=[Route("/v1/models/{name}:predict", predict, methods=["POST"])])


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="baseline_service")
    parser.add_argument("--model", required=True, help="a pickled scikit-learn estimator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    with open(args.model, "rb") as f:
        model = pickle.load(f)  # the benchmark's own file, written by the same run
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY (see doors/http.py)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    port = sock.getsockname()[1]

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if self.started:
                print(f"baseline {os.getpid()}: listening on http://{args.host}:{port}", flush=True)

    Server(uvicorn.Config(app(model), log_level="warning", access_log=False)).run(sockets=[sock])


if __name__ == "__main__":
    main()
