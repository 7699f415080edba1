"""Stripe end to end on the real broker: webhook -> raw.stripe.v1 -> translator -> ledger.

The webhook endpoint (aiohttp, real Kafka writer) and the translator (transactional
consume-translate-produce) run in this process; the ledger worker runs as production runs
it, as a subprocess, once for the whole module. Every Stripe event type the connector
translates is sent signed through the webhook, for several customers side by side
(``stripe_stories``: USD with a subscription, EUR with discount and tax, zero-decimal JPY,
disputes, a payout), July first, then the business clock's July tick, then August and its
tick. The tests then check, per event type, the entries the ledger posted: accounts,
sides, amounts, currencies and entities, written out by hand; and that all the entries
are exactly those a pure replay of the ledger's input log gives, none twice.

One more customer's invoice is finalized, paid and partly refunded, with the payment's
webhook delivered twice, as Stripe does when an answer is lost.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stripe_stories as s
from aiohttp import web

from connectors.simulation import builders as b
from connectors.stripe import StripeConfig, Translated, translate
from revenue.replay import replay_partitions
from streams.admin import ensure_topics
from streams.entries import entry_record
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.stripe_translator import TranslatorOptions, run_translator
from streams.stripe_webhook import KafkaEventWriter, WebhookOptions, build_app, signature_header
from streams.topics import DLQ, ENTRIES, LEDGER_INPUTS, RAW_STRIPE, TOPICS
from tests.stripe_objects import RESOURCES, ts

from worker_process import CommittedLog, isolated_settings, running_worker

pytestmark = pytest.mark.integration

CODEC = Codec()
SECRET = "whsec_e2e"
PRODUCT = s.PRODUCT
CUSTOMER = "cus_QXg1o8vcGmoR32"  # the customer of Stripe's example objects
CONFIG = StripeConfig(entities={"USD": "US1", "EUR": "EU1", "JPY": "JP1"})
REFERENCE = [*b.base_records(), b.entity("JP1", "JPY"), b.product(PRODUCT)]
JUL31, AUG31 = dt.date(2024, 7, 31), dt.date(2024, 8, 31)


def _ts(day: dt.date, hour: int = 9) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.UTC).timestamp())


def _repeated_delivery_story() -> list[dict[str, Any]]:
    """invoice.finalized, invoice.paid and charge.refunded around Stripe's example objects."""
    resources = RESOURCES
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


def _canonical_count(body: bytes) -> int:
    """How many canonical events the translator makes of one delivery (pure, as it does)."""
    outcome = translate(json.loads(body), CONFIG)
    return len(outcome.events) if isinstance(outcome, Translated) else 0


@dataclass
class Run:
    """What the module's one pipeline run left on the topics."""

    bodies: list[bytes]
    statuses: list[int]
    raw: list
    inputs: dict[int, list]
    entries: list
    dlq: list

    def entries_of(self, source_event_id: str) -> list:
        return [e for e in self.entries if e.source_event_id == source_event_id]


