"""The ledger worker's books store: the decoded-books cache never serves a state the tables
do not hold, and a table is written only when its bytes change (issue 7)."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks.books_step import RocksLikeTable, run_steps
from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.book import OutcomeKind
from ledger.codec import state_from_json
from ledger.events import Event
from ledger.reference import ReferenceData
from revenue import engine
from revenue.codec import EVENT_TYPES, book_from_json
from revenue.engine import CustomerBooks
from streams.ledger_worker import BooksStore, DecodedBooks, LoadedBooks, StateTooLarge

DAY = dt.date(2024, 1, 5)


def _store(decoded: DecodedBooks | None = None) -> BooksStore:
    return BooksStore(RocksLikeTable(), RocksLikeTable(), decoded)


def _reference() -> ReferenceData:
    return b.reference_data()


def _post(store: BooksStore, event: Event) -> tuple[LoadedBooks, CustomerBooks]:
    """One customer event as the worker applies it: load, apply, save unless refused."""
    loaded = store.load(event.customer_id)
    outcome = engine.apply(loaded.books, event, _reference())
    assert outcome.kind is OutcomeKind.posted, outcome.message
    store.save(loaded, outcome.books)
    return loaded, outcome.books


def _decoded_tables(store: BooksStore, customer_id: str) -> CustomerBooks:
    key = customer_id.encode()
    return CustomerBooks(
        state_from_json(store.ledgers.data[key], EVENT_TYPES),
        book_from_json(store.revenue_books.data[key]),
    )


def test_saved_books_are_served_again_when_the_tables_still_hold_their_bytes():
    store = _store()
    _, saved = _post(store, b.invoice("INV-1", customer="C1", lines=[("SUB", 120_00)], on=DAY))

    loaded = store.load("C1")

    assert loaded.books is saved, "no decode: the books saved are the table's state"
    assert store.decoded.hits == 1


def test_next_event_sees_the_tables_not_the_object_when_a_handler_failed_after_loading():
    store = _store()
    _post(store, b.invoice("INV-1", customer="C1", lines=[("SUB", 120_00)], on=DAY))
    loaded = store.load("C1")  # served from the cache ...
    # ... then the handler changes the object it was given and fails before it saves.
    object.__setattr__(loaded.books.ledger, "next_hold_sequence", 99)

    again = store.load("C1")

    assert again.books is not loaded.books
    assert again.books.ledger.next_hold_sequence == 0
    assert again.books == _decoded_tables(store, "C1")


def test_tables_changed_behind_the_cache_are_decoded():
    """A changelog recovery or another worker's write (after a rebalance) is what counts."""
    store, other = _store(), _store()
    _post(store, b.invoice("INV-1", customer="C1", lines=[("SUB", 120_00)], on=DAY))
    _post(other, b.invoice("INV-1", customer="C1", lines=[("SUB", 120_00)], on=DAY))
    _, elsewhere = _post(
        other,
        b.payment("PAY-1", [("INV-1", 120_00)], customer="C1", on=DAY + dt.timedelta(days=3)),
    )
    store.ledgers.data[b"C1"] = other.ledgers.data[b"C1"]  # restored from the changelog

    loaded = store.load("C1")

    assert loaded.books == elsewhere
    assert "PAY-1" in loaded.books.ledger.payments
    assert (store.decoded.hits, store.decoded.misses) == (0, 1)


def test_books_that_did_not_change_are_not_written_again():
    store = _store()
    _post(store, b.invoice("INV-1", customer="C1", lines=[("SUB", 120_00)], on=DAY))
    assert (store.ledgers.writes, store.revenue_books.writes) == (1, 1)

    # A payment changes the subledger, not the revenue book.
    _post(store, b.payment("PAY-1", [("INV-1", 120_00)], customer="C1", on=DAY))
    assert (store.ledgers.writes, store.revenue_books.writes) == (2, 1)

    loaded = store.load("C1")
    store.save(loaded, loaded.books)  # nothing changed: nothing written
    assert (store.ledgers.writes, store.revenue_books.writes) == (2, 1)
    assert store.load("C1").books == _decoded_tables(store, "C1")


def test_the_cache_keeps_the_most_recently_saved_customers_within_its_bounds():
    store = _store(DecodedBooks(max_customers=2))
    for n in range(3):
        _post(store, b.invoice(f"INV-{n}", customer=f"C{n}", lines=[("SUB", 50_00)], on=DAY))
    assert len(store.decoded) == 2
    store.load("C0")
    assert store.decoded.hits == 0, "the oldest customer went first"
    store.load("C2")
    assert store.decoded.hits == 1

    one = store.load("C1")
    store.decoded.max_bytes = one.size - 1  # too large to keep at all
    store.save(one, one.books)
    assert len(store.decoded) == 0 and store.decoded.size == 0


def _run(store: BooksStore, seed: int) -> tuple[list, dict[bytes, bytes], dict[bytes, bytes]]:
    """A contract book through ``store`` as the ledger worker runs it (events and ticks)."""
    stream = generate_contracts(seed=seed, customers=6, months=4)
    entries: list = []
    run_steps(stream.events, ReferenceData.from_records(stream.reference), store, entries=entries)
    return entries, store.ledgers.data, store.revenue_books.data


def test_a_contract_book_posts_the_same_entries_and_stores_the_same_bytes_with_the_cache():
    cached = _store()
    entries, ledgers, revenue = _run(cached, seed=5)
    plain_entries, plain_ledgers, plain_revenue = _run(_store(DecodedBooks(max_customers=0)), 5)

    assert cached.decoded.hits >= 50, "the cache served most loads (61 of 60 events + ticks)"
    assert entries == plain_entries
    assert ledgers == plain_ledgers
    assert revenue == plain_revenue


def test_a_state_too_large_for_its_changelog_record_is_refused_and_nothing_is_written():
    # Over the limit the transaction could never commit and the partition would stall:
    # the store refuses before writing either table, and the books stay as they were.
    store = BooksStore(RocksLikeTable(), RocksLikeTable(), max_state_bytes=100_000)
    _post(store, b.invoice("INV-1", customer="C1", lines=[("SUB", 120_00)], on=DAY))
    before = (dict(store.ledgers.data), dict(store.revenue_books.data))
    writes = store.ledgers.writes + store.revenue_books.writes
    store.max_state_bytes = len(store.ledgers.data[b"C1"]) + 10  # the next event outgrows it

    loaded = store.load("C1")
    outcome = engine.apply(
        loaded.books,
        b.invoice("INV-2", customer="C1", lines=[("SUB", 80_00)], on=DAY),
        _reference(),
    )
    with pytest.raises(StateTooLarge, match=r"customer 'C1'.*customer-ledgers.*over the"):
        store.save(loaded, outcome.books)

    assert (store.ledgers.data, store.revenue_books.data) == before
    assert store.ledgers.writes + store.revenue_books.writes == writes
    assert store.load("C1").books == loaded.books  # decoded from the tables: the old state
