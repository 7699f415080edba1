"""Journal batches from entries: balanced, complete, in sequence, held on GL mapping gaps."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.accounts import Account
from ledger.batching import (
    BatcherState,
    BatchPolicy,
    add_entry,
    on_period_closed,
    on_tick,
    release_waiting,
)
from ledger.events import ClockAdvanced, GlMapping
from ledger.reference import ReferenceData
from revenue.replay import replay_all

POLICY = BatchPolicy(max_entries=50, max_age_days=1)


def _reference(stream, skip: Account | None = None) -> ReferenceData:
    """The stream's reference data with our own GL mappings (all accounts but ``skip``)."""
    records = [r for r in stream.reference if not isinstance(r, GlMapping)]
    return ReferenceData.from_records([*records, *_gl(skip=skip)])


def _gl(entities=("US1", "EU1", "US2"), skip: Account | None = None) -> list:
    return [
        b.gl(entity, str(account), f"{entity}-{n:04d}")
        for entity in entities
        for n, account in enumerate(Account)
        if account is not skip
    ]


def _batch_all(stream, reference: ReferenceData):
    """Entries of the stream's replay, ticks interleaved, through one partition's batcher."""
    state, batches, held = BatcherState(partition=0), [], []
    result = replay_all(stream.reference, stream.events)
    by_tick = sorted({r.business_date for r in stream.events if isinstance(r, ClockAdvanced)})
    entries = sorted(result.entries, key=lambda e: e.posting_date)
    offset = 0
    for tick in by_tick:
        while offset < len(entries) and entries[offset].posting_date <= tick:
            run = add_entry(state, entries[offset], offset, reference, POLICY)
            state, offset = run.state, offset + 1
            batches += run.batches
            held += run.held
        run = on_tick(state, tick, reference, POLICY)
        state = run.state
        batches += run.batches
        held += run.held
    return entries[:offset], state, batches, held


def _by_account(lines_and_sides) -> dict:
    """(entity, account, currency) -> net debit, zero totals left out."""
    totals = Counter()
    for entity, account, currency, side, amount in lines_and_sides:
        totals[(entity, account, currency)] += amount if side == "debit" else -amount
    return {key: total for key, total in totals.items() if total}


def test_batches_sum_to_the_entries_and_balance_when_every_account_is_mapped():
    stream = generate_contracts(seed=5, customers=20, months=12)
    entries, state, batches, held = _batch_all(stream, _reference(stream))

    assert held == [] and state.waiting == ()
    batched_ids = [i for batch in batches for i in batch.entry_ids]
    open_ids = [e.entry_id for w in state.windows.values() for _, e in w.entries]
    assert sorted(batched_ids + open_ids) == sorted(e.entry_id for e in entries)
    assert len(set(batched_ids)) == len(batched_ids)
    closed = set(batched_ids)
    from_entries = _by_account(
        (e.entity, str(line.account), line.currency, str(line.side), line.amount_minor)
        for e in entries
        if e.entry_id in closed
        for line in e.lines
    )
    for batch in batches:
        assert all(debit == credit for debit, credit in batch.totals().values())
    from_batches = _by_account(
        (batch.entity, line.account, line.currency, side, amount)
        for batch in batches
        for line in batch.lines
        for side, amount in (("debit", line.debit_minor), ("credit", line.credit_minor))
    )
    assert from_batches == from_entries
    for entity in {batch.entity for batch in batches}:
        sequences = [batch.sequence for batch in batches if batch.entity == entity]
        assert sequences == list(range(len(sequences))), "gap-free, in order"


def test_batches_are_the_same_when_the_same_entries_are_batched_again():
    stream = generate_contracts(seed=6, customers=10, months=6)
    assert _batch_all(stream, _reference(stream))[2] == _batch_all(stream, _reference(stream))[2]


