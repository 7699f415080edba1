"""Journal batches for the ERP: entries of one partition summarised, balanced, in sequence.

The pure core of the batcher (DESIGN.md section 7). A :class:`BatcherState` belongs to one
source partition. Entries are added in partition order (:func:`add_entry`); each goes to
the open *window* of its (entity, accounting period). A window closes when it holds
``max_entries`` entries, on a business-clock tick (:func:`on_tick`) once it is
``max_age_days`` business days old or the tick is past its period, or when its entity
closes the period (:func:`on_period_closed`). Nothing here reads the wall clock, so a
replay of the same entries and ticks closes the same windows.

Closing a window summarises it (:func:`summarise`): one line per (ERP account code,
logical account, currency, kept dimensions) with debits and credits in transaction and
functional amounts. The ERP code comes from the entity's GL mapping; when a line has
none, the window waits (``gl_mapping_missing``) with every later window of the entity,
so batches stay in sequence; a tick after the mapping arrives releases them in order.

A batch gets the next gap-free ``sequence`` of its entity on this partition and the id
``<entity>/p<partition>/<sequence>``: the same entries in the same order give the same
id and the same bytes on a rebuild.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ledger.accounts import Side
from ledger.calendar import business_days_between, first_day, next_period
from ledger.entries import JournalEntry
from ledger.errors import InvariantViolation
from ledger.reference import ReferenceData

WindowKey = tuple[str, str]  # (entity, period)


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When windows close and which entry dimensions survive onto batch lines."""

    max_entries: int = 500
    max_age_days: int = 1
    dimensions: tuple[str, ...] = ("product_family",)


@dataclass(frozen=True, slots=True)
class SummaryLine:
    """One batch line: an ERP account code, logical account, currency and dimension set."""

    gl_code: str
    account: str
    currency: str
    dimensions: tuple[tuple[str, str], ...]
    debit_minor: int = 0
    credit_minor: int = 0
    functional_debit_minor: int = 0
    functional_credit_minor: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """A closed, summarised window: what goes to ``erp.journal-batches.v1``."""

    batch_id: str
    entity: str
    source_partition: int
    sequence: int
    period: str
    first_date: dt.date
    last_date: dt.date
    functional_currency: str
    lines: tuple[SummaryLine, ...]
    entry_ids: tuple[str, ...]
    first_offset: int
    last_offset: int

    def totals(self) -> dict[str, tuple[int, int]]:
        """Currency -> (debits, credits) in transaction amounts: equal for every currency."""
        sums: dict[str, tuple[int, int]] = {}
        for line in self.lines:
            debit, credit = sums.get(line.currency, (0, 0))
            sums[line.currency] = (debit + line.debit_minor, credit + line.credit_minor)
        return sums


@dataclass(frozen=True, slots=True)
class Window:
    """Entries of one (entity, period) waiting to be summarised, with their offsets."""

    entity: str
    period: str
    opened_on: dt.date
    entries: tuple[tuple[int, JournalEntry], ...] = ()

    @property
    def window_id(self) -> str:
        """Stable name of the window: entity, period and the offset of its first entry."""
        first = self.entries[0][0] if self.entries else -1
        return f"{self.entity}/{self.period}/{first}"


@dataclass(frozen=True, slots=True)
class MissingMapping:
    """A closed window that cannot be summarised: no ERP code for these (account, family)."""

    window: Window
    missing: tuple[tuple[str, str | None], ...]

    @property
    def reason(self) -> str:
        """The hold reason the streaming layer reports (metric label, alert)."""
        return "gl_mapping_missing"


def _no_windows() -> Mapping[WindowKey, Window]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class BatcherState:
    """One source partition's open windows, next sequences and waiting windows."""

    partition: int
    windows: Mapping[WindowKey, Window] = field(default_factory=_no_windows)
    next_sequence: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Closed windows held on a GL mapping gap, in close order.
    waiting: tuple[Window, ...] = ()


@dataclass(frozen=True, slots=True)
class BatchRun:
    """Result of :func:`add_entry` / :func:`on_tick`: new state, batches in sequence, holds."""

    state: BatcherState
    batches: tuple[Batch, ...] = ()
    held: tuple[MissingMapping, ...] = ()


def add_entry(
    state: BatcherState,
    entry: JournalEntry,
    offset: int,
    reference: ReferenceData,
    policy: BatchPolicy,
) -> BatchRun:
    """Add ``entry`` (read at ``offset`` of the partition) to its window; close it if full."""
    key = (entry.entity, entry.period)
    window = state.windows.get(key) or Window(entry.entity, entry.period, entry.posting_date)
    window = replace(window, entries=(*window.entries, (offset, entry)))
    if len(window.entries) < policy.max_entries:
        return BatchRun(_with_window(state, key, window))
    return _close(_without_window(state, key), [window], reference, policy)


