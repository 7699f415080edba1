"""What the console's operations pages read: stuck work, reconciliation, periods, health,
charts. Each function takes an open connection (views only: ``revledger_reader``) and
returns small frozen dataclasses; the report queries are those of
:mod:`connectors.postgres.queries` and :mod:`connectors.postgres.recon`, called, not copied.

- stuck work: dead letters not posted since (by reason and materiality band: the original
  value is decoded with the codec, as ``revledger dlq show`` does, and banded by
  :mod:`ledger.materiality`), and events presumably held (see
  :mod:`streams.console.timeline`);
- reconciliation: open breaks by entity and day, and one day's breaks with their events;
- periods: every entity's periods with their status;
- health: per source system the last event seen and its throughput (from the database),
  and the ledger worker group's lag per topic (from the broker, when reachable);
- charts: per entity the revenue waterfall, deferred revenue roll-forward and AR aging.

Must not import: aiohttp, faust.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from dataclasses import dataclass

import psycopg

from connectors.postgres import queries, recon
from ledger.materiality import Band, Thresholds, band_of, event_band
from ledger.reference import ReferenceData
from streams.console.timeline import (
    AMOUNT_SQL,
    CURRENCY_SQL,
    POSTING_EVENT_TYPES,
    event_state,
    money_of,
)
from streams.serde import Codec, DecodeError

_BAND_ORDER = {band.value: n for n, band in enumerate(reversed(list(Band)))}
# How many held events and dead letters the stuck page lists (the counts cover them all).
STUCK_LIST_LIMIT = 500


# --- stuck work ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StuckDeadLetter:
    """A dead letter whose event has posted nothing since."""

    position: str
    reason: str
    message: str
    failed_at: dt.datetime
    customer_id: str | None
    event_id: str | None
    amount_minor: int | None
    currency: str | None
    band: str


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """An event presumably held by the ledger, with what it waits for when known."""

    event_id: str
    event_type: str
    customer_id: str
    entity: str | None
    business_date: dt.date | None
    detail: str
    amount_minor: int | None
    currency: str | None
    band: str


@dataclass(frozen=True, slots=True)
class StuckGroup:
    """How many stuck items share a reason and a band."""

    kind: str  # dead_letter | held
    reason: str
    band: str
    count: int


@dataclass(frozen=True, slots=True)
class StuckWork:
    """The stuck page: groups by reason and band, then the items (most material first)."""

    groups: tuple[StuckGroup, ...]
    dead_letters: tuple[StuckDeadLetter, ...]
    held: tuple[HeldEvent, ...]
    reasons: tuple[str, ...]


_STUCK_LETTERS = (
    "SELECT kafka_partition, kafka_offset, reason, message, failed_at, event_id, original_key,"
    " original_value FROM revledger.dead_letters WHERE entries_since = 0"
    " ORDER BY failed_at, kafka_partition, kafka_offset"
)
_HELD = (
    "SELECT o.event_id, o.event_type, o.customer_id, o.entity, o.business_date,"
    f" {AMOUNT_SQL}, {CURRENCY_SQL},"
    " o.waiting_on, o.kafka_offset > coalesce(p.last_posted_offset, -1)"
    " FROM revledger.event_outcomes AS o"
    " LEFT JOIN revledger.input_positions AS p"
    "   ON p.topic = o.topic AND p.kafka_partition = o.kafka_partition"
    " WHERE o.customer_id IS NOT NULL AND o.entry_count = 0"
    "   AND cardinality(o.dlq_reasons) = 0 AND o.event_type = ANY(%s)"
    " ORDER BY o.business_date, o.event_id"
)


def stuck_work(conn: psycopg.Connection, thresholds: Thresholds, codec: Codec) -> StuckWork:
    """Dead letters not posted since and held events, grouped by reason and band."""
    letters = [_stuck_letter(row, thresholds, codec) for row in conn.execute(_STUCK_LETTERS)]
    held = []
    for event_id, event_type, customer, entity, day, raw, currency, waiting, after in conn.execute(
        _HELD, [sorted(POSTING_EVENT_TYPES)]
    ):
        state, detail = event_state(event_type, 0, [], None, waiting, bool(after))
        if state != "held":
            continue
        amount = money_of(raw, currency)
        band = Band.unknown if amount is None else band_of(amount[0], amount[1], thresholds)
        held.append(
            HeldEvent(
                event_id,
                event_type,
                customer,
                entity,
                day,
                detail,
                None if amount is None else amount[0],
                None if amount is None else amount[1],
                band.value,
            )
        )
    counts: Counter[tuple[str, str, str]] = Counter()
    for letter in letters:
        counts[("dead_letter", letter.reason, letter.band)] += 1
    for event in held:
        reason = "waiting_on_document" if "waits for" in event.detail else "presumed_held"
        counts[("held", reason, event.band)] += 1
    groups = sorted(
        (StuckGroup(kind, reason, band, n) for (kind, reason, band), n in counts.items()),
        key=lambda g: (_BAND_ORDER[g.band], g.kind, -g.count, g.reason),
    )
    by_band = sorted(letters, key=lambda item: _BAND_ORDER[item.band])
    held_by_band = sorted(held, key=lambda item: _BAND_ORDER[item.band])
    return StuckWork(
        tuple(groups),
        tuple(by_band[:STUCK_LIST_LIMIT]),
        tuple(held_by_band[:STUCK_LIST_LIMIT]),
        tuple(sorted({letter.reason for letter in letters})),
    )


def _stuck_letter(row: tuple, thresholds: Thresholds, codec: Codec) -> StuckDeadLetter:
    partition, offset, reason, message, failed_at, event_id, key, value = row
    original: object | None = None
    if value:
        try:
            original = codec.decode(bytes(value))
        except DecodeError:
            original = None
    customer = bytes(key).decode("utf-8", errors="replace") if key else None
    customer = customer or getattr(original, "customer_id", None)
    amount = getattr(original, "amount_minor", None) or getattr(original, "total_minor", None)
    band = Band.unknown if original is None else event_band(original, ReferenceData(), thresholds)
    return StuckDeadLetter(
        position=f"{partition}:{offset}",
        reason=reason,
        message=message,
        failed_at=failed_at,
        customer_id=customer,
        event_id=event_id or getattr(original, "event_id", None),
        amount_minor=amount if type(amount) is int else None,
        currency=getattr(original, "currency", None),
        band=band.value,
    )


# --- reconciliation --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakDay:
    """Open breaks of one entity on one business day."""

    entity: str
    business_date: dt.date
    count: int
    unexplained_by_currency: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class BreakEvent:
    """An event behind a break, with its customer and state (for the drill-down)."""

    event_id: str
    event_type: str | None
    customer_id: str | None
    state: str
    detail: str


def break_days(conn: psycopg.Connection) -> list[BreakDay]:
    """Open breaks (``recon_breaks_open``) counted per entity and day."""
    days: dict[tuple[str, dt.date], list[recon.OpenBreak]] = defaultdict(list)
    for found in recon.open_breaks(conn, recon.Scope()):
        days[(found.entity, found.business_date)].append(found)
    result = []
    for (entity, day), breaks in sorted(days.items()):
        sums: dict[str, int] = defaultdict(int)
        for found in breaks:
            unexplained = found.expected_minor - found.actual_minor - found.explained_minor
            sums[found.currency] += unexplained
        result.append(BreakDay(entity, day, len(breaks), tuple(sorted(sums.items()))))
    return result


def day_breaks(
    conn: psycopg.Connection, entity: str, day: dt.date
) -> tuple[list[recon.OpenBreak], dict[str, BreakEvent]]:
    """One entity's open breaks on ``day``, and every event they name with its state."""
    found = recon.open_breaks(conn, recon.Scope(entity, day))
    ids = sorted({event_id for b in found for event_id in b.event_ids})
    events: dict[str, BreakEvent] = {}
    if ids:
        rows = conn.execute(
            "SELECT o.event_id, o.event_type, o.customer_id, o.entry_count, o.dlq_reasons,"
            " o.dlq_message, o.waiting_on,"
            " o.kafka_offset > coalesce(p.last_posted_offset, -1)"
            " FROM revledger.event_outcomes AS o LEFT JOIN revledger.input_positions AS p"
            "   ON p.topic = o.topic AND p.kafka_partition = o.kafka_partition"
            " WHERE o.event_id = ANY(%s)",
            [ids],
        ).fetchall()
        for event_id, event_type, customer, count, reasons, message, waiting, after in rows:
            state, detail = event_state(
                event_type, int(count), list(reasons), message, waiting, bool(after)
            )
            events[event_id] = BreakEvent(event_id, event_type, customer, state, detail)
    return found, events


