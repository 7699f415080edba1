"""Pure replay: reference records and events in, journal entries out, in posting order.

The oracle the streaming tests compare against (TigerBeetle's auditor idea): one
:class:`CustomerLedger` per customer in a dict, every record applied in order through
:func:`ledger.book.apply`. Reference and control records may be interleaved with events:

* a reference record updates the :class:`ReferenceData`; when it can release holds (an
  FX rate, a product mapping), :func:`ledger.book.retry_holds` runs for every customer
  with holds, in sorted customer-id order;
* a :class:`ClockAdvanced` expires holds older than ``hold_timeout_days`` business days
  (when given), customers in sorted order.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ledger.book import ExpiredHold, OutcomeKind, RejectedHold, apply, expire_holds, retry_holds
from ledger.entries import JournalEntry
from ledger.events import ClockAdvanced, Event, FxRate, ProductMapping, ReferenceRecord
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.state import CustomerLedger


@dataclass(slots=True)
class ReplayResult:
    """Everything a replay produced (mutable only while the replay builds it)."""

    reference: ReferenceData
    states: dict[str, CustomerLedger] = field(default_factory=dict)
    entries: list[JournalEntry] = field(default_factory=list)
    rejected: list[tuple[Event, EntryStatus, str]] = field(default_factory=list)
    rejected_holds: list[RejectedHold] = field(default_factory=list)
    expired: list[ExpiredHold] = field(default_factory=list)


def replay(
    reference: Iterable[ReferenceRecord],
    events: Iterable[Event | ReferenceRecord],
    *,
    hold_timeout_days: int | None = None,
) -> list[JournalEntry]:
    """Entries of applying ``reference`` then ``events`` in order (see module docstring)."""
    return replay_all(reference, events, hold_timeout_days=hold_timeout_days).entries


def replay_all(
    reference: Iterable[ReferenceRecord],
    events: Iterable[Event | ReferenceRecord],
    *,
    hold_timeout_days: int | None = None,
) -> ReplayResult:
    """Like :func:`replay`, also returning final states, rejections and expired holds."""
    result = ReplayResult(ReferenceData.from_records(reference))
    for record in events:
        if isinstance(record, ReferenceRecord):
            _reference_record(result, record, hold_timeout_days)
        else:
            _customer_event(result, record)
    return result


def _customer_event(result: ReplayResult, event: Event) -> None:
    state = result.states.get(event.customer_id) or CustomerLedger(event.customer_id)
    outcome = apply(state, event, result.reference)
    result.states[event.customer_id] = outcome.state
    result.entries.extend(outcome.entries)
    result.rejected_holds.extend(outcome.rejected_holds)
    if outcome.kind is OutcomeKind.rejected:
        result.rejected.append((event, outcome.status, outcome.message))


def _reference_record(
    result: ReplayResult, record: ReferenceRecord, hold_timeout_days: int | None
) -> None:
    result.reference = result.reference.with_record(record)
    waiting = sorted(cid for cid, state in result.states.items() if state.held)
    if isinstance(record, FxRate | ProductMapping):
        for customer_id in waiting:
            release = retry_holds(result.states[customer_id], result.reference)
            result.states[customer_id] = release.state
            result.entries.extend(release.entries)
            result.rejected_holds.extend(release.rejected_holds)
    if isinstance(record, ClockAdvanced) and hold_timeout_days is not None:
        for customer_id in waiting:
            state, expired = expire_holds(
                result.states[customer_id], record.business_date, hold_timeout_days
            )
            result.states[customer_id] = state
            result.expired.extend(expired)
