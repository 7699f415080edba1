"""A customer's timeline: every source event in ledger order with what became of it.

For each event received (``ledger.inputs.v1``, as projected in ``source_events``) the state
is, in this order (the first that holds):

- ``posted``: entries were posted from it; each entry shows its lines, the ERP batch that
  carried it and the ERP's answer (``imported`` with its document id, ``rejected`` with
  the message), or that it is not batched or not answered yet;
- ``dead_lettered``: no entry, a DLQ record names it (the latest reason and message);
- ``not_processed``: after the last input its partition posted: the ledger (or the
  projection) has not reached it yet;
- ``held``: an event that posts entries when accepted, neither posted nor dead-lettered:
  the ledger holds it (the hold itself lives in the worker's state, not the database,
  hence "presumably"); what it waits for is said when the event names a document the
  database lacks (``invoice:<id>``, ``payment:<id>``), as reconciliation says it;
- ``applied``: an event that posts nothing by design (a contract booking, a failed payment
  attempt, a customer update).

Entries not sourced from one of the customer's events (revenue recognition, sourced from a
clock tick as ``<tick id>/<customer>``) are items of their own. DLQ records of the
customer whose event never reached the input log (it did not decode, or was refused
before the ledger) are items too, with their reason. Then the customer's balances per
entity and currency (:func:`connectors.postgres.queries.statement`), its open invoices,
its contracts with their schedules against what was recognised.

Reads views only (``revledger_reader``). Must not import: aiohttp, faust.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from connectors.postgres import queries
from ledger.materiality import Band, Thresholds, band_of

# Event types whose acceptance posts entries: one of them without entries, not in the DLQ
# and already passed by the ledger is held. The others post nothing by design (a failed
# payment attempt is only remembered; contracts post through recognition).
POSTING_EVENT_TYPES = frozenset(
    {
        "invoice.issued",
        "invoice.voided",
        "credit_note.issued",
        "credit_note.voided",
        "invoice.written_off",
        "payment.settled",
        "refund.issued",
        "dispute.closed",
        "payout.paid",
        "usage.recorded",
    }
)
# Items per timeline page. A thousand made a 2.9 MB page that took Chromium 3.6 s to load
# (benchmarks/console_timeline.py, 10,000 events); support reads the latest events first.
PAGE_SIZE = 200


@dataclass(frozen=True, slots=True)
class Line:
    """One journal line of an entry."""

    line_no: int
    account: str
    side: str
    amount_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Entry:
    """A journal entry with its lines, its ERP batch and the ERP's latest answer."""

    entry_id: str
    rule: str
    posting_date: dt.date
    period: str
    description: str
    source_event_id: str
    batch_id: str | None
    erp_status: str | None
    erp_document_id: str | None
    erp_message: str | None
    lines: tuple[Line, ...] = ()

    @property
    def erp_state(self) -> str:
        """``not batched``, ``awaiting ERP``, ``imported`` or ``rejected``."""
        if self.batch_id is None:
            return "not batched"
        return self.erp_status or "awaiting ERP"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A DLQ record as the timeline shows it."""

    position: str
    reason: str
    message: str
    failed_at: dt.datetime
    source: str
    event_id: str | None


@dataclass(frozen=True, slots=True)
class TimelineItem:
    """One line of the timeline: a source event, entries without one, or a dead letter."""

    kind: str  # event | recognition | dead_letter
    day: dt.date
    order: tuple[Any, ...]
    state: str
    detail: str
    event_id: str | None = None
    event_type: str | None = None
    source_system: str | None = None
    document_id: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    band: str | None = None
    position: str | None = None
    entries: tuple[Entry, ...] = ()
    dead_letters: tuple[DeadLetter, ...] = ()


@dataclass(frozen=True, slots=True)
class Balance:
    """What the customer owes (positive) or is owed, per entity and currency."""

    entity: str
    currency: str
    balance_minor: int


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice with an amount still due."""

    invoice_id: str
    entity: str
    currency: str
    issue_date: dt.date | None
    due_date: dt.date | None
    status: str | None
    total_minor: int | None
    due_minor: int


@dataclass(frozen=True, slots=True)
class SchedulePeriod:
    """A contract's scheduled and recognised revenue in one period."""

    period: str
    scheduled_minor: int
    recognised_minor: int


