"""Stateful test: the ledger against a model that is a dict of balances (TigerBeetle auditor).

Rules post valid and deliberately invalid events for one USD customer; the model computes
the expected balance of every account independently, in simple arithmetic, and the
invariants compare it with the ledger after every step.
"""

from __future__ import annotations

from collections import defaultdict

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from connectors.simulation import builders as b
from ledger.accounts import Account
from ledger.book import OutcomeKind, apply
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.state import CustomerLedger

AMOUNTS = st.integers(1, 10_000_00)


class LedgerMachine(RuleBasedStateMachine):
    """One customer, USD only; the model is ``balances[account] = debits - credits``."""

    invoices = Bundle("invoices")
    payments = Bundle("payments")
    credit_notes = Bundle("credit_notes")

    def __init__(self) -> None:
        super().__init__()
        self.reference: ReferenceData = b.reference_data()
        self.state = CustomerLedger(b.CUSTOMER)
        self.balances: dict[Account, int] = defaultdict(int)
        self.due: dict[str, int] = {}
        self.creditable: dict[str, int] = {}  # line net not yet credited
        self.invoice_creditable: dict[str, int] = {}  # gross - credits - write-offs
        self.unapplied: dict[str, int] = {}
        self.applied: dict[str, list[list]] = {}
        self.refundable: dict[str, int] = {}
        # credit note id -> [invoice id, amount, part to AR, write-offs before, voided]
        self.notes: dict[str, list] = {}
        self.write_offs: dict[str, int] = defaultdict(int)
        self.note_invoice: dict[str, str] = {}
        self.history: list = []
        self.counter = 0

    def _next(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}"

    def _apply(self, event):
        outcome = apply(self.state, event, self.reference)
        self.state = outcome.state
        # A rejected event is dead-lettered, not remembered: sent again once what it needs
        # is there (a redrive after the fix), it posts. Only the others must not move twice.
        if outcome.kind is not OutcomeKind.rejected:
            self.history.append(event)
        return outcome

    def _move(self, account: Account, debit_minus_credit: int) -> None:
        self.balances[account] += debit_minus_credit

    @rule(target=invoices, net=AMOUNTS, tax=st.integers(0, 1_000_00))
    def issue_invoice(self, net, tax):
        invoice_id = self._next("INV")
        outcome = self._apply(b.invoice(invoice_id, lines=[("SUB", net)], tax=tax))
        assert outcome.kind is OutcomeKind.posted
        self._move(Account.accounts_receivable, net + tax)
        self._move(Account.tax_payable, -tax)
        self._move(Account.deferred_revenue, -net)
        self.due[invoice_id], self.creditable[invoice_id] = net + tax, net
        self.invoice_creditable[invoice_id] = net + tax
        return invoice_id

    @rule(
        target=payments,
        invoice_id=invoices,
        amount=AMOUNTS,
        extra=st.integers(0, 100_00),
        fee=st.integers(0, 5_00),
    )
    def settle_payment(self, invoice_id, amount, extra, fee):
        payment_id = self._next("PAY")
        event = b.payment(payment_id, [(invoice_id, amount)], amount=amount + extra + fee, fee=fee)
        outcome = self._apply(event)
        if self.due[invoice_id] == 0:
            assert outcome.status is EntryStatus.invoice_already_settled
            return payment_id
        applied = min(amount, self.due[invoice_id])
        self.due[invoice_id] -= applied
        unapplied = amount + extra + fee - applied
        self._move(Account.cash_clearing, amount + extra)
        self._move(Account.accounts_receivable, -applied)
        self._move(Account.customer_credit, -unapplied)
        self._move(Account.processor_fees, fee)
        self.unapplied[payment_id] = unapplied
        self.applied[payment_id] = [[invoice_id, applied]]
        self.refundable[payment_id] = amount + extra + fee
        return payment_id

    @rule(target=credit_notes, invoice_id=invoices, amount=AMOUNTS)
    def issue_credit_note(self, invoice_id, amount):
        note_id = self._next("CN")
        self.note_invoice[note_id] = invoice_id
        outcome = self._apply(
            b.credit_note(note_id, invoice_id, lines=[(f"{invoice_id}-L1", amount)])
        )
        if amount > min(self.creditable[invoice_id], self.invoice_creditable[invoice_id]):
            assert outcome.status is EntryStatus.credit_exceeds_invoice
            return note_id
        to_ar = min(amount, self.due[invoice_id])
        self.notes[note_id] = [invoice_id, amount, to_ar, self.write_offs[invoice_id], False]
        self.creditable[invoice_id] -= amount
        self.invoice_creditable[invoice_id] -= amount
        self.due[invoice_id] -= to_ar
        self._move(Account.deferred_revenue, amount)
        self._move(Account.accounts_receivable, -to_ar)
        self._move(Account.customer_credit, -(amount - to_ar))
        return note_id

    @rule(note_id=credit_notes)
    def void_credit_note(self, note_id):
        void = b.credit_note_void(note_id, self.note_invoice[note_id], event_id=self._next("VOID"))
        outcome = self._apply(void)
        if note_id not in self.notes:  # refused when issued: the void waits for it
            assert outcome.kind is OutcomeKind.held
            return
        invoice_id, amount, to_ar, write_offs, voided = self.notes[note_id]
        if voided:
            assert (outcome.kind, outcome.entries) == (OutcomeKind.posted, ())
            return
        if self.write_offs[invoice_id] > write_offs:
            assert outcome.status is EntryStatus.credit_note_after_write_off
            return
        # Credit beyond the payments' unapplied cash is what credit notes left.
        from_notes = -self.balances[Account.customer_credit] - sum(self.unapplied.values())
        if amount - to_ar > max(0, from_notes):
            assert outcome.status is EntryStatus.credit_note_credit_used
            return
        assert outcome.kind is OutcomeKind.posted
        self.notes[note_id][4] = True
        self.due[invoice_id] += to_ar
        self.creditable[invoice_id] += amount
        self.invoice_creditable[invoice_id] += amount
        self._move(Account.deferred_revenue, -amount)
        self._move(Account.accounts_receivable, to_ar)
        self._move(Account.customer_credit, amount - to_ar)

    @rule(invoice_id=invoices, amount=AMOUNTS)
    def write_off(self, invoice_id, amount):
        event = b.write_off(invoice_id, amount, event_id=self._next("WO"))
        outcome = self._apply(event)
        if amount > self.due[invoice_id]:
            assert outcome.status is EntryStatus.write_off_exceeds_amount_due
            return
        assert outcome.kind is OutcomeKind.posted
        self.due[invoice_id] -= amount
        self.write_offs[invoice_id] += 1
        # What is written off can no longer be credited (gross - credited - written off).
        self.invoice_creditable[invoice_id] -= amount
        self._move(Account.bad_debt, amount)
        self._move(Account.accounts_receivable, -amount)

    @rule(payment_id=payments, amount=AMOUNTS)
    def refund(self, payment_id, amount):
        outcome = self._apply(b.refund(self._next("RF"), payment_id, amount))
        if payment_id not in self.refundable:
            assert outcome.status is EntryStatus.payment_missing or outcome.kind is (
                OutcomeKind.held
            )
            return
        if amount > self.refundable[payment_id]:
            assert outcome.status is EntryStatus.refund_exceeds_payment
            return
        # Customer credit first (the ledger's rule): this payment's unapplied cash, or the
        # credit balance the customer has (other payments' overpayments, credit notes).
        available = max(self.unapplied[payment_id], -self.balances[Account.customer_credit])
        from_credit = min(amount, available)
        rest = amount - from_credit
        for pair in reversed(self.applied[payment_id]):
            taken = min(rest, pair[1])
            pair[1] -= taken
            self.due[pair[0]] += taken
            rest -= taken
        self.unapplied[payment_id] -= min(from_credit, self.unapplied[payment_id])
        self.refundable[payment_id] -= amount
        self._move(Account.customer_credit, from_credit)
        self._move(Account.accounts_receivable, amount - from_credit)
        self._move(Account.cash_clearing, -amount)

    @rule(data=st.data())
    def redeliver(self, data):
        if not self.history:
            return
        before = self.state
        event = data.draw(st.sampled_from(self.history))
        outcome = apply(self.state, event, self.reference)
        assert outcome.state == before
        assert outcome.kind in (OutcomeKind.duplicate, OutcomeKind.rejected, OutcomeKind.held)

    @rule(amount=AMOUNTS)
    def invoice_for_unknown_entity(self, amount):
        before = self.state
        outcome = self._apply(
            b.invoice(self._next("INV"), lines=[("SUB", amount)], entity_name="NOPE")
        )
        assert outcome.status is EntryStatus.unknown_entity
        assert outcome.state is before

    @invariant()
    def balances_match_model(self):
        for account in Account:
            balance = self.state.balance(b.US, account, "USD")
            assert balance.debit_minor - balance.credit_minor == self.balances[account], account

    @invariant()
    def trial_balance_is_zero(self):
        debits = sum(v.debit_minor - v.credit_minor for v in self.state.balances.values())
        functional = sum(
            v.functional_debit_minor - v.functional_credit_minor
            for v in self.state.balances.values()
        )
        assert (debits, functional) == (0, 0)

    @invariant()
    def ar_equals_sum_of_amounts_due(self):
        items = self.state.invoices
        assert sum(item.amount_due_minor for item in items.values()) == sum(self.due.values())
        assert all(items[i].amount_due_minor == due for i, due in self.due.items())


LedgerMachine.TestCase.settings = settings(
    derandomize=True, deadline=None, max_examples=60, stateful_step_count=30
)
TestLedgerMachine = LedgerMachine.TestCase