# --- periods ---------------------------------------------------------------------------------


def entities(conn: psycopg.Connection) -> list[str]:
    """Every entity with a period or an entry, sorted."""
    rows = conn.execute("SELECT DISTINCT entity FROM revledger.period_status ORDER BY 1")
    return [row[0] for row in rows]


def all_periods(conn: psycopg.Connection) -> dict[str, list[queries.PeriodRow]]:
    """Per entity, its periods in order (:func:`connectors.postgres.queries.periods`)."""
    return {entity: queries.periods(conn, entity) for entity in entities(conn)}


# --- health ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceSystem:
    """One source system: events received, the last one, and recent throughput."""

    source_system: str
    event_count: int
    last_occurred_at: dt.datetime | None
    last_event_id: str | None
    events_last_hour: int
    events_last_day: int


def source_systems(conn: psycopg.Connection) -> list[SourceSystem]:
    """Per source system, from ``source_system_activity``."""
    rows = conn.execute(
        "SELECT source_system, event_count, last_occurred_at, last_event_id, events_last_hour,"
        " events_last_day FROM revledger.source_system_activity ORDER BY source_system"
    ).fetchall()
    return [SourceSystem(*row) for row in rows]


def dlq_by_reason(conn: psycopg.Connection) -> list[queries.DlqReasonRow]:
    """Dead letters per reason (:func:`connectors.postgres.queries.dlq_summary`)."""
    return queries.dlq_summary(conn)


# --- charts ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EntityCharts:
    """The figures behind an entity's three charts, as of its latest posting date."""

    entity: str
    as_of: dt.date
    waterfall: tuple[queries.WaterfallPeriod, ...]
    rollforward: tuple[queries.RollforwardRow, ...]
    aging: tuple[queries.AgingTotal, ...]


def entity_charts(conn: psycopg.Connection, entity: str) -> EntityCharts | None:
    """The chart figures of ``entity`` as of its latest posting date (None: no entries)."""
    as_of = queries.latest_posting_date(conn, entity)
    if as_of is None:
        return None
    rows = queries.waterfall(conn, entity, as_of)
    return EntityCharts(
        entity=entity,
        as_of=as_of,
        waterfall=tuple(queries.waterfall_by_period(rows)),
        rollforward=tuple(queries.deferred_rollforward(conn, entity)),
        aging=tuple(queries.aging_totals(queries.ar_aging(conn, entity, as_of))),
    )
