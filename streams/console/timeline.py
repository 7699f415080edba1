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
before the ledger) are items too, with their reason.

Paging is done by PostgreSQL: one query orders every item of the customer (events, orphan
entries, orphan dead letters, see :data:`_ITEMS_CTE`), counts them per state and returns only
the :data:`PAGE_SIZE` items of the page asked for (the latest page unless told); then the
page's events, entries, lines and dead letters are read by id. A customer with 10,000
events costs one ordered scan of its events, not 10,000 assembled items.

Then the customer's balances per entity and currency (sums of its statement), its open
invoices, and its latest contracts with their schedules against what was recognised
(:func:`customer_contracts` pages through all of them).

Reads views only (``revledger_reader``). Must not import: aiohttp, faust.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

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
# Contracts on the customer's page: the latest booked, schedules folded; all of them are a
# link away (/contracts?customer=...), CONTRACTS_PAGE_SIZE a page. 3,232 contracts with
# their schedules unfolded were 1.3 MB of the benchmark's 1.7 MB page.
CONTRACTS_SHOWN = 10
CONTRACTS_PAGE_SIZE = 50
# Every state an item can have, in the order of the module docstring.
STATES = ("posted", "dead_lettered", "not_processed", "held", "applied")


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

    kind: str  # event | recognition | entries | dead_letter
    day: dt.date
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
class PageRow:
    """One item of a page as the ordering query names it; the details are read after.

    ``key``: the event id (events), the source event id (entries without an event of the
    customer), the DLQ record's event id if any (dead letters); ``partition`` and
    ``offset``: the DLQ record's position for a dead letter.
    """

    kind: str
    key: str | None
    partition: int | None
    offset: int | None
    after_last_posted: bool


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
class Contracts:
    """One page of a customer's contracts, the latest booked first."""

    customer_id: str
    contracts: tuple[Contract, ...]
    total: int
    page: int
    pages: int


@dataclass(frozen=True, slots=True)
class Timeline:
    """Everything the console shows on a customer's page.

    ``items`` are the page's items in order; ``counts`` are per state over all the
    customer's items (every page); ``contracts`` the latest :data:`CONTRACTS_SHOWN` of
    ``contracts.total``.
    """

    customer_id: str
    items: tuple[TimelineItem, ...]
    balances: tuple[Balance, ...]
    open_invoices: tuple[OpenInvoice, ...]
    contracts: Contracts
    counts: dict[str, int] = field(default_factory=dict)
    page: int = 1
    pages: int = 1

    @property
    def total(self) -> int:
        """Items of the customer's timeline, every page."""
        return sum(self.counts.values())

    @property
    def found(self) -> bool:
        """True when the database knows anything of the customer."""
        return bool(self.total or self.balances or self.contracts.total)


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