@pytest.fixture(scope="module")
def run(devstack, tmp_path_factory) -> Iterator[Run]:
    """Send every story through webhook, translator and one ledger worker; read the topics."""
    tmp_path = tmp_path_factory.mktemp("stripe-e2e")
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path)
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all(REFERENCE)
    repeated = [json.dumps(e).encode() for e in _repeated_delivery_story()]
    stories = s.all_stories()
    july = [json.dumps(e).encode() for e in stories if e["created"] < ts(s.AUG1)]
    august = [json.dumps(e).encode() for e in stories if e["created"] >= ts(s.AUG1)]
    # Stripe retries invoice.paid: the webhook writes the second delivery too.
    phases = [([*repeated, repeated[1], *july], JUL31), (august, AUG31)]

    webhook = WebhookThread(settings)
    stop = threading.Event()
    translator = threading.Thread(
        target=run_translator,
        args=(settings, CONFIG, TranslatorOptions(group=f"{settings.app_id}-stripe"), stop),
        daemon=True,
    )
    translator.start()
    inputs = CommittedLog(settings, LEDGER_INPUTS)
    entries = CommittedLog(settings, ENTRIES)
    statuses: list[int] = []
    sent: list[bytes] = []
    try:
        with running_worker(settings, tmp_path / "worker.log"):
            expected_inputs = 0
            for bodies, month_end in phases:
                statuses += [webhook.post(body) for body in bodies]
                sent += bodies
                # The tick must follow every event of the month in each partition's log.
                expected_inputs += sum(_canonical_count(body) for body in bodies)
                inputs.wait_for(expected_inputs, timeout=60)
                producer.send_all([b.clock(month_end)])
                expected_inputs += settings.partitions
                inputs.wait_for(expected_inputs, timeout=60)
            logs = inputs.by_partition()
            expected = replay_partitions(REFERENCE, logs.values())
            entries.wait_for(len(expected) + 2 * settings.partitions, timeout=60)
            entries.read_for(2)  # an entry posted twice would show up here
    finally:
        stop.set()
        translator.join(30)
        webhook.stop()
        inputs.close()
    raw = CommittedLog(settings, RAW_STRIPE)
    raw.wait_for(len(sent), timeout=30)
    dlq = CommittedLog(settings, DLQ)
    dlq.read_for(2)
    posted = [r for log in entries.by_partition().values() for r in log]
    yield Run(
        bodies=sent,
        statuses=statuses,
        raw=raw.messages,
        inputs=logs,
        entries=[r for r in posted if r.schema_name == "JournalEntryPosted"],
        dlq=[CODEC.decode(m.value()) for m in dlq.messages],
    )
    for log in (entries, raw, dlq):
        log.close()


def _lines(entries: list) -> list[tuple[str, str, str, str, int]]:
    """(entity, account, side, currency, amount) of every line, sorted."""
    return sorted(
        (e.entity, x.account, x.side, x.currency, x.amount_minor) for e in entries for x in e.lines
    )


# --- the whole run ----------------------------------------------------------------------------


def test_every_delivery_is_accepted_and_written_to_the_raw_topic_keyed_by_customer(run):
    assert run.statuses == [200] * len(run.bodies)
    values = Counter(m.value() for m in run.raw)
    assert values == Counter(run.bodies)
    keys = {json.loads(m.value())["id"]: m.key().decode() for m in run.raw}
    assert keys["evt_fin"] == CUSTOMER
    assert keys["evt_e2e_s1"] == s.SUBSCRIBER and keys["evt_e2e_j3"] == s.YEN_CUSTOMER
    # Disputes and payouts name no customer: keyed by the Stripe balance they move.
    assert keys["evt_e2e_d3"] == keys["evt_e2e_p1"] == s.STRIPE_BALANCE


def test_entries_are_those_of_a_pure_replay_of_the_input_log_and_none_is_posted_twice(run):
    expected = [entry_record(e) for e in replay_partitions(REFERENCE, run.inputs.values())]
    ids = [e.entry_id for e in run.entries]

    assert len(ids) == len(set(ids)), "an entry was posted twice"
    assert sorted(run.entries, key=lambda e: e.entry_id) == sorted(
        expected, key=lambda e: e.entry_id
    )
    customers = {e.customer_id for e in run.entries}
    assert customers == {
        CUSTOMER,
        s.SUBSCRIBER,
        s.EURO_CUSTOMER,
        s.YEN_CUSTOMER,
        s.DISPUTER,
        s.STRIPE_BALANCE,
    }


def test_repeated_delivery_reaches_the_ledger_twice_and_posts_once(run):
    sequenced = sorted(
        r.event_id
        for log in run.inputs.values()
        for r in log
        if getattr(r, "customer_id", None) == CUSTOMER
    )
    # The repeated delivery reaches the ledger as a second copy, which it takes for a duplicate.
    assert sequenced == ["stripe:evt_fin", "stripe:evt_paid", "stripe:evt_paid", "stripe:re_e2e"]
    mine = [e for e in run.entries if e.customer_id == CUSTOMER]
    by_source = Counter(e.source_event_id for e in mine if not e.source_event_id.startswith("ref-"))
    assert by_source == Counter({"stripe:evt_fin": 1, "stripe:evt_paid": 1, "stripe:re_e2e": 1})
    (payment,) = run.entries_of("stripe:evt_paid")
    assert ("cash_clearing", "debit", 21_70) in {
        (x.account, x.side, x.amount_minor) for x in payment.lines
    }


# --- per Stripe event type: the entries, written out ---------------------------------------------