@dataclass(frozen=True, slots=True)
class Contract:
    """A contract with its schedule against what was recognised, by period."""

    contract_id: str
    entity: str
    currency: str
    total_price_minor: int
    booking_date: dt.date
    service_start: dt.date
    service_end: dt.date | None
    status: str
    periods: tuple[SchedulePeriod, ...]

    @property
    def recognised_minor(self) -> int:
        """Revenue recognised to date on the contract."""
        return sum(p.recognised_minor for p in self.periods)


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything the console shows on a customer's page."""

    customer_id: str
    items: tuple[TimelineItem, ...]
    balances: tuple[Balance, ...]
    open_invoices: tuple[OpenInvoice, ...]
    contracts: tuple[Contract, ...]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """True when the database knows anything of the customer."""
        return bool(self.items or self.balances or self.contracts)


# --- reading ---------------------------------------------------------------------------------

# A payload's document id and money, read in SQL: decoding whole payloads (invoice lines
# and all) costs more than the rest of a 10,000-event page together.
DOCUMENT_SQL = (
    "coalesce(payload ->> 'credit_note_id', payload ->> 'refund_id',"
    " payload ->> 'payment_id', payload ->> 'payout_id', payload ->> 'usage_id',"
    " payload ->> 'invoice_id', payload ->> 'contract_id')"
)
AMOUNT_SQL = (
    "CASE WHEN jsonb_typeof(payload -> 'total_minor') = 'number'"
    "   THEN (payload ->> 'total_minor')::numeric"
    " WHEN jsonb_typeof(payload -> 'amount_minor') = 'number'"
    "   THEN (payload ->> 'amount_minor')::numeric"
    " WHEN jsonb_typeof(payload -> 'total_price_minor') = 'number'"
    "   THEN (payload ->> 'total_price_minor')::numeric END"
)
CURRENCY_SQL = (
    "CASE WHEN jsonb_typeof(payload -> 'currency') = 'string' THEN payload ->> 'currency' END"
)
_EVENTS = (
    "SELECT event_id, event_type, entity, topic, kafka_partition, kafka_offset, occurred_at,"
    f" business_date, source_system, {DOCUMENT_SQL}, {AMOUNT_SQL}, {CURRENCY_SQL},"
    " entry_count, dlq_reasons, dlq_message, waiting_on"
    " FROM revledger.event_outcomes WHERE customer_id = %s"
    " ORDER BY topic, kafka_partition, kafka_offset"
)
_ENTRIES = (
    "SELECT entry_id, rule, posting_date, period, description, source_event_id, batch_id,"
    " erp_status, erp_document_id, erp_message FROM revledger.entry_batches"
    " WHERE customer_id = %s ORDER BY kafka_partition, kafka_offset, entry_id"
)
_LINES = (
    "SELECT entry_id, line_no, account, side, debit_minor + credit_minor, currency"
    " FROM revledger.account_activity WHERE customer_id = %s ORDER BY entry_id, line_no"
)
_DEAD_LETTERS = (
    "SELECT kafka_partition, kafka_offset, reason, message, failed_at, source_topic,"
    " source_partition, source_offset, event_id FROM revledger.dead_letters"
    " WHERE original_key = %(key)s OR event_id = ANY(%(events)s)"
    " ORDER BY failed_at, kafka_partition, kafka_offset"
)
_POSITIONS = (
    "SELECT topic, kafka_partition, last_posted_offset FROM revledger.input_positions"
    " WHERE (topic, kafka_partition) IN (SELECT DISTINCT topic, kafka_partition"
    "   FROM revledger.event_outcomes WHERE customer_id = %s)"
)
_OPEN_INVOICES = (
    "SELECT invoice_id, entity, currency, min(issue_date), min(due_date),"
    " min(invoice_status), min(invoice_total_minor), sum(amount_minor)"
    " FROM revledger.ar_open_items WHERE customer_id = %s AND invoice_id IS NOT NULL"
    " GROUP BY invoice_id, entity, currency HAVING sum(amount_minor) <> 0"
    " ORDER BY min(due_date), invoice_id"
)
_SCHEDULES = (
    "SELECT contract_id, entity, currency, total_price_minor, booking_date, service_start,"
    " service_end, status, period, sum(scheduled_minor)"
    " FROM revledger.contract_schedules WHERE customer_id = %s"
    " GROUP BY contract_id, entity, currency, total_price_minor, booking_date, service_start,"
    " service_end, status, period ORDER BY booking_date, contract_id, period"
)
_RECOGNISED = (
    "SELECT contract_id, period, sum(amount_minor) FROM revledger.revenue_waterfall"
    " WHERE customer_id = %s AND kind = 'recognised' AND contract_id IS NOT NULL"
    " GROUP BY contract_id, period"
)


