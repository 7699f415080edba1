"""Invoices written off: the entity's uncollectible policy decides what happens to revenue.

ASC 606-10-25-7 / IFRS 15.15: once collection is no longer probable, revenue stops; an
amount the entity expects to give up from the start is an implied price concession that
reduces the transaction price (ASC 606-10-32-7). What was billed ahead of revenue was
never earned: writing it off relieves deferred revenue, not bad debt.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from connectors.simulation.builders import (
    base_records,
    clock,
    contract,
    entity,
    invoice,
    obligation,
    rows,
    write_off,
)
from revenue.replay import replay_all

D = dt.date
YEAR = (D(2024, 1, 1), D(2024, 12, 31))
# 91 of 366 days of 1,200.00, through 31 March 2024.
EARNED = 298_36


def _run(policy: str, written_off: int):
    reference = [*base_records(), entity("US1", "USD", uncollectible_policy=policy)]
    return replay_all(
        reference,
        [
            contract("K1", 1200_00, [obligation("OB1", 1200_00, *YEAR)], on=YEAR[0]),
            invoice("INV-1", lines=[("SUB", 1200_00)], obligations=["OB1"], on=YEAR[0]),
            clock(D(2024, 3, 31)),
            write_off("INV-1", written_off, on=D(2024, 4, 1)),
            clock(D(2024, 12, 31)),
        ],
    )


def _net(entries, account: str) -> int:
    total = Counter()
    for entry in entries:
        for line in entry.lines:
            total[(str(line.account), str(line.side))] += line.amount_minor
    return total[(account, "debit")] - total[(account, "credit")]


UNEARNED = 1200_00 - EARNED
STOPPED = [
    ("bad_debt", "debit", EARNED, EARNED),
    ("deferred_revenue", "debit", UNEARNED, UNEARNED),
    ("accounts_receivable", "credit", 1200_00, 1200_00),
]
REVERSED = [
    ("deferred_revenue", "debit", UNEARNED, UNEARNED),
    ("contra_revenue", "debit", EARNED, EARNED),
    ("accounts_receivable", "credit", 1200_00, 1200_00),
]


@pytest.mark.parametrize(
    ("policy", "expected", "net_revenue"),
    [("stop_recognition", STOPPED, EARNED), ("reverse_revenue", REVERSED, 0)],
)
def test_full_write_off_stops_revenue_and_relieves_deferred_when_policy_says(
    policy, expected, net_revenue
):
    result = _run(policy, 1200_00)
    (posted,) = [e for e in result.entries if e.rule == "write_off"]
    assert rows(posted) == expected
    # Nothing after the write-off: revenue stays at what was earned by 31 March.
    assert not [e for e in result.entries if e.period > "2024-04" and "revenue" in e.rule]
    assert -_net(result.entries, "revenue") == EARNED
    assert -_net(result.entries, "revenue") - _net(result.entries, "contra_revenue") == net_revenue
    assert _net(result.entries, "deferred_revenue") == 0
    assert _net(result.entries, "unbilled_receivable") == 0
    assert _net(result.entries, "accounts_receivable") == 0
    books = result.books["C1"]
    assert books.ledger.billed_by_contract["K1"] == net_revenue
    assert books.revenue.contracts["K1"].recognized_minor == net_revenue


def test_partial_write_off_is_bad_debt_and_recognition_goes_on():
    result = _run("stop_recognition", 100_00)
    (posted,) = [e for e in result.entries if e.rule == "write_off"]
    assert rows(posted) == [
        ("bad_debt", "debit", 100_00, 100_00),
        ("accounts_receivable", "credit", 100_00, 100_00),
    ]
    assert -_net(result.entries, "revenue") == 1200_00
    assert _net(result.entries, "deferred_revenue") == 0