# Every item of a customer with its state and its place, as rows of `items`:
# - its events, state by the rules of event_state() (keep the two in step: the
#   integration test tallies both), placed by (day, 0, topic, partition, offset);
# - its entries whose source is not one of its events (recognition: `<tick>/<customer>`),
#   one item per source, placed by the first entry (posting date, then 1, partition,
#   offset, entry id);
# - its dead letters whose event is not one of its events (undecodable, refused before the
#   ledger), found by the record's key, placed by (failure day, 2, failed_at, partition,
#   offset).
# `day` is the business date, else the event's or entry's date or the day of the failure.
# The last posted input of each of the customer's partitions is one backward index scan
# per partition (max() over source_events_offset_idx), not a scan of all its events.
_ITEMS_CTE = """
WITH events AS (
    SELECT o.event_id, o.event_type, o.topic, o.kafka_partition, o.kafka_offset,
           coalesce(o.business_date, o.occurred_at::date) AS day,
           o.entry_count, cardinality(o.dlq_reasons) AS letters
      FROM revledger.event_outcomes AS o
     WHERE o.customer_id = %(customer)s
), positions AS (
    SELECT p.topic, p.kafka_partition,
           (SELECT max(q.kafka_offset) FROM revledger.event_outcomes AS q
             WHERE q.topic = p.topic AND q.kafka_partition = p.kafka_partition
               AND q.entry_count > 0) AS last_posted
      FROM (SELECT DISTINCT topic, kafka_partition FROM events) AS p
), items AS (
    SELECT 'event' AS kind, e.day, 0 AS rank, e.topic AS k_topic, NULL::timestamptz AS k_time,
           e.kafka_partition AS k_partition, e.kafka_offset AS k_offset, NULL::text AS k_id,
           e.event_id AS key, e.kafka_offset > coalesce(p.last_posted, -1) AS after_last_posted,
           CASE WHEN e.entry_count > 0 THEN 'posted'
                WHEN e.letters > 0 THEN 'dead_lettered'
                WHEN NOT e.event_type = ANY(%(posting)s) THEN 'applied'
                WHEN e.kafka_offset > coalesce(p.last_posted, -1) THEN 'not_processed'
                ELSE 'held' END AS state
      FROM events AS e LEFT JOIN positions AS p USING (topic, kafka_partition)
    UNION ALL
    SELECT CASE WHEN starts_with(f.rule, 'revenue') THEN 'recognition' ELSE 'entries' END,
           f.posting_date, 1, NULL, NULL, f.kafka_partition, f.kafka_offset, f.entry_id,
           f.source_event_id, false, 'posted'
      FROM (SELECT DISTINCT ON (x.source_event_id) x.source_event_id, x.rule, x.posting_date,
                   x.kafka_partition, x.kafka_offset, x.entry_id
              FROM revledger.entry_batches AS x
             WHERE x.customer_id = %(customer)s
               AND NOT EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = x.source_event_id)
             ORDER BY x.source_event_id, x.kafka_partition, x.kafka_offset, x.entry_id) AS f
    UNION ALL
    SELECT 'dead_letter', d.failed_at::date, 2, NULL, d.failed_at, d.kafka_partition,
           d.kafka_offset, NULL, d.event_id, false, 'dead_lettered'
      FROM revledger.dead_letters AS d
     WHERE d.original_key = %(key)s
       AND (d.event_id IS NULL
            OR NOT EXISTS (SELECT 1 FROM events AS e WHERE e.event_id = d.event_id))
)
SELECT kind, key, k_partition, k_offset, after_last_posted, count(*) OVER (),
"""
_COUNTS = ", ".join(f"count(*) FILTER (WHERE state = '{state}') OVER ()" for state in STATES)
_ORDER = ("day", "rank", "k_topic", "k_time", "k_partition", "k_offset", "k_id")
# The order is total (event positions, entry ids and DLQ positions are unique), so the
# descending query is exactly the ascending one read backwards.
_ITEMS_ASC = (
    f"{_ITEMS_CTE} {_COUNTS} FROM items ORDER BY {', '.join(_ORDER)}"
    " LIMIT %(limit)s OFFSET %(offset)s"
)
_ITEMS_DESC = (
    f"{_ITEMS_CTE} {_COUNTS} FROM items ORDER BY {', '.join(c + ' DESC' for c in _ORDER)}"
    " LIMIT %(limit)s"
)
_MAX_OFFSET = 2**62
_PAGE_EVENTS = (
    "SELECT event_id, event_type, entity, topic, kafka_partition, kafka_offset, occurred_at,"
    f" business_date, source_system, {DOCUMENT_SQL}, {AMOUNT_SQL}, {CURRENCY_SQL},"
    " entry_count, dlq_reasons, dlq_message, waiting_on"
    " FROM revledger.event_outcomes WHERE customer_id = %s AND event_id = ANY(%s)"
)
_ENTRIES = (
    "SELECT entry_id, rule, posting_date, period, description, source_event_id, batch_id,"
    " erp_status, erp_document_id, erp_message FROM revledger.entry_batches"
    " WHERE customer_id = %s AND source_event_id = ANY(%s)"
    " ORDER BY kafka_partition, kafka_offset, entry_id"
)
_LINES = (
    "SELECT entry_id, line_no, account, side, debit_minor + credit_minor, currency"
    " FROM revledger.account_activity WHERE entry_id = ANY(%s) ORDER BY entry_id, line_no"
)
_DEAD_LETTERS = (
    "SELECT kafka_partition, kafka_offset, reason, message, failed_at, source_topic,"
    " source_partition, source_offset, event_id FROM revledger.dead_letters"
    " WHERE event_id = ANY(%(events)s) OR (kafka_partition, kafka_offset) IN"
    "   (SELECT * FROM unnest(%(partitions)s::integer[], %(offsets)s::bigint[]))"
    " ORDER BY failed_at, kafka_partition, kafka_offset"
)
_BALANCES = (
    "SELECT entity, currency, sum(debit_minor - credit_minor)"
    " FROM revledger.customer_statement WHERE customer_id = %s"
    " GROUP BY entity, currency ORDER BY entity, currency"
)
_OPEN_INVOICES = (
    "SELECT invoice_id, entity, currency, min(issue_date), min(due_date),"
    " min(invoice_status), min(invoice_total_minor), sum(amount_minor)"
    " FROM revledger.ar_open_items WHERE customer_id = %s AND invoice_id IS NOT NULL"
    " GROUP BY invoice_id, entity, currency HAVING sum(amount_minor) <> 0"
    " ORDER BY min(due_date), invoice_id"
)
_CONTRACT_COUNT = (
    "SELECT count(DISTINCT contract_id) FROM revledger.contract_schedules WHERE customer_id = %s"
)
_CONTRACT_HEADS = (
    "SELECT contract_id, entity, currency, total_price_minor, booking_date, service_start,"
    " service_end, status FROM revledger.contract_schedules WHERE customer_id = %s"
    " GROUP BY contract_id, entity, currency, total_price_minor, booking_date, service_start,"
    " service_end, status ORDER BY booking_date DESC, contract_id DESC LIMIT %s OFFSET %s"
)
_SCHEDULES = (
    "SELECT contract_id, period, sum(scheduled_minor) FROM revledger.contract_schedules"
    " WHERE customer_id = %s AND contract_id = ANY(%s) AND period IS NOT NULL"
    " GROUP BY contract_id, period"
)
_RECOGNISED = (
    "SELECT contract_id, period, sum(amount_minor) FROM revledger.revenue_waterfall"
    " WHERE customer_id = %s AND kind = 'recognised' AND contract_id = ANY(%s)"
    " GROUP BY contract_id, period"
)


