"""The batcher's two rebuild guarantees: entry positions, and an entry posted twice skipped.

Batches carry the positions of their first and last entries among the partition's
entries, so the same entries log gives the same batch bytes whatever Kafka offsets it
sits at (a rebuild into new topics has other offsets: transaction markers differ). An
entry id already in a window is a duplicate: skipped, never batched twice (a batch with an
entry id twice is refused by the record, which once crashed the batcher on every start).
"""

from __future__ import annotations

import json

import pytest

from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.batching import BatchPolicy
from ledger.events import ClockAdvanced
from ledger.reference import ReferenceData
from revenue.replay import replay_all
from streams.batcher import DuplicateEntry, WindowStore, apply_record, replay_batches
from streams.batches import batch_record
from streams.entries import entry_record
from streams.serde import Codec

POLICY = BatchPolicy(max_entries=30, max_age_days=2)
CODEC = Codec()


def _records(seed: int = 7) -> tuple[list, ReferenceData]:
    """An entries-topic log of one partition (entries, each month's tick after them)."""
    stream = generate_contracts(seed=seed, customers=10, months=4)
    reference = ReferenceData.from_records(stream.reference)
    entries = sorted(
        replay_all(stream.reference, stream.events).entries, key=lambda e: e.posting_date
    )
    ticks = sorted({e.business_date for e in stream.events if isinstance(e, ClockAdvanced)})
    records, at = [], 0
    for tick in ticks:
        while at < len(entries) and entries[at].posting_date <= tick:
            records.append(entry_record(entries[at]))
            at += 1
        records.append(b.clock(tick))
    return records, reference


def _bytes(batches: list) -> list[bytes]:
    return [CODEC.encode(batch_record(x), topic="erp.journal-batches.v1") for x in batches]


def test_batches_are_byte_identical_when_the_same_log_sits_at_other_offsets():
    records, reference = _records()
    contiguous = list(enumerate(records))
    # A transactional writer leaves a marker after each commit: offsets with gaps.
    with_markers = [(3 * n + 1, record) for n, record in enumerate(records)]
    batches, _ = replay_batches(0, contiguous, reference, POLICY)
    assert len(batches) > 3
    assert _bytes(replay_batches(0, with_markers, reference, POLICY)[0]) == _bytes(batches)


def test_batch_source_offsets_are_entry_positions_on_the_partition():
    records, reference = _records()
    batches, _ = replay_batches(1, [(10 * n, r) for n, r in enumerate(records)], reference, POLICY)
    positions = {
        r.entry_id: n
        for n, r in enumerate(r for r in records if r.schema_name == "JournalEntryPosted")
    }
    for batch in batches:
        record = batch_record(batch)
        assert record.first_source_offset == positions[batch.entry_ids[0]]
        assert record.last_source_offset == positions[batch.entry_ids[-1]]
    every = sorted(positions[i] for x in batches for i in x.entry_ids)
    assert every == sorted(set(every)), "no position is used twice"


def test_entry_posted_twice_is_skipped_when_its_first_copy_is_in_an_open_window():
    records, reference = _records()
    first_entry = next(n for n, r in enumerate(records) if r.schema_name == "JournalEntryPosted")
    doubled = [*records[: first_entry + 2], records[first_entry], *records[first_entry + 2 :]]
    once, _ = replay_batches(0, enumerate(records), reference, POLICY)
    twice, _ = replay_batches(0, enumerate(doubled), reference, POLICY)
    assert _bytes(twice) == _bytes(once)
    # Each batch record validates (an id twice in one batch would raise here).
    assert all(len(set(x.entry_ids)) == len(x.entry_ids) for x in twice)


def test_apply_record_refuses_an_entry_id_already_held_in_a_window_and_changes_nothing():
    records, reference = _records()
    entry = next(r for r in records if r.schema_name == "JournalEntryPosted")
    state = apply_record(
        replay_batches(0, [], reference, POLICY)[1], 0, entry, reference, POLICY
    ).state
    with pytest.raises(DuplicateEntry, match=entry.entry_id):
        apply_record(state, 1, entry, reference, POLICY)


def test_position_counter_survives_in_the_header_and_continues_an_old_header():
    store = WindowStore({}, {})
    assert store.next_position(0) == 0
    state = store.load(0)
    store.save(0, state, state, offset=41, next_position=17)
    assert store.next_position(0) == 17
    store.save(0, state, state, offset=42)  # a tick: the counter is unchanged
    assert (store.last_offset(0), store.next_position(0)) == (42, 17)
    # A header written before positions were kept: continue above its offsets.
    store.headers[b"3"] = json.dumps(
        {"last_offset": 99, "windows": [], "waiting": [], "next_sequence": {}}
    ).encode()
    assert store.next_position(3) == 100
