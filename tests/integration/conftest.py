"""Fixtures for integration tests: clients bound to the dev stack from ``tests/conftest.py``.

Integration test modules set ``pytestmark = pytest.mark.integration`` and use these fixtures
(or ``devstack`` directly); every name they create is made unique with ``unique_name``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def kafka_config(devstack: Any) -> dict[str, Any]:
    """Base confluent-kafka client config for the dev stack broker."""
    return {"bootstrap.servers": devstack.bootstrap_servers}


@pytest.fixture
def pg_conn(devstack: Any) -> Iterator[Any]:
    """An autocommit psycopg connection to the dev stack database, closed after the test."""
    import psycopg

    with psycopg.connect(devstack.database_url, autocommit=True, connect_timeout=10) as conn:
        yield conn
