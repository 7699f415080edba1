"""Fix 5 of ``streams.faust_fixes``: a partition regained by a running worker starts empty.

A table write reaches the local store before its transaction commits; when the partition
moves away the transaction is aborted, and its writes must not be there if the partition
comes back. These tests drive Faust's real memory and RocksDB stores (no broker: the
stores are only opened, written and rebalanced).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import faust
import pytest
from faust.types import TP

from streams import faust_fixes

CHANGELOG = "fixes-test-customer-ledgers-changelog"


def _app(tmp_path: Path, store: str) -> faust.App:
    faust_fixes.apply()
    app = faust.App("fixes-test", store=store, datadir=str(tmp_path), topic_partitions=4)
    return app


def _table(app: faust.App) -> faust.Table:
    return app.Table("customer-ledgers", partitions=4, key_type=bytes, value_type=bytes)


def _in_worker_with_standbys(app: faust.App, monkeypatch: pytest.MonkeyPatch, standbys=()):
    # Outside a running worker Faust says it is not in a transaction; the fix acts only there.
    monkeypatch.setattr(type(app), "in_transaction", property(lambda self: True))
    monkeypatch.setattr(app.assignor, "assigned_standbys", lambda: set(standbys))


def _changelog(*partitions: int) -> set[TP]:
    return {TP(CHANGELOG, p) for p in partitions}


def _rebalance(store, assigned: set[TP], previous: set[TP]) -> None:
    asyncio.run(store.on_rebalance(assigned, previous - assigned, assigned - previous, 0))


def test_newly_active_partitions_skips_the_first_assignment_and_standbys() -> None:
    store = SimpleNamespace(
        app=SimpleNamespace(assignor=SimpleNamespace(assigned_standbys=lambda: {TP(CHANGELOG, 3)})),
        table=SimpleNamespace(changelog_topic=SimpleNamespace(topics={CHANGELOG})),
    )
    other = TP("billing.events.v1", 2)
    # First assignment of the process: stores start empty (fix 3), nothing to discard.
    assert faust_fixes.newly_active_partitions(store, _changelog(0, 1, 3) | {other}) == set()
    # 1 kept, 0 lost, 2 gained; 3 is a standby, not active.
    assert faust_fixes.newly_active_partitions(store, _changelog(1, 2, 3)) == {2}
    # 0 comes back.
    assert faust_fixes.newly_active_partitions(store, _changelog(0, 1, 2, 3)) == {0}
    # A standby that becomes active counts as gained: what it holds may predate an abort.
    store.app.assignor.assigned_standbys = lambda: set()
    assert faust_fixes.newly_active_partitions(store, _changelog(0, 1, 2, 3)) == {3}


def test_memory_store_forgets_what_the_worker_wrote_to_a_regained_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, "memory://")
    table = _table(app)
    store = table.data
    _in_worker_with_standbys(app, monkeypatch)
    _rebalance(store, _changelog(0, 1), set())
    # What the worker writes during an event: the store, and the changelog send (patched
    # to note the partition; the real send is not wanted here).
    monkeypatch.setattr(faust_fixes, "_original_send_changelog", lambda *a, **k: None)
    for key, partition in ((b"C-1", 0), (b"C-2", 1)):
        store.data[key] = b"state written in a transaction that will abort"
        table.send_changelog(partition, key, store.data[key])
    _rebalance(store, _changelog(1), _changelog(0, 1))  # partition 0 moves away
    _rebalance(store, _changelog(0, 1), _changelog(1))  # and comes back
    assert b"C-1" not in store.data  # rebuilt from the committed changelog instead
    assert store.data[b"C-2"] == b"state written in a transaction that will abort"  # kept


def test_rocksdb_store_discards_the_database_of_a_regained_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("rocksdict")
    app = _app(tmp_path, "rocksdb://")
    store = _table(app).data
    _in_worker_with_standbys(app, monkeypatch)
    _rebalance(store, _changelog(0, 1), set())
    for partition in (0, 1):
        store._db_for_partition(partition).put(b"C", b"aborted state")
        store._key_index[b"C-%d" % partition] = partition
        store.set_persisted_offset(TP(CHANGELOG, partition), 41)
    path = store.partition_path(0)
    assert path.exists()
    _rebalance(store, _changelog(1), _changelog(0, 1))
    _rebalance(store, _changelog(0, 1), _changelog(1))
    # Partition 0 starts over: no data, no persisted offset (recovery reads from the
    # start of the committed changelog), no cached key location.
    assert store._db_for_partition(0).get(b"C") is None
    assert store.persisted_offset(TP(CHANGELOG, 0)) is None
    assert b"C-0" not in store._key_index
    # Partition 1 was kept: its transaction goes on with what it wrote.
    assert store._db_for_partition(1).get(b"C") == b"aborted state"
    assert store.persisted_offset(TP(CHANGELOG, 1)) == 41


def test_nothing_is_discarded_without_exactly_once(tmp_path: Path) -> None:
    app = _app(tmp_path, "memory://")
    store = _table(app).data
    store.data[b"C-1"] = b"state"
    store._key_partition[b"C-1"] = 0
    _rebalance(store, _changelog(0), set())
    _rebalance(store, _changelog(), _changelog(0))
    _rebalance(store, _changelog(0), _changelog())
    assert store.data[b"C-1"] == b"state"


class _RecordingStore:
    def __init__(self) -> None:
        self.persisted: dict[TP, int] = {}

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self.persisted[tp] = offset


def test_a_commit_persists_the_changelog_offsets_of_the_partitions_it_committed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faust_fixes.apply()
    monkeypatch.setattr(faust_fixes, "_original_tables_on_commit", lambda self, offsets: None)
    store = _RecordingStore()
    ledgers2, ledgers3 = TP(CHANGELOG, 2), TP(CHANGELOG, 3)
    tables = SimpleNamespace(
        # What Faust keeps when a changelog write of the open transaction is acked.
        _pending_persisted_offsets={ledgers2: (store, 610), ledgers3: (store, 700)},
        # Where the previous recovery of partition 2 ended.
        recovery=SimpleNamespace(active_tps={ledgers2, ledgers3}, active_offsets={ledgers2: 598}),
    )
    # Partition 2's transaction committed its input offsets (and with them its writes).
    faust_fixes._tables_on_commit_by_partition(tables, {TP("ledger.inputs.v1", 2): 545})
    assert store.persisted == {ledgers2: 610}
    # A rebalance that keeps partition 2 now recovers from 610: the worker's own writes
    # up to there are in its store, and nothing is re-applied over newer state.
    assert tables.recovery.active_offsets[ledgers2] == 610
    assert tables._pending_persisted_offsets == {ledgers3: (store, 700)}  # not committed yet


def test_faust_alone_never_persists_a_changelog_offset_on_commit() -> None:
    """The upstream defect fix 6 exists for (fails if faust-streaming fixes it)."""
    original = faust_fixes._original_tables_on_commit
    store = _RecordingStore()
    tables = SimpleNamespace(_pending_persisted_offsets={TP(CHANGELOG, 2): (store, 610)})
    tables.on_commit_tp = lambda tp: type(faust.App("x").tables).on_commit_tp(tables, tp)
    original(tables, {TP("ledger.inputs.v1", 2): 545})
    assert store.persisted == {}


def test_a_transactional_commit_tells_the_commit_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    async def committed(self, offsets, start_new_transaction=True) -> bool:
        return True

    monkeypatch.setattr(faust_fixes, "_original_commit_offsets", committed)
    inputs, revoked = TP("ledger.inputs.v1", 2), TP("ledger.inputs.v1", 3)
    consumer = SimpleNamespace(
        in_transaction=True,
        assignment=lambda: {inputs},
        _thread=SimpleNamespace(tp_last_committed_at={}),
    )
    done = asyncio.run(faust_fixes._commit_offsets_noting_time(consumer, {inputs: 9, revoked: 4}))
    assert done is True
    # Faust's livelock check reads this; only its plain commit used to set it.
    assert set(consumer._thread.tp_last_committed_at) == {inputs}


class _RecordingProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, str | None]] = []

    async def send(
        self, topic, key, value, partition, timestamp, headers, *, transactional_id=None
    ):
        self.sent.append((topic, partition, transactional_id))


def _transactions(app: faust.App, metadata_partitions: dict[str, set[int]]):
    """Faust's TransactionManager on a recording producer; the consumer's metadata knows
    only ``metadata_partitions`` (its subscribed topics), as a running worker's does."""
    from faust.transport.consumer import TransactionManager

    def key_partition(topic, key, partition=None):
        return partition if topic in metadata_partitions else None

    consumer = SimpleNamespace(key_partition=key_partition)
    producer = _RecordingProducer()
    manager = TransactionManager(SimpleNamespace(app=app), consumer=consumer, producer=producer)
    return manager, producer


