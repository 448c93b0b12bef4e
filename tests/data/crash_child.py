"""One modelstore request, run in a subprocess by tests/test_crash.py so that it can be killed midway.

Usage: python tests/data/crash_child.py '<json>' with keys
  dsn      the database (its application_name lets the parent find this process's backend);
  action   'fit' (a linear model) or 'build_index' (a linear statistics index);
  table, order_by, features, target, and for 'fit' lo, hi, where; for 'build_index' chunk_rows;
  hold     seconds to keep the transaction open after the request's writes (0: run it on its own).
Prints 'written' once the request's writes are done (inside the open transaction when holding) and
'committed' after the commit. Exits non-zero on any error.
"""

from __future__ import annotations

import json
import sys
import time

import modelstore


def main() -> None:
    args = json.loads(sys.argv[1])
    store = modelstore.Store(args["dsn"])

    def request():
        if args["action"] == "fit":
            store.fit("linear", table=args["table"], target=args["target"], features=args["features"],
                      order_by=args["order_by"], lo=args["lo"], hi=args["hi"], where=args.get("where"))
        elif args["action"] == "build_index":
            store.build_index(args["table"], args["order_by"], args["features"], args["target"], kind="linear",
                              chunk_rows=args["chunk_rows"])
        else:
            raise SystemExit(f"unknown action {args['action']!r}")

    if args.get("hold"):
        with store.conn.transaction():
            request()
            print("written", flush=True)
            time.sleep(args["hold"])
    else:
        request()
        print("written", flush=True)
    print("committed", flush=True)
    store.close()


if __name__ == "__main__":
    main()
