"""The pass-through Faust agent the ledger worker is compared with: decode, re-encode, send.

Same app builder (exactly-once, ``concurrency=1``, commit interval and producer settings of
:func:`streams.app.build_app`), same source topics as the ledger's sequencer (billing,
payments, contracts, usage, control) and the same serde; each record is decoded and
validated, encoded again and sent to the same partition of ``ledger.entries.v1``. No
table, no domain call: what is left is what Faust, aiokafka and the codec cost.

Run as ``python -m benchmarks.passthrough_worker`` with the worker's settings environment
(``KAFKA_BOOTSTRAP_SERVERS``, ``REVLEDGER_TOPIC_PREFIX``, ...).
"""

from __future__ import annotations

import sys
from typing import Any

import faust

from streams.admin import ensure_topics
from streams.app import build_app, faust_topic, topic_name
from streams.dlq import Failure
from streams.outputs import Outputs, route_outputs
from streams.serde import Codec, DecodeError
from streams.settings import Settings, load_settings
from streams.supervision import each_event
from streams.topics import BILLING, CONTRACTS, CONTROL, DLQ, ENTRIES, PAYMENTS, TOPICS, USAGE
from streams.worker import run_app

SOURCES = (BILLING, PAYMENTS, CONTRACTS, USAGE, CONTROL)


def build_passthrough_app(settings: Settings) -> faust.App:
    """The pass-through app: one agent over the ledger's source topics."""
    ensure_topics(settings, TOPICS)
    app = build_app(settings)
    sources = app.topic(
        *(topic_name(settings, spec) for spec in SOURCES),
        key_serializer="raw",
        value_serializer="raw",
    )
    sink = faust_topic(app, settings, ENTRIES)
    dead_letters = faust_topic(app, settings, DLQ)
    codec = Codec(max_message_bytes=settings.max_message_bytes)
    outputs = Outputs(codec, dead_letters, settings.service_version)
    route_outputs(app, sources, sink, dead_letters)

    async def forward(event: Any) -> None:
        message = event.message
        try:
            record = codec.decode(message.value)
        except DecodeError as exc:
            await outputs.dead_letter(event, Failure(str(exc.reason), exc.message))
            return
        await outputs.emit(sink, message.key, record, message.partition)

    async def passthrough(stream: faust.StreamT) -> None:
        await each_event(stream.events(), forward)

    app.agent(sources, name="passthrough", concurrency=1)(passthrough)
    return app


if __name__ == "__main__":
    settings = load_settings()
    sys.exit(run_app(build_passthrough_app(settings), settings))