def customer_timeline(
    conn: psycopg.Connection,
    customer_id: str,
    thresholds: Thresholds,
    page: int | None = None,
    size: int = PAGE_SIZE,
) -> Timeline:
    """Read page ``page`` of ``customer_id``'s timeline (the latest page when None or
    beyond the last) with the counts per state, balances, open invoices and latest
    contracts.

    Runs its reads in one repeatable-read transaction, so an entry and its event, and a
    page and its counts, come from the same snapshot (the projection writes while we read).
    """
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        rows, counts, number, pages = _page_rows(conn, customer_id, page, size)
        items = _page_items(conn, customer_id, rows, thresholds)
        balances = [
            Balance(entity, currency, int(amount))
            for entity, currency, amount in conn.execute(_BALANCES, [customer_id])
        ]
        invoices = [OpenInvoice(*row) for row in conn.execute(_OPEN_INVOICES, [customer_id])]
        contracts = _contracts(conn, customer_id, 1, CONTRACTS_SHOWN)
    return Timeline(
        customer_id,
        tuple(items),
        tuple(balances),
        tuple(invoices),
        contracts,
        counts,
        number,
        pages,
    )


def _page_rows(
    conn: psycopg.Connection, customer_id: str, page: int | None, size: int
) -> tuple[list[PageRow], dict[str, int], int, int]:
    """The page's rows in order, the counts per state, the page number and page count.

    One query each way: a page asked for by number is an OFFSET; the latest page (the
    default, or a number beyond the last) is the latest ``size`` items read backwards, of
    which the last page keeps ``total - (pages - 1) * size``: no count query first.
    """
    params: dict[str, Any] = {
        "customer": customer_id,
        "key": customer_id.encode(),
        "posting": sorted(POSTING_EVENT_TYPES),
        "limit": size,
    }
    if page is not None:
        wanted = max(page, 1)
        # Clamped: a page number typed into the URL must not overflow OFFSET's bigint.
        offset = min((wanted - 1) * size, _MAX_OFFSET)
        found = conn.execute(_ITEMS_ASC, {**params, "offset": offset}).fetchall()
        if found or wanted == 1:
            total, counts = _tally(found)
            number, pages = page_window(total, wanted, size)
            return [_page_row(row) for row in found], counts, number, pages
    latest = conn.execute(_ITEMS_DESC, params).fetchall()
    total, counts = _tally(latest)
    number, pages = page_window(total, None, size)
    kept = latest[: total - (pages - 1) * size]
    return [_page_row(row) for row in reversed(kept)], counts, number, pages


