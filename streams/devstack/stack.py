"""The whole dev stack: ``up`` (idempotent), ``down``, ``status`` and ``fetch``.

Each service is reused when the pid recorded in ``state.json`` is still alive (checked
against its command line) and answers; otherwise it is started. A lock file serialises
concurrent ``up``/``down`` calls on the same devstack directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.devstack import kafka, paths, postgres, services, state
from streams.devstack.procs import find_pids, pid_alive, stop_process_group
from streams.devstack.state import StackState

Echo = Callable[[str], None]


def _quiet(_: str) -> None:
    """Default ``echo``: print nothing."""


@dataclass(frozen=True)
class StackStatus:
    """Liveness of the recorded stack, as reported by :func:`status`."""

    state: StackState | None
    kafka_running: bool
    postgres_running: bool

    @property
    def ok(self) -> bool:
        """True when both services are up."""
        return self.state is not None and self.kafka_running and self.postgres_running


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<devstack>/.lock`` for the duration of the block."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch(echo: Echo = _quiet) -> Path:
    """Resolve the Kafka jars into the cache (Maven runs only the first time)."""
    started = time.monotonic()
    directory = kafka.jar_dir()
    if kafka.jars_complete(directory):
        echo(f"kafka jars: {directory} (cached)")
        return directory
    directory = kafka.fetch_jars(echo=echo is not _quiet)
    echo(f"kafka jars: {directory} (fetched in {time.monotonic() - started:.1f} s)")
    return directory


def _kafka_running(recorded: StackState | None, root: Path) -> bool:
    """True if the recorded broker pid is alive and answers metadata."""
    if recorded is None or recorded.kafka_pid is None:
        return False
    if not pid_alive(recorded.kafka_pid, str(kafka.config_path(root))):
        return False
    return kafka.broker_answers(recorded.bootstrap_servers, timeout=3.0)


def _postgres_running(recorded: StackState | None, root: Path) -> bool:
    """True if the recorded database answers (embedded: its postmaster must be alive too)."""
    if recorded is None:
        return False
    marker = str(postgres.data_dir(root))
    if not recorded.postgres_external and not pid_alive(recorded.postgres_pid, marker):
        return False
    return postgres.answers(recorded.database_url)


def status(root: Path | None = None) -> StackStatus:
    """Return the recorded stack and whether each service is running."""
    root = root or paths.devstack_dir()
    recorded = state.read(root)
    return StackStatus(recorded, _kafka_running(recorded, root), _postgres_running(recorded, root))


def _ensure_kafka(root: Path, current: StackStatus, echo: Echo) -> kafka.KafkaProcess:
    """Reuse the running broker or start one."""
    if current.kafka_running and current.state is not None:
        echo(f"kafka already running: pid {current.state.kafka_pid}")
        return kafka.KafkaProcess(
            current.state.kafka_pid or 0,
            current.state.bootstrap_servers,
            current.state.kafka_version,
        )
    if current.state is not None:  # a dead or unresponsive leftover: make sure it is gone
        stop_process_group(current.state.kafka_pid, str(kafka.config_path(root)))
    jars = fetch(echo)
    started = time.monotonic()
    broker = kafka.start(root, jars)
    echo(
        f"kafka {broker.version} up in {time.monotonic() - started:.1f} s: "
        f"{broker.bootstrap_servers} pid {broker.pid}"
    )
    return broker


def _ensure_postgres(root: Path, current: StackStatus, echo: Echo) -> tuple[str, int | None, bool]:
    """Reuse ``$DATABASE_URL`` or the running embedded server, else start one."""
    external = os.environ.get("DATABASE_URL")
    if external:
        echo("postgres: using $DATABASE_URL (not starting an embedded server)")
        return external, None, True
    recorded = current.state
    if current.postgres_running and recorded is not None and not recorded.postgres_external:
        echo(f"postgres already running: pid {recorded.postgres_pid}")
        return recorded.database_url, recorded.postgres_pid, False
    postgres.stop(root, recorded.postgres_pid if recorded else None)
    started = time.monotonic()
    server = postgres.start(root)
    echo(f"postgres up in {time.monotonic() - started:.1f} s: port {server.port} pid {server.pid}")
    return server.database_url, server.pid, False


def up(root: Path | None = None, fresh: bool = False, echo: Echo = _quiet) -> StackState:
    """Start (or reuse) Kafka and PostgreSQL and record them; idempotent."""
    root = root or paths.devstack_dir()
    started = time.monotonic()
    with _locked(root):
        if fresh:
            _stop_and_forget(root, purge=True, echo=echo)
        current = status(root)
        broker = _ensure_kafka(root, current, echo)
        try:
            url, pg_pid, external = _ensure_postgres(root, current, echo)
        except BaseException:
            if not current.kafka_running:  # do not leave a broker nobody knows about
                stop_process_group(broker.pid, str(kafka.config_path(root)))
            raise
        result = StackState(
            broker.bootstrap_servers, url, broker.pid, pg_pid, broker.version, external, str(root)
        )
        state.write(result, root)
    echo(f"dev stack up in {time.monotonic() - started:.1f} s")
    return result


def _stop_and_forget(root: Path, purge: bool, echo: Echo) -> bool:
    """Stop both services, delete the state files and (with ``purge``) the data dirs."""
    recorded = state.read(root)
    marker = str(kafka.config_path(root))
    kafka_pids = {recorded.kafka_pid} if recorded and recorded.kafka_pid else set()
    kafka_pids.update(find_pids(marker))  # also brokers a crashed `up` never recorded
    kafka_stopped = all([stop_process_group(pid, marker) for pid in kafka_pids])
    pg_stopped = postgres.stop(root, recorded.postgres_pid if recorded else None)
    echo(
        f"kafka {'stopped' if kafka_stopped else 'STILL RUNNING'}; "
        f"postgres {'stopped' if pg_stopped else 'STILL RUNNING'}"
    )
    state.remove(root)
    if purge:
        for directory in (kafka.kafka_dir(root), postgres.pg_dir(root)):
            shutil.rmtree(directory, ignore_errors=True)
        echo(f"purged {kafka.kafka_dir(root)} and {postgres.pg_dir(root)}")
    return kafka_stopped and pg_stopped


def down(root: Path | None = None, purge: bool = False, echo: Echo = _quiet) -> bool:
    """Stop the stack (SIGTERM, then SIGKILL after a timeout); True if nothing is left."""
    root = root or paths.devstack_dir()
    started = time.monotonic()
    with _locked(root):
        # Our own processes first: a worker outliving its broker only logs errors.
        services_stopped = services.stop_services(root, echo)
        stopped = _stop_and_forget(root, purge, echo) and services_stopped
    echo(f"dev stack down in {time.monotonic() - started:.1f} s")
    return stopped
