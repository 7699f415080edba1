"""Random company streams through replay: balance, trial balance, AR, idempotency, order.

Streams come from ``connectors.simulation.company`` (two entities, EUR invoices in the USD
entity, ~5% redeliveries, payments arriving before their invoices).
"""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.simulation.company import generate_company
from ledger.accounts import Account, Side
from ledger.codec import state_from_json, state_to_json
from ledger.replay import replay_all

AR = Account.accounts_receivable
SETTINGS = settings(derandomize=True, deadline=None, max_examples=15)
seeds = st.integers(0, 2**32 - 1)


def stream(seed: int):
    return generate_company(
        seed,
        customers=4,
        events=120,
        duplicate_rate=0.05,
        out_of_order_rate=0.2,
        book_usage_contracts=False,  # the subledger alone takes usage without contracts
    )


def every_entry_balances(entries) -> bool:
    for entry in entries:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for line in entry.lines:
            sign = 1 if line.side is Side.debit else -1
            totals[line.currency][0] += sign * line.amount_minor
            totals[line.currency][1] += sign * line.functional_amount_minor
        if any(value != [0, 0] for value in totals.values()):
            return False
    return True


def trial_balance_is_zero(entries) -> bool:
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        for line in entry.lines:
            sign = 1 if line.side is Side.debit else -1
            totals[(entry.entity, line.currency)][0] += sign * line.amount_minor
            totals[(entry.entity, line.currency)][1] += sign * line.functional_amount_minor
    return all(value == [0, 0] for value in totals.values())


def ar_per_invoice_matches_open_items(result) -> bool:
    """Entries' AR by invoice = gross − payments − credits − write-offs of the open item."""
    ar_by_invoice: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for entry in result.entries:
        for line in entry.lines:
            if line.account is AR:
                sign = 1 if line.side is Side.debit else -1
                ar_by_invoice[line.dimension("invoice_id")][0] += sign * line.amount_minor
                ar_by_invoice[line.dimension("invoice_id")][1] += (
                    sign * line.functional_amount_minor
                )
    for state in result.states.values():
        for item in state.invoices.values():
            expected_due = (
                0
                if item.voided
                else (
                    item.gross_minor
                    - item.applied_minor
                    - item.credited_ar_minor
                    - item.written_off_minor
                )
            )
            expected_functional = (
                0
                if item.voided
                else (item.gross_functional_minor - item.functional_relieved(item.relieved_minor))
            )
            if ar_by_invoice[item.invoice_id] != [expected_due, expected_functional]:
                return False
            if item.amount_due_minor != expected_due or item.amount_due_minor < 0:
                return False
    return True


def per_customer(entries):
    grouped = defaultdict(list)
    for entry in entries:
        grouped[entry.customer_id].append(entry)
    return dict(grouped)


@SETTINGS
@given(seeds)
def test_stream_posts_balanced_entries_and_zero_trial_balance_when_replayed(seed):
    generated = stream(seed)
    result = replay_all(generated.reference, generated.events)
    assert result.rejected == [] and result.rejected_holds == []
    assert all(state.held == () for state in result.states.values())
    assert every_entry_balances(result.entries)
    assert trial_balance_is_zero(result.entries)
    assert ar_per_invoice_matches_open_items(result)
    assert len({e.entry_id for e in result.entries}) == len(result.entries)
    for state in result.states.values():
        assert state_from_json(state_to_json(state)) == state


@SETTINGS
@given(seeds)
def test_stream_changes_nothing_when_every_event_is_applied_twice(seed):
    generated = stream(seed)
    once = replay_all(generated.reference, generated.events)
    doubled = [event for event in generated.events for _ in range(2)]
    twice = replay_all(generated.reference, doubled)
    assert twice.entries == once.entries
    assert twice.states == once.states


@SETTINGS
@given(seeds, st.randoms(use_true_random=False))
def test_customer_state_is_the_same_when_customers_interleave_differently(seed, rng: random.Random):
    generated = stream(seed)
    queues: dict[str, list] = defaultdict(list)
    for event in generated.events:
        queues[event.customer_id].append(event)
    shuffled = []
    pending = {cid: list(events) for cid, events in sorted(queues.items())}
    while pending:
        cid = rng.choice(sorted(pending))
        shuffled.append(pending[cid].pop(0))
        if not pending[cid]:
            del pending[cid]
    original = replay_all(generated.reference, generated.events)
    reordered = replay_all(generated.reference, shuffled)
    assert reordered.states == original.states
    assert per_customer(reordered.entries) == per_customer(original.entries)
