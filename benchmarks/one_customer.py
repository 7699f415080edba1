"""The pure engine's cost per event as ONE customer's history grows (issue 7).

``python -m benchmarks.one_customer [--sizes 1000 2000 4000 8000] [--seed 11] [--profile OUT]``

For each size N, the simulated company's stream (:func:`generate_company`, one customer,
3 % redeliveries, nothing out of order) is cut to N events of that customer, with a
business clock tick at each month end, and applied the way the ledger agent applies a
partition's log: :func:`revenue.engine.apply` per event (with the last tick as ``as_of``),
:func:`revenue.engine.needs_clock` after it, :func:`revenue.engine.run_clock` per tick for
a customer that needs one. Printed per N: CPU milliseconds per event over the whole run
and over its last tenth (the cost of an event when the customer already has ~N events:
flat when the per-event cost does not grow with the history, rising with N when it does),
and the number of entries (the same at every run of the same code and N).

``--profile OUT`` writes a cProfile of the largest size to OUT. Nothing is asserted.
``python -m benchmarks.books_step --one-customer N`` runs the same stream through the
worker's state store (encode, compare, write) as well.

Must not import: faust, confluent_kafka, psycopg.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.simulation import builders as b
from connectors.simulation.company import generate_company
from ledger.book import OutcomeKind
from ledger.events import ClockAdvanced, Event, ReferenceRecord
from ledger.posting import business_date_of
from ledger.reference import ReferenceData
from revenue import engine
from revenue.engine import CustomerBooks

SIZES = (1_000, 2_000, 4_000, 8_000)
CUSTOMER = "C0000"  # generate_company's first (here only) customer


@dataclass(frozen=True, slots=True)
class OneCustomerStream:
    """Reference records and one customer's events, with month-end ticks, in arrival order."""

    reference: list[ReferenceRecord]
    records: list[Event | ClockAdvanced]

    @property
    def events(self) -> int:
        """Customer events (ticks not counted)."""
        return sum(1 for r in self.records if not isinstance(r, ClockAdvanced))


def one_customer_stream(events: int, seed: int = 11) -> OneCustomerStream:
    """``events`` events of one simulated customer and a tick at each month end they pass."""
    stream = generate_company(
        seed=seed, customers=1, events=events, duplicate_rate=0.03, out_of_order_rate=0.0
    )
    records: list[Event | ClockAdvanced] = []
    last_tick: dt.date | None = None
    for event in stream.events:
        if event.customer_id != CUSTOMER:
            continue  # payouts, keyed by the processor account
        day = business_date_of(event)
        month_end = day.replace(day=1) - dt.timedelta(days=1)
        if last_tick is None:
            last_tick = month_end
        elif month_end > last_tick:
            last_tick = month_end
            records.append(b.clock(month_end))
        records.append(event)
    return OneCustomerStream(stream.reference, records[: _cut(records, events)])


def _cut(records: Sequence[object], events: int) -> int:
    seen = 0
    for index, record in enumerate(records):
        if not isinstance(record, ClockAdvanced):
            seen += 1
            if seen == events:
                return index + 1
    return len(records)


@dataclass(frozen=True, slots=True)
class EngineRun:
    """CPU seconds of one pass: in all, and over the last tenth of the events."""

    cpu_seconds: float
    tail_cpu_seconds: float
    events: int
    tail_events: int
    entries: int
    rejected: int


def run_engine(stream: OneCustomerStream) -> EngineRun:
    """Every record of ``stream`` through the pure engine, as the ledger agent applies them."""
    reference = ReferenceData.from_records(stream.reference)
    books = CustomerBooks.new(CUSTOMER)
    last_tick: dt.date | None = None
    tail_from = stream.events - stream.events // 10
    events = entries = rejected = 0
    tail_started = None
    started = time.process_time()
    for record in stream.records:
        if isinstance(record, ClockAdvanced):
            last_tick = record.business_date
            reference = reference.with_record(record)
            if engine.needs_clock(books):
                run = engine.run_clock(books, record, reference, hold_timeout_days=7)
                books, entries = run.books, entries + len(run.entries)
            continue
        if events == tail_from:
            tail_started = time.process_time()
        events += 1
        outcome = engine.apply(books, record, reference, as_of=last_tick)
        entries += len(outcome.entries)
        if outcome.kind is OutcomeKind.rejected:
            rejected += 1
        books = outcome.books
        engine.needs_clock(books)  # the agent asks after every event (clock-customers)
    ended = time.process_time()
    tail = ended - (tail_started if tail_started is not None else started)
    return EngineRun(ended - started, tail, events, events - tail_from, entries, rejected)


def main(argv: Sequence[str] | None = None) -> int:
    """Print ms/event (whole run, last tenth) for each size."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.one_customer")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--profile", help="write a cProfile of the largest size here")
    args = parser.parse_args(argv)
    print("one customer through the pure engine (CPU ms per event)")
    columns = ("events", "ticks", "entries", "rejected", "ms/event", "last 10%")
    widths = (8, 6, 8, 8, 9, 9)
    print(" ".join(f"{name:>{width}}" for name, width in zip(columns, widths, strict=True)))
    for size in sorted(args.sizes):
        stream = one_customer_stream(size, args.seed)
        profiler = None
        if args.profile and size == max(args.sizes):
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
        run = run_engine(stream)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        ticks = len(stream.records) - run.events
        print(
            f"{run.events:>8,} {ticks:>6} {run.entries:>8,} {run.rejected:>8}"
            f" {run.cpu_seconds / run.events * 1000:>9.3f}"
            f" {run.tail_cpu_seconds / max(run.tail_events, 1) * 1000:>9.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
