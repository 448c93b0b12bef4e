"""An embedded PostgreSQL server that modelstore starts when no DSN is given.

The server uses the system PostgreSQL binaries where present (``MODELSTORE_PG_BIN``, ``pg_ctl`` on
``PATH``, ``/usr/lib/postgresql/*/bin``) or those bundled with the optional ``pgserver`` wheel.

It listens on 127.0.0.1 only, on a port chosen when the cluster is first initialised and kept in
``<datadir>/modelstore.conf``; the superuser is ``modelstore``, and a database ``modelstore`` is
created on first use.  Its password is generated when the cluster is created and kept in
``<datadir>.password`` (mode 0600); ``dsn`` carries it, so ``modelstore server status`` prints a URL
that psql and R take as is.  (Clusters created by earlier releases, and ephemeral test clusters, have
passwordless ``trust`` login on 127.0.0.1, which lets every local user in: remove an old data directory
to get a password.)  The superuser's search path is ``public``: its
name is the catalog schema's, so PostgreSQL's default ``"$user", public`` would put unqualified
user tables in the catalog.  Its log goes to ``<datadir>.log`` beside the data
directory, and a lock file ``<datadir>.lock`` serialises ``start()``/``stop()`` between processes.

PostgreSQL refuses to run as root.  When modelstore runs as root, the server runs as the
``postgres`` system user if it exists, else as a ``modelstore`` system user (created on demand),
else as ``nobody``; the data directory is owned by that user, and every directory above it must be
traversable by it (which is why root's default data directory is ``/var/lib/modelstore/pg`` rather
than one under ``/root``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import pwd
import re
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from modelstore.errors import ServerError

__all__ = ["EmbeddedServer", "default_datadir", "find_pg_bin"]

#: the superuser role and the database created in every embedded cluster
SUPERUSER = "modelstore"
DATABASE = "modelstore"
#: the superuser's search path (see _ensure_database): never the catalog schema first
SEARCH_PATH_SETTING = "search_path=public"

#: where distribution packages put the server binaries (Debian/Ubuntu layout); highest version wins
SYSTEM_BIN_GLOBS: tuple[str, ...] = ("/usr/lib/postgresql/*/bin",)

_REQUIRED_BINARIES = ("pg_ctl", "initdb", "postgres")
_CONF_NAME = "modelstore.conf"
#: which postgres binary the running server was started from (see _check_binaries)
_BINARY_NAME = "modelstore.binary"
_START_TIMEOUT_S = 60
_STOP_TIMEOUT_S = 60
_LOG_ROTATE_BYTES = 10 * 1024 * 1024
_INSTALL_HINT = (
    "Install the PostgreSQL server, e.g. `apt-get install postgresql` (Debian/Ubuntu), "
    "`dnf install postgresql-server` (Fedora/RHEL) or `brew install postgresql` (macOS), "
    "or `pip install 'modelstore[embedded]'` for the bundled binaries of the pgserver wheel; "
    "or set MODELSTORE_PG_BIN to the directory holding pg_ctl, initdb and postgres; "
    "or point modelstore at an existing server with --dsn / MODELSTORE_DSN / DATABASE_URL."
)


# ---------------------------------------------------------------------------------------------
# locating binaries and the data directory
# ---------------------------------------------------------------------------------------------


def _has_binaries(directory: Path) -> bool:
    return all(os.access(directory / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); unparsable versions sort first."""
    parts = re.findall(r"\d+", bin_dir.parent.name)
    return tuple(int(p) for p in parts) or (-1,)


def _pgserver_bin() -> Path | None:
    """The ``bin`` directory bundled with the optional ``pgserver`` wheel, if it is importable."""
    try:
        import pgserver  # type: ignore[import-not-found]  # noqa: F401
    except Exception:
        return None
    candidates: list[Path] = []
    try:  # the path its public module exports (pgserver._commands is private), then the wheel's pginstall/bin
        from pgserver import postgres_server  # type: ignore[import-not-found]

        candidates.append(Path(postgres_server.POSTGRES_BIN_PATH))
    except Exception:
        pass
    package_dir = Path(pgserver.__file__).resolve().parent
    candidates.append(package_dir / "pginstall" / "bin")
    for candidate in candidates:
        if _has_binaries(candidate):
            return candidate
    return None


