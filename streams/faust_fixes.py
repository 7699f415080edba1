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
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from faust.tables import recovery as faust_recovery
from faust.transport import consumer as faust_consumer
from faust.transport import producer as faust_producer
from faust.transport.drivers import aiokafka as faust_aiokafka

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


def apply() -> None:
    """Install the fixes (once per process)."""
    global _APPLIED
    if _APPLIED:
        return
    faust_aiokafka.AIOKafkaConsumerThread._highwaters = _highwaters_from_broker
    faust_producer.ProducerBuffer._send_pending = _send_pending_counted
    faust_consumer.Consumer._commit_tps = _commit_tps_between_events
    faust_recovery.Recovery.on_recovery_completed = _recovery_completed_seek_first
    _APPLIED = True
