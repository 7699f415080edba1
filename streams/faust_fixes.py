"""Fixes to faust-streaming 0.15.3 that exactly-once correctness depends on.

Each fix names the upstream code it replaces and the test that fails without it.
:func:`apply` is idempotent and is called by :func:`streams.app.build_app`.

1. Changelog end offsets under exactly-once. ``AIOKafkaConsumerThread._highwaters``
   returns ``consumer.last_stable_offset(tp)`` in transactional mode: a value cached
   from the last fetch response, which is -1 before the first fetch of that partition.
   Table recovery then believes the changelog is empty, skips it, and the worker runs
   on a stale (or empty) table: a redelivered invoice posts again. The fix asks the
   broker: ``end_offsets`` at the consumer's ``read_committed`` isolation level returns
   the last stable offset. Test: ``tests/integration/test_worker_recovery.py``.

2. Transaction boundaries inside an event. In exactly-once mode Faust commits a
   transaction (``TransactionManager.commit``) from a timer task, which runs whenever an
   agent awaits, and it does not flush its producer buffer first: table changelog
   writes (``send_soon``) wait in that buffer while an event's entries are already in
   the transactional producer. A commit in between puts the entries in one transaction
   and the state change in the next; a crash then leaves entries without state (the
   event posts again: doubled entries) or state without entries (lost entries). The
   fix makes every event atomic: :func:`event_lock` is held by
   :func:`streams.supervision.each_event` around one event, and the commit
   (``Consumer._commit_tps``) takes the same lock, drains the buffer, then picks the
   acked offsets and commits. Draining waits for the message the buffer's background
   task has taken but not yet handed over (``ProducerBuffer.flush`` returns as soon as
   its queue is empty, while the last message may still be on its way; that message
   then lands in the next transaction). An event is acked as soon as its handler returns (the
   stream acks it when the agent asks for the next one, before any await), so the
   transaction holds exactly the outputs of the offsets it commits. Test: same file.

3. Seek before resuming the stream partitions. When table recovery ends,
   ``Recovery.on_recovery_completed`` resumes the stream partitions and only then
   awaits ``Consumer.perform_seek`` (a round trip to read the committed offsets), while
   the fetcher already runs (it ran for the changelogs). In that window the fetcher
   hands records of the stream partitions to the agents, which process and ack some of
   them; then the seek moves the partition back to the committed offset and
   ``app.flow_control.resume()`` empties the agents' queues: the records still queued
   are dropped without an ack and, measured, are not delivered again (every other
   offset was acked exactly once). With two or more of them at the committed offset,
   that partition's commits stop for good (lag frozen, its transaction left open); with
   one, Faust commits past it and the record is lost (``Consumer._new_offset`` holds a
   commit back only when ``min(acked) - committed > 1``, and ``committed`` is the next
   offset to read, so a single missing offset there does not hold it back). Seen on
   the lag exporter test: 13 queued ``billing.events.v1`` records dropped, that
   partition's committed offset frozen. The fix seeks while the stream partitions are
   still paused, then resumes them and the flow with no await in between, so no stream
   record is fetched before the seek or queued when the queues are emptied. Tests:
   ``tests/integration/test_lag_exporter.py``, ``tests/integration/test_worker_recovery.py``.

5. Local table state of a partition regained by a running worker. A table write reaches
   the local store (RocksDB, or the memory store's dict) at once, not when its Kafka
   transaction commits. When a rebalance takes partition p away, the transaction open on
   p is never committed: the next owner fences it and it is aborted. Its writes stay in
   this worker's store, and if p comes back (the other worker died, or a third one
   joined), Faust recovers p from the persisted offset, which under exactly-once is the
   last *committed* one: the committed changelog is replayed over the aborted writes, and
   a key that only the aborted transaction wrote keeps that state. A customer whose
   events the aborted transaction applied then takes their redelivery for duplicates and
   their entries are never posted. Fix 3 covers a restart; this covers the same in a
   running process: when a table partition becomes active that was not active in the
   previous assignment, its local state is discarded and rebuilt from the committed
   changelog. A partition kept across a rebalance is left alone: its transaction goes on.
   (The memory store does not remember which partition a key written by the worker
   belongs to; the changelog send now records it, so those keys can be dropped too.)
   Test: ``tests/unit/streams/test_faust_fixes.py``.

6. Table recovery of a partition kept across a rebalance. Under exactly-once Faust
   remembers the changelog offset of its own writes only "on commit"
   (``TableManager.persist_offset_on_commit``), but ``TableManager.on_commit`` looks the
   pending offsets up by the *source* partitions committed while they are kept by
   *changelog* partition: they never match, so the persisted offset is never written,
   and recovery starts a kept partition where its previous recovery ended. Every
   rebalance therefore re-applied the worker's own committed changelog records since
   then over its newer, not yet committed state: a customer's state went back to its
   last committed value, the stream went back to the committed input offset, and an
   event already posted in the open transaction was posted again in the same
   transaction (found by the fault suite: one usage entry at offsets 503 and 504 of
   one partition, 23 s apart, both committed). The fix marks, at each commit, the
   offset of the last changelog write of each committed partition as persisted and as
   the recovery's start: a kept partition recovers nothing, as nobody else wrote its
   changelog meanwhile. Test: the same file.

7. The commit watchdog under exactly-once. ``AIOKafkaConsumerThread.tp_last_committed_at``,
   which Faust's livelock check reads, is set only by the plain (non-transactional)
   commit, so five minutes after start every busy partition logged "Has not committed
   ... at all since worker start" at ERROR, some 570 lines a minute in the soak, while
   commits went on. A transactional commit now sets it for the partitions it committed,
   so the warning means again what it says. Test: the same file.

8. Output topics the app writes but does not read. ``TransactionManager.send`` picks
   the transactional producer ``<app id>-<group>-<partition>`` from the consumer's
   metadata and the assignor's topic groups, which know only subscribed topics; for any
   other topic it finds no partition and sends outside the transaction, silently. An
   output therefore had to be subscribed, and the worker fetched, decoded and discarded
   every record it wrote (entries, schedules, DLQ records, batches): some 40 % of what
   its consumer read (issue 7). :func:`route_outputs` names, for each output, an input
   topic of the same partition count; a send to it joins the transaction of its
   partition in that topic's group (the same producer as before), and nothing is read
   back. A routed send that does not name its partition is refused. Tests: the same
   file; ``tests/integration/test_exactly_once.py`` (the outputs carry transaction
   markers and abort with their inputs).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Mapping, Set
from contextlib import nullcontext, suppress
from typing import Any

from faust.stores import memory as faust_memory
from faust.tables import base as faust_table_base
from faust.tables import manager as faust_table_manager
from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka

log = logging.getLogger(__name__)

_APPLIED = False
_EVENT_LOCK: asyncio.Lock | None = None


def event_lock() -> asyncio.Lock:
    """The lock that keeps a transaction commit out of the middle of an event."""
    global _EVENT_LOCK
    if _EVENT_LOCK is None:
        _EVENT_LOCK = asyncio.Lock()
    return _EVENT_LOCK


async def _highwaters_from_broker(self: Any, partitions: list) -> Mapping[Any, int]:
    consumer = self._ensure_consumer()
    # At read_committed (exactly-once) the broker answers with the last stable offset.
    return await consumer.end_offsets(partitions)


_original_send_pending = faust_producer.ProducerBuffer._send_pending
_original_commit_tps = faust_consumer.Consumer._commit_tps


async def _send_pending_counted(self: Any, fut: Any) -> None:
    self._revledger_in_flight = getattr(self, "_revledger_in_flight", 0) + 1
    try:
        await _original_send_pending(self, fut)
    finally:
        self._revledger_in_flight -= 1


async def drain_buffer(buffer: Any) -> None:
    """Wait until every buffered message was handed to its (transactional) producer."""
    while True:
        await buffer.flush()
        if not buffer.size and not getattr(buffer, "_revledger_in_flight", 0):
            return
        await asyncio.sleep(0.001)


async def _commit_tps_between_events(self: Any, tps: Any, start_new_transaction: bool) -> bool:
    if not self.in_transaction:
        return await _original_commit_tps(self, tps, start_new_transaction)
    async with event_lock():
        # Hand the buffered changelog writes to the transactional producers, then take
        # the acked offsets: every acked event is whole in this transaction, and no
        # event is half in it.
        await drain_buffer(self.app.producer.buffer)
        return await _original_commit_tps(self, tps, start_new_transaction)


_original_commit_offsets = faust_consumer.Consumer._commit_offsets


async def _commit_offsets_noting_time(
    self: Any, offsets: Mapping[Any, int], start_new_transaction: bool = True
) -> bool:
    did_commit = await _original_commit_offsets(self, offsets, start_new_transaction)
    thread = getattr(self, "_thread", None)
    if did_commit and self.in_transaction and thread is not None:
        now = time.monotonic()
        assigned = self.assignment()
        thread.tp_last_committed_at.update({tp: now for tp in offsets if tp in assigned})
    return did_commit


async def _recovery_completed_seek_first(self: Any, generation_id: int = 0) -> None:
    """``Recovery.on_recovery_completed`` of faust-streaming 0.15.3, seeking first.

    Upstream resumes the stream partitions, then awaits the seek; here the seek runs
    while they are paused, and nothing awaits between resuming them and resuming the
    flow (which empties the agents' queues). The rest is upstream's code unchanged.
    """
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(
            table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]
            )
        )
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(
            "Recovery rebalancing again app id %r param %r",
            self.app.consumer_generation_id,
            generation_id,
        )
        return
    if assignment:
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
        if self.app.consumer_generation_id != generation_id:
            # A rebalance started during the seek; its own recovery resumes the streams.
            self.log.warning("Recovery rebalancing again during the seek")
            return
    # From here to resume_flow nothing awaits: no record is fetched for a stream
    # partition before the queues are emptied, so none is dropped.
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.log.dev("Resume stream partitions")
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def newly_active_partitions(store: Any, assigned: Set[Any]) -> set[int]:
    """Partitions of ``store``'s changelog active now and not in the previous assignment.

    Records the active set on the store. The first assignment of a process returns
    nothing: under exactly-once its stores start empty (``streams.app``, fix 3).
    """
    standbys = store.app.assignor.assigned_standbys()
    topics = store.table.changelog_topic.topics
    active = {tp.partition for tp in assigned if tp.topic in topics and tp not in standbys}
    before = getattr(store, "_revledger_active", None)
    store._revledger_active = active
    return set() if before is None else active - before


def discard_rocksdb_partition(store: Any, partition: int) -> None:
    """Forget one partition of a RocksDB table store: its database and cached key index."""
    db = store._dbs.pop(partition, None)
    if db is not None:
        with suppress(Exception):  # a handle already closed elsewhere
            db.close()
    shutil.rmtree(store.partition_path(partition), ignore_errors=True)
    index = store._key_index
    for key in [key for key, p in list(index.items()) if p == partition]:
        index.pop(key, None)


def discard_memory_partition(store: Any, partition: int) -> None:
    """Forget the keys of one partition of a memory table store."""
    owners = store._key_partition
    for key in [key for key, p in owners.items() if p == partition]:
        store.data.pop(key, None)
        owners.pop(key, None)


async def _store_on_rebalance_fresh(
    self: Any, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
) -> None:
    if self.app.in_transaction:
        regained = newly_active_partitions(self, assigned)
        lock = getattr(self, "db_lock", None)  # RocksDB's: no changelog batch meanwhile
        async with lock if lock is not None else nullcontext():
            _discard(self, regained)
    await _original_store_on_rebalance[type(self)](
        self, assigned, revoked, newly_assigned, generation_id
    )


def _discard(self: Any, regained: set[int]) -> None:
    for partition in sorted(regained):
        log.info(
            "table %s partition %s: active again; local state discarded, rebuilt from"
            " the committed changelog",
            self.table.name,
            partition,
        )
        if isinstance(self, faust_memory.Store):
            discard_memory_partition(self, partition)
        else:
            discard_rocksdb_partition(self, partition)


_original_send_changelog = faust_table_base.Collection.send_changelog


def _send_changelog_noting_partition(
    self: Any, partition: Any, key: Any, value: Any, *args: Any, **kwargs: Any
) -> Any:
    # The memory store learns a key's partition only from changelog recovery; a key the
    # worker wrote itself would survive the loss of its partition (fix 5).
    if partition is not None and isinstance(self.data, faust_memory.Store):
        self.data._key_partition[key] = partition
    return _original_send_changelog(self, partition, key, value, *args, **kwargs)


_original_store_on_rebalance: dict[type, Any] = {}

_original_tables_on_commit = faust_table_manager.TableManager.on_commit


def _tables_on_commit_by_partition(self: Any, offsets: Mapping[Any, int]) -> None:
    """``TableManager.on_commit``, also persisting the changelog partitions just committed.

    One transaction per partition number holds that partition's outputs, changelog
    writes and input offsets (``streams.outputs``): when the inputs of partition p commit,
    the changelog writes pending for partition p committed with them.
    """
    committed = {tp.partition for tp in offsets}
    recovery = self.recovery
    for tp, (store, offset) in list(self._pending_persisted_offsets.items()):
        if tp.partition not in committed:
            continue
        store.set_persisted_offset(tp, offset)  # the memory store keeps none
        if tp in recovery.active_tps:
            recovery.active_offsets[tp] = offset
        del self._pending_persisted_offsets[tp]
    _original_tables_on_commit(self, offsets)


def route_outputs(app: Any, source: Any, *outputs: Any) -> None:
    """Send ``outputs`` in the transactions of ``source``'s partitions, without reading them.

    ``source`` is a topic the app's agents read, with the outputs' partition count:
    a send to ``outputs[i][p]`` joins the transaction that commits ``source[p]`` (fix 8).
    """
    routes = app.__dict__.setdefault("_revledger_output_sources", {})
    source_name = next(iter(source.topics))  # any of them: they share one group
    for output in outputs:
        routes[output.get_topic_name()] = source_name


_original_transactions_send = faust_consumer.TransactionManager.send


async def _send_routed_outputs_in_transaction(
    self: Any,
    topic: str,
    key: bytes | None,
    value: bytes | None,
    partition: int | None,
    timestamp: float | None,
    headers: Any,
    *,
    transactional_id: str | None = None,
) -> Any:
    """``TransactionManager.send``; a routed output goes to its source partition's producer.

    Faust derives the producer from the consumer's metadata and the assignor's groups,
    which know only subscribed topics: for any other topic it finds no partition and sends
    *outside* the transaction, silently. A routed output names its partition; its group is
    its source's.
    """
    source = self.app.__dict__.get("_revledger_output_sources", {}).get(topic)
    if source is None:
        return await _original_transactions_send(
            self, topic, key, value, partition, timestamp, headers
        )
    if partition is None:
        raise ValueError(f"a send to {topic} must name its partition (exactly-once routing)")
    group = self.app.assignor.group_for_topic(source)
    return await self.producer.send(
        topic,
        key,
        value,
        partition,
        timestamp,
        headers,
        transactional_id=f"{self.app.conf.id}-{group}-{partition}",
    )


def _rocksdb_store_class() -> type | None:
    try:
        from faust.stores import rocksdb as faust_rocksdb
    except ImportError:  # no rocksdict: only the memory store can be used
        return None
    return faust_rocksdb.Store


def apply() -> None:
    """Install the fixes (once per process)."""
    global _APPLIED
    if _APPLIED:
        return
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_broker
    faust_producer.ProducerBuffer._send_pending = _send_pending_counted
    faust_consumer.Consumer._commit_tps = _commit_tps_between_events
    faust_consumer.Consumer._commit_offsets = _commit_offsets_noting_time
    faust_recovery.Recovery.on_recovery_completed = _recovery_completed_seek_first
    for store_class in (faust_memory.Store, _rocksdb_store_class()):
        if store_class is not None:
            _original_store_on_rebalance[store_class] = store_class.on_rebalance
            store_class.on_rebalance = _store_on_rebalance_fresh
    faust_table_base.Collection.send_changelog = _send_changelog_noting_partition
    faust_table_manager.TableManager.on_commit = _tables_on_commit_by_partition
    faust_consumer.TransactionManager.send = _send_routed_outputs_in_transaction
    _APPLIED = True
