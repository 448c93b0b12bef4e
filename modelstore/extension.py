"""Building and installing the ``modelstore_stats`` C extension (ext/; DESIGN §5, docs/statistics.md).

``make -C ext`` and ``make -C ext install`` with PGXS where ``pg_config`` and a C compiler exist (the
install step writes into the server's lib and share directories: root, or the owner of that
installation), then ``CREATE EXTENSION IF NOT EXISTS modelstore_stats SCHEMA modelstore`` in a
database (the migrations also do it whenever the server has the extension). Where it cannot be built
(a managed PostgreSQL) modelstore uses the SQL aggregates.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from modelstore.errors import ModelstoreError

EXTENSION = "modelstore_stats"


class ExtensionError(ModelstoreError):
    """The extension could not be built, installed or created; the message says what was missing."""


def source_dir() -> Path:
    """ext/ at the repository root, or the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "ext", here / "_ext"):
        if (candidate / f"{EXTENSION}.control").exists():
            return candidate
    raise ExtensionError(f"the {EXTENSION} sources (ext/) are not part of this installation")


def find_pg_config(bin_dir: str | os.PathLike | None = None) -> Path | None:
    """``pg_config`` for the server: next to its binaries (``bin_dir``, ``MODELSTORE_PG_BIN``), then on
    PATH, then the newest /usr/lib/postgresql/*/bin."""
    candidates = []
    for d in (bin_dir, os.environ.get("MODELSTORE_PG_BIN")):
        if d:
            candidates.append(Path(d) / "pg_config")
    on_path = shutil.which("pg_config")
    if on_path:
        candidates.append(Path(on_path))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_config"), reverse=True)
    return next((c for c in candidates if c.is_file() and os.access(c, os.X_OK)), None)


def _pg_config(pg_config: Path, flag: str) -> str:
    return subprocess.run([str(pg_config), flag], check=True, capture_output=True, text=True).stdout.strip()


def _fingerprint(src: Path) -> str:
    """A digest of the sources, recorded next to the installed library: rebuilt when they change."""
    h = hashlib.sha256()
    for name in sorted(p.name for p in src.iterdir() if p.suffix in (".c", ".sql", ".control") or p.name == "Makefile"):
        h.update(name.encode() + b"\0" + (src / name).read_bytes())
    return h.hexdigest()[:16]


def installed(pg_config: Path) -> bool:
    """Whether this server installation has the current build of the extension."""
    share = Path(_pg_config(pg_config, "--sharedir")) / "extension"
    stamp = share / f"{EXTENSION}.fingerprint"
    try:
        return stamp.read_text().strip() == _fingerprint(source_dir())
    except (OSError, ExtensionError):
        return False


def build_and_install(pg_config: Path | None = None, *, force: bool = False) -> Path:
    """Build and install the extension for the server of ``pg_config``; returns that pg_config.
    Raises ExtensionError naming what is missing (pg_config, a compiler, make, write access)."""
    pg_config = pg_config or find_pg_config()
    if pg_config is None:
        raise ExtensionError("no pg_config found: install the server development package "
                             "(Debian: postgresql-server-dev-15) or set MODELSTORE_PG_BIN")
    for tool in ("make", "cc"):
        if shutil.which(tool) is None:
            raise ExtensionError(f"no {tool!r} on PATH: install a C toolchain (Debian: gcc make)")
    if not force and installed(pg_config):
        return pg_config
    src = source_dir()
    build = Path(os.environ.get("TMPDIR", "/tmp")) / f"modelstore_stats-build-{os.getuid()}"
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(src, build, ignore=shutil.ignore_patterns("*.o", "*.so", "*.bc"))
    env = dict(os.environ, PG_CONFIG=str(pg_config))
    for target in ([], ["install"]):
        result = subprocess.run(["make", "-C", str(build), f"PG_CONFIG={pg_config}", *target],
                                capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise ExtensionError(f"`make {' '.join(target) or 'all'}` of {EXTENSION} failed:\n"
                                 f"{(result.stderr or result.stdout)[-2000:]}")
    share = Path(_pg_config(pg_config, "--sharedir")) / "extension"
    (share / f"{EXTENSION}.fingerprint").write_text(_fingerprint(src) + "\n")
    shutil.rmtree(build, ignore_errors=True)
    return pg_config


def try_build_and_install(pg_config: Path | None = None) -> str | None:
    """Best effort (the embedded server, the test session): None on success, else why not."""
    try:
        build_and_install(pg_config)
    except (ExtensionError, OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None
