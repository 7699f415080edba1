"""The ledger worker's per-event books step, without Kafka: load, apply, save (issue 7).

``python -m benchmarks.books_step [--customers N] [--events N]`` runs the e2e benchmark's
company stream (same seed and shape) through :class:`streams.ledger_worker.BooksStore`
over tables that hand out new bytes on every get (as the RocksDB store does), as the
ledger agent does for each customer event and each tick, once with the decoded-books
cache and once without it. It prints the CPU time per event of each and the table writes
per event: the part of the worker's ``ms/event`` that the cache and the skipped writes
change, measured without the broker's noise. Nothing is asserted.

``--one-customer N [N ...]`` runs N events of ONE customer instead (the stream of
:mod:`benchmarks.one_customer`), with the cache: the per-event cost of a long history,
state encoding and comparison included, and the size of the stored books at the end.

Imports faust (through the worker module): run it on its own, not from the suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from benchmarks.one_customer import CUSTOMER, one_customer_stream
from benchmarks.pipeline import company_stream
from benchmarks.suite import FULL
from ledger.book import OutcomeKind
from ledger.events import ClockAdvanced, Event
from ledger.reference import ReferenceData
from revenue import engine
from revenue.engine import CustomerBooks
from streams.ledger_worker import BooksStore, DecodedBooks, LoadedBooks


class RocksLikeTable:
    """A table that hands out a new bytes object on every get, as the RocksDB store does
    (so the cache's check is on content, not on identity), and counts its writes.

    Also the stand-in of ``tests/unit/streams/test_books_store.py``."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.writes = 0

    def get(self, key: bytes) -> bytes | None:
        value = self.data.get(key)
        return None if value is None else bytes(bytearray(value))

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes += 1
        self.data[key] = value

    def __contains__(self, key: bytes) -> bool:
        return key in self.data


@dataclass(frozen=True, slots=True)
class StepRun:
    """CPU seconds of one pass and what it did."""

    cpu_seconds: float
    events: int
    loads: int
    writes: int
    writes_unskipped: int  # what the worker wrote before it skipped unchanged bytes
    hits: int


def run_steps(
    records: Sequence[object],
    reference: ReferenceData,
    store: BooksStore,
    checkpoint: Callable[[int], None] | None = None,
    every: int = 0,
    entries: list | None = None,
) -> StepRun:
    """Every record through ``store`` as the ledger agent runs it (events and ticks).

    ``checkpoint(n)`` is called after every ``every`` records (n records done), and at the end.
    ``entries``, when given, receives every entry posted, in order.
    """
    clock_customers: set[str] = set()
    last_tick = None
    events = loads = unskipped = 0

    def save(loaded: LoadedBooks, books: CustomerBooks) -> None:
        nonlocal unskipped
        store.save(loaded, books)
        unskipped += 1 + bool(books.revenue.contracts or books.revenue.clock is not None)

    started = time.process_time()
    for done, record in enumerate(records, 1):
        if checkpoint is not None and every and done % every == 0:
            checkpoint(done - 1)
        if isinstance(record, ClockAdvanced):
            last_tick = record.business_date
            ticked = reference.with_record(record)
            for customer_id in sorted(clock_customers):
                loaded = store.load(customer_id)
                loads += 1
                run = engine.run_clock(loaded.books, record, ticked, hold_timeout_days=7)
                save(loaded, run.books)
                if entries is not None:
                    entries.extend(run.entries)
        elif isinstance(record, Event):
            events += 1
            loaded = store.load(record.customer_id)
            loads += 1
            outcome = engine.apply(loaded.books, record, reference, as_of=last_tick)
            if outcome.kind in (OutcomeKind.rejected, OutcomeKind.duplicate):
                continue
            save(loaded, outcome.books)
            if entries is not None:
                entries.extend(outcome.entries)
            if engine.needs_clock(outcome.books):
                clock_customers.add(record.customer_id)
            else:
                clock_customers.discard(record.customer_id)
        else:
            reference = reference.with_record(record)  # type: ignore[arg-type]
    seconds = time.process_time() - started
    if checkpoint is not None:
        checkpoint(len(records))
    writes = store.ledgers.writes + store.revenue_books.writes
    return StepRun(seconds, events, loads, writes, unskipped, store.decoded.hits)


def one_customer(sizes: Sequence[int]) -> None:
    """One customer's N events (``benchmarks.one_customer``) through the store, per N.

    What the pure benchmark leaves out: the worker encodes the books it saves and compares
    them with the table's bytes, every event, so a cost that grows with the customer's
    stored state shows here.
    """
    print("one customer through the books step, with the decoded-books cache")
    for size in sorted(sizes):
        stream = one_customer_stream(size)
        reference = ReferenceData.from_records(stream.reference)
        store = BooksStore(RocksLikeTable(), RocksLikeTable(), DecodedBooks())
        run = run_steps(stream.records, reference, store)
        key = CUSTOMER.encode()
        ledger_bytes = len(store.ledgers.data.get(key, b""))
        revenue_bytes = len(store.revenue_books.data.get(key, b""))
        print(
            f"  {run.events:>7,} events: {run.cpu_seconds / run.events * 1000:6.3f} ms/event CPU;"
            f" {run.writes / run.events:.2f} table writes/event; stored books at the end"
            f" {ledger_bytes / 1024:,.0f} KiB ledger + {revenue_bytes / 1024:,.0f} KiB revenue"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stream with and without the cache; print ms/event and writes/event."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.books_step")
    parser.add_argument("--customers", type=int, default=FULL.pipeline.customers)
    parser.add_argument("--events", type=int, default=FULL.pipeline.stream_events)
    parser.add_argument(
        "--one-customer",
        type=int,
        nargs="+",
        metavar="N",
        help="instead: N events of one customer, for each N (the cost of a long history)",
    )
    args = parser.parse_args(argv)
    if args.one_customer:
        one_customer(args.one_customer)
        return 0
    stream = company_stream(replace(FULL.pipeline, customers=args.customers))
    records = list(stream.events)[: args.events]
    reference = ReferenceData.from_records(stream.reference)
    print(f"company stream: {len(records):,} records, {args.customers:,} customers")
    for label, decoded in (
        ("without cache (decode every load)", DecodedBooks(max_customers=0)),
        ("with the decoded-books cache", DecodedBooks()),
    ):
        store = BooksStore(RocksLikeTable(), RocksLikeTable(), decoded)
        run = run_steps(records, reference, store)
        print(
            f"  {label:36} {run.cpu_seconds / run.events * 1000:6.3f} ms/event CPU;"
            f" {run.writes / run.events:.2f} table writes/event"
            f" ({run.writes_unskipped / run.events:.2f} without skipping unchanged bytes);"
            f" {run.hits:,} of {run.loads:,} loads from the cache"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
