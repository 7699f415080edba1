"""Fix 9 of ``streams.faust_fixes``: the partitions' transactions commit concurrently.

Faust's ``Producer.commit_transactions`` is driven with stand-in transactional producers
(no broker): each commit step takes a little time and notes how many commits are running
at once.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import ProducerFenced
from faust.types import TP

from streams import faust_fixes

STEP_SECONDS = 0.02


class _TransactionalProducer:
    """What Faust calls on an aiokafka transactional producer during a commit."""

    def __init__(self, tally: dict[str, int], fail: BaseException | None = None) -> None:
        self.tally = tally
        self.fail = fail
        self.calls: list[str] = []

    async def _step(self, name: str) -> None:
        self.tally["running"] += 1
        self.tally["most"] = max(self.tally["most"], self.tally["running"])
        try:
            await asyncio.sleep(STEP_SECONDS)
        finally:
            self.tally["running"] -= 1
        self.calls.append(name)

    async def send_offsets_to_transaction(self, offsets, group_id) -> None:
        await self._step("offsets")

    async def commit_transaction(self) -> None:
        if self.fail is not None:
            raise self.fail
        await self._step("commit")

    async def begin_transaction(self) -> None:
        self.calls.append("begin")


def _producer(partitions: int, failing: int | None = None):
    tally = {"running": 0, "most": 0}
    producers = {
        f"app-0-{p}": _TransactionalProducer(tally, ProducerFenced() if p == failing else None)
        for p in range(partitions)
    }
    faust_producer = SimpleNamespace(
        _transaction_producers=producers,
        _trn_locks={tid: asyncio.Lock() for tid in producers},
    )
    offsets = {tid: {TP("ledger.inputs.v1", int(tid[-1])): 10} for tid in producers}
    return faust_producer, producers, offsets, tally


def _commit(commit, faust_producer, offsets) -> None:
    async def run() -> None:
        await commit(faust_producer, offsets, "app")

    asyncio.run(run())


def test_the_partitions_transactions_commit_concurrently() -> None:
    faust_producer, producers, offsets, tally = _producer(4)
    _commit(faust_fixes._commit_transactions_concurrently, faust_producer, offsets)
    assert tally["most"] == 4
    for producer in producers.values():
        # Upstream's order within one transaction: offsets, commit, the next one begun.
        assert producer.calls == ["offsets", "commit", "begin"]


def test_faust_alone_commits_one_transaction_after_the_other() -> None:
    """The upstream behaviour fix 9 replaces (fails if faust-streaming changes it)."""
    faust_producer, producers, offsets, tally = _producer(4)
    _commit(faust_fixes._original_commit_transactions, faust_producer, offsets)
    assert tally["most"] == 1
    assert all(p.calls == ["offsets", "commit", "begin"] for p in producers.values())


def test_a_fenced_partition_raises_after_every_other_commit_ended() -> None:
    faust_producer, producers, offsets, tally = _producer(4, failing=1)
    with pytest.raises(ProducerFenced):
        _commit(faust_fixes._commit_transactions_concurrently, faust_producer, offsets)
    assert tally["running"] == 0  # nothing left running when the error is raised
    assert producers["app-0-1"].calls == ["offsets"]
    for tid in ("app-0-0", "app-0-2", "app-0-3"):
        assert producers[tid].calls == ["offsets", "commit", "begin"]


def test_apply_installs_the_concurrent_commit() -> None:
    from faust.transport.drivers import aiokafka as driver

    faust_fixes.apply()
    installed = driver.Producer.commit_transactions
    # streams.health may have wrapped it to count commits; the wrapper calls the fix.
    assert installed is faust_fixes._commit_transactions_concurrently or (
        faust_fixes._commit_transactions_concurrently
        in (getattr(cell, "cell_contents", None) for cell in installed.__closure__ or ())
    )
