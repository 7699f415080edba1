"""The ledger worker: billing, payment, contract, usage and control events in, entries out.

Two agents, both ``concurrency=1``, on the same partition numbers:

- the **sequencer** reads the customer-keyed input topics (billing, payments, contracts,
  usage) and ``control.v1``, dead-letters what does not decode or does not belong, and
  copies every valid record, bytes as they are, to the same partition of
  ``ledger.inputs.v1``. Kafka gives no order across topics; this log is the order the
  ledger applies, so a rebuild from it decides the same way.
- the **ledger** agent reads ``ledger.inputs.v1``. For a customer event it loads the
  customer's books (``customer-ledgers``: the subledger state; ``customer-revenue``: the
  contracts, obligations and schedules), calls the pure :func:`revenue.engine.apply`,
  stores both and sends the entries to the same partition of ``ledger.entries.v1``;
  rejections go to ``dlq.v1``. A ``ClockAdvanced`` tick is checked against the
  partition's last tick (``partition-clocks``: an earlier date goes to the DLQ as
  ``clock_backwards``, the same tick again does nothing), then every customer of the
  partition with holds or revenue still to recognise (``clock-customers``) gets
  :func:`revenue.engine.run_clock`: old holds expire, the others are re-tried, and
  everything due through the tick's date is recognised. The tick (and a ``PeriodClosed``)
  then follows its entries onto ``ledger.entries.v1``, where the batcher
  (:mod:`streams.batcher`) closes its windows on it.

Everything a partition's task does commits in that partition's Kafka transaction.

A customer's books are JSON in the tables; decoding and encoding them was a fifth of the
ledger's CPU per event (issue 7). :class:`BooksStore` keeps the books it last saved for
recent customers (:class:`DecodedBooks`) and serves them again only while the table still
holds the very bytes they were saved as; it writes a table only when the bytes changed.

The loop body stays thin: decode, domain call, emit, count. Decisions live in
:mod:`ledger`; encoding in :mod:`streams.serde`; sends in :mod:`streams.outputs`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import cache
from typing import Any

import faust

from ledger.book import OutcomeKind
from ledger.codec import state_from_json, state_to_json
from ledger.entries import JournalEntry
from ledger.events import ClockAdvanced, Event, PeriodClosed
from ledger.materiality import event_band
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.state import CustomerLedger
from revenue import engine
from revenue.codec import EVENT_TYPES, book_from_json, book_to_json
from revenue.engine import CustomerBooks
from revenue.recognition import changed_schedules, clock_check
from revenue.state import RevenueBook
from streams.admin import ensure_topics
from streams.app import build_app, faust_topic, state_store_options, topic_name
from streams.dlq import (
    Failure,
    origin_headers,
    source_from_token,
    source_of,
    source_token,
)
from streams.entries import entry_record
from streams.health import observe_worker, refuse_unbalanced
from streams.logs import bind_message, bind_record, current_record_type
from streams.metrics import (
    ENTRIES_POSTED,
    EVENTS,
    HANDLE_SECONDS,
    HELD_EVENTS,
    RECOGNITION_RUN_SECONDS,
    held_rows,
    observe_latency,
)
from streams.outputs import Outputs, route_outputs
from streams.reference_reader import ReferenceReader
from streams.schedules import schedule_key, schedule_record
from streams.serde import Codec, DecodeError
from streams.settings import Settings
from streams.supervision import each_event
from streams.topics import (
    BILLING,
    BY_NAME,
    CONTRACTS,
    CONTROL,
    DLQ,
    ENTRIES,
    LEDGER_INPUTS,
    PAYMENTS,
    REFERENCE_TOPICS,
    REVENUE_SCHEDULES,
    TOPICS,
    USAGE,
)

log = logging.getLogger(__name__)

SOURCES = (BILLING, PAYMENTS, CONTRACTS, USAGE, CONTROL)

# Bounds of the decoded-books cache. Bytes are the stored JSON's; the decoded objects take
# about 3 to 3.5 times as much again (measured on the simulated company and on the RSS
# benchmark's customers), so 4 MiB of JSON is some 18 MiB resident for customers of the
# simulated company's size. Small customers decode to far more than that ratio: a 16 MiB
# bound held all 10,000 customers of the RSS benchmark and took its peak from 207 to
# 365 MiB (issue 7, this session), too close to the 500 MB target at 100,000 customers
# (320 MiB measured with 4 MiB); a bound on decoded size would be the better measure.
# A stream that comes back to a customer soon (a burst, a backfill, a month-end) is
# served from it; one that never does only pays the bookkeeping.
DECODED_CUSTOMERS = 10_000
DECODED_BYTES = 4 * 1024 * 1024


# A state is one changelog record, and Faust creates the changelog topics with the broker's
# default limit (message.max.bytes, 1 MiB with the record batch's overhead). A larger
# state cannot be committed: the transaction fails on every retry and the whole partition
# stalls. The event (or tick) that would make it so is dead-lettered instead, naming the
# customer; the other customers of the partition go on (``Settings.max_state_bytes``).
MAX_STATE_BYTES = Settings.model_fields["max_state_bytes"].default
STATE_TOO_LARGE = "customer_state_too_large"  # the DLQ reason


class StateTooLarge(Exception):
    """A customer's state would exceed :data:`MAX_STATE_BYTES` (its changelog record)."""

    def __init__(self, customer_id: str, table: str, size: int, limit: int) -> None:
        super().__init__(
            f"customer {customer_id!r}: its {table} state would be {size:,} bytes, over the"
            f" {limit:,} a changelog record can hold; nothing was applied"
        )
        self.customer_id = customer_id


