"""Redrive: a record dead-lettered for missing reference data posts once the data is fixed."""

from __future__ import annotations

import time

import pytest

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.dlq_tools import list_dlq, redrive
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.topics import DLQ, ENTRIES, TOPICS

from worker_process import drain_for, isolated_settings, read_committed, running_worker

pytestmark = pytest.mark.integration
CODEC = Codec()


def test_redrive_posts_the_invoice_once_when_its_entity_is_configured_later(
    devstack, tmp_path, capsys
):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path, partitions=1)
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all(b.base_records())
    stranded = b.invoice("INV-NEW", entity_name="NEW1", customer="C7")
    producer.send_all([stranded])
    dlq_topic, entries_topic = (settings.topic_prefix + t.name for t in (DLQ, ENTRIES))

    with running_worker(settings, tmp_path / "worker.log"):
        dead = read_committed(settings.bootstrap_servers, dlq_topic, 1, timeout=120)
        assert CODEC.decode(dead[0].value()).reason == "unknown_entity"
        producer.send_all([b.entity("NEW1", "USD")])
        time.sleep(2)  # the worker's reference reader follows the new entity
        assert redrive(settings, "unknown_entity") == 0
        entries = read_committed(settings.bootstrap_servers, entries_topic, 1, timeout=120)
        assert redrive(settings, "unknown_entity") == 0  # nothing left to redrive
        everything = drain_for(settings.bootstrap_servers, entries_topic, 3)

    assert [CODEC.decode(r.value()).source_event_id for r in entries] == [stranded.event_id]
    assert len(everything) == 1
    printed = capsys.readouterr().out
    assert "redrove 1 records with reason unknown_entity" in printed
    assert "redrove 0 records" in printed
    list_dlq(settings, reason=None, limit=10)
    assert "dlq: unknown_entity 1" in capsys.readouterr().out