US, EU, JP = "US1", "EU1", "JP1"
AR, TAX, DEFERRED = "accounts_receivable", "tax_payable", "deferred_revenue"
CASH, FEES, CREDIT = "cash_clearing", "processor_fees", "customer_credit"
DR, CR = "debit", "credit"

ENTRIES_BY_EVENT = {
    "invoice.finalized, USD with tax": (
        "stripe:evt_e2e_s2",
        [(US, AR, DR, "USD", 21_70), (US, TAX, CR, "USD", 1_70), (US, DEFERRED, CR, "USD", 20_00)],
    ),
    "invoice.paid, fee from the expanded balance transaction": (
        "stripe:evt_e2e_s3",
        [
            (US, CASH, DR, "USD", 21_70),
            (US, AR, CR, "USD", 21_70),
            (US, FEES, DR, "USD", 93),
            (US, CASH, CR, "USD", 93),
        ],
    ),
    "charge.refunded, partial refund of a paid invoice": (
        "stripe:re_e2e_s1",
        [(US, AR, DR, "USD", 5_00), (US, CASH, CR, "USD", 5_00)],
    ),
    "invoice.finalized, proration upgrade billed net": (
        "stripe:evt_e2e_s6",
        [(US, AR, DR, "USD", 20_00), (US, DEFERRED, CR, "USD", 20_00)],
    ),
    "invoice.finalized, EUR net of discount with tax": (
        "stripe:evt_e2e_e1",
        [
            (EU, AR, DR, "EUR", 107_10),
            (EU, TAX, CR, "EUR", 17_10),
            (EU, DEFERRED, CR, "EUR", 90_00),
        ],
    ),
    "credit_note.created, unpaid invoice, remaining service": (
        "stripe:evt_e2e_e2",
        [(EU, TAX, DR, "EUR", 2_09), (EU, DEFERRED, DR, "EUR", 11_00), (EU, AR, CR, "EUR", 13_09)],
    ),
    "credit_note.voided, the credit note's entry reversed": (
        "stripe:evt_e2e_e3",
        [(EU, TAX, CR, "EUR", 2_09), (EU, DEFERRED, CR, "EUR", 11_00), (EU, AR, DR, "EUR", 13_09)],
    ),
    "invoice.voided": (
        "stripe:evt_e2e_e5",
        [(EU, AR, CR, "EUR", 50_00), (EU, DEFERRED, DR, "EUR", 50_00)],
    ),
    "invoice.marked_uncollectible, after its service was recognised": (
        "stripe:evt_e2e_e7",
        [(EU, "bad_debt", DR, "EUR", 30_00), (EU, AR, CR, "EUR", 30_00)],
    ),
    "invoice.finalized, zero-decimal JPY": (
        "stripe:evt_e2e_j1",
        [(JP, AR, DR, "JPY", 5_000), (JP, DEFERRED, CR, "JPY", 5_000)],
    ),
    "invoice.paid, JPY settled in USD, fee converted at Stripe's rate": (
        "stripe:evt_e2e_j2",
        [
            (JP, CASH, DR, "JPY", 5_000),
            (JP, AR, CR, "JPY", 5_000),
            (JP, FEES, DR, "JPY", 196),
            (JP, CASH, CR, "JPY", 196),
        ],
    ),
    "charge.succeeded, standalone JPY charge to customer credit": (
        "stripe:evt_e2e_j3",
        [
            (JP, CASH, DR, "JPY", 3_000),
            (JP, CREDIT, CR, "JPY", 3_000),
            (JP, FEES, DR, "JPY", 120),
            (JP, CASH, CR, "JPY", 120),
        ],
    ),
    "charge.succeeded, standalone USD charge without expanded fee": (
        "stripe:evt_e2e_d2",
        [(US, CASH, DR, "USD", 40_00), (US, CREDIT, CR, "USD", 40_00)],
    ),
    "charge.dispute.closed, lost": (
        "stripe:evt_e2e_d3",
        [
            (US, "chargeback_loss", DR, "USD", 50_00),
            (US, CASH, CR, "USD", 50_00),
            (US, FEES, DR, "USD", 15_00),
            (US, CASH, CR, "USD", 15_00),
        ],
    ),
    "charge.dispute.closed, won: the dispute fee only": (
        "stripe:evt_e2e_d4",
        [(US, FEES, DR, "USD", 15_00), (US, CASH, CR, "USD", 15_00)],
    ),
    "payout.paid": (
        "stripe:evt_e2e_p1",
        [(US, "bank", DR, "USD", 60_00), (US, CASH, CR, "USD", 60_00)],
    ),
}


