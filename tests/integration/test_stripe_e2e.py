"""Stripe end to end on the real broker: webhook -> raw.stripe.v1 -> translator -> ledger.

The webhook endpoint (aiohttp, real Kafka writer) and the translator (transactional
consume-translate-produce) run in this process; the ledger worker runs as production runs
it, as a subprocess. An invoice is finalized, paid and partly refunded in Stripe; the
payment's webhook is delivered twice, as Stripe does when an answer is lost. The ledger
must post the three entries a pure replay of its input log gives, and nothing twice.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from connectors.simulation import builders as b
from connectors.stripe import StripeConfig
from revenue.replay import replay_partitions
from streams.admin import ensure_topics
from streams.entries import entry_record
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.stripe_translator import TranslatorOptions, run_translator
from streams.stripe_webhook import KafkaEventWriter, WebhookOptions, build_app, signature_header
from streams.topics import DLQ, ENTRIES, LEDGER_INPUTS, RAW_STRIPE, TOPICS

from worker_process import drain_for, is_entry, isolated_settings, read_committed, running_worker

pytestmark = pytest.mark.integration

CODEC = Codec()
SECRET = "whsec_e2e"
PRODUCT = "prod_QXg1hqf4jFNsqG"
CUSTOMER = "cus_QXg1o8vcGmoR32"
ROOT = Path(__file__).resolve().parents[2]
FIXTURES = [
    ROOT / "tests" / "fixtures" / "stripe" / "fixtures3.json",
    ROOT.parent / "shared" / "fixtures" / "stripe" / "fixtures3.json",
]


def _resources() -> dict[str, Any]:
    for path in FIXTURES:
        if path.is_file():
            return json.loads(path.read_text())["resources"]
    raise RuntimeError(f"Stripe fixtures3.json not found in {[str(p) for p in FIXTURES]}")


def _ts(day: dt.date, hour: int = 9) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).timestamp())


def _stripe_story() -> list[dict[str, Any]]:
    """invoice.finalized, invoice.paid and charge.refunded around Stripe's example objects."""
    resources = _resources()
    line = copy.deepcopy(resources["line_item"])
    line.update(id="il_e2e", amount=20_00, taxes=None)
    line["period"] = {"start": _ts(dt.date(2024, 7, 1), 0), "end": _ts(dt.date(2024, 8, 1), 0)}
    line["pricing"] = {"type": "price_details", "price_details": {"product": PRODUCT}}
    tax = {"amount": 1_70, "tax_behavior": "exclusive", "tax_rate_details": {"tax_rate": "txr_1"}}
    invoice = copy.deepcopy(resources["invoice"])
    invoice.update(
        id="in_e2e",
        charge="ch_e2e",  # API versions before 2025-03-31 name the paying charge
        total=21_70,
        total_taxes=[tax],
        status="open",
        due_date=_ts(dt.date(2024, 7, 31)),
        status_transitions={"finalized_at": _ts(dt.date(2024, 7, 1)), "paid_at": None},
    )
    invoice["lines"] = {"data": [line], "has_more": False}
    paid = copy.deepcopy(invoice)
    paid.update(status="paid", amount_paid=21_70, amount_remaining=0)
    paid["status_transitions"]["paid_at"] = _ts(dt.date(2024, 7, 2))
    refund = copy.deepcopy(resources["refund"])
    refund.update(id="re_e2e", amount=5_00, charge="ch_e2e", created=_ts(dt.date(2024, 7, 5)))
    charge = copy.deepcopy(resources["charge"])
    charge.update(id="ch_e2e", amount=21_70, amount_refunded=5_00, customer=CUSTOMER)
    charge["refunds"] = {"data": [refund], "has_more": False}

    def event(event_id: str, kind: str, obj: dict[str, Any], day: dt.date) -> dict[str, Any]:
        return {
            "id": event_id,
            "object": "event",
            "type": kind,
            "created": _ts(day),
            "livemode": False,
            "api_version": "2024-06-20",
            "data": {"object": obj},
        }

    return [
        event("evt_fin", "invoice.finalized", invoice, dt.date(2024, 7, 1)),
        event("evt_paid", "invoice.paid", paid, dt.date(2024, 7, 2)),
        event("evt_ref", "charge.refunded", charge, dt.date(2024, 7, 5)),
    ]