def test_a_routed_output_is_sent_by_its_source_partitions_transactional_producer(
    tmp_path: Path,
) -> None:
    # Fix 8: the output is not subscribed, so the consumer's metadata does not know it;
    # it still goes to `<app id>-<group of its source>-<partition>`.
    app = _app(tmp_path, "memory://")
    inputs, entries = app.topic("fixes-inputs"), app.topic("fixes-entries")
    faust_fixes.route_outputs(app, inputs, entries)
    app.assignor._topic_groups = {"fixes-inputs": 3}
    transactions, producer = _transactions(app, {"fixes-inputs": {0, 1, 2, 3}})
    asyncio.run(transactions.send("fixes-entries", b"k", b"v", 2, None, None))
    asyncio.run(transactions.send("fixes-inputs", b"k", b"v", 1, None, None))
    assert producer.sent == [
        ("fixes-entries", 2, "fixes-test-3-2"),
        ("fixes-inputs", 1, "fixes-test-3-1"),
    ]
    with pytest.raises(ValueError, match="must name its partition"):
        asyncio.run(transactions.send("fixes-entries", b"k", b"v", None, None, None))


def test_faust_alone_sends_an_output_it_does_not_read_outside_the_transaction(
    tmp_path: Path,
) -> None:
    app = _app(tmp_path, "memory://")
    app.assignor._topic_groups = {"fixes-inputs": 3}
    transactions, producer = _transactions(app, {"fixes-inputs": {0, 1, 2, 3}})
    asyncio.run(
        faust_fixes._original_transactions_send(
            transactions, "fixes-entries", b"k", b"v", 2, None, None
        )
    )
    assert producer.sent == [("fixes-entries", None, None)]  # no transactional id
