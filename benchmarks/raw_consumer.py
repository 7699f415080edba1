"""The floor the workers are compared with: a plain confluent-kafka loop that decodes, nothing else.

Reads the ledger's source topics (billing, payments, contracts, usage, control) under the
settings' prefix from the start, by assignment (no group join), at read_committed as the
workers do, and decodes and validates every record with :class:`streams.serde.Codec`.

``python -m benchmarks.raw_consumer --marks 500,20500``: prints ``ready`` once assigned,
then ``mark <count> <wall time>`` when it has decoded that many records, and exits after
the last mark.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streams.serde import Codec, DecodeError
from streams.settings import load_settings
from streams.topics import BILLING, CONTRACTS, CONTROL, PAYMENTS, USAGE

SOURCES = (BILLING, PAYMENTS, CONTRACTS, USAGE, CONTROL)


def main(argv: list[str] | None = None) -> int:
    """Consume and decode until the last mark; print each mark's time."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.raw_consumer")
    parser.add_argument("--marks", required=True, help="comma-separated record counts")
    args = parser.parse_args(argv)
    marks = sorted(int(n) for n in args.marks.split(","))
    settings = load_settings()
    codec = Codec(max_message_bytes=settings.max_message_bytes)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"bench-raw-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.assign(
        [
            TopicPartition(settings.topic_prefix + spec.name, p, OFFSET_BEGINNING)
            for spec in SOURCES
            for p in range(spec.partitions(settings.partitions))
        ]
    )
    # Connecting happens in the first consume(); the caller's warm-up records absorb it.
    print("ready", flush=True)
    count, rejected = 0, 0
    try:
        while marks:
            for message in consumer.consume(1000, 0.1):
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(error))
                    continue
                try:
                    codec.decode(message.value())
                except DecodeError:
                    rejected += 1
                count += 1
                while marks and count >= marks[0]:
                    print(f"mark {marks.pop(0)} {time.time():.6f} rejected={rejected}", flush=True)
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