def test_missing_gl_mapping_holds_the_entitys_batches_until_it_is_published():
    stream = generate_contracts(seed=7, customers=10, months=4)
    _, state, batches, held = _batch_all(stream, _reference(stream, skip=Account.revenue))
    assert held and {h.reason for h in held} == {"gl_mapping_missing"}
    assert all({account for account, _ in h.missing} == {"revenue"} for h in held)
    held_entities = {h.window.entity for h in held}
    # Nothing of a held entity is published after its first held window.
    first_held = {h.window.entity: h.window.period for h in reversed(held)}
    assert not [x for x in batches if x.entity in first_held and x.period > first_held[x.entity]]

    released = on_tick(state, dt.date(2024, 12, 31), _reference(stream), POLICY)
    assert released.held == () and released.state.waiting == ()
    assert len(released.batches) == len(state.waiting)
    for entity in held_entities:
        sequences = [x.sequence for x in (*batches, *released.batches) if x.entity == entity]
        assert sequences == list(range(len(sequences))), "released in sequence, no gap"


def test_window_closes_when_it_reaches_max_entries():
    reference = ReferenceData.from_records([*b.base_records(), *_gl()])
    state = BatcherState(partition=3)
    policy = BatchPolicy(max_entries=2, max_age_days=5)
    entries = [
        e for i in range(3) for e in replay_all(b.base_records(), [b.invoice(f"INV-{i}")]).entries
    ]
    runs = []
    for offset, entry in enumerate(entries):
        run = add_entry(state, entry, offset, reference, policy)
        state = run.state
        runs.append(run)
    (batch,) = runs[1].batches
    assert (batch.batch_id, batch.first_offset, batch.last_offset) == ("US1/p3/0", 0, 1)
    assert batch.entry_ids == (entries[0].entry_id, entries[1].entry_id)
    lines = {(line.account, line.gl_code): line for line in batch.lines}
    receivable = lines[
        ("accounts_receivable", f"US1-{list(Account).index(Account.accounts_receivable):04d}")
    ]
    assert receivable.debit_minor == 200_00 and receivable.credit_minor == 0
    assert runs[2].batches == () and len(state.windows) == 1


def test_period_close_ends_that_entitys_windows_of_the_period_and_earlier_only():
    reference = ReferenceData.from_records([*b.base_records(), *_gl()])
    policy = BatchPolicy(max_entries=100, max_age_days=30)
    entries = replay_all(b.base_records(), [b.invoice("INV-1"), b.invoice("INV-2")]).entries
    state = BatcherState(partition=0)
    for offset, entry in enumerate(entries):
        state = add_entry(state, entry, offset, reference, policy).state
    (period,) = {e.period for e in entries}
    entity = entries[0].entity

    other = on_period_closed(state, "EU1", period, reference, policy)
    assert other.batches == () and other.state == state
    earlier = on_period_closed(state, entity, "2000-01", reference, policy)
    assert earlier.batches == ()
    closed = on_period_closed(state, entity, period, reference, policy)
    (batch,) = closed.batches
    assert batch.entry_ids == tuple(e.entry_id for e in entries)
    assert closed.state.windows == {}


def test_released_windows_keep_their_order_and_nothing_is_released_while_still_unmapped():
    stream = generate_contracts(seed=8, customers=8, months=3)
    unmapped = _reference(stream, skip=Account.revenue)
    _, state, _, held = _batch_all(stream, unmapped)
    assert state.waiting and held

    still = release_waiting(state, unmapped, POLICY)
    assert still.batches == () and still.state.waiting == state.waiting
    released = release_waiting(state, _reference(stream), POLICY)
    assert released.state.waiting == ()
    assert [x.entry_ids for x in released.batches] == [
        tuple(e.entry_id for _, e in w.entries) for w in state.waiting
    ]
    assert release_waiting(released.state, _reference(stream), POLICY).batches == ()


def test_window_id_names_entity_period_and_first_offset():
    reference = ReferenceData.from_records([*b.base_records(), *_gl()])
    (entry, *_) = replay_all(b.base_records(), [b.invoice("INV-1")]).entries
    state = add_entry(BatcherState(partition=1), entry, 41, reference, POLICY).state
    (window,) = state.windows.values()
    assert window.window_id == f"{entry.entity}/{entry.period}/41"