def _page_row(row: tuple[Any, ...]) -> PageRow:
    kind, key, partition, offset, after = row[:5]
    return PageRow(kind, key, partition, offset, bool(after))


def _tally(rows: list[tuple[Any, ...]]) -> tuple[int, dict[str, int]]:
    """The total and the non-zero counts per state, from the window columns of a row."""
    if not rows:
        return 0, {}
    total, *per_state = rows[0][5:]
    return int(total), {s: int(n) for s, n in zip(STATES, per_state, strict=True) if n}


def _page_items(
    conn: psycopg.Connection, customer_id: str, rows: list[PageRow], thresholds: Thresholds
) -> list[TimelineItem]:
    """Read the details of the page's rows (by id) and assemble its items."""
    event_ids = [row.key for row in rows if row.kind == "event"]
    sources = [row.key for row in rows if row.kind != "dead_letter"]
    letter_rows = [row for row in rows if row.kind == "dead_letter"]
    events = {
        row[0]: row for row in conn.execute(_PAGE_EVENTS, [customer_id, event_ids]).fetchall()
    }
    entries = _entries(conn, customer_id, sources)
    letters = conn.execute(
        _DEAD_LETTERS,
        {
            "events": event_ids,
            "partitions": [row.partition for row in letter_rows],
            "offsets": [row.offset for row in letter_rows],
        },
    ).fetchall()
    return assemble(rows, events, entries, letters, thresholds)


def _entries(conn: psycopg.Connection, customer_id: str, sources: list[Any]) -> list[Entry]:
    rows = conn.execute(_ENTRIES, [customer_id, sources]).fetchall()
    lines: dict[str, list[Line]] = defaultdict(list)
    ids = sorted({row[0] for row in rows})
    for entry_id, line_no, account, side, amount, currency in conn.execute(_LINES, [ids]):
        lines[entry_id].append(Line(line_no, account, side, int(amount), currency))
    return [Entry(*row, lines=tuple(lines.get(row[0], ()))) for row in rows]


