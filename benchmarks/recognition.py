"""Month-end recognition over a contract book: the pure engine's tick, timed.

A simulated contract book (:func:`connectors.simulation.contracts.generate_contracts`:
subscriptions, setups, usage, amendments of the three ASC 606 treatments, cancellations,
invoices, credits, payments) of enough customers for the number of contracts asked is
replayed through the engine up to, not including, its last month-end tick (untimed: it
builds the books). Then the last tick is timed twice over every customer the worker would
visit (:func:`revenue.engine.needs_clock`), in customer order:

- **engine**: :func:`revenue.engine.run_clock` on books in memory;
- **as the worker does it**: each customer's subledger and revenue book decoded from their
  JSON (the worker's table values), the tick run, both encoded again.

Obligations recognised are the distinct (contract, obligation) pairs of the tick's
``revenue_recognition`` and ``revenue_catch_up`` entries.

Must not import: faust, confluent_kafka, psycopg.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from connectors.simulation.contracts import generate_contracts
from ledger.codec import state_from_json, state_to_json
from ledger.events import ClockAdvanced
from revenue.codec import EVENT_TYPES, book_from_json, book_to_json
from revenue.engine import CustomerBooks, needs_clock, run_clock
from revenue.replay import replay_all

# Contracts per simulated customer over 12 months, measured on the generator (1-2 contracts
# each plus separate-contract amendments): sizes the book; the count is then measured.
CONTRACTS_PER_CUSTOMER = 2.0
RECOGNITION_RULES = frozenset({"revenue_recognition", "revenue_catch_up"})
HOLD_TIMEOUT_DAYS = 7  # the worker's default (REVLEDGER_HOLD_TIMEOUT_DAYS)


@dataclass(frozen=True, slots=True)
class RecognitionRun:
    """What the month-end tick did and how long it took."""

    customers: int
    contracts: int
    obligations: int  # obligations in the books (usage ones included)
    visited: int  # customers the tick ran for
    recognised: int  # distinct obligations with a recognition entry
    entries: int
    engine_seconds: float
    worker_seconds: float  # with the JSON decode and encode of both books
    build_seconds: float
    tick: str

    def per_second(self, seconds: float) -> float:
        """Obligations recognised per second for a tick that took ``seconds``."""
        return self.recognised / seconds if seconds > 0 else math.inf


def run_recognition(contracts: int, seed: int = 41, months: int = 12) -> RecognitionRun:
    """Build a book of about ``contracts`` contracts and time its last month-end tick."""
    started = time.perf_counter()
    customers = max(1, math.ceil(contracts / CONTRACTS_PER_CUSTOMER))
    book = generate_contracts(seed=seed, customers=customers, months=months)
    ticks = [i for i, e in enumerate(book.events) if isinstance(e, ClockAdvanced)]
    last = ticks[-1]
    tick = book.events[last]
    assert isinstance(tick, ClockAdvanced)
    before = replay_all(book.reference, book.events[:last], hold_timeout_days=HOLD_TIMEOUT_DAYS)
    build_seconds = time.perf_counter() - started
    reference = before.reference.with_record(tick)
    visit = sorted(cid for cid, books in before.books.items() if needs_clock(books))

    started = time.perf_counter()
    entries = []
    for customer_id in visit:
        run = run_clock(
            before.books[customer_id], tick, reference, hold_timeout_days=HOLD_TIMEOUT_DAYS
        )
        entries.extend(run.entries)
    engine_seconds = time.perf_counter() - started

    stored = {
        cid: (state_to_json(before.books[cid].ledger), book_to_json(before.books[cid].revenue))
        for cid in visit
    }
    started = time.perf_counter()
    for customer_id in visit:
        raw_ledger, raw_revenue = stored[customer_id]
        books = CustomerBooks(state_from_json(raw_ledger, EVENT_TYPES), book_from_json(raw_revenue))
        run = run_clock(books, tick, reference, hold_timeout_days=HOLD_TIMEOUT_DAYS)
        state_to_json(run.books.ledger)
        book_to_json(run.books.revenue)
    worker_seconds = time.perf_counter() - started

    recognised = {
        (dims["contract_id"], dims["obligation_id"])
        for entry in entries
        if entry.rule in RECOGNITION_RULES
        for dims in (dict(line.dimensions) for line in entry.lines)
    }
    books = before.books.values()
    return RecognitionRun(
        customers=customers,
        contracts=sum(len(b.revenue.contracts) for b in books),
        obligations=sum(
            len(contract.obligations) for b in books for contract in b.revenue.contracts.values()
        ),
        visited=len(visit),
        recognised=len(recognised),
        entries=len(entries),
        engine_seconds=engine_seconds,
        worker_seconds=worker_seconds,
        build_seconds=build_seconds,
        tick=tick.business_date.isoformat(),
    )
