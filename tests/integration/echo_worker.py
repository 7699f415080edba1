"""A minimal exactly-once worker for platform tests: decode, re-encode, forward; DLQ bad input.

Run as a subprocess: ``python tests/integration/echo_worker.py`` with the usual settings
environment (``KAFKA_BOOTSTRAP_SERVERS``, ``REVLEDGER_TOPIC_PREFIX``, ...). Input is the
billing topic, output the entries topic: names only, the ledger rules are not involved.
It uses the same app builder, supervision, serde and DLQ writer as the real worker.
"""

from __future__ import annotations

import os
import sys

from streams.app import build_app, faust_topic
from streams.dlq import Failure
from streams.outputs import Outputs, route_outputs
from streams.serde import Codec, DecodeError
from streams.settings import load_settings
from streams.supervision import each_event
from streams.topics import BILLING, DLQ, ENTRIES
from streams.worker import run_app

settings = load_settings()
app = build_app(settings)
source = faust_topic(app, settings, BILLING)
sink = faust_topic(app, settings, ENTRIES)
dead_letters = faust_topic(app, settings, DLQ)
codec = Codec(max_message_bytes=settings.max_message_bytes)
outputs = Outputs(codec, dead_letters, settings.service_version)
route_outputs(app, source, sink, dead_letters)
FAIL_ON = os.environ.get("ECHO_FAIL_ON_EVENT_ID")


async def _forward(event) -> None:
    try:
        record = codec.decode(event.message.value)
    except DecodeError as exc:
        await outputs.dead_letter(event, Failure(exc.reason, str(exc)))
        return
    if FAIL_ON and getattr(record, "event_id", None) == FAIL_ON:
        raise RuntimeError(f"asked to fail on {FAIL_ON}")
    await outputs.emit(sink, event.message.key, record, event.message.partition)


@app.agent(source, name="echo", concurrency=1)
async def echo(stream) -> None:
    await each_event(stream.events(), _forward)


if __name__ == "__main__":
    sys.exit(run_app(app, settings))