def customer_contracts(
    conn: psycopg.Connection, customer_id: str, page: int = 1, size: int = CONTRACTS_PAGE_SIZE
) -> Contracts:
    """Page ``page`` of the customer's contracts (latest booked first) with their schedules
    against what was recognised; a page beyond the last gives the last."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        return _contracts(conn, customer_id, page, size)


def _contracts(conn: psycopg.Connection, customer_id: str, page: int, size: int) -> Contracts:
    row = conn.execute(_CONTRACT_COUNT, [customer_id]).fetchone()
    total = int(row[0]) if row else 0
    number, pages = page_window(total, page, size)
    heads = conn.execute(_CONTRACT_HEADS, [customer_id, size, (number - 1) * size]).fetchall()
    ids = [head[0] for head in heads]
    periods: dict[str, dict[str, int]] = defaultdict(dict)
    for contract, period, scheduled in conn.execute(_SCHEDULES, [customer_id, ids]):
        periods[contract][period] = int(scheduled or 0)
    recognised = {
        (contract, period): int(amount)
        for contract, period, amount in conn.execute(_RECOGNISED, [customer_id, ids])
    }
    for contract, period in recognised:
        periods[contract].setdefault(period, 0)
    contracts = tuple(
        Contract(
            *head,
            periods=tuple(
                SchedulePeriod(p, amount, recognised.get((head[0], p), 0))
                for p, amount in sorted(periods[head[0]].items())
            ),
        )
        for head in heads
    )
    return Contracts(customer_id, contracts, total, number, pages)


# --- assembling (pure) -----------------------------------------------------------------------


def event_state(
    event_type: str,
    entry_count: int,
    dlq_reasons: list[str],
    dlq_message: str | None,
    waiting_on: str | None,
    after_last_posted: bool,
) -> tuple[str, str]:
    """``(state, detail)`` of one event: see the module docstring for the order.

    The same rules decide the counts per state in SQL (:data:`_ITEMS_CTE`).
    """
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
    rows: list[PageRow],
    events: dict[str, tuple[Any, ...]],
    entries: list[Entry],
    letters: list[tuple[Any, ...]],
    thresholds: Thresholds,
) -> list[TimelineItem]:
    """The page's items, in the order of ``rows``, from the details read (pure).

    ``events``: rows of ``event_outcomes`` by event id; ``entries``: the entries sourced
    from the page's events and sources; ``letters``: ``dead_letters`` rows of the page's
    events and of its dead-letter items (by position).
    """
    by_source: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        by_source[entry.source_event_id].append(entry)
    by_event: dict[str, list[DeadLetter]] = defaultdict(list)
    by_position: dict[tuple[int | None, int | None], DeadLetter] = {}
    for row in letters:
        letter = _dead_letter(row)
        if letter.event_id is not None:
            by_event[letter.event_id].append(letter)
        by_position[(row[0], row[1])] = letter
    items: list[TimelineItem] = []
    for row in rows:
        if row.kind == "event":
            event = events[str(row.key)]
            items.append(_event_item(row, event, by_source, by_event, thresholds))
        elif row.kind == "dead_letter":
            items.append(_orphan_letter(by_position[(row.partition, row.offset)]))
        else:
            items.append(_orphan_entries(row, by_source[str(row.key)]))
    return items


def _event_item(
    row: PageRow,
    event: tuple[Any, ...],
    by_source: dict[str, list[Entry]],
    by_event: dict[str, list[DeadLetter]],
    thresholds: Thresholds,
) -> TimelineItem:
    (event_id, event_type, _entity, topic, partition, offset, occurred_at, business_date,
     source_system, document, raw_amount, currency, entry_count, reasons, message,
     waiting_on) = event  # fmt: skip
    state, detail = event_state(
        event_type, int(entry_count), list(reasons), message, waiting_on, row.after_last_posted
    )
    amount = money_of(raw_amount, currency)
    band: Band | None = None
    if amount is not None and state in ("held", "dead_lettered"):
        band = band_of(amount[0], amount[1], thresholds)
    return TimelineItem(
        kind="event",
        day=business_date or occurred_at.date(),
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
        entries=tuple(by_source.get(event_id, ())),
        dead_letters=tuple(by_event.get(event_id, ())),
    )


def _orphan_entries(row: PageRow, group: list[Entry]) -> TimelineItem:
    first = group[0]
    return TimelineItem(
        kind=row.kind,
        day=first.posting_date,
        state="posted",
        detail=f"{first.rule} from {row.key}",
        event_id=row.key,
        entries=tuple(group),
    )


def _orphan_letter(letter: DeadLetter) -> TimelineItem:
    return TimelineItem(
        kind="dead_letter",
        day=letter.failed_at.date(),
        state="dead_lettered",
        detail=f"refused before the ledger ({letter.reason}: {letter.message})",
        event_id=letter.event_id,
        position=letter.position,
        dead_letters=(letter,),
    )


def page_window(total: int, page: int | None, size: int) -> tuple[int, int]:
    """``(page number, page count)`` for ``total`` items; pages count from 1, oldest first.

    ``page`` None (or beyond the last) gives the last page: the latest events are what
    support looks at first. A page below 1 gives the first.
    """
    pages = max(1, -(-total // size))
    number = pages if page is None or page > pages else max(page, 1)
    return number, pages


def page_links(page: int, pages: int, around: int = 2) -> list[int | None]:
    """The page numbers a pager links to: the first, the last, and ``around`` either side of
    ``page``; None where numbers are left out (an ellipsis)."""
    shown = sorted({1, pages, *range(max(1, page - around), min(pages, page + around) + 1)})
    links: list[int | None] = []
    for number in shown:
        if links and number - (links[-1] or 0) > 1:
            links.append(None)
        links.append(number)
    return links