def customer_timeline(
    conn: psycopg.Connection, customer_id: str, thresholds: Thresholds
) -> Timeline:
    """Read everything of ``customer_id`` and assemble its :class:`Timeline`.

    Runs its reads in one repeatable-read transaction, so an entry and its event come from
    the same snapshot (the projection writes while we read).
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        events = conn.execute(_EVENTS, [customer_id]).fetchall()
        entries = _entries(conn, customer_id)
        event_ids = [row[0] for row in events]
        letters = conn.execute(
            _DEAD_LETTERS, {"key": customer_id.encode(), "events": event_ids}
        ).fetchall()
        positions = {(t, p): o for t, p, o in conn.execute(_POSITIONS, [customer_id])}
        balances = _balances(conn, customer_id)
        invoices = [OpenInvoice(*row) for row in conn.execute(_OPEN_INVOICES, [customer_id])]
        contracts = _contracts(conn, customer_id)
    items = assemble(events, entries, letters, positions, thresholds)
    counts: dict[str, int] = defaultdict(int)
    for item in items:
        counts[item.state] += 1
    return Timeline(
        customer_id, tuple(items), tuple(balances), tuple(invoices), contracts, dict(counts)
    )


def _entries(conn: psycopg.Connection, customer_id: str) -> list[Entry]:
    lines: dict[str, list[Line]] = defaultdict(list)
    for entry_id, line_no, account, side, amount, currency in conn.execute(_LINES, [customer_id]):
        lines[entry_id].append(Line(line_no, account, side, int(amount), currency))
    return [
        Entry(*row, lines=tuple(lines.get(row[0], ())))
        for row in conn.execute(_ENTRIES, [customer_id]).fetchall()
    ]


def _balances(conn: psycopg.Connection, customer_id: str) -> list[Balance]:
    """The last running balance of each (entity, currency) of the customer's statement."""
    try:
        lines = queries.statement(conn, customer_id)
    except queries.UnknownCustomer:
        return []
    last: dict[tuple[str, str], int] = {}
    for line in lines:
        last[(line.entity, line.currency)] = line.balance_minor
    return [Balance(e, c, amount) for (e, c), amount in sorted(last.items())]


def _contracts(conn: psycopg.Connection, customer_id: str) -> tuple[Contract, ...]:
    recognised = {
        (contract, period): int(amount)
        for contract, period, amount in conn.execute(_RECOGNISED, [customer_id])
    }
    heads: dict[str, tuple[Any, ...]] = {}
    periods: dict[str, dict[str, int]] = defaultdict(dict)
    for *head, period, scheduled in conn.execute(_SCHEDULES, [customer_id]):
        heads.setdefault(head[0], tuple(head))
        if period is not None:
            periods[head[0]][period] = int(scheduled or 0)
    for contract, period in recognised:
        if contract in heads:
            periods[contract].setdefault(period, 0)
    return tuple(
        Contract(
            *head,
            periods=tuple(
                SchedulePeriod(p, amount, recognised.get((cid, p), 0))
                for p, amount in sorted(periods[cid].items())
            ),
        )
        for cid, head in heads.items()
    )


# --- assembling (pure) -----------------------------------------------------------------------


def event_state(
    event_type: str,
    entry_count: int,
    dlq_reasons: list[str],
    dlq_message: str | None,
    waiting_on: str | None,
    after_last_posted: bool,
) -> tuple[str, str]:
    """``(state, detail)`` of one event: see the module docstring for the order."""
    if entry_count:
        plural = "entry" if entry_count == 1 else "entries"
        return "posted", f"posted {entry_count} {plural}"
    if dlq_reasons:
        message = f": {dlq_message}" if dlq_message else ""
        return "dead_lettered", f"in the DLQ ({dlq_reasons[-1]}{message})"
    if event_type not in POSTING_EVENT_TYPES:
        return "applied", "applied; posts nothing by itself"
    if after_last_posted:
        return "not_processed", "not processed or projected yet (after the last posted input)"
    if waiting_on:
        kind, _, ident = waiting_on.partition(":")
        return "held", f"held: waits for {kind} {ident}, which has not arrived"
    return "held", "presumably held (what it waits for is not in the database)"


def money_of(amount: Any, currency: str | None) -> tuple[int, str] | None:
    """``(amount_minor, currency)`` from the SQL columns, when both are there and whole."""
    if amount is None or currency is None or amount != int(amount):
        return None
    return int(amount), currency