class WebhookThread:
    """The webhook application on a free port, in a thread with its own event loop."""

    def __init__(self, settings) -> None:
        topic = settings.topic_prefix + RAW_STRIPE.name
        self.app = build_app(WebhookOptions(secrets=(SECRET,)), KafkaEventWriter(settings, topic))
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        if not ready.wait(30):
            raise RuntimeError("webhook did not start")

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        self.loop.run_forever()

    def post(self, body: bytes) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/stripe/webhook",
            data=body,
            headers={"Stripe-Signature": signature_header(body, SECRET, int(time.time()))},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_webhook_events_post_entries_once_when_a_delivery_is_repeated(devstack, tmp_path):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path)
    ensure_topics(settings, TOPICS)
    reference = [*b.base_records(), b.product(PRODUCT)]
    RecordProducer(settings, CODEC).send_all(reference)
    bodies = [json.dumps(event).encode() for event in _stripe_story()]
    config = StripeConfig(entities={"USD": "US1"})

    webhook = WebhookThread(settings)
    stop = threading.Event()
    translator = threading.Thread(
        target=run_translator,
        args=(settings, config, TranslatorOptions(group=f"{settings.app_id}-stripe"), stop),
        daemon=True,
    )
    translator.start()
    try:
        with running_worker(settings, tmp_path / "worker.log"):
            statuses = [webhook.post(body) for body in bodies]
            statuses.append(webhook.post(bodies[1]))  # Stripe retries invoice.paid
            inputs = read_committed(
                settings.bootstrap_servers, settings.topic_prefix + LEDGER_INPUTS.name, 4
            )
            entries_topic = settings.topic_prefix + ENTRIES.name
            got = read_committed(settings.bootstrap_servers, entries_topic, 3, only=is_entry)
            extra = drain_for(settings.bootstrap_servers, entries_topic, 3, only=is_entry)
    finally:
        stop.set()
        translator.join(30)
        webhook.stop()

    assert statuses == [200, 200, 200, 200]
    raw = drain_for(settings.bootstrap_servers, settings.topic_prefix + RAW_STRIPE.name, 2)
    assert [m.value() for m in sorted(raw, key=lambda m: m.offset())] == [*bodies, bodies[1]]
    assert {m.key() for m in raw} == {CUSTOMER.encode()}
    assert drain_for(settings.bootstrap_servers, settings.topic_prefix + DLQ.name, 1) == []

    logs: dict[int, list] = {}
    for message in sorted(inputs, key=lambda m: (m.partition(), m.offset())):
        logs.setdefault(message.partition(), []).append(CODEC.decode(message.value()))
    sequenced = sorted(record.event_id for log in logs.values() for record in log)
    # The repeated delivery reaches the ledger as a second copy, which it takes for a duplicate.
    assert sequenced == ["stripe:evt_fin", "stripe:evt_paid", "stripe:evt_paid", "stripe:re_e2e"]
    expected = [entry_record(e) for e in replay_partitions(reference, logs.values())]
    entries = [CODEC.decode(m.value()) for m in got]
    assert len(extra) == len(expected) == 3, "an entry was posted twice, or one is missing"
    assert sorted(entries, key=lambda e: e.entry_id) == sorted(expected, key=lambda e: e.entry_id)

    by_source = {e.source_event_id: e for e in entries}
    invoice = by_source["stripe:evt_fin"]
    assert {(x.account, x.side, x.amount_minor) for x in invoice.lines} >= {
        ("accounts_receivable", "debit", 21_70),
        ("tax_payable", "credit", 1_70),
    }
    payment = by_source["stripe:evt_paid"]
    assert ("cash_clearing", "debit", 21_70) in {
        (x.account, x.side, x.amount_minor) for x in payment.lines
    }
    refund = by_source["stripe:re_e2e"]
    assert ("cash_clearing", "credit", 5_00) in {
        (x.account, x.side, x.amount_minor) for x in refund.lines
    }
