"""Sending from inside an exactly-once agent: outputs and dead letters, to partition p.

Every send names its partition: the partition of the message being processed. Faust's
exactly-once mode keeps one transactional producer per owned partition and routes a send
by its destination partition, so an output sent anywhere else would fail or leave the
transaction (faust-streaming #177). Output topics must also be routed to a topic the app
reads (:func:`route_outputs`), or Faust cannot map them to the producer of partition p.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import faust

from ledger.events import Record
from streams import faust_fixes
from streams.dlq import Failure, dlq_headers, dlq_record, source_of
from streams.metrics import DLQ_RECORDS
from streams.serde import Codec

log = logging.getLogger(__name__)

MATERIALITY_HEADER = "materiality.band"


class Outputs:
    """The sends an agent makes: encoded records and DLQ records, on the source partition."""

    def __init__(self, codec: Codec, dlq_topic: faust.TopicT, service_version: str) -> None:
        self.codec = codec
        self.dlq_topic = dlq_topic
        self.service_version = service_version

    async def emit(
        self, topic: faust.TopicT, key: bytes | None, record: Record, partition: int
    ) -> None:
        """Encode ``record`` and send it to ``topic[partition]`` inside the transaction."""
        value = self.codec.encode(record, topic=topic.get_topic_name())
        await topic.send(key=key, value=value, partition=partition)

    async def forward(
        self,
        topic: faust.TopicT,
        key: bytes | None,
        value: bytes,
        partition: int,
        headers: list[tuple[str, bytes]],
    ) -> None:
        """Send bytes as they are to ``topic[partition]`` inside the transaction."""
        await topic.send(key=key, value=value, partition=partition, headers=headers)

    async def dead_letter(self, event: Any, failure: Failure, band: str = "unknown") -> None:
        """Send the message of ``event`` to the DLQ with ``failure`` as the reason."""
        await self.dead_letter_source(source_of(event.message), failure, band)

    async def dead_letter_source(
        self, source: Any, failure: Failure, band: str = "unknown"
    ) -> None:
        """Send a :class:`~streams.dlq.SourceRecord` to the DLQ (also for held events).

        ``band`` is the record's materiality (:mod:`ledger.materiality`): a
        ``materiality.band`` header (the ``DlqRecord`` schema is unchanged) and a label.
        """
        record = dlq_record(
            failure,
            source,
            service_version=self.service_version,
            failed_at=dt.datetime.now(dt.UTC),
        )
        await self.dlq_topic.send(
            key=source.key,
            value=self.codec.encode(record, topic=self.dlq_topic.get_topic_name()),
            partition=source.partition,
            headers=[*dlq_headers(record), (MATERIALITY_HEADER, band.encode())],
        )
        DLQ_RECORDS.labels(reason=failure.reason, band=band).inc()
        log.warning(
            "dead-lettered %s[%s]@%s: %s: %s",
            source.topic,
            source.partition,
            source.offset,
            failure.reason,
            failure.message,
        )


def route_outputs(app: faust.App, source: faust.TopicT, *topics: faust.TopicT) -> None:
    """Send to ``topics`` in the transactions of ``source``'s partitions.

    Faust maps a destination topic to its transactional producer through the partition
    assignor's topic groups, which only know subscribed topics. The outputs used to be
    subscribed (the worker then read back everything it wrote); they now take the group
    of ``source``, a topic the app reads (:mod:`streams.faust_fixes`, fix 8).
    """
    faust_fixes.route_outputs(app, source, *topics)