def find_pg_bin() -> Path:
    """The directory holding ``pg_ctl``, ``initdb`` and ``postgres``.

    Order: ``MODELSTORE_PG_BIN``; ``pg_ctl`` on ``PATH`` (symlinks resolved); the highest version
    under ``/usr/lib/postgresql/*/bin``; the binaries bundled with the ``pgserver`` wheel.
    Raises :class:`ServerError` saying how to install PostgreSQL when none is found.
    """
    env = os.environ.get("MODELSTORE_PG_BIN")
    if env:
        directory = Path(env).expanduser()
        if not _has_binaries(directory):
            missing = [n for n in _REQUIRED_BINARIES if not os.access(directory / n, os.X_OK)]
            raise ServerError(
                f"MODELSTORE_PG_BIN={env!r} does not hold the PostgreSQL server binaries "
                f"(missing or not executable: {', '.join(missing)})"
            )
        return directory.resolve()

    on_path = shutil.which("pg_ctl")
    if on_path:
        directory = Path(os.path.realpath(on_path)).parent
        # Debian's /usr/bin wrappers resolve to postgresql-common, which has no initdb/postgres
        if _has_binaries(directory):
            return directory

    found: list[Path] = []
    for pattern in SYSTEM_BIN_GLOBS:
        found.extend(Path(p) for p in _glob(pattern))
    for directory in sorted(found, key=_version_key, reverse=True):
        if _has_binaries(directory):
            return directory

    bundled = _pgserver_bin()
    if bundled is not None:
        return bundled

    raise ServerError("no PostgreSQL server binaries (pg_ctl, initdb, postgres) found. " + _INSTALL_HINT)


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern)


def default_datadir() -> Path:
    """``$MODELSTORE_HOME/pg``; as root ``/var/lib/modelstore/pg``; else the user data dir + ``/pg``."""
    home = os.environ.get("MODELSTORE_HOME")
    if home:
        return Path(home).expanduser().absolute() / "pg"
    if os.geteuid() == 0:
        return Path("/var/lib/modelstore/pg")
    import platformdirs

    return Path(platformdirs.user_data_dir("modelstore")) / "pg"


# ---------------------------------------------------------------------------------------------
# the OS user the server runs as
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RunAs:
    """Who runs the server processes; ``uid is None`` means "the current user, no switching"."""

    name: str
    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] = ()

    @property
    def switching(self) -> bool:
        return self.uid is not None

    def subprocess_kwargs(self) -> dict:
        if not self.switching:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def chown(self, path: Path) -> None:
        if self.switching:
            os.chown(path, self.uid, self.gid)


def _run_as_entry(entry: pwd.struct_passwd) -> _RunAs:
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = (entry.pw_gid,)
    return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _run_as_uid(uid: int, gid: int) -> _RunAs:
    try:
        return _run_as_entry(pwd.getpwuid(uid))
    except KeyError:
        return _RunAs(str(uid), uid, gid, (gid,))


_user_lock = threading.Lock()


def _server_user() -> _RunAs:
    """The unprivileged user a root process runs the server as (see the module docstring)."""
    with _user_lock:
        for name in ("postgres", "modelstore"):
            with contextlib.suppress(KeyError):
                return _run_as_entry(pwd.getpwnam(name))
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "modelstore"],
                check=False,
                capture_output=True,
                timeout=30,
            )
        for name in ("modelstore", "nobody"):
            with contextlib.suppress(KeyError):
                return _run_as_entry(pwd.getpwnam(name))
    raise ServerError(
        "running as root, but there is no unprivileged user to run PostgreSQL as "
        "(no 'postgres', could not create 'modelstore', no 'nobody'); "
        "create one, or run modelstore as an ordinary user"
    )


