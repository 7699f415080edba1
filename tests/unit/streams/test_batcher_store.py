"""The batcher's table layout: a partition's state survives a save and a load, row by row."""

from __future__ import annotations

import json

from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.batching import BatchPolicy
from ledger.events import ClockAdvanced, GlMapping
from ledger.reference import ReferenceData
from revenue.replay import replay_all
from streams.batcher import WindowStore, apply_record, batch_policy, replay_batches
from streams.entries import entry_record
from streams.settings import load_settings

POLICY = BatchPolicy(max_entries=40, max_age_days=2)


def _log(seed: int = 3):
    """An entries-topic log of one partition: entries, then each month's tick after them."""
    stream = generate_contracts(seed=seed, customers=12, months=4)
    reference = ReferenceData.from_records(stream.reference)
    entries = sorted(
        replay_all(stream.reference, stream.events).entries, key=lambda e: e.posting_date
    )
    ticks = sorted({e.business_date for e in stream.events if isinstance(e, ClockAdvanced)})
    log, at = [], 0
    for tick in ticks:
        while at < len(entries) and entries[at].posting_date <= tick:
            log.append(entry_record(entries[at]))
            at += 1
        log.append(b.clock(tick))
    return list(enumerate(log)), reference, stream


def test_state_loaded_from_the_tables_is_the_state_saved_after_every_record():
    log, reference, _ = _log()
    store = WindowStore({}, {})
    state = store.load(partition=2)
    for offset, record in log:
        after = apply_record(state, offset, record, reference, POLICY).state
        store.save(2, state, after, offset)
        assert store.load(2) == after
        assert store.last_offset(2) == offset
        state = after
    live = sum(len(w.entries) for w in (*state.windows.values(), *state.waiting))
    assert len(store.rows) == live, "rows of batched windows are deleted"


def test_rows_are_written_once_each_not_rewritten_as_a_window_grows():
    log, reference, _ = _log()

    class CountingTable(dict):
        writes = 0

        def __setitem__(self, key, value):
            CountingTable.writes += 1
            super().__setitem__(key, value)

    store = WindowStore({}, CountingTable())
    state = store.load(0)
    entries = 0
    for offset, record in log:
        after = apply_record(state, offset, record, reference, POLICY).state
        store.save(0, state, after, offset)
        entries += record.schema_name == "JournalEntryPosted"
        state = after
    assert CountingTable.writes == entries


def test_held_windows_are_kept_in_the_header_in_order():
    log, _, stream = _log(seed=4)
    unmapped = ReferenceData.from_records(
        [r for r in stream.reference if not (isinstance(r, GlMapping) and r.account == "revenue")]
    )
    store = WindowStore({}, {})
    state = store.load(1)
    for offset, record in log:
        after = apply_record(state, offset, record, unmapped, POLICY).state
        store.save(1, state, after, offset)
        state = after
    assert state.waiting
    header = json.loads(store.headers[b"1"])
    assert [w["first_offset"] for w in header["waiting"]] == [
        w.entries[0][0] for w in state.waiting
    ]
    assert store.load(1) == state


def test_replay_gives_the_same_batches_as_record_by_record_application():
    log, reference, _ = _log(seed=5)
    batches, final = replay_batches(0, log, reference, POLICY)
    state, stepwise, position = WindowStore({}, {}).load(0), [], 0
    for _offset, record in log:
        # Batches carry entry positions (entries before this one), not offsets.
        run = apply_record(state, position, record, reference, POLICY)
        position += record.schema_name == "JournalEntryPosted"
        state, stepwise = run.state, [*stepwise, *run.batches]
    assert batches == stepwise and final == state
    assert [x.sequence for x in batches if x.entity == batches[0].entity][:3] == [0, 1, 2]


def test_policy_comes_from_the_settings():
    settings = load_settings(
        {"REVLEDGER_BATCH_MAX_ENTRIES": "25", "REVLEDGER_BATCH_DIMENSIONS": "product_family,region"}
    )
    assert batch_policy(settings) == BatchPolicy(25, 1, ("product_family", "region"))
