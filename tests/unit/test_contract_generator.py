"""The contract generator: valid, deterministic, and as varied as its docstring says."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from connectors.simulation import builders as b
from connectors.simulation.company import GeneratedStream, generate_company
from connectors.simulation.contracts import generate_contracts, month_ends
from ledger.book import OutcomeKind
from ledger.events import ClockAdvanced
from ledger.posting import business_date_of
from ledger.reference import ReferenceData
from revenue.engine import CustomerBooks, apply
from revenue.events import ContractAmended, ContractBooked, ContractCancelled
from revenue.replay import EngineReplay, replay_all

START = dt.date(2024, 1, 1)


@pytest.fixture(scope="module")
def stream() -> GeneratedStream:
    # More out of order than the default, so that early amendments are many.
    return generate_contracts(seed=7, customers=200, out_of_order_rate=0.25)


@pytest.fixture(scope="module")
def replayed(stream: GeneratedStream) -> EngineReplay:
    return replay_all(stream.reference, stream.events)


def _business_day(event) -> dt.date:
    if isinstance(event, ContractBooked):
        return event.booking_date
    if isinstance(event, ContractAmended | ContractCancelled):
        return event.effective_date
    return business_date_of(event)


def _customer_events(stream: GeneratedStream) -> list:
    return [e for e in stream.events if not isinstance(e, ClockAdvanced)]


def test_replay_rejects_nothing_when_events_arrive_early_and_twice(replayed):
    assert replayed.rejected == []
    assert replayed.rejected_holds == []
    assert replayed.expired == []
    assert replayed.refused == []
    assert not [cid for cid, books in replayed.books.items() if books.ledger.held]
    assert replayed.clock == dt.date(2025, 12, 31)


def test_replay_rejects_nothing_when_rates_are_the_defaults():
    generated = generate_contracts(seed=11, customers=60)
    replayed = replay_all(generated.reference, generated.events, hold_timeout_days=7)
    assert (replayed.rejected, replayed.expired, replayed.refused) == ([], [], [])


def test_same_seed_gives_same_stream_when_generated_twice():
    first = generate_contracts(seed=3, customers=40)
    again = generate_contracts(seed=3, customers=40)
    other = generate_contracts(seed=4, customers=40)
    assert first.reference == again.reference
    assert first.events == again.events
    assert other.events != first.events


def test_stream_has_hundreds_of_contracts_when_two_hundred_customers(stream, replayed):
    events = _customer_events(stream)
    booked = {e.contract_id for e in events if isinstance(e, ContractBooked)}
    treatments = Counter(e.treatment for e in events if isinstance(e, ContractAmended))
    kinds = Counter(e.event_type for e in events)
    credit_scopes = {e.applies_to for e in events if e.event_type == "credit_note.issued"}
    assert len(booked) >= 250
    assert len({e.customer_id for e in events}) == 200
    assert set(treatments) == {"separate_contract", "prospective", "cumulative_catch_up"}
    assert min(treatments.values()) >= 20
    assert kinds["contract.cancelled"] >= 10 and kinds["usage.recorded"] >= 500
    assert kinds["invoice.voided"] >= 1 and kinds["payment.settled"] >= 1000
    assert credit_scopes == {"remaining_service", "past_service"}
    rules = Counter(entry.rule for entry in replayed.entries)
    assert rules["revenue_recognition"] >= 1000 and rules["revenue_catch_up"] >= 10


def test_every_method_and_policy_appears_when_replayed(stream, replayed):
    contracts = [c for books in replayed.books.values() for c in books.revenue.contracts.values()]
    methods = {o.method for c in contracts for o in c.obligations.values()}
    assert methods == {"daily", "monthly_even", "monthly_prorated", "point_in_time", None}
    assert any(c.implied for c in contracts)
    assert {c.entity for c in contracts} == {"US1", "EU1", "US2"}
    assert {(c.entity, c.currency) for c in contracts} >= {("US1", "EUR"), ("EU1", "EUR")}
    reference = ReferenceData.from_records(stream.reference)
    assert reference.catch_up_policy("US2") == "at_invoice"
    assert reference.amortization_method("EU1", "SUB", START) == "monthly_prorated"


def test_clock_ticks_month_ends_in_order_when_events_precede_their_month_tick(stream):
    ticks = [e for e in stream.events if isinstance(e, ClockAdvanced)]
    assert [t.business_date for t in ticks] == month_ends(START, 24)
    last_tick: dt.date | None = None
    seen: set[str] = set()
    for event in stream.events:
        if isinstance(event, ClockAdvanced):
            last_tick = event.business_date
        elif event.event_id not in seen:  # a redelivery may come after its month's tick
            seen.add(event.event_id)
            assert last_tick is None or _business_day(event) > last_tick, event.event_id
            assert event.occurred_at.date() == _business_day(event)


def test_duplicates_carry_the_same_payload_when_redelivered(stream):
    first: dict[str, object] = {}
    redelivered = 0
    for event in _customer_events(stream):
        if event.event_id in first:
            redelivered += 1
            assert event == first[event.event_id]
        first[event.event_id] = event
    assert redelivered >= 0.02 * len(first)


def test_early_amendments_and_usage_are_held_then_released_when_their_booking_arrives(stream):
    reference = ReferenceData.from_records(stream.reference)
    books: dict[str, CustomerBooks] = {}
    held: Counter[str] = Counter()
    released = 0
    for event in _customer_events(stream):  # the holds wait on bookings, not on the clock
        customer = books.get(event.customer_id) or CustomerBooks.new(event.customer_id)
        outcome = apply(customer, event, reference)
        books[event.customer_id] = outcome.books
        released += len(outcome.released)
        if outcome.kind is OutcomeKind.held:
            assert outcome.waiting_on == f"contract:{event.contract_id}"
            held[event.event_type] += 1
    assert set(held) == {"contract.amended", "usage.recorded"}
    assert released == sum(held.values()) >= 20


def test_three_hundred_customers_generate_more_than_ten_thousand_events():
    # How fast is for the benchmarks (never a timed test: CI machines are shared).
    generated = generate_contracts(seed=1, customers=300)
    assert len(generated.events) > 10_000


def test_company_stream_books_usage_contracts_when_the_engine_replays_it():
    stream = generate_company(
        seed=7, customers=40, events=1000, duplicate_rate=0.05, out_of_order_rate=0.05
    )
    tick = b.clock(dt.date(2025, 6, 30))
    result = replay_all(stream.reference, [*stream.events, tick], hold_timeout_days=10)
    booked = [e for e in stream.events if isinstance(e, ContractBooked)]
    assert booked, "usage needs its contract"
    assert result.rejected == [] and result.expired == []
    assert all(not books.ledger.held for books in result.books.values())
