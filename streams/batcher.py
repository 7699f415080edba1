"""The batcher: ``ledger.entries.v1`` in, balanced journal batches for the ERP out.

A Faust app of its own (app id ``<app id>-batcher``, ``revledger batcher``), so it
restarts, scales and replays without the ledger: one agent, ``concurrency=1``, reads the
entries topic. Each partition's :class:`ledger.batching.BatcherState` is the pure core's;
this module only loads it, calls :func:`ledger.batching.add_entry` (an entry),
:func:`~ledger.batching.on_tick` (a ``ClockAdvanced`` the ledger placed after the entries
it caused) or :func:`~ledger.batching.on_period_closed`, stores the result and sends the
closed batches to the same partition of ``erp.journal-batches.v1``, keyed by entity,
inside the partition's Kafka transaction. Batch ids, sequences, dates and entry
positions all come from the entries log, so a new consumer group over the same log, or a
rebuild of the log into new topics, sends the same bytes.

A batch's ``first_source_offset`` / ``last_source_offset`` are **entry positions**: the
number of entries the batcher applied on the partition before the batch's first / last
entry (0 for the partition's first entry). Not Kafka offsets: those also count
transaction markers and aborted records, so a rebuild gives other ones. The position
counter is kept in the partition header (``next_position``). An entry id already in an
open or held window of its (entity, period) is a duplicate: counted
(``outcome="duplicate"``), logged and skipped, never batched twice.

State lives in two tables, so a window of 500 entries does not rewrite 500 entries on
every new one: ``batcher-window-entries`` holds one row per entry of an open or waiting
window (written once, deleted when the window becomes a batch), ``batcher-partitions``
the small per-partition header (windows, waiting windows, next sequences, last offset
applied). A partition's state is kept in memory between messages and reloaded from the
tables when the header shows another worker wrote it since.

A window held on a missing GL mapping (``gl_mapping_missing``) shows in
``revledger_journal_batches_held`` and the log; it is retried at the partition's next
message once the reference data changed, and on every tick.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import faust

from ledger.batching import (
    Batch,
    BatcherState,
    BatchPolicy,
    BatchRun,
    Window,
    add_entry,
    on_period_closed,
    on_tick,
    release_waiting,
)
from ledger.codec import entry_from_dict, entry_to_dict
from ledger.errors import InvariantViolation
from ledger.events import ClockAdvanced, PeriodClosed, Record
from ledger.reference import ReferenceData
from streams.admin import ensure_topics
from streams.app import build_app, faust_topic, state_store_options, topic_name
from streams.batches import batch_record
from streams.dlq import Failure
from streams.entries import entry_from_record
from streams.health import observe_worker
from streams.logs import bind_message, bind_record, current_record_type
from streams.messages import JournalEntryPosted
from streams.metrics import BATCH_LINES, BATCHES_EMITTED, BATCHES_HELD, EVENTS, HANDLE_SECONDS
from streams.outputs import Outputs, route_outputs
from streams.reference_reader import ReferenceReader
from streams.serde import Codec, DecodeError
from streams.settings import Settings
from streams.supervision import each_event
from streams.topics import DLQ, ENTRIES, JOURNAL_BATCHES, REF_ENTITIES, REF_GL_MAPPINGS, TOPICS

log = logging.getLogger(__name__)


def batch_policy(settings: Settings) -> BatchPolicy:
    """The batching policy configured by ``settings``."""
    return BatchPolicy(
        max_entries=settings.batch_max_entries,
        max_age_days=settings.batch_max_age_days,
        dimensions=tuple(name for name in settings.batch_dimensions.split(",") if name),
    )


class InvalidEntry(ValueError):
    """An entries-topic record that is not a valid domain entry (only a foreign writer)."""


class DuplicateEntry(ValueError):
    """An entry whose id is already in a window of the partition (the ledger posted it twice).

    Batching it would put one entry id twice in a batch, which the batch record refuses
    (``an entry id appears twice``): the batcher crashed on it, on every restart.
    """

    def __init__(self, entry_id: str) -> None:
        super().__init__(f"entry {entry_id} is already in a batch window of this partition")
        self.entry_id = entry_id


def _already_windowed(state: BatcherState, entity: str, period: str, entry_id: str) -> bool:
    """Whether ``entry_id`` is in the open or a held window of (entity, period).

    A repeat of an entry has its entity and period, so only those windows are searched.
    """
    windows = [w for w in state.waiting if (w.entity, w.period) == (entity, period)]
    current = state.windows.get((entity, period))
    if current is not None:
        windows.append(current)
    return any(e.entry_id == entry_id for w in windows for _, e in w.entries)


def apply_record(
    state: BatcherState,
    position: int,
    record: JournalEntryPosted | ClockAdvanced | PeriodClosed,
    reference: ReferenceData,
    policy: BatchPolicy,
) -> BatchRun:
    """One entries-topic record through the pure core: the agent's and the replay's step.

    ``position`` is the entry's position on the partition (entries applied before it);
    it becomes the batch's first/last source offset. Ignored for ticks and closes.

    Raises:
        InvalidEntry: ``record`` is an entry the domain refuses.
        DuplicateEntry: its entry id is already in a window (skip it; nothing changed).
    """
    match record:
        case JournalEntryPosted():
            try:
                entry = entry_from_record(record)
            except (InvariantViolation, ValueError) as exc:
                raise InvalidEntry(str(exc)) from exc
            if _already_windowed(state, entry.entity, entry.period, entry.entry_id):
                raise DuplicateEntry(entry.entry_id)
            return add_entry(state, entry, position, reference, policy)
        case ClockAdvanced():
            return on_tick(state, record.business_date, reference, policy)
        case PeriodClosed():
            return on_period_closed(state, record.entity, record.period, reference, policy)
    raise TypeError(f"{type(record).__name__} is not an entries-topic record")


def replay_batches(
    partition: int,
    records: Iterable[tuple[int, Record]],
    reference: ReferenceData,
    policy: BatchPolicy,
) -> tuple[list[Batch], BatcherState]:
    """The batches of one partition's entries log (``(offset, record)`` in offset order).

    The oracle of the agent when the reference data does not change mid-log: the same
    records give the same batches, byte for byte once encoded. The Kafka offsets only
    order the records: batches carry entry positions, counted here as the agent does
    (a duplicated entry is skipped and not counted). Returns the batches in emit order
    and the final state (the windows still open).
    """
    state, batches, position = BatcherState(partition=partition), [], 0
    for _offset, record in records:
        try:
            run = apply_record(state, position, record, reference, policy)
        except DuplicateEntry:
            continue
        position += isinstance(record, JournalEntryPosted)
        state = run.state
        batches.extend(run.batches)
    return batches, state


class WindowStore:
    """One partition's batcher state in two Faust tables (see the module docstring)."""

    def __init__(self, headers: Any, rows: Any) -> None:
        self.headers = headers
        self.rows = rows

    def last_offset(self, partition: int) -> int | None:
        """Offset of the last entries-topic message applied on ``partition``, if any."""
        raw = self.headers.get(_partition_key(partition))
        return None if raw is None else json.loads(raw)["last_offset"]

    def next_position(self, partition: int) -> int:
        """Position the next entry of ``partition`` gets (entries applied so far).

        A header written before positions were kept continues after its last offset, so
        positions keep rising (such a store's batches were already offset-numbered).
        """
        raw = self.headers.get(_partition_key(partition))
        if raw is None:
            return 0
        header = json.loads(raw)
        return header.get("next_position", header["last_offset"] + 1)

    def load(self, partition: int) -> BatcherState:
        """Rebuild the partition's state from the tables."""
        raw = self.headers.get(_partition_key(partition))
        if raw is None:
            return BatcherState(partition=partition)
        header = json.loads(raw)
        windows = [self._window(partition, w) for w in header["windows"]]
        return BatcherState(
            partition=partition,
            windows={(w.entity, w.period): w for w in windows},
            next_sequence=dict(header["next_sequence"]),
            waiting=tuple(self._window(partition, w) for w in header["waiting"]),
        )

    def save(
        self,
        partition: int,
        before: BatcherState,
        after: BatcherState,
        offset: int,
        next_position: int | None = None,
    ) -> None:
        """Write what changed from ``before`` to ``after``: new rows, gone windows, header.

        ``next_position``: the position counter after this record (default: unchanged).
        """
        if next_position is None:
            next_position = self.next_position(partition)
        old = {w.window_id: len(w.entries) for w in _all_windows(before)}
        new = {w.window_id: w for w in _all_windows(after)}
        for window_id, window in new.items():
            for index in range(old.get(window_id, 0), len(window.entries)):
                row_offset, entry = window.entries[index]
                self.rows[_row_key(partition, window_id, index)] = json.dumps(
                    {"offset": row_offset, "entry": entry_to_dict(entry)}, separators=(",", ":")
                ).encode()
        for window_id, count in old.items():
            if window_id not in new:
                for index in range(count):
                    del self.rows[_row_key(partition, window_id, index)]
        header = {
            "last_offset": offset,
            "next_position": next_position,
            "windows": [_window_header(w) for _, w in sorted(after.windows.items())],
            "waiting": [_window_header(w) for w in after.waiting],
            "next_sequence": dict(sorted(after.next_sequence.items())),
        }
        self.headers[_partition_key(partition)] = json.dumps(header, separators=(",", ":")).encode()

    def _window(self, partition: int, header: dict) -> Window:
        window_id = f"{header['entity']}/{header['period']}/{header['first_offset']}"
        entries = []
        for index in range(header["count"]):
            row = json.loads(self.rows[_row_key(partition, window_id, index)])
            entries.append((row["offset"], entry_from_dict(row["entry"])))
        return Window(
            header["entity"],
            header["period"],
            dt.date.fromisoformat(header["opened_on"]),
            tuple(entries),
        )