def on_tick(
    state: BatcherState, business_date: dt.date, reference: ReferenceData, policy: BatchPolicy
) -> BatchRun:
    """Close windows old enough or past their period; release windows whose mapping arrived."""
    due = [
        window
        for key, window in sorted(state.windows.items())
        if business_days_between(window.opened_on, business_date) >= policy.max_age_days
        or business_date >= first_day(next_period(window.period))
    ]
    for window in due:
        state = _without_window(state, (window.entity, window.period))
    return _close(state, due, reference, policy)


def on_period_closed(
    state: BatcherState,
    entity: str,
    period: str,
    reference: ReferenceData,
    policy: BatchPolicy,
) -> BatchRun:
    """Close ``entity``'s windows of ``period`` and earlier: the period boundary is final."""
    due = [
        window
        for key, window in sorted(state.windows.items())
        if window.entity == entity and window.period <= period
    ]
    for window in due:
        state = _without_window(state, (window.entity, window.period))
    return _close(state, due, reference, policy)


def release_waiting(state: BatcherState, reference: ReferenceData, policy: BatchPolicy) -> BatchRun:
    """Retry the windows held on a GL mapping gap (after the mappings changed), in order."""
    if not state.waiting:
        return BatchRun(state)
    return _close(state, [], reference, policy)


def summarise(
    window: Window, reference: ReferenceData, policy: BatchPolicy
) -> tuple[SummaryLine, ...] | MissingMapping:
    """Group the window's entry lines by ERP code, account, currency and kept dimensions."""
    sums: dict[tuple, list[int]] = {}
    missing: set[tuple[str, str | None]] = set()
    for _, entry in window.entries:
        for line in entry.lines:
            family = line.dimension("product_family")
            code = reference.gl_code(entry.entity, line.account, family, entry.posting_date)
            if code is None:
                missing.add((str(line.account), family))
                continue
            kept = tuple((k, v) for k, v in line.dimensions if k in policy.dimensions)
            totals = sums.setdefault((code, str(line.account), line.currency, kept), [0, 0, 0, 0])
            column = 0 if line.side is Side.debit else 1
            totals[column] += line.amount_minor
            totals[column + 2] += line.functional_amount_minor
    if missing:
        return MissingMapping(window, tuple(sorted(missing, key=lambda m: (m[0], m[1] or ""))))
    return tuple(
        SummaryLine(code, account, currency, kept, *totals)
        for (code, account, currency, kept), totals in sorted(sums.items())
    )


def _close(
    state: BatcherState, closing: list[Window], reference: ReferenceData, policy: BatchPolicy
) -> BatchRun:
    """Summarise waiting windows first, then ``closing``; a gap holds the entity's rest."""
    batches: list[Batch] = []
    held: list[MissingMapping] = []
    blocked: set[str] = set()
    waiting: list[Window] = []
    for window in (*state.waiting, *closing):
        if window.entity in blocked:
            waiting.append(window)
            continue
        lines = summarise(window, reference, policy)
        if isinstance(lines, MissingMapping):
            blocked.add(window.entity)
            waiting.append(window)
            held.append(lines)
            continue
        sequence = state.next_sequence.get(window.entity, 0)
        batches.append(_batch(state.partition, sequence, window, lines, reference))
        state = replace(
            state,
            next_sequence=MappingProxyType({**state.next_sequence, window.entity: sequence + 1}),
        )
    return BatchRun(replace(state, waiting=tuple(waiting)), tuple(batches), tuple(held))


def _batch(
    partition: int,
    sequence: int,
    window: Window,
    lines: tuple[SummaryLine, ...],
    reference: ReferenceData,
) -> Batch:
    entries = [entry for _, entry in window.entries]
    batch = Batch(
        batch_id=f"{window.entity}/p{partition}/{sequence}",
        entity=window.entity,
        source_partition=partition,
        sequence=sequence,
        period=window.period,
        first_date=min(e.posting_date for e in entries),
        last_date=max(e.posting_date for e in entries),
        functional_currency=reference.functional_currency(window.entity) or "",
        lines=lines,
        entry_ids=tuple(e.entry_id for e in entries),
        first_offset=window.entries[0][0],
        last_offset=window.entries[-1][0],
    )
    unbalanced = {c: t for c, t in batch.totals().items() if t[0] != t[1]}
    functional = sum(line.functional_debit_minor - line.functional_credit_minor for line in lines)
    if unbalanced or functional:
        # Entries balance by construction: an unbalanced batch is a bug and must not leave.
        raise InvariantViolation(
            f"batch {batch.batch_id} does not balance: {unbalanced}, functional {functional}"
        )
    return batch


def _with_window(state: BatcherState, key: WindowKey, window: Window) -> BatcherState:
    return replace(state, windows=MappingProxyType({**state.windows, key: window}))


def _without_window(state: BatcherState, key: WindowKey) -> BatcherState:
    return replace(
        state, windows=MappingProxyType({k: w for k, w in state.windows.items() if k != key})
    )
