"""Voiding a credit note leaves the books as if it had never been issued.

Two properties over random customers:

1. Revenue engine (:func:`revenue.replay.replay_all`): a contract of 1-3 obligations
   (ratable by day or month, point in time) over 2024, billed upfront on one invoice with
   tax, perhaps paid in part or in full, perhaps credited by a note that stays; then a
   credit note (random lines and amounts, remaining or past service, random date) and its
   void (random later date). Against the same stream without that credit note and its
   void: the same net balances (both amounts), the same schedules and recognised revenue
   per obligation, the same billing, both at the first tick after the void and once every
   service has ended; and the void's entry gives back exactly the tax, AR, customer
   credit and contra revenue the credit note posted.
2. Ledger alone, foreign currency: an invoice in EUR of a USD entity, payments before and
   after the credit note, then its void: every account nets as without the credit note
   except realized FX, which holds at most the rounding of the functional AR share (one
   cent); AR is exactly the invoice's functional share.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.simulation import builders as b
from ledger.accounts import Account
from ledger.book import OutcomeKind
from ledger.state import CustomerLedger
from revenue.replay import EngineReplay, replay_all
from revenue.schedule import last_day

D = dt.date
DAY = dt.timedelta(days=1)
SETTINGS = settings(
    derandomize=True,
    deadline=None,
    max_examples=120,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def nets(state: CustomerLedger) -> dict:
    """Net balance per (entity, account, currency), both amounts, zeros left out."""
    out = {}
    for (entity, account, currency), balance in state.balances.items():
        pair = (balance.net_minor(account), balance.functional_net_minor(account))
        if pair != (0, 0):
            out[(entity, str(account), currency)] = pair
    return out


def books_of(result: EngineReplay) -> tuple:
    """What must agree: balances, billing, open items and every obligation's state."""
    books = result.books[b.CUSTOMER]
    invoice = books.ledger.invoices["INV-1"]
    return (
        nets(books.ledger),
        dict(books.ledger.billed_by_contract),
        invoice.amount_due_minor,
        [line.credited_minor for line in invoice.lines],
        # Not ``recognized_through``: how far the clock walked an obligation that has
        # nothing left to earn depends on whether the customer had anything else to run.
        {
            (cid, oid): (o.segments, o.recognized_minor, o.credits)
            for cid, c in books.revenue.contracts.items()
            for oid, o in c.obligations.items()
        },
        {cid: c.billed_through(D(2026, 12, 31)) for cid, c in books.revenue.contracts.items()},
    )


