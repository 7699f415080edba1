"""The projection's reference read: entities and product mappings from both topics at once.

``streams.projection.read_reference`` reads ``ref.entities.v1`` and ``ref.products.v1`` with
one consumer to the end of every partition (empty ones included), skips bytes that do not
decode, and refuses a missing topic.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from confluent_kafka import KafkaException, Producer

from connectors.simulation.builders import entity, product
from streams.projection import read_reference
from streams.serde import Codec
from streams.settings import load_settings
from streams.topics import REF_ENTITIES, REF_PRODUCTS

pytestmark = pytest.mark.integration

CODEC = Codec()
PARTITIONS = 3


def _produce(bootstrap: str, topic: str, values: list[tuple[int, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for partition, value in values:
        producer.produce(topic, value=value, partition=partition)
    assert producer.flush(30) == 0


def test_reference_holds_every_partitions_records_when_read_with_one_consumer(
    devstack: Any, kafka_admin: Any, create_topics: Any, unique_name: Any
):
    prefix = unique_name("projref") + "."
    entities, products = prefix + REF_ENTITIES.name, prefix + REF_PRODUCTS.name
    create_topics(kafka_admin, [entities, products], partitions=PARTITIONS)
    # Entities on partition 0 only (the others stay empty: their end must be seen too).
    _produce(
        devstack.bootstrap_servers,
        entities,
        [(0, CODEC.encode(entity("US", "USD"))), (0, CODEC.encode(entity("EU", "EUR")))],
    )
    later = dt.date(2025, 1, 1)
    _produce(
        devstack.bootstrap_servers,
        products,
        [
            (0, CODEC.encode(product("seats"))),
            (1, CODEC.encode(product("usage", "usage", pattern="usage"))),
            (1, b"\x00not a record"),
            (2, CODEC.encode(product("setup", "services", pattern="point_in_time"))),
            (2, CODEC.encode(product("seats", "subscription", later, pattern="ratable_monthly"))),
        ],
    )
    settings = load_settings({}, bootstrap_servers=devstack.bootstrap_servers, topic_prefix=prefix)

    reference = read_reference(settings, CODEC)

    assert sorted(reference.entities) == ["EU", "US"]
    assert reference.entities["EU"].functional_currency == "EUR"
    assert sorted(reference.products) == ["seats", "setup", "usage"]
    assert reference.product_mapping("seats", dt.date(2024, 6, 1)).pattern == "ratable_daily"
    assert reference.product_mapping("seats", later).pattern == "ratable_monthly"
    assert reference.product_mapping("usage", later).pattern == "usage"


def test_reference_read_refuses_when_a_reference_topic_is_missing(devstack: Any, unique_name: Any):
    prefix = unique_name("projref-missing") + "."
    settings = load_settings({}, bootstrap_servers=devstack.bootstrap_servers, topic_prefix=prefix)
    with pytest.raises(KafkaException):
        read_reference(settings, CODEC)
