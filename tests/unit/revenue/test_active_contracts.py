"""RevenueBook.active_contracts: the count is_active reads, kept up to date by with_contract."""

from __future__ import annotations

import datetime as dt

from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.events import ClockAdvanced
from revenue.codec import book_from_json, book_to_json
from revenue.replay import replay_all
from revenue.state import RevenueBook, contract_is_active

D = dt.date


def counted(book: RevenueBook) -> int:
    return sum(1 for c in book.contracts.values() if contract_is_active(c))


def test_active_contracts_matches_a_recount_when_books_come_from_a_contract_book_replay():
    stream = generate_contracts(seed=5, customers=12, months=14)
    events = [e for e in stream.events if not isinstance(e, ClockAdvanced)]
    ticks = [e for e in stream.events if isinstance(e, ClockAdvanced)]
    # Cut before the last ticks: some contracts still earning, some finished.
    cut = stream.events.index(ticks[len(ticks) // 2])
    books = [
        *replay_all(stream.reference, stream.events[:cut]).books.values(),
        *replay_all(stream.reference, stream.events).books.values(),
    ]
    assert events and any(bk.revenue.is_active() for bk in books)
    assert any(not contract_is_active(c) for bk in books for c in bk.revenue.contracts.values())
    for customer_books in books:
        revenue = customer_books.revenue
        decoded = book_from_json(book_to_json(revenue))  # counted afresh on construction
        assert revenue.active_contracts == counted(revenue) == decoded.active_contracts
        assert revenue == decoded


def test_active_contracts_goes_down_when_a_contract_finishes_and_is_not_compared():
    booked = b.contract("K1", 100_00, [b.obligation("SUB", 100_00, D(2024, 1, 1), D(2024, 1, 31))])
    running = replay_all(b.base_records(), [booked]).books["C1"].revenue
    finished = replay_all(b.base_records(), [booked, b.clock(D(2024, 1, 31))]).books["C1"].revenue
    assert (running.active_contracts, running.is_active()) == (1, True)
    assert (finished.active_contracts, finished.is_active()) == (0, False)
    # Derived, not state: equal books whatever the count says.
    assert RevenueBook("C1", active_contracts=5) == RevenueBook("C1")