@pytest.mark.parametrize("case", list(ENTRIES_BY_EVENT))
def test_stripe_event_posts_its_entry_on_the_broker(run, case):
    source_event_id, lines = ENTRIES_BY_EVENT[case]

    posted = run.entries_of(source_event_id)

    assert len(posted) == 1, f"{case}: {len(posted)} entries from {source_event_id}"
    assert _lines(posted) == sorted(lines)


def _revenue_by_obligation(run: Run, customer: str, clock: dt.date) -> dict[str, int]:
    tick = f"ref-clock-{clock.isoformat()}/{customer}"
    revenue: Counter[str] = Counter()
    for entry in run.entries_of(tick):
        for x in entry.lines:
            if x.account == "revenue":
                sign = 1 if x.side == CR else -1
                revenue[x.dimensions.get("obligation_id", "")] += sign * x.amount_minor
    return dict(revenue)


def test_subscription_events_become_obligations_that_the_clock_recognises(run):
    # created: July's 20.00 obligation; the upgrade's proration lines: a modification adding
    # a 20.00 obligation for July 16-31; updated: August's renewal; deleted on August 20:
    # recognition stops after 19 of 31 days (2,000 x 19 / 31 = 1,225.8 -> 1,226).
    july = _revenue_by_obligation(run, s.SUBSCRIBER, JUL31)
    august = _revenue_by_obligation(run, s.SUBSCRIBER, AUG31)

    assert july == {"si_e2e@2024-07-01": 20_00, "si_e2e@il_e2e_s2b": 20_00}
    assert august == {"si_e2e@2024-08-01": 12_26}
    (renewal,) = run.entries_of(f"ref-clock-{AUG31.isoformat()}/{s.SUBSCRIBER}")
    # Nothing billed August: revenue ahead of billing is a contract asset (unbilled AR).
    assert ("unbilled_receivable", DR, 12_26) in {
        (x.account, x.side, x.amount_minor) for x in renewal.lines
    }
    contract_events = [
        r.event_type
        for log in run.inputs.values()
        for r in log
        if getattr(r, "customer_id", None) == s.SUBSCRIBER and r.event_type.startswith("contract")
    ]
    assert Counter(contract_events) == Counter(
        {"contract.booked": 1, "contract.amended": 2, "contract.cancelled": 1}
    )


def test_invoices_of_other_currencies_are_recognised_in_their_own_currency(run):
    euro = _revenue_by_obligation(run, s.EURO_CUSTOMER, JUL31)
    yen = _revenue_by_obligation(run, s.YEN_CUSTOMER, JUL31)

    # 90.00 net of discount: the 11.00 credit note was voided two days later, so the
    # schedule is back to what it was; the voided invoice earns nothing.
    assert euro == {"il_e2e_e1": 90_00, "il_e2e_e3": 30_00}
    assert yen == {"il_e2e_j1": 5_000}
    yen_lines = [x for e in run.entries if e.customer_id == s.YEN_CUSTOMER for x in e.lines]
    assert {x.currency for x in yen_lines} == {"JPY"}


def test_refund_created_is_skipped_when_refunds_come_from_charge_refunded(run):
    assert run.entries_of("stripe:evt_e2e_s5") == []
    assert len(run.entries_of("stripe:re_e2e_s1")) == 1


def test_credit_note_void_reopens_the_receivable_and_nothing_is_dead_lettered(run):
    assert run.dlq == []
    invoice_lines = [
        x
        for e in run.entries
        for x in e.lines
        if x.account == AR and x.dimensions.get("invoice_id") == "in_e2e_e1"
    ]
    # The credit note relieved 13.09 of AR and its void put it back: 107.10 open again.
    assert sum(x.amount_minor * (1 if x.side == DR else -1) for x in invoice_lines) == 107_10
    (voided,) = run.entries_of("stripe:evt_e2e_e3")
    assert voided.rule == "credit_note_voided" and voided.period == "2024-07"
    assert {x.dimensions.get("credit_note_id") for x in voided.lines} == {"cn_e2e_e1"}
