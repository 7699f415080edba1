"""Shared pytest fixtures: the dev stack (Kafka + PostgreSQL) and Kafka helpers.

``devstack`` reuses a running stack (``.devstack/env`` or ``KAFKA_BOOTSTRAP_SERVERS`` +
``DATABASE_URL``), else starts one for the session and stops it at the end. If it cannot be
started, integration tests are skipped, except under ``CI=true`` where that is an error.
Heavy imports (confluent_kafka, psycopg) happen inside the fixtures, so unit tests stay fast.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class DevStack:
    """Connection settings of the Kafka broker and PostgreSQL database under test."""

    bootstrap_servers: str
    database_url: str
    started_here: bool = False


def _running_from_env() -> DevStack | None:
    """Return the stack named by ``KAFKA_BOOTSTRAP_SERVERS`` + ``DATABASE_URL`` if it answers."""
    from streams.devstack import kafka, postgres

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    url = os.environ.get("DATABASE_URL")
    if not (bootstrap and url):
        return None
    if kafka.broker_answers(bootstrap, timeout=5.0) and postgres.answers(url):
        return DevStack(bootstrap, url)
    return None


def _running_from_devstack() -> DevStack | None:
    """Return the stack recorded in ``.devstack/env`` if both services are running."""
    from streams.devstack import stack

    current = stack.status()
    if current.ok and current.state is not None:
        return DevStack(current.state.bootstrap_servers, current.state.database_url)
    return None


def _start_for_session() -> DevStack:
    """Start the dev stack with :mod:`streams.devstack` (prints progress to the terminal)."""
    from streams.devstack import paths, stack

    started = stack.up(echo=_echo)
    (paths.devstack_dir() / _STARTED_BY_PYTEST).write_text(str(started.kafka_pid))
    return DevStack(started.bootstrap_servers, started.database_url, started_here=True)


def _echo(line: str) -> None:
    """Progress output of the dev stack, visible with ``-s`` and in failure reports."""
    print(f"[devstack] {line}", flush=True)


# Several pytest sessions (other engineers, other terminals) may share one `.devstack/`.
# Each registers its pid; the last one to finish stops a stack that a pytest session started
# (never one started by `revledger dev up`).
_STARTED_BY_PYTEST = "started-by-pytest"
_SESSIONS = "pytest-sessions"


@contextlib.contextmanager
def _sessions_lock() -> Iterator[Path]:
    """Lock and return the sessions directory under the devstack directory."""
    from streams.devstack import paths

    sessions = paths.devstack_dir() / _SESSIONS
    sessions.mkdir(parents=True, exist_ok=True)
    with open(sessions / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield sessions


def _register_session() -> None:
    """Record this pytest process as a user of the devstack-directory stack."""
    with _sessions_lock() as sessions:
        (sessions / str(os.getpid())).touch()


def _release_session() -> None:
    """Unregister; if no other live session remains and pytest started the stack, stop it."""
    from streams.devstack import paths, stack, state
    from streams.devstack.procs import pid_alive

    with _sessions_lock() as sessions:
        (sessions / str(os.getpid())).unlink(missing_ok=True)
        others = [p for p in sessions.iterdir() if p.name.isdigit() and pid_alive(int(p.name))]
        marker = paths.devstack_dir() / _STARTED_BY_PYTEST
        started_pid = marker.read_text().strip() if marker.exists() else None
        recorded = state.read()
        if not others and recorded is not None and started_pid == str(recorded.kafka_pid):
            stack.down(echo=_echo)
        if not others:
            marker.unlink(missing_ok=True)


def _unavailable(reason: str) -> None:
    """Fail under ``CI=true``; otherwise skip the tests that need the stack."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"dev stack unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"dev stack unavailable: {reason}")


@pytest.fixture(scope="session")
def devstack() -> Iterator[DevStack]:
    """The running Kafka + PostgreSQL (reused, or started and stopped for this session)."""
    found = _running_from_env()
    if found is not None:  # a stack this session does not manage
        yield found
        return
    try:
        _register_session()
        found = _running_from_devstack() or _start_for_session()
    except Exception as err:  # any start failure: missing java/mvn, broker crash, ...
        _release_session()
        _unavailable(f"{type(err).__name__}: {err}")
        raise  # unreachable: _unavailable always raises
    try:
        yield found
    finally:
        _release_session()


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Factory of uuid-suffixed topic/group/transactional-id names: ``unique_name("orders")``."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    return make


@pytest.fixture
def kafka_admin(devstack: DevStack) -> Any:
    """A confluent-kafka ``AdminClient`` connected to the dev stack broker."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": devstack.bootstrap_servers})


def create_topics_and_wait(
    admin: Any, names: Iterable[str], partitions: int = 1, timeout: float = 30.0
) -> list[str]:
    """Create ``names`` (replication 1) and wait until metadata shows all their partitions."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    wanted = list(names)
    futures = admin.create_topics(
        [NewTopic(n, partitions, 1) for n in wanted], request_timeout=timeout
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
        except KafkaException as err:
            if err.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"creating topic {name}: {err}") from err
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        ready = [n for n in wanted if n in topics and len(topics[n].partitions) >= partitions]
        if len(ready) == len(wanted) and all(
            p.leader >= 0 for n in wanted for p in topics[n].partitions.values()
        ):
            return wanted
        time.sleep(0.1)
    raise TimeoutError(f"topics not ready after {timeout} s: {wanted}")


@pytest.fixture
def create_topics() -> Callable[..., list[str]]:
    """The :func:`create_topics_and_wait` helper: ``create_topics(admin, names, partitions)``."""
    return create_topics_and_wait