@dataclass(frozen=True, slots=True)
class LoadedBooks:
    """A customer's books and the table values they were read from or saved as.

    None: nothing stored in that table (the books are then new, empty ones).
    """

    books: CustomerBooks
    raw_ledger: bytes | None
    raw_revenue: bytes | None

    @property
    def size(self) -> int:
        """Bytes of stored JSON: what :class:`DecodedBooks` counts against its bound."""
        return len(self.raw_ledger or b"") + len(self.raw_revenue or b"")

    def stored_as(self, raw_ledger: bytes | None, raw_revenue: bytes | None) -> bool:
        """True when the tables still hold exactly the bytes these books are."""
        return _same_bytes(self.raw_ledger, raw_ledger) and _same_bytes(
            self.raw_revenue, raw_revenue
        )


def _same_bytes(cached: bytes | None, current: bytes | None) -> bool:
    # Identity first: the memory store hands back the object it was given. RocksDB returns
    # a new bytes object on every get, so equal content is the test there (a memcmp).
    if cached is current:
        return True
    return cached is not None and current is not None and cached == current


class DecodedBooks:
    """The books last saved for recent customers, so their next event skips the JSON decode.

    Why it cannot serve anything but the table's state:

    - an entry is added only by :meth:`BooksStore.save`, after the bytes it holds are in
      the tables (written now, or found there unchanged), with the books those bytes decode
      to (the codecs are canonical: equal books, equal bytes, and back);
    - :meth:`take` removes the entry whatever happens next: a handler that fails after
      loading (and could have changed the object it was given), or a held, rejected or
      duplicate event, leaves no entry behind, and the next event decodes the table;
    - an entry is used only when the tables still hold its bytes: after a changelog
      recovery or another worker's writes (a rebalance) the table's bytes are decoded;
    - any failure the handler does not turn into a DLQ record ends the process
      (:mod:`streams.supervision`), the cache with it.

    Bounded (least recently saved out first) by customers and by bytes of stored JSON.
    """

    def __init__(
        self, max_customers: int = DECODED_CUSTOMERS, max_bytes: int = DECODED_BYTES
    ) -> None:
        self.max_customers = max_customers
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, LoadedBooks] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0  # an entry was there but the tables had changed

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of stored JSON held."""
        return self._bytes

    def take(
        self, key: bytes, raw_ledger: bytes | None, raw_revenue: bytes | None
    ) -> CustomerBooks | None:
        """Remove ``key``'s entry; its books if the tables still hold its bytes, else None."""
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self._bytes -= entry.size
        if entry.stored_as(raw_ledger, raw_revenue):
            self.hits += 1
            return entry.books
        self.misses += 1
        return None

    def put(self, key: bytes, loaded: LoadedBooks) -> None:
        """Keep ``loaded`` (books just saved) for ``key``; drop the oldest beyond the bounds."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        size = loaded.size
        if size > self.max_bytes:
            return
        self._entries[key] = loaded
        self._bytes += size
        while len(self._entries) > self.max_customers or self._bytes > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size

    def clear(self) -> None:
        """Forget everything (after a rebalance: the partitions may have moved)."""
        self._entries.clear()
        self._bytes = 0


class BooksStore:
    """Customers' books in the ``customer-ledgers`` and ``customer-revenue`` tables.

    Reads through a :class:`DecodedBooks` cache; writes a table only when its bytes change
    (each write is one more changelog record in the transaction).
    """

    def __init__(
        self,
        ledgers: Any,
        revenue_books: Any,
        decoded: DecodedBooks | None = None,
        max_state_bytes: int = MAX_STATE_BYTES,
    ):
        self.ledgers = ledgers
        self.revenue_books = revenue_books
        self.decoded = DecodedBooks() if decoded is None else decoded
        self.max_state_bytes = max_state_bytes

    def load(self, customer_id: str, *, cached: bool = True) -> LoadedBooks:
        """The customer's books (new ones when nothing is stored).

        ``cached`` False: decode the tables and leave the cache as it is (a read that will
        not be followed by :meth:`save`).
        """
        key = customer_id.encode()
        raw_ledger = self.ledgers.get(key)
        raw_revenue = self.revenue_books.get(key)
        books = self.decoded.take(key, raw_ledger, raw_revenue) if cached else None
        if books is None:
            books = CustomerBooks(
                CustomerLedger(customer_id)
                if raw_ledger is None
                else state_from_json(raw_ledger, EVENT_TYPES),
                RevenueBook(customer_id) if raw_revenue is None else book_from_json(raw_revenue),
            )
        return LoadedBooks(books, raw_ledger, raw_revenue)

    def save(self, loaded: LoadedBooks, books: CustomerBooks) -> None:
        """Store ``books``, the new state of the customer ``loaded`` was read for.

        Raises:
            StateTooLarge: a state's JSON would not fit its changelog record; nothing is
                written (both are encoded and checked before either is stored).
        """
        key = books.ledger.customer_id.encode()
        before = loaded.books
        raw_ledger = loaded.raw_ledger
        new_ledger = new_revenue = None
        # The domain's books are immutable: the same object is the same state, no encode.
        if books.ledger is not before.ledger:
            encoded = state_to_json(books.ledger)
            if encoded != raw_ledger:
                new_ledger = encoded
        raw_revenue = loaded.raw_revenue
        # An empty book is not stored (as before the cache): the table then still decodes
        # to another book than this one, so it must not be served from the cache either.
        cacheable = True
        if books.revenue is not before.revenue:
            if books.revenue.contracts or books.revenue.clock is not None:
                encoded = book_to_json(books.revenue)
                if encoded != raw_revenue:
                    new_revenue = encoded
            else:
                cacheable = False
        for table, encoded in (("customer-ledgers", new_ledger), ("customer-revenue", new_revenue)):
            if encoded is not None and len(encoded) > self.max_state_bytes:
                raise StateTooLarge(
                    books.ledger.customer_id, table, len(encoded), self.max_state_bytes
                )
        if new_ledger is not None:
            self.ledgers[key] = raw_ledger = new_ledger
        if new_revenue is not None:
            self.revenue_books[key] = raw_revenue = new_revenue
        if cacheable:
            self.decoded.put(key, LoadedBooks(books, raw_ledger, raw_revenue))


# Metric children by label values, looked up once: ``labels()`` takes a lock and checks
# the values on every call, several times per event. The label values are topic names,
# record types, outcomes and entities: a few dozen, never customer ids.
@cache
def _events_counter(topic: str, record_type: str, outcome: str) -> Any:
    return EVENTS.labels(topic=topic, type=record_type, outcome=outcome)


@cache
def _entries_counter(entity: str) -> Any:
    return ENTRIES_POSTED.labels(entity=entity)


@cache
def _handle_seconds(topic: str) -> Any:
    return HANDLE_SECONDS.labels(topic=topic)


class LedgerWorker:
    """Wires the ledger agent, its tables and its outputs onto a Faust app."""

    def __init__(self, app: faust.App, settings: Settings, codec: Codec | None = None) -> None:
        self.app = app
        self.settings = settings
        self.codec = codec or Codec(
            max_message_bytes=settings.max_message_bytes,
            schema_registry_url=settings.schema_registry_url,
        )
        self.sources = app.topic(
            *(topic_name(settings, spec) for spec in SOURCES),
            key_serializer="raw",
            value_serializer="raw",
        )
        self.inputs = faust_topic(app, settings, LEDGER_INPUTS)
        self.entries = faust_topic(app, settings, ENTRIES)
        self.schedules = faust_topic(app, settings, REVENUE_SCHEDULES)
        self.outputs = Outputs(
            self.codec, faust_topic(app, settings, DLQ), settings.service_version
        )
        route_outputs(app, self.inputs, self.entries, self.schedules, self.outputs.dlq_topic)
        self.ledgers = app.Table(
            "customer-ledgers",
            partitions=settings.partitions,
            key_type=bytes,  # bytes in and out: "raw" serializers
            value_type=bytes,
            options=state_store_options(settings),
        )
        self.revenue_books = app.Table(
            "customer-revenue",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            options=state_store_options(settings),
        )
        # customer id -> partition, for the customers a tick must visit (holds, revenue).
        self.clock_customers = app.Table(
            "clock-customers",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        # partition -> the last tick applied there: {"date": ..., "event_id": ...}.
        self.partition_clocks = app.Table(
            "partition-clocks",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        # partition -> the periods closed there, as [[entity, period], ...], applied when
        # the PeriodClosed record comes up in that partition's input log.
        self.partition_periods = app.Table(
            "partition-periods",
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
        )
        self.books = BooksStore(
            self.ledgers, self.revenue_books, max_state_bytes=settings.max_state_bytes
        )
        self._references: dict[int, tuple[object, bytes | None, ReferenceData]] = {}
        # partition -> (stored last tick, its date and event id): decoded once per tick.
        self._ticks: dict[int, tuple[bytes, tuple[dt.date, str]]] = {}
        # Closes are not taken from the reader: it sees control.v1 as it arrives, ahead of
        # or behind the partition's input log, and a late event would post in another
        # period than a rebuild from the log decides (found by the demo: a payment of
        # 31 May posted in June live and in May on replay). They are applied in input
        # order instead (`partition_periods`), exactly as `revenue.replay` does.
        self.reference = ReferenceReader(
            settings,
            [topic_name(settings, spec) for spec in (*REFERENCE_TOPICS, CONTROL)],
            self.codec,
            ignore=(PeriodClosed,),
        )
        self._reference_started = False
        self._prefix_length = len(settings.topic_prefix)
        app.agent(self.sources, name="sequencer", concurrency=1)(self._sequencer)
        app.agent(self.inputs, name="ledger", concurrency=1)(self._ledger)

    async def _sequencer(self, stream: faust.StreamT) -> None:
        await each_event(stream.events(), self.sequence)

    async def _ledger(self, stream: faust.StreamT) -> None:
        await self._start_reference()
        await each_event(stream.events(), self.handle)

    async def _start_reference(self) -> None:
        if not self._reference_started:
            self._reference_started = True
            await asyncio.get_running_loop().run_in_executor(None, self.reference.start)

    async def sequence(self, event: Any) -> None:
        """Check one source message and copy it to ``ledger.inputs.v1`` (or the DLQ)."""
        message = event.message
        bind_message(message)
        topic = message.topic[self._prefix_length :]
        if (record := await self._decode(event, topic)) is None:
            return
        await self.outputs.forward(
            self.inputs,
            message.key,
            message.value,
            message.partition,
            origin_headers(source_of(message)),
        )
        _events_counter(topic, record.schema_name, "sequenced").inc()
        observe_latency("sequenced", message.timestamp)

    async def handle(self, event: Any) -> None:
        """Apply one record of ``ledger.inputs.v1`` (the ledger agent's loop body)."""
        message = event.message
        bind_message(message)
        topic = LEDGER_INPUTS.name
        started = time.perf_counter()
        try:
            record = self.codec.decode(message.value)
        except DecodeError as exc:  # the sequencer checked it: only a foreign writer
            await self._reject(event, topic, Failure(str(exc.reason), exc.message))
            return
        bind_record(record)
        if isinstance(record, ClockAdvanced):
            await self._on_clock(event, record, message.partition)
        elif isinstance(record, PeriodClosed):
            # A repeated close (a second copy in the input log) is not forwarded again.
            if self._close_period(record, message.partition):
                await self._forward_control(event)
            _events_counter(topic, record.schema_name, "period_closed").inc()
        else:
            await self._on_customer_event(event, record, topic)
        _handle_seconds(topic).observe(time.perf_counter() - started)

    async def _decode(self, event: Any, topic: str) -> Any:
        message = event.message
        try:
            record = self.codec.decode(message.value)
        except DecodeError as exc:
            return await self._reject(event, topic, Failure(str(exc.reason), exc.message))
        bind_record(record)
        if record.schema_name not in BY_NAME[topic].records:
            failure = Failure(
                "unexpected_record_type",
                f"{record.schema_name} does not belong on {topic}",
                event_id=getattr(record, "event_id", None),
            )
            return await self._reject(event, topic, failure)
        if isinstance(record, Event) and message.key != record.customer_id.encode():
            failure = Failure(
                "key_mismatch",
                f"record key {message.key!r} is not customer_id {record.customer_id!r}",
                event_id=record.event_id,
            )
            return await self._reject(event, topic, failure)
        return record

    async def _reject(self, event: Any, topic: str, failure: Failure) -> None:
        await self.outputs.dead_letter(event, failure)
        _events_counter(topic, current_record_type(), "dlq").inc()
        return None

    def _band(self, event: Any) -> str:
        """Materiality band of an event (its amount in the entity's functional currency)."""
        return str(event_band(event, self.reference.current, self.settings.thresholds))

    def _save(self, loaded: LoadedBooks, books: CustomerBooks, partition: int) -> None:
        key = books.ledger.customer_id.encode()
        self.books.save(loaded, books)
        if engine.needs_clock(books):
            # Written only when it changes: each write is one more changelog record.
            if self.clock_customers.get(key) != str(partition).encode():
                self.clock_customers[key] = str(partition).encode()
        elif key in self.clock_customers:
            del self.clock_customers[key]
        rows = held_rows(books.ledger, self.reference.current, self.settings.thresholds)
        HELD_EVENTS.track(partition, books.ledger.customer_id, rows)

    async def rescan_holds(self, partitions: set[int]) -> None:
        """Count the holds of the customers on ``partitions`` (after a rebalance)."""
        HELD_EVENTS.retain(partitions)
        # Partitions may have moved: what is cached for them is no use (and never served
        # once their tables changed); drop it rather than keep it until it ages out.
        self.books.decoded.clear()
        for count, (key, value) in enumerate(list(self.clock_customers.items()), start=1):
            if int(value) in partitions:
                books = self.books.load(key.decode(), cached=False).books
                rows = held_rows(books.ledger, self.reference.current, self.settings.thresholds)
                HELD_EVENTS.track(int(value), books.ledger.customer_id, rows)
            if count % 500 == 0:
                await asyncio.sleep(0)  # let the agents run between chunks

    async def _on_customer_event(self, event: Any, record: Event, topic: str) -> None:
        message = event.message
        source = source_of(message)
        loaded = self.books.load(record.customer_id)
        outcome = engine.apply(
            loaded.books,
            record,
            self._reference_for(message.partition),
            token=source_token(source),
            as_of=self._last_tick(message.partition)[0],
        )
        _events_counter(topic, record.schema_name, str(outcome.kind)).inc()
        if outcome.kind is OutcomeKind.rejected:
            failure = Failure(str(outcome.status), outcome.message, event_id=record.event_id)
            await self.outputs.dead_letter_source(source, failure, self._band(record))
            return
        if outcome.kind is OutcomeKind.duplicate:
            return
        try:
            self._save(loaded, outcome.books, message.partition)
        except StateTooLarge as exc:
            failure = Failure(STATE_TOO_LARGE, str(exc), event_id=record.event_id)
            await self.outputs.dead_letter_source(source, failure, self._band(record))
            return
        await self._emit(outcome.entries, message.key, message.partition)
        if outcome.entries:
            observe_latency("posted", message.timestamp)
        await self._publish_schedules(
            loaded.books, outcome.books, record.event_id, message.partition
        )
        await self._dead_letter_holds(outcome.rejected_holds)

    async def _emit(self, entries: tuple[JournalEntry, ...], key: bytes, partition: int) -> None:
        await refuse_unbalanced(entries)  # the last check before produce: must never fire
        for entry in entries:
            await self.outputs.emit(self.entries, key, entry_record(entry), partition)
            _entries_counter(entry.entity).inc()

    async def _publish_schedules(
        self, before: CustomerBooks, after: CustomerBooks, source_event_id: str, partition: int
    ) -> None:
        """Send the schedule of every contract it changed (for the revenue waterfall)."""
        customer_id = after.ledger.customer_id
        for contract, rows in changed_schedules(before.revenue, after.revenue):
            record = schedule_record(customer_id, contract, rows, source_event_id)
            key = schedule_key(customer_id, contract.contract_id)
            await self.outputs.emit(self.schedules, key, record, partition)

    async def _dead_letter_holds(self, holds: Any) -> None:
        for hold in holds:
            failure = Failure(
                str(getattr(hold, "status", None) or hold.reason),
                hold.message,
                event_id=hold.event.event_id,
            )
            band = self._band(hold.event)
            await self.outputs.dead_letter_source(source_from_token(hold.token), failure, band)

    def _last_tick(self, partition: int) -> tuple[dt.date | None, str | None]:
        """Date and event id of the last tick applied on ``partition`` (None, None: none)."""
        raw = self.partition_clocks.get(str(partition).encode())
        if raw is None:
            return None, None
        known = self._ticks.get(partition)
        if known is not None and known[0] == raw:  # read on every event, changes per tick
            return known[1]
        last = json.loads(raw)
        tick = dt.date.fromisoformat(last["date"]), last["event_id"]
        self._ticks[partition] = (raw, tick)
        return tick

    def _close_period(self, close: PeriodClosed, partition: int) -> bool:
        """Record ``close`` as applied in ``partition``; False for a repeat (changes nothing)."""
        key = str(partition).encode()
        stored = self.partition_periods.get(key)
        closed = {tuple(pair) for pair in json.loads(stored)} if stored else set()
        if (close.entity, close.period) in closed:
            return False
        closed.add((close.entity, close.period))
        self.partition_periods[key] = json.dumps(sorted(closed)).encode()
        return True

    def _reference_for(self, partition: int) -> ReferenceData:
        """The reader's reference data with the periods closed so far in ``partition``."""
        base = self.reference.current
        stored = self.partition_periods.get(str(partition).encode())
        cached = self._references.get(partition)
        if cached is not None and cached[0] is base and cached[1] == stored:
            return cached[2]
        pairs = [(entity, period) for entity, period in json.loads(stored)] if stored else []
        reference = base.with_closed_periods(pairs)
        self._references[partition] = (base, stored, reference)
        return reference

    async def _on_clock(self, event: Any, tick: ClockAdvanced, partition: int) -> None:
        """Check the tick against the partition's last, then run it for every customer."""
        clock_key = str(partition).encode()
        last_date, last_id = self._last_tick(partition)
        refusal = clock_check(last_date, last_id, tick)
        if refusal is EntryStatus.exists:
            _events_counter(CONTROL.name, tick.schema_name, "duplicate").inc()
            return
        if refusal is not None:
            message = (
                f"business_date {tick.business_date} is before this partition's last tick"
                f" {last_date}"
            )
            await self._reject(
                event, LEDGER_INPUTS.name, Failure(str(refusal), message, event_id=tick.event_id)
            )
            return
        self.partition_clocks[clock_key] = json.dumps(
            {"date": tick.business_date.isoformat(), "event_id": tick.event_id}
        ).encode()
        reference = self._reference_for(partition).with_record(tick)
        customers = sorted(
            key for key, value in self.clock_customers.items() if int(value) == partition
        )
        run_started = time.perf_counter()
        for key in customers:
            loaded = self.books.load(key.decode())
            books = loaded.books
            run = engine.run_clock(
                books, tick, reference, hold_timeout_days=self.settings.hold_timeout_days
            )
            try:
                self._save(loaded, run.books, partition)
            except StateTooLarge as exc:
                # This customer is left as it was (a later tick tries again); the others go on.
                await self.outputs.dead_letter(
                    event, Failure(STATE_TOO_LARGE, str(exc), event_id=tick.event_id)
                )
                continue
            await self._dead_letter_holds(run.expired)
            await self._emit(run.entries, key, partition)
            await self._publish_schedules(books, run.books, tick.event_id, partition)
            await self._dead_letter_holds(run.rejected_holds)
            for contract_id, obligation_id, reason in run.refused:
                failure = Failure(
                    str(EntryStatus.amount_overflows),
                    f"customer {key.decode()!r} contract {contract_id!r} obligation"
                    f" {obligation_id!r}: {reason}",
                    event_id=tick.event_id,
                )
                await self.outputs.dead_letter(event, failure)
        RECOGNITION_RUN_SECONDS.observe(time.perf_counter() - run_started)
        await self._forward_control(event)
        _events_counter(CONTROL.name, tick.schema_name, "clock").inc()

    async def _forward_control(self, event: Any) -> None:
        """Copy an applied tick or period close after the entries it caused.

        The batcher reads only ``ledger.entries.v1``; a control record placed there at the
        point the ledger applied it closes windows at the same place in every replay.
        """
        message = event.message
        await self.outputs.forward(
            self.entries,
            message.key,
            message.value,
            message.partition,
            origin_headers(source_of(message)),
        )


def build_ledger_app(settings: Settings) -> faust.App:
    """The production worker: the ledger agent, its tables, outputs and ``/metrics``."""
    ensure_topics(settings, TOPICS)
    app = build_app(settings)
    worker = LedgerWorker(app, settings)
    observe_worker(app, settings).on_assigned.append(worker.rescan_holds)
    return app


__all__ = [
    "BooksStore",
    "DecodedBooks",
    "LedgerWorker",
    "LoadedBooks",
    "StateTooLarge",
    "build_ledger_app",
]
