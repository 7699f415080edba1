"""The dev stack works: Kafka 4.x answers, transactions commit on one node, Postgres answers,
and ``revledger dev up|status|down`` leaves no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_broker_answers_metadata_and_is_kafka_4(devstack: Any, kafka_admin: Any) -> None:
    from streams.devstack import kafka, state

    metadata = kafka_admin.list_topics(timeout=10)
    assert metadata.brokers, "no broker in metadata"
    recorded = state.read()
    version = recorded.kafka_version if recorded else kafka.jar_version(kafka.jar_dir())
    assert version.startswith("4."), version


def test_transactional_produce_is_read_committed(
    kafka_config: dict[str, Any], kafka_admin: Any, unique_name: Any, create_topics: Any
) -> None:
    from confluent_kafka import Consumer, Producer

    topic = unique_name("devstack-txn")
    create_topics(kafka_admin, [topic], 1)
    producer = Producer({**kafka_config, "transactional.id": unique_name("txn")})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, key=b"k", value=b"committed")
    producer.commit_transaction(30)

    consumer = Consumer(
        {
            **kafka_config,
            "group.id": unique_name("grp"),
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    try:
        values = _poll_values(consumer, want=1, timeout=30.0)
    finally:
        consumer.close()
    assert values == [b"committed"]


def _poll_values(consumer: Any, want: int, timeout: float) -> list[bytes]:
    """Poll until ``want`` record values arrived (or ``timeout``); return them."""
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(values) < want and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        values.append(message.value())
    return values


def test_postgres_answers_select_1(pg_conn: Any) -> None:
    assert pg_conn.execute("select 1").fetchone() == (1,)
    assert pg_conn.execute("select current_database()").fetchone() == ("revledger",)


def _dev(command: str, devstack_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run ``revledger dev <command>`` (via the stand-alone devstack CLI) on ``devstack_dir``."""
    env = {**os.environ, "REVLEDGER_DEVSTACK_DIR": str(devstack_dir)}
    env.pop("DATABASE_URL", None)  # this test must start its own embedded PostgreSQL
    return subprocess.run(
        [sys.executable, "-m", "streams.devstack.cli", "dev", *command.split()],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _leftovers(devstack_dir: Path) -> str:
    """Return ``pgrep -af`` lines of processes whose command line mentions ``devstack_dir``."""
    found = subprocess.run(["pgrep", "-af", str(devstack_dir)], capture_output=True, text=True)
    return found.stdout.strip()


@pytest.mark.slow
def test_up_status_down_leaves_nothing(tmp_path: Path) -> None:
    devstack_dir = tmp_path / "devstack"
    try:
        up = _dev("up", devstack_dir)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "dev stack up in" in up.stdout
        env = (devstack_dir / "env").read_text()
        assert "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:" in env and "POSTGRES_PID=" in env

        again = _dev("up", devstack_dir)
        assert again.returncode == 0 and "already running" in again.stdout, again.stdout

        status = _dev("status", devstack_dir)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "kafka Apache Kafka 4." in status.stdout and " running" in status.stdout
        assert "postgres embedded pid" in status.stdout
        assert _leftovers(devstack_dir), "expected the stack's processes while it is up"
    finally:
        down = _dev("down --purge", devstack_dir)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not (devstack_dir / "env").exists()
    assert _leftovers(devstack_dir) == ""
    assert _dev("status", devstack_dir).returncode == 1
