"""``python -m modelstore``: the ``modelstore`` command (:mod:`modelstore.doors.cli`)."""

from modelstore.doors.cli import main

raise SystemExit(main())
