"""``revledger erp-resend BATCH_ID``: put a journal batch back on its topic, under its id.

After the cause of a rejection is fixed (in the ERP, or in the importer's configuration),
the batch's newest record in ``erp.journal-batches.v1`` is produced again, bytes and key
unchanged, to the same partition, with a ``resend.of`` header; the import job treats it as
any arrival of that batch (imported if the stream waits for it, "already imported"
otherwise). The latest ack of the batch is printed first.

Must not import faust.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from confluent_kafka import Message

from streams.devstack_env import settings_from_devstack
from streams.erp_import import KAFKA_TIMEOUT_SECONDS, transactional_producer
from streams.messages import ErpAck, JournalBatch
from streams.reading import read_partitions_to_end
from streams.serde import Codec, DecodeError
from streams.settings import Settings
from streams.topics import ERP_ACKS, JOURNAL_BATCHES


def find_batch(settings: Settings, codec: Codec, batch_id: str) -> Message | None:
    """The newest committed record of ``batch_id`` in the batches topic, if any."""
    topic = settings.topic_prefix + JOURNAL_BATCHES.name
    newest: Message | None = None
    for message in read_partitions_to_end(settings, topic):
        try:
            record = codec.decode(message.value())
        except DecodeError:
            continue
        if not isinstance(record, JournalBatch) or record.batch_id != batch_id:
            continue
        if newest is None or message.timestamp()[1] >= newest.timestamp()[1]:
            newest = message
    return newest


def latest_ack(settings: Settings, codec: Codec, batch_id: str) -> ErpAck | None:
    """The last committed ack of ``batch_id`` on the acks topic, if any."""
    topic = settings.topic_prefix + ERP_ACKS.name
    latest = None
    for message in read_partitions_to_end(settings, topic):
        if message.key() != batch_id.encode():
            continue
        with contextlib.suppress(DecodeError):
            record = codec.decode(message.value())
            if isinstance(record, ErpAck):
                latest = record
    return latest


def resend(settings: Settings, batch_id: str) -> int:
    """Run ``revledger erp-resend``: re-produce a batch's newest record as it is.

    The exact key, value and headers go back to the same partition with a ``resend.of``
    header, in a transaction; the importer then treats it as any arrival of that batch
    (imported again after a rejection, "already imported" otherwise).

    Returns:
        0, or 1 when no record of ``batch_id`` is in the topic.
    """
    codec = Codec(
        max_message_bytes=settings.max_message_bytes,
        schema_registry_url=settings.schema_registry_url,
    )
    found = find_batch(settings, codec, batch_id)
    if found is None:
        topic = settings.topic_prefix + JOURNAL_BATCHES.name
        print(f"erp-resend: no batch {batch_id} in {topic}", file=sys.stderr)
        return 1
    ack = latest_ack(settings, codec, batch_id)
    if ack is None:
        print(f"erp-resend: {batch_id} has no ack yet")
    else:
        why = f" ({ack.message})" if ack.message else ""
        print(f"erp-resend: {batch_id} last acked {ack.status}{why} at {ack.acknowledged_at}")
    producer = transactional_producer(settings, f"{settings.app_id}-erp-resend")
    producer.init_transactions(KAFKA_TIMEOUT_SECONDS)
    producer.begin_transaction()
    try:
        headers = [*(found.headers() or []), ("resend.of", batch_id.encode())]
        producer.produce(
            found.topic(),
            key=found.key(),
            value=found.value(),
            partition=found.partition(),
            headers=headers,
        )
        producer.commit_transaction(KAFKA_TIMEOUT_SECONDS)
    except BaseException:
        producer.abort_transaction(KAFKA_TIMEOUT_SECONDS)
        raise
    where = f"partition {found.partition()} offset {found.offset()}"
    print(f"erp-resend: re-sent {batch_id} (the record at {where})")
    return 0


def main_erp_resend(args: argparse.Namespace) -> int:
    """Entry point of ``revledger erp-resend``."""
    return resend(settings_from_devstack(), args.batch_id)