def _untraversable(path: Path, who: _RunAs) -> Path | None:
    """The first directory from ``path`` up to ``/`` that ``who`` cannot search, if any."""
    if not who.switching:
        return None
    for directory in [path, *path.parents]:
        try:
            st = os.stat(directory)
        except FileNotFoundError:
            continue
        if st.st_uid == who.uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in who.groups or st.st_gid == who.gid:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            return directory
    return None


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_is_free(port: int) -> bool:
    """Whether PostgreSQL could listen on 127.0.0.1:port now.

    Like the postmaster, use SO_REUSEADDR, so that connections of a just-stopped server lingering in
    TIME_WAIT do not make its own port look taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _python_path_line() -> str:
    """``modelstore.python_path``: where the server's PL/Python finds this modelstore and its dependencies
    (the package's parent directory and this interpreter's site-packages; docs/plpython.md)."""
    import site
    import sys

    package_parent = str(Path(__file__).resolve().parent.parent)
    entries = [package_parent, *site.getsitepackages()]
    if site.ENABLE_USER_SITE and sys.prefix == sys.base_prefix:
        entries.append(site.getusersitepackages())
    value = os.pathsep.join(dict.fromkeys(entries))
    return "modelstore.python_path = '" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _child_env() -> dict[str, str]:
    """The environment of server processes: ours, minus libpq/server variables that would interfere."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


@contextlib.contextmanager
def _file_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_live_ephemeral: set[EmbeddedServer] = set()


@atexit.register
def _stop_ephemeral_at_exit() -> None:  # pragma: no cover - exercised only at interpreter exit
    for server in list(_live_ephemeral):
        with contextlib.suppress(Exception):
            server.stop()


# ---------------------------------------------------------------------------------------------
# the server
# ---------------------------------------------------------------------------------------------