def _dead_letter(row: tuple[Any, ...]) -> DeadLetter:
    partition, offset, reason, message, failed_at, topic, s_partition, s_offset, event_id = row
    return DeadLetter(
        f"{partition}:{offset}",
        reason,
        message,
        failed_at,
        f"{topic}[{s_partition}]@{s_offset}",
        event_id,
    )


def assemble(
    events: list[tuple[Any, ...]],
    entries: list[Entry],
    letters: list[tuple[Any, ...]],
    positions: dict[tuple[str, int], int],
    thresholds: Thresholds,
) -> list[TimelineItem]:
    """The timeline's items from the rows read, in business order (pure).

    Items are ordered by their day (business date, else the event's or entry's date),
    then events in input order before entries in entries-topic order.
    """
    by_event: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_event[entry.source_event_id].append(entry)
    letters_by_event: dict[str | None, list[DeadLetter]] = defaultdict(list)
    for row in letters:
        letter = _dead_letter(row)
        letters_by_event[letter.event_id].append(letter)
    items: list[TimelineItem] = []
    seen_events: set[str] = set()
    for seq, row in enumerate(events):
        item = _event_item(seq, row, by_event, letters_by_event, positions, thresholds)
        seen_events.add(item.event_id or "")
        items.append(item)
    items += _orphan_entries(by_event, seen_events)
    items += _orphan_letters(letters_by_event, seen_events)
    return sorted(items, key=lambda item: (item.day, item.order))


def _event_item(
    seq: int,
    row: tuple[Any, ...],
    by_event: dict[str, list[Entry]],
    letters_by_event: dict[str | None, list[DeadLetter]],
    positions: dict[tuple[str, int], int],
    thresholds: Thresholds,
) -> TimelineItem:
    (event_id, event_type, _entity, topic, partition, offset, occurred_at, business_date,
     source_system, document, raw_amount, currency, entry_count, reasons, message,
     waiting_on) = row  # fmt: skip
    last = positions.get((topic, partition), -1)
    state, detail = event_state(
        event_type, int(entry_count), list(reasons), message, waiting_on, offset > last
    )
    amount = money_of(raw_amount, currency)
    band: Band | None = None
    if amount is not None and state in ("held", "dead_lettered"):
        band = band_of(amount[0], amount[1], thresholds)
    return TimelineItem(
        kind="event",
        day=business_date or occurred_at.date(),
        order=(0, seq),
        state=state,
        detail=detail,
        event_id=event_id,
        event_type=event_type,
        source_system=source_system,
        document_id=document,
        amount_minor=None if amount is None else amount[0],
        currency=None if amount is None else amount[1],
        band=None if band is None else band.value,
        position=f"{topic}[{partition}]@{offset}",
        entries=tuple(by_event.get(event_id, ())),
        dead_letters=tuple(letters_by_event.get(event_id, ())),
    )


def _orphan_entries(by_event: dict[str, list[Entry]], seen_events: set[str]) -> list[TimelineItem]:
    items = []
    for seq, (source, group) in enumerate(by_event.items()):
        if source in seen_events:
            continue
        first = group[0]
        kind = "recognition" if first.rule.startswith("revenue") else "entries"
        items.append(
            TimelineItem(
                kind=kind,
                day=first.posting_date,
                order=(1, seq),
                state="posted",
                detail=f"{first.rule} from {source}",
                event_id=source,
                entries=tuple(group),
            )
        )
    return items


def _orphan_letters(
    letters_by_event: dict[str | None, list[DeadLetter]], seen_events: set[str]
) -> list[TimelineItem]:
    items = []
    for seq, (event_id, group) in enumerate(letters_by_event.items()):
        if event_id is not None and event_id in seen_events:
            continue
        for n, letter in enumerate(group):
            items.append(
                TimelineItem(
                    kind="dead_letter",
                    day=letter.failed_at.date(),
                    order=(2, seq, n),
                    state="dead_lettered",
                    detail=f"refused before the ledger ({letter.reason}: {letter.message})",
                    event_id=event_id,
                    position=letter.position,
                    dead_letters=(letter,),
                )
            )
    return items


def page_of(
    items: tuple[TimelineItem, ...], page: int | None, size: int = PAGE_SIZE
) -> tuple[tuple[TimelineItem, ...], int, int]:
    """``(items of the page, page number, page count)``; pages count from 1, oldest first.

    ``page`` None (or beyond the last) gives the last page: the latest events are what
    support looks at first. A page below 1 gives the first.
    """
    pages = max(1, -(-len(items) // size))
    number = pages if page is None or page > pages else max(page, 1)
    start = (number - 1) * size
    return items[start : start + size], number, pages