def _all_windows(state: BatcherState) -> list[Window]:
    return [*state.windows.values(), *state.waiting]


def _window_header(window: Window) -> dict:
    return {
        "entity": window.entity,
        "period": window.period,
        "opened_on": window.opened_on.isoformat(),
        "first_offset": window.entries[0][0],
        "count": len(window.entries),
    }


def _partition_key(partition: int) -> bytes:
    return str(partition).encode()


def _row_key(partition: int, window_id: str, index: int) -> bytes:
    return f"{partition}/{window_id}/{index}".encode()


class BatcherWorker:
    """Wires the batcher agent, its tables and its outputs onto a Faust app."""

    def __init__(self, app: faust.App, settings: Settings, codec: Codec | None = None) -> None:
        self.app = app
        self.settings = settings
        self.policy = batch_policy(settings)
        self.codec = codec or Codec(
            max_message_bytes=settings.max_message_bytes,
            schema_registry_url=settings.schema_registry_url,
        )
        self.entries = faust_topic(app, settings, ENTRIES)
        self.batches = faust_topic(app, settings, JOURNAL_BATCHES)
        self.outputs = Outputs(
            self.codec, faust_topic(app, settings, DLQ), settings.service_version
        )
        route_outputs(app, self.entries, self.batches, self.outputs.dlq_topic)
        self.store = WindowStore(
            app.Table(
                "batcher-partitions",
                partitions=settings.partitions,
                key_type=bytes,
                value_type=bytes,
                options=state_store_options(settings),
            ),
            app.Table(
                "batcher-window-entries",
                partitions=settings.partitions,
                key_type=bytes,
                value_type=bytes,
                options=state_store_options(settings),
            ),
        )
        self.reference = ReferenceReader(
            settings,
            [topic_name(settings, spec) for spec in (REF_ENTITIES, REF_GL_MAPPINGS)],
            self.codec,
        )
        self._reference_started = False
        # partition -> (last offset applied, state after it); trusted while the stored
        # header names the same offset, i.e. nobody else wrote the partition since.
        self._states: dict[int, tuple[int, BatcherState]] = {}
        # partition -> reference version its waiting windows were last tried with.
        self._tried_with: dict[int, int] = {}
        # partition -> entity -> waiting windows, for the held-batches gauge.
        self._held: dict[int, Counter[str]] = {}
        app.agent(self.entries, name="batcher", concurrency=1)(self._batcher)

    async def _batcher(self, stream: faust.StreamT) -> None:
        if not self._reference_started:
            self._reference_started = True
            await asyncio.get_running_loop().run_in_executor(None, self.reference.start)
        await each_event(stream.events(), self.handle)

    async def handle(self, event: Any) -> None:
        """Apply one message of ``ledger.entries.v1`` (the agent's loop body)."""
        message = event.message
        bind_message(message)
        partition, offset = message.partition, message.offset
        started = time.perf_counter()
        try:
            record = self.codec.decode(message.value)
        except DecodeError as exc:
            await self._reject(event, Failure(str(exc.reason), exc.message))
            return
        bind_record(record)
        if record.schema_name not in ENTRIES.records:
            failure = Failure(
                "unexpected_record_type", f"{record.schema_name} does not belong on {ENTRIES.name}"
            )
            await self._reject(event, failure)
            return
        before = self._state(partition)
        last = self.store.last_offset(partition)
        if last is not None and offset <= last:
            EVENTS.labels(topic=ENTRIES.name, type=record.schema_name, outcome="duplicate").inc()
            return
        position = self.store.next_position(partition)
        runs = self._retry_waiting(before, partition)
        state = runs[-1].state if runs else before
        try:
            run = apply_record(state, position, record, self.reference.current, self.policy)
        except InvalidEntry as exc:
            failure = Failure("invalid_entry", str(exc), event_id=record.source_event_id)
            await self._reject(event, failure)
            return
        except DuplicateEntry as exc:
            # Nothing is saved (a redelivery of this record is the same duplicate again),
            # so held windows released just now are retried at the next message.
            self._tried_with.pop(partition, None)
            log.warning("skipped entry posted twice: %s (partition %s)", exc.entry_id, partition)
            EVENTS.labels(topic=ENTRIES.name, type=record.schema_name, outcome="duplicate").inc()
            return
        runs.append(run)
        position += isinstance(record, JournalEntryPosted)
        self.store.save(partition, before, run.state, offset, position)
        self._states[partition] = (offset, run.state)
        known = {window.window_id for window in before.waiting}
        for batch_run in runs:
            await self._emit(batch_run, partition, known)
        self._count_held(partition, run.state)
        EVENTS.labels(topic=ENTRIES.name, type=record.schema_name, outcome="batched").inc()
        HANDLE_SECONDS.labels(topic=ENTRIES.name).observe(time.perf_counter() - started)

    def _state(self, partition: int) -> BatcherState:
        cached = self._states.get(partition)
        if cached is not None and cached[0] == self.store.last_offset(partition):
            return cached[1]
        state = self.store.load(partition)
        self._tried_with.pop(partition, None)
        return state

    def _retry_waiting(self, state: BatcherState, partition: int) -> list[BatchRun]:
        """Re-try held windows once after each change of the reference data."""
        version = self.reference.version
        if not state.waiting or self._tried_with.get(partition) == version:
            return []
        self._tried_with[partition] = version
        return [release_waiting(state, self.reference.current, self.policy)]

    async def _emit(self, run: BatchRun, partition: int, known: set[str]) -> None:
        """Send the run's batches; log the windows newly held (``known`` were held before)."""
        for batch in run.batches:
            record = batch_record(batch)
            await self.outputs.emit(self.batches, batch.entity.encode(), record, partition)
            BATCHES_EMITTED.labels(entity=batch.entity).inc()
            BATCH_LINES.labels(entity=batch.entity).inc(len(batch.lines))
        for hold in run.held:
            if hold.window.window_id in known:
                continue
            known.add(hold.window.window_id)
            missing = ", ".join(
                f"{account} ({family or 'any family'})" for account, family in hold.missing
            )
            log.warning(
                "batch window %s of partition %s held: %s: no ERP code for %s",
                hold.window.window_id,
                partition,
                hold.reason,
                missing,
            )

    def _count_held(self, partition: int, state: BatcherState) -> None:
        held = Counter(window.entity for window in state.waiting)
        if held == self._held.get(partition, Counter()):
            return
        # Entities no longer held anywhere must drop to 0, so count the previous ones too.
        entities = {entity for counts in self._held.values() for entity in counts}
        self._held[partition] = held
        entities |= set(held)
        for entity in entities:
            total = sum(counts[entity] for counts in self._held.values())
            BATCHES_HELD.labels(entity=entity, reason="gl_mapping_missing").set(total)

    async def _reject(self, event: Any, failure: Failure) -> None:
        await self.outputs.dead_letter(event, failure)
        EVENTS.labels(topic=ENTRIES.name, type=current_record_type(), outcome="dlq").inc()


def batcher_settings(settings: Settings) -> Settings:
    """The batcher app's settings: its own app id (consumer group, tables), web port + 1."""
    return settings.model_copy(
        update={
            "app_id": f"{settings.app_id}-batcher",
            "web_port": settings.web_port + 1 if settings.web_port else 0,
        }
    )


def build_batcher_app(settings: Settings) -> faust.App:
    """The production batcher: its agent, tables, outputs and ``/metrics``."""
    ensure_topics(settings, TOPICS)
    own = batcher_settings(settings)
    app = build_app(own)
    BatcherWorker(app, own)
    observe_worker(app, own)
    return app


__all__ = [
    "BatcherWorker",
    "DuplicateEntry",
    "InvalidEntry",
    "WindowStore",
    "apply_record",
    "batch_policy",
    "batcher_settings",
    "build_batcher_app",
    "replay_batches",
]