class EmbeddedServer:
    """A PostgreSQL cluster in a private data directory, started and stopped by modelstore.

    ``start()`` is idempotent and safe to call from several processes at once; when the server is
    already running (started by another process) it is reused and ``started_by_us`` is False, so
    that callers can stop only what they started::

        server = EmbeddedServer().start()
        try:
            ...  # use server.dsn
        finally:
            if server.started_by_us:
                server.stop()

    ``ephemeral=True`` makes a throwaway cluster in a new temporary directory with durability
    switched off (``fsync``, ``synchronous_commit``, ``full_page_writes``); ``stop()`` shuts it down
    immediately and removes the directory.
    """

    def __init__(self, datadir: Path | str | None = None, *, port: int | None = None, ephemeral: bool = False):
        if ephemeral and datadir is not None:
            raise ValueError("an ephemeral server makes its own temporary directory; do not pass datadir")
        if port is not None and not (0 < int(port) < 65536):
            raise ValueError(f"port must be between 1 and 65535, not {port!r}")
        self.ephemeral = ephemeral
        self.requested_port = int(port) if port is not None else None
        self.started_by_us = False
        self._port: int | None = None
        self._tmpdir: Path | None = None
        self._bin: Path | None = None
        self._run_as: _RunAs | None = None
        self._started = False
        if ephemeral:
            self.datadir: Path | None = None
        else:
            self.datadir = Path(datadir).expanduser().absolute() if datadir is not None else default_datadir()

    # ----------------------------------------------------------------------------- paths

    @property
    def base_dir(self) -> Path:
        """The directory holding the data directory, its log and its lock file."""
        self._require_datadir()
        return self.datadir.parent

    @property
    def log_path(self) -> Path:
        """The server log (``<datadir>.log``, or ``server.log`` in an ephemeral server's temp dir)."""
        self._require_datadir()
        if self._tmpdir is not None:
            return self._tmpdir / "server.log"
        return self.datadir.with_name(self.datadir.name + ".log")

    @property
    def lock_path(self) -> Path:
        self._require_datadir()
        if self._tmpdir is not None:
            return self._tmpdir / "lock"
        return self.datadir.with_name(self.datadir.name + ".lock")

    @property
    def password_path(self) -> Path:
        """The superuser's generated password (``<datadir>.password``, mode 0600)."""
        self._require_datadir()
        if self._tmpdir is not None:
            return self._tmpdir / "password"
        return self.datadir.with_name(self.datadir.name + ".password")

    @property
    def conf_path(self) -> Path:
        self._require_datadir()
        return self.datadir / _CONF_NAME

    def _require_datadir(self) -> None:
        if self.datadir is None:
            raise ServerError("the ephemeral server has not been started yet (it has no directory)")

    @property
    def bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = find_pg_bin()
        return self._bin

    # ----------------------------------------------------------------------------- state

    @property
    def port(self) -> int:
        """The TCP port the server listens (or will listen) on."""
        if self._port is None:
            running = self._running_port()
            self._port = running if running is not None else self._configured_port()
        if self._port is None:
            raise ServerError(f"the server in {self.datadir} has not been initialised; call start() first")
        return self._port

    @property
    def dsn(self) -> str:
        """A libpq URL for the ``modelstore`` database: ``postgresql://modelstore@127.0.0.1:PORT/modelstore``."""
        return self.dsn_for(DATABASE)

    def dsn_for(self, dbname: str) -> str:
        """A libpq URL for another database of the same cluster."""
        from urllib.parse import quote

        try:
            password = self.password_path.read_text().strip()
        except (OSError, ServerError):
            password = ""  # a cluster of an earlier release: trust login
        user = SUPERUSER + (":" + quote(password, safe="") if password else "")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def _initialised(self) -> bool:
        return self.datadir is not None and (self.datadir / "PG_VERSION").is_file()

    def _configured_port(self) -> int | None:
        try:
            text = self.conf_path.read_text()
        except (OSError, ServerError):
            return None
        match = re.search(r"^\s*port\s*=\s*(\d+)", text, re.MULTILINE)
        return int(match.group(1)) if match else None

    def _running_port(self) -> int | None:
        """The port recorded in ``postmaster.pid`` when that postmaster is alive."""
        if self.datadir is None:
            return None
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another user
        return port

    def is_running(self) -> bool:
        """Whether a postmaster is running on this data directory (``pg_ctl status``)."""
        if not self._initialised() or not (self.datadir / "postmaster.pid").exists():
            return False
        result = self._pg_ctl("status", check=False)
        return result.returncode == 0

    # ----------------------------------------------------------------------------- processes

    def _who(self) -> _RunAs:
        if self._run_as is None:
            self._run_as = self._decide_user()
        return self._run_as

    def _decide_user(self) -> _RunAs:
        if os.geteuid() != 0:
            try:
                return _RunAs(pwd.getpwuid(os.geteuid()).pw_name)
            except KeyError:
                return _RunAs(str(os.geteuid()))
        # an existing data directory decides: the server must run as its owner
        if self.datadir is not None and self.datadir.exists():
            st = os.stat(self.datadir)
            if st.st_uid != 0:
                return _run_as_uid(st.st_uid, st.st_gid)
            if self._initialised():
                raise ServerError(
                    f"the data directory {self.datadir} is owned by root; PostgreSQL cannot run as root. "
                    f"Fix its ownership (chown -R postgres: {self.datadir}) or remove it."
                )
        return _server_user()

    def _run(
        self, args: list[str], *, check: bool = True, timeout: float = 120, what: str = ""
    ) -> subprocess.CompletedProcess:
        who = self._who()
        cwd = str(self.datadir.parent) if self.datadir is not None and self.datadir.parent.exists() else "/"
        if who.switching and _untraversable(Path(cwd), who) is not None:
            cwd = "/"
        try:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=_child_env(),
                cwd=cwd,
                timeout=timeout,
                **who.subprocess_kwargs(),
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerError(
                f"{what or args[0]} did not finish within {timeout:g}s" + self._log_excerpt()
            ) from exc
        except OSError as exc:
            raise ServerError(f"could not run {args[0]}: {exc}") from exc
        if check and result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise ServerError(
                f"{what or Path(args[0]).name} failed (exit status {result.returncode})"
                + (f":\n{output}" if output else "")
                + self._log_excerpt()
            )
        return result

    def _pg_ctl(self, *args: str, check: bool = True, what: str = "") -> subprocess.CompletedProcess:
        return self._run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.datadir), *args],
            check=check,
            what=what,
            timeout=max(_START_TIMEOUT_S, _STOP_TIMEOUT_S) + 30,
        )

    def _log_excerpt(self) -> str:
        try:
            path = self.log_path
        except ServerError:
            return ""
        tail = _tail(path)
        if not tail:
            return ""
        return f"\n--- last lines of the server log {path} ---\n{tail}"

    # ----------------------------------------------------------------------------- setup

    def _prepare_directories(self) -> None:
        """Create the base directory, data directory, log file; hand them to the server user."""
        who = self._who()
        if self.ephemeral and self._tmpdir is None:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="modelstore-pg-"))
            self.datadir = self._tmpdir / "data"
            who.chown(self._tmpdir)
        base = self.datadir.parent
        blocked = _untraversable(base, who)  # checked before creating anything
        if blocked is not None:
            raise ServerError(
                f"PostgreSQL runs as user {who.name!r}, which cannot reach {self.datadir}: "
                f"{blocked} is not searchable by it. Choose another data directory "
                f"(e.g. MODELSTORE_HOME=/var/lib/modelstore) or make {blocked} searchable (chmod o+x)."
            )
        if not base.exists():
            missing = [d for d in [base, *base.parents] if not d.exists()]
            base.mkdir(parents=True, exist_ok=True)
            for d in missing:  # created by us: make them searchable by the server user
                with contextlib.suppress(OSError):
                    os.chmod(d, 0o755)
            if who.switching:
                with contextlib.suppress(OSError):
                    who.chown(base)

    def _prepare_datadir_and_log(self) -> None:
        who = self._who()
        if not self.datadir.exists():
            self.datadir.mkdir(mode=0o700)
            who.chown(self.datadir)
        log = self.log_path
        if log.exists() and log.stat().st_size > _LOG_ROTATE_BYTES:
            with contextlib.suppress(OSError):
                log.replace(log.with_name(log.name + ".1"))
        if not log.exists():
            log.touch(mode=0o640)
        who.chown(log)

    def _initdb(self) -> None:
        if any(self.datadir.iterdir()):
            raise ServerError(
                f"the data directory {self.datadir} is not empty but holds no PostgreSQL cluster "
                "(no PG_VERSION); remove it or choose another one"
            )
        # a generated password (scram-sha-256) instead of trust, so that other local users cannot log in;
        # an ephemeral (test) cluster keeps trust: its tests log in as roles they create without passwords
        password = None if self.ephemeral else secrets.token_urlsafe(24)
        pwfile = self.password_path.with_name(self.password_path.name + ".initdb")
        if password:
            fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
            self._who().chown(pwfile)  # initdb runs as the server user and reads it
        args = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            SUPERUSER,
            *(["--auth=scram-sha-256", f"--pwfile={pwfile}"] if password else ["--auth=trust"]),
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if self.ephemeral:
            args.append("--nosync")
        try:
            self._run(args, what=f"initdb of {self.datadir}", timeout=300)
        finally:
            pwfile.unlink(missing_ok=True)
        if password:
            fd = os.open(self.password_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(password + "\n")
        with open(self.datadir / "postgresql.conf", "a") as f:
            f.write(f"\n# settings managed by modelstore\ninclude_if_exists = '{_CONF_NAME}'\n")
        port = self.requested_port or _free_port()
        self._write_conf(port)

    def _write_conf(self, port: int) -> None:
        lines = [
            "# Written by modelstore (modelstore.server); rewritten when the port changes.",
            "listen_addresses = '127.0.0.1'",
            f"port = {port}",
            "unix_socket_directories = ''",
            "logging_collector = off",
        ]
        if self.ephemeral:
            lines += ["fsync = off", "synchronous_commit = off", "full_page_writes = off"]
        lines.append(_python_path_line())
        path = self.conf_path
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        self._who().chown(tmp)
        os.replace(tmp, path)

    def _ensure_database(self) -> None:
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.dsn_for("postgres"), autocommit=True, connect_timeout=10) as conn:
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
                if not exists:
                    try:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
                    except psycopg.errors.DuplicateDatabase:
                        pass
                # The login role is named like the catalog schema, so PostgreSQL's default search path
                # ("$user", public) would start with the catalog: an unqualified CREATE TABLE would land
                # beside modelstore.sources. User tables go to public unless qualified.
                setting = conn.execute(
                    "SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                    "WHERE r.rolname = %s AND s.setdatabase = 0", (SUPERUSER,)).fetchone()
                if not setting or SEARCH_PATH_SETTING not in (setting[0] or []):
                    conn.execute(sql.SQL("ALTER ROLE {} SET search_path = public").format(sql.Identifier(SUPERUSER)))
        except psycopg.Error as exc:
            raise ServerError(
                f"the embedded server on port {self.port} is running but could not be used: {exc}"
                + self._log_excerpt()
            ) from exc

    # ----------------------------------------------------------------------------- start / stop

    def start(self) -> EmbeddedServer:
        """Initialise (first use) and start the server, or reuse the one already running. Returns self."""
        if self._started and self.is_running():
            self._port = self._running_port() or self._port
            return self
        self.bin_dir  # noqa: B018 - fail early, before creating anything, when there is no PostgreSQL
        self._prepare_directories()
        try:
            with _file_lock(self.lock_path):
                self._start_locked()
        except BaseException:
            if self.ephemeral:
                self._remove_tmpdir()
            raise
        self._started = True
        if self.ephemeral:
            _live_ephemeral.add(self)
        return self

    def _start_locked(self) -> None:
        self._prepare_datadir_and_log()
        if not self._initialised():
            self._initdb()
        running = self._running_port()
        if running is not None and self.is_running():
            self._port = running
            self.started_by_us = False
            self._check_binaries()
            self._ensure_database()
            return

        configured = self._configured_port()
        if configured is None or (self.requested_port and configured != self.requested_port):
            self._write_conf(self.requested_port or _free_port())
        elif not self.requested_port and not _port_is_free(configured):
            self._write_conf(_free_port())  # someone else took our port while we were down
        elif _python_path_line() not in self.conf_path.read_text():
            self._write_conf(configured)  # started from another installation of modelstore

        for attempt in range(3):
            self._port = self._configured_port()
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            result = self._pg_ctl(
                "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self.log_path), "start", check=False
            )
            if result.returncode == 0:
                break
            new_log = self._read_log_from(log_offset)
            port_taken = "could not bind" in new_log or "Address already in use" in new_log
            if port_taken and not self.requested_port and attempt < 2:
                self._write_conf(_free_port())
                continue
            output = (result.stdout + result.stderr).strip()
            raise ServerError(
                f"could not start PostgreSQL in {self.datadir} on 127.0.0.1:{self._port} "
                f"(pg_ctl exit status {result.returncode})"
                + (f":\n{output}" if output else "")
                + self._log_excerpt()
            )
        self.started_by_us = True
        self._record_binaries()
        self._ensure_database()

    def _binary_identity(self) -> str:
        """The postgres binary this server would start from: its path, size, mtime and inode."""
        path = self.bin_dir / "postgres"
        st = os.stat(path)
        return f"{path} {st.st_size} {st.st_mtime_ns} {st.st_ino}"

    def _record_binaries(self) -> None:
        with contextlib.suppress(OSError):
            (self.datadir / _BINARY_NAME).write_text(self._binary_identity() + "\n")

    def _check_binaries(self) -> None:
        """A running server whose binaries were replaced underneath it (a package upgrade) fails later with
        ``undefined symbol`` when a backend loads a library of the new version: restart it now."""
        try:
            recorded = (self.datadir / _BINARY_NAME).read_text().strip()
        except OSError:
            self._record_binaries()  # started by an earlier release: nothing to compare with
            return
        if recorded == self._binary_identity():
            return
        warnings.warn(
            f"the PostgreSQL binaries in {self.bin_dir} changed since the embedded server in {self.datadir} "
            "started (a package upgrade?); restarting it so that it runs the new ones",
            RuntimeWarning,
            stacklevel=4,
        )
        self._pg_ctl("-w", "-t", str(_START_TIMEOUT_S), "-m", "fast", "-l", str(self.log_path), "restart",
                     what="pg_ctl restart")
        self._port = self._running_port() or self._port
        self._record_binaries()

    def _read_log_from(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server (fast shutdown; an ephemeral one immediately, then its directory is removed)."""
        if self.datadir is None:
            return
        mode = "immediate" if self.ephemeral else "fast"
        try:
            if self.datadir.exists():
                with _file_lock(self.lock_path):
                    if self.is_running():
                        self._pg_ctl("-w", "-t", str(_STOP_TIMEOUT_S), "-m", mode, "stop", what="pg_ctl stop")
        finally:
            self._started = False
            if self.ephemeral:
                _live_ephemeral.discard(self)
                self._remove_tmpdir()

    def _remove_tmpdir(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
            self.datadir = None
            self._port = None

    # ----------------------------------------------------------------------------- context manager

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        if self.ephemeral or self.started_by_us:
            self.stop()

    def __repr__(self) -> str:
        where = self.datadir if self.datadir is not None else "(not started)"
        state = f"port={self._port}" if self._port else "stopped"
        kind = "ephemeral " if self.ephemeral else ""
        return f"<{kind}EmbeddedServer {where} {state}>"
