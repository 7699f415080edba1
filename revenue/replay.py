"""Pure replay of the engine: the oracle the streaming tests and the demo compare against.

Feed it one partition's log (``ledger.inputs.v1`` partition p, decoded, in offset order):
the worker's task for p applies exactly these records in this order, so the same
decisions come out in the same order. Records:

* a customer event: :func:`revenue.engine.apply` on the customer's books;
* a :class:`ClockAdvanced`: refused as ``clock_backwards`` when dated before the last
  tick; ignored when its event id is the last tick's (a re-delivery); otherwise every
  customer that has holds or revenue to run gets :func:`revenue.engine.run_clock`, in
  sorted customer-id order;
* any other reference or control record updates the reference data (an FX rate or a
  product mapping then re-tries holds, as :mod:`ledger.replay` does).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger import book
from ledger.book import ExpiredHold, OutcomeKind, RejectedHold
from ledger.entries import JournalEntry
from ledger.events import ClockAdvanced, Event, FxRate, ProductMapping, ReferenceRecord
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from revenue.engine import CustomerBooks, RevenueRules, apply, needs_clock, run_clock
from revenue.recognition import clock_check


@dataclass(slots=True)
class EngineReplay:
    """Everything a replay produced (mutable only while the replay builds it)."""

    reference: ReferenceData
    books: dict[str, CustomerBooks] = field(default_factory=dict)
    entries: list[JournalEntry] = field(default_factory=list)
    rejected: list[tuple[Event | ReferenceRecord, EntryStatus, str]] = field(default_factory=list)
    rejected_holds: list[RejectedHold] = field(default_factory=list)
    expired: list[ExpiredHold] = field(default_factory=list)
    refused: list[tuple[str, str, str, str]] = field(default_factory=list)
    clock: dt.date | None = None
    clock_id: str | None = None


def replay(
    reference: Iterable[ReferenceRecord],
    records: Iterable[Event | ReferenceRecord],
    *,
    hold_timeout_days: int | None = None,
) -> list[JournalEntry]:
    """Entries of one partition's log (see the module docstring)."""
    return replay_all(reference, records, hold_timeout_days=hold_timeout_days).entries


def replay_all(
    reference: Iterable[ReferenceRecord],
    records: Iterable[Event | ReferenceRecord],
    *,
    hold_timeout_days: int | None = None,
) -> EngineReplay:
    """Like :func:`replay`, also returning books, rejections, expired holds and refusals."""
    result = EngineReplay(ReferenceData.from_records(reference))
    for record in records:
        if isinstance(record, ClockAdvanced):
            _tick(result, record, hold_timeout_days)
        elif isinstance(record, ReferenceRecord):
            _reference_record(result, record)
        else:
            _customer_event(result, record)
    return result


def _customer_event(result: EngineReplay, event: Event) -> None:
    books = result.books.get(event.customer_id) or CustomerBooks.new(event.customer_id)
    outcome = apply(books, event, result.reference, as_of=result.clock)
    result.books[event.customer_id] = outcome.books
    result.entries.extend(outcome.entries)
    result.rejected_holds.extend(outcome.rejected_holds)
    if outcome.kind is OutcomeKind.rejected:
        result.rejected.append((event, outcome.status, outcome.message))


def _tick(result: EngineReplay, tick: ClockAdvanced, hold_timeout_days: int | None) -> None:
    refusal = clock_check(result.clock, result.clock_id, tick)
    if refusal is EntryStatus.exists:
        return
    if refusal is not None:
        message = f"clock moved back from {result.clock} to {tick.business_date}"
        result.rejected.append((tick, refusal, message))
        return
    result.clock, result.clock_id = tick.business_date, tick.event_id
    result.reference = result.reference.with_record(tick)
    for customer_id in sorted(cid for cid, b in result.books.items() if needs_clock(b)):
        run = run_clock(
            result.books[customer_id], tick, result.reference, hold_timeout_days=hold_timeout_days
        )
        result.books[customer_id] = run.books
        result.entries.extend(run.entries)
        result.expired.extend(run.expired)
        result.rejected_holds.extend(run.rejected_holds)
        result.refused.extend((customer_id, *refusal) for refusal in run.refused)


def _reference_record(result: EngineReplay, record: ReferenceRecord) -> None:
    result.reference = result.reference.with_record(record)
    if not isinstance(record, FxRate | ProductMapping):
        return
    for customer_id in sorted(cid for cid, b in result.books.items() if b.ledger.held):
        books = result.books[customer_id]
        rules = RevenueRules(books.revenue)
        release = book.retry_holds(books.ledger, result.reference, rules)
        result.books[customer_id] = CustomerBooks(release.state, rules.revenue)
        result.entries.extend(release.entries)
        result.rejected_holds.extend(release.rejected_holds)


def replay_partitions(
    reference: Iterable[ReferenceRecord],
    logs: Iterable[Iterable[Event | ReferenceRecord]],
    *,
    hold_timeout_days: int | None = None,
) -> list[JournalEntry]:
    """Entries of several partitions' logs, each replayed on its own, concatenated.

    A tick is in every partition's log under one event id: replaying the logs merged
    would run it once, at the first partition's copy, for customers of all partitions.
    """
    records = list(reference)
    entries: list[JournalEntry] = []
    for log in logs:
        entries.extend(replay(records, log, hold_timeout_days=hold_timeout_days))
    return entries