def totals(entry, accounts: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """Amount per (account, side) of ``entry`` on ``accounts``."""
    out: dict[tuple[str, str], int] = {}
    for line in entry.lines:
        if str(line.account) in accounts:
            key = (str(line.account), str(line.side))
            out[key] = out.get(key, 0) + line.amount_minor
    return out


def month_ends(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every month end from ``first``'s month through ``last``'s."""
    days, day = [], last_day(first.strftime("%Y-%m"))
    while day <= last_day(last.strftime("%Y-%m")):
        days.append(day)
        day = last_day((day + DAY).strftime("%Y-%m"))
    return days


def merged(events: list[tuple[dt.date, object]], ticks: list[dt.date]) -> list:
    """Events in date order, each before the tick of its day."""
    records, pending = [], sorted(events, key=lambda pair: pair[0])
    for tick in ticks:
        while pending and pending[0][0] <= tick:
            records.append(pending.pop(0)[1])
        records.append(b.clock(tick))
    return records + [event for _, event in pending]


@st.composite
def scenarios(draw):
    """(reference, events without the voided note, the note, its void, ticks)."""
    policy = draw(st.sampled_from(["in_service_months", "at_invoice"]))
    reference = [
        *b.base_records(),
        b.entity(catch_up_policy=policy),
    ]
    start = D(2024, 1, 1) + DAY * draw(st.integers(0, 120))
    specs, prices = [], []
    for n in range(draw(st.integers(1, 3))):
        pattern = draw(st.sampled_from(["ratable_daily", "ratable_monthly", "point_in_time"]))
        price = draw(st.integers(1, 5_000_00))
        length = draw(st.integers(0, 300))
        end = None if pattern == "point_in_time" else start + DAY * length
        delivered = start + DAY * length if pattern == "point_in_time" else start
        specs.append(b.obligation(f"OB-{n}", price, delivered, end, pattern=pattern))
        prices.append(price)
    billed_on = start + DAY * draw(st.integers(-30, 60))
    tax = draw(st.integers(0, 500_00))
    # Billed upfront, or half now and half on a second invoice at any later day (so the
    # contract position may cross zero between the credit note and its void).
    later = [price // 2 for price in prices] if draw(st.booleans()) else [0] * len(prices)
    prices, second = [p - h for p, h in zip(prices, later, strict=True)], later
    events: list[tuple[dt.date, object]] = [
        (D(2024, 1, 1), b.contract("K1", sum(prices) + sum(second), specs, on=D(2024, 1, 1))),
        (
            billed_on,
            b.invoice(
                "INV-1",
                lines=[("SUB", price) for price in prices],
                obligations=[spec.obligation_id for spec in specs],
                tax=tax,
                on=billed_on,
            ),
        ),
    ]
    if any(second):
        second_day = billed_on + DAY * draw(st.integers(1, 500))
        billed = [(spec.obligation_id, h) for spec, h in zip(specs, second, strict=True) if h]
        events.append(
            (
                second_day,
                b.invoice(
                    "INV-2",
                    lines=[("SUB", h) for _, h in billed],
                    obligations=[oid for oid, _ in billed],
                    on=second_day,
                ),
            )
        )
    gross = sum(prices) + tax
    credit_day = billed_on + DAY * draw(st.integers(0, 400))
    paid = draw(st.sampled_from([0, gross // 3, gross]))
    if paid:
        pay_day = billed_on + DAY * draw(st.integers(0, (credit_day - billed_on).days))
        events.append((pay_day, b.payment("PAY-1", [("INV-1", paid)], on=pay_day)))
    left = list(prices)
    if draw(st.booleans()):
        # A credit note that stays, issued before the one voided.
        index = draw(st.integers(0, len(prices) - 1))
        amount = draw(st.integers(1, prices[index]))
        left[index] -= amount
        kept_day = billed_on + DAY * draw(st.integers(0, (credit_day - billed_on).days))
        events.append(
            (
                kept_day,
                b.credit_note(
                    "CN-0", "INV-1", lines=[(f"INV-1-L{index + 1}", amount)], on=kept_day
                ),
            )
        )
    credited = [
        (f"INV-1-L{i + 1}", draw(st.integers(1, amount)))
        for i, amount in enumerate(left)
        if amount and draw(st.booleans())
    ] or [(f"INV-1-L{left.index(max(left)) + 1}", draw(st.integers(1, max(left))))]
    note = b.credit_note(
        "CN-1",
        "INV-1",
        lines=credited,
        tax=draw(st.integers(0, tax)),
        on=credit_day,
        applies_to=draw(st.sampled_from(["remaining_service", "past_service"])),
    )
    void_day = credit_day + DAY * draw(st.integers(0, 200))
    void = b.credit_note_void("CN-1", "INV-1", on=void_day)
    return reference, events, (credit_day, note), (void_day, void)


@SETTINGS
@given(scenarios())
def test_credit_then_void_gives_the_books_without_the_credit(scenario):
    reference, events, credit, void = scenario
    horizon = max(day for day, _ in [*events, void]) + DAY * 400
    ticks = month_ends(D(2024, 1, 1), horizon)
    with_void = merged([*events, credit, void], ticks)
    without = merged(events, ticks)
    voided = replay_all(reference, with_void)
    alone = replay_all(reference, without)
    assert voided.rejected == [] and voided.refused == [] and alone.refused == []
    assert not voided.books[b.CUSTOMER].ledger.held
    assert books_of(voided) == books_of(alone)
    [note_entry] = [e for e in voided.entries if e.rule == "credit_note" and "CN-1" in e.entry_id]
    [void_entry] = [e for e in voided.entries if e.rule == "credit_note_voided"]
    exact = ("tax_payable", "accounts_receivable", "customer_credit", "contra_revenue")
    assert totals(void_entry, exact) == {
        (account, "credit" if side == "debit" else "debit"): amount
        for (account, side), amount in totals(note_entry, exact).items()
    }
    # Already at the first tick after the void.
    tick = next(day for day in ticks if day >= void[0])
    cut = with_void.index(b.clock(tick)) + 1
    cut_alone = without.index(b.clock(tick)) + 1
    assert books_of(replay_all(reference, with_void[:cut])) == books_of(
        replay_all(reference, without[:cut_alone])
    )


@SETTINGS
@given(
    lines=st.lists(st.integers(1, 10_000_00), min_size=1, max_size=3),
    tax=st.integers(0, 1_000_00),
    rate=st.decimals("0.5", "2", places=4),
    later_rate=st.decimals("0.5", "2", places=4),
    shares=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    credit_share=st.integers(1, 4),
)
def test_void_of_a_foreign_credit_note_leaves_at_most_a_cent_of_realized_fx(
    lines, tax, rate, later_rate, shares, credit_share
):
    reference = b.reference_data(
        b.fx("EUR", "USD", str(rate), D(2024, 1, 1)),
        b.fx("EUR", "USD", str(later_rate), D(2024, 3, 1)),
    )
    bill = b.invoice("INV-1", currency="EUR", lines=[("SUB", amount) for amount in lines], tax=tax)
    gross = bill.total_minor
    before = gross * shares[0] // 4
    credited = [
        (f"INV-1-L{n + 1}", max(1, amount * credit_share // 4)) for n, amount in enumerate(lines)
    ]
    note = b.credit_note("CN-1", "INV-1", currency="EUR", lines=credited, on=D(2024, 2, 1))
    due_after = gross - before - min(note.total_minor, gross - before)
    after = due_after * shares[1] // 3
    pays = []
    if before:
        pays.append(b.payment("PAY-1", [("INV-1", before)], currency="EUR", on=D(2024, 1, 20)))
    if after:
        pays.append(b.payment("PAY-2", [("INV-1", after)], currency="EUR", on=D(2024, 3, 5)))
    void = b.credit_note_void("CN-1", "INV-1", on=D(2024, 4, 1))
    state, outcomes = b.apply_all([bill, *pays[:1], note, *pays[1:], void], reference)
    alone, _ = b.apply_all([bill, *pays], reference)
    assert all(o.kind is OutcomeKind.posted for o in outcomes)
    with_void, without = nets(state), nets(alone)
    fx = with_void.pop(("US1", "realized_fx", "EUR"), (0, 0))
    assert abs(fx[1] - without.pop(("US1", "realized_fx", "EUR"), (0, 0))[1]) <= 1
    assert with_void == without
    ar = state.balance("US1", Account.accounts_receivable, "EUR")
    item = state.invoices["INV-1"]
    assert ar.functional_net_minor(Account.accounts_receivable) == (
        item.gross_functional_minor - item.functional_relieved(item.relieved_minor)
    )
