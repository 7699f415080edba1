"""Per-customer ledger state: everything one customer's postings need, and nothing else.

A :class:`CustomerLedger` is immutable (frozen dataclasses over read-only mappings); every
transition builds a new one (copy-on-write), so a caller can keep the old value to compare
or roll back. The maps that grow with the customer's history (seen, invoices, payments,
billed_by_contract) are :class:`ledger.frozen_map.FrozenMap`: a copy with one change costs
O(log n), not a copy of the whole map. It holds:

* ``seen``: event id → sha256 of the event's canonical JSON (idempotency);
* ``invoices``: open items per invoice (lines, applications, credits, write-offs, and
  what each credit note posted, so that its void can post the exact reverse);
* ``payments``: settled payments (applications, unapplied cash, refunds, disputes);
* ``balances``: per (entity, account, currency) debit/credit totals in both amounts;
* ``billed_by_contract``: amount billed so far per contract (the position key of a line:
  its contract id, else its obligation id), net of voids and credit notes;
* ``held``: events waiting for something (an invoice, a payment, an FX rate, a product),
  with the caller's opaque token (the original Kafka bytes), in arrival order.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

from ledger.accounts import Account, ProductFamily, Side, balance_of
from ledger.events import Event
from ledger.frozen_map import FrozenMap
from ledger.money import ratio_minor
from ledger.results import EntryStatus

BalanceKey = tuple[str, Account, str]


def digest_of(event: Event) -> str:
    """sha256 (hex) of the event's canonical JSON: what "same payload" means."""
    return hashlib.sha256(event.model_dump_json().encode("utf-8")).hexdigest()


def frozen(values: Mapping) -> Mapping:
    """A read-only copy of ``values``."""
    return MappingProxyType(dict(values))


def _empty() -> Mapping:
    return MappingProxyType({})


def _set_pair(pairs: tuple[tuple[str, int], ...], key: str, value: int) -> tuple:
    kept = [(k, v) for k, v in pairs if k != key]
    if value == 0:
        return tuple(kept)
    existing = [k for k, _ in pairs]
    if key in existing:
        index = existing.index(key)
        return (*kept[:index], (key, value), *kept[index:])
    return (*kept, (key, value))


@dataclass(frozen=True, slots=True)
class InvoiceLineItem:
    """One invoice line as billed: net amount and how it was split at issue."""

    line_id: str
    product_id: str
    family: ProductFamily
    net_minor: int
    # Part of net credited to unbilled AR (revenue recognised before it was billed).
    unbilled_minor: int = 0
    credited_minor: int = 0
    contract_id: str | None = None
    obligation_id: str | None = None

    @property
    def position_key(self) -> str | None:
        """Key of the contract position this line bills (contract id, else obligation id)."""
        return self.contract_id or self.obligation_id

    @property
    def deferred_minor(self) -> int:
        """Part of net credited to deferred revenue at issue."""
        return self.net_minor - self.unbilled_minor

    @property
    def creditable_minor(self) -> int:
        """Net amount not yet given back by credit notes."""
        return self.net_minor - self.credited_minor


@dataclass(frozen=True, slots=True)
class PostedLine:
    """One line a credit note posted: account, side, both amounts, the invoice line."""

    account: Account
    side: Side
    amount_minor: int
    functional_minor: int
    invoice_line_id: str | None = None


@dataclass(frozen=True, slots=True)
class CreditNoteItem:
    """What one credit note did to its invoice, kept so that a void can undo it exactly.

    ``credited``: (invoice line id, net amount given back) in invoice line order.
    ``lines``: the lines of its entry (tax, contra revenue, deferred revenue, unbilled
    AR per invoice line, AR, customer credit). ``write_offs_before``: how many write-offs
    the invoice had when the note was posted (a later one makes a void unsafe).
    """

    credit_note_id: str
    issue_date: dt.date
    credited: tuple[tuple[str, int], ...]
    lines: tuple[PostedLine, ...]
    write_offs_before: int = 0

    def posted(self, account: Account, invoice_line_id: str | None = None) -> tuple[int, int]:
        """(amount, functional amount) the note posted to ``account`` (for one line)."""
        lines = [
            line
            for line in self.lines
            if line.account is account
            and (invoice_line_id is None or line.invoice_line_id == invoice_line_id)
        ]
        return (
            sum(line.amount_minor for line in lines),
            sum(line.functional_minor for line in lines),
        )


@dataclass(frozen=True, slots=True)
class InvoiceItem:
    """An invoice as an open item: what was billed and what relieved its receivable."""

    invoice_id: str
    entity: str
    currency: str
    issue_date: dt.date
    due_date: dt.date
    gross_minor: int
    tax_minor: int
    gross_functional_minor: int
    # Rate of record at issue (functional per unit of ``currency``); 1 when the same.
    rate: Decimal
    lines: tuple[InvoiceLineItem, ...]
    # (payment_id, amount relieving AR), net of refunds that reopened it.
    applications: tuple[tuple[str, int], ...] = ()
    # (credit_note_id, total incl. tax, part that relieved AR).
    credits: tuple[tuple[str, int, int], ...] = ()
    # (event_id, amount).
    write_offs: tuple[tuple[str, int], ...] = ()
    voided: bool = False
    # What each credit note of ``credits`` posted; a note posted before this was kept
    # (state written by an older version) has none, and cannot be voided automatically.
    credit_notes: tuple[CreditNoteItem, ...] = ()
    # Credit notes voided since (no longer in ``credits``): a second void changes nothing.
    voided_credits: tuple[str, ...] = ()
    # Not state: the item's canonical JSON, filled once by :mod:`ledger.codec` (the item never
    # changes; a copy made by ``replace`` starts without it). Saves re-encoding every open
    # item of a customer on every save (issue 7).
    encoded_json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def applied_minor(self) -> int:
        """Payments applied to the receivable (net of refund reversals)."""
        return sum(amount for _, amount in self.applications)

    @property
    def credited_minor(self) -> int:
        """Credit notes in total (AR part and customer-credit part)."""
        return sum(total for _, total, _ in self.credits)

    @property
    def credited_ar_minor(self) -> int:
        """The part of credit notes that relieved the receivable."""
        return sum(ar_part for _, _, ar_part in self.credits)

    @property
    def written_off_minor(self) -> int:
        """Written off as bad debt."""
        return sum(amount for _, amount in self.write_offs)

    @property
    def relieved_minor(self) -> int:
        """Receivable relieved so far by payments, credits and write-offs."""
        return self.applied_minor + self.credited_ar_minor + self.written_off_minor

    @property
    def amount_due_minor(self) -> int:
        """What the customer still owes on this invoice (0 once voided)."""
        return 0 if self.voided else self.gross_minor - self.relieved_minor

    @property
    def paid(self) -> bool:
        """True once nothing is due and payments took part in settling it."""
        return not self.voided and self.amount_due_minor == 0 and self.applied_minor > 0

    def functional_relieved(self, relieved_minor: int) -> int:
        """Functional amount of AR relieved when ``relieved_minor`` in total is relieved.

        Cumulative and proportional to the invoice's functional gross, so relieving the
        whole gross always relieves exactly the functional gross: no residue in AR.
        """
        return ratio_minor(self.gross_functional_minor, relieved_minor, self.gross_minor)

    def has_credit(self, credit_note_id: str) -> bool:
        """True while ``credit_note_id`` is a live (not voided) credit note of this invoice."""
        return any(note_id == credit_note_id for note_id, _, _ in self.credits)

    def credit_note(self, credit_note_id: str) -> CreditNoteItem | None:
        """What ``credit_note_id`` posted, or None when it was not kept."""
        for note in self.credit_notes:
            if note.credit_note_id == credit_note_id:
                return note
        return None

    def with_application(self, payment_id: str, amount_minor: int) -> InvoiceItem:
        """Set the amount ``payment_id`` relieves (0 removes the application)."""
        return replace(self, applications=_set_pair(self.applications, payment_id, amount_minor))


@dataclass(frozen=True, slots=True)
class PaymentItem:
    """A settled payment: where its money went, and what was taken back."""

    payment_id: str
    entity: str
    currency: str
    settled_date: dt.date
    amount_minor: int
    fee_minor: int
    # (invoice_id, amount relieving AR now), in application order.
    applications: tuple[tuple[str, int], ...]
    # Part of the payment sitting in customer credit now.
    unapplied_minor: int
    refunded_minor: int = 0
    disputed_minor: int = 0
    # Not state: the item's canonical JSON, filled once by :mod:`ledger.codec` (the item never
    # changes; a copy made by ``replace`` starts without it). Saves re-encoding every open
    # item of a customer on every save (issue 7).
    encoded_json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def refundable_minor(self) -> int:
        """What a refund or a lost dispute may still take back."""
        return self.amount_minor - self.refunded_minor - self.disputed_minor


@dataclass(frozen=True, slots=True)
class Balance:
    """Debit and credit totals of one (entity, account, currency), both amounts."""

    debit_minor: int = 0
    credit_minor: int = 0
    functional_debit_minor: int = 0
    functional_credit_minor: int = 0

    def net_minor(self, account: Account) -> int:
        """Signed balance in transaction currency on the account's normal side."""
        return balance_of(account, self.debit_minor, self.credit_minor)

    def functional_net_minor(self, account: Account) -> int:
        """Signed functional balance on the account's normal side."""
        return balance_of(account, self.functional_debit_minor, self.functional_credit_minor)


@dataclass(frozen=True, slots=True)
class HeldEvent:
    """An event waiting for ``waiting_on`` (``invoice:<id>``, ``fx:EUR/USD@<date>`` ...)."""

    sequence: int
    event: Event
    digest: str
    token: bytes
    waiting_on: str
    status: EntryStatus
    held_on: dt.date


@dataclass(frozen=True, slots=True)
class CustomerLedger:
    """Everything the ledger knows about one customer (immutable; see module docstring)."""

    customer_id: str
    seen: Mapping[str, str] = field(default_factory=FrozenMap)
    invoices: Mapping[str, InvoiceItem] = field(default_factory=FrozenMap)
    payments: Mapping[str, PaymentItem] = field(default_factory=FrozenMap)
    balances: Mapping[BalanceKey, Balance] = field(default_factory=_empty)
    billed_by_contract: Mapping[str, int] = field(default_factory=FrozenMap)
    held: tuple[HeldEvent, ...] = ()
    next_hold_sequence: int = 0

    def balance(self, entity: str, account: Account, currency: str) -> Balance:
        """Totals of one account (zero when never posted)."""
        return self.balances.get((entity, account, currency), Balance())

    # These four grow with the customer's history: FrozenMap copies them in O(log n), where
    # a dict copy per event made one customer's n events cost O(n²) (issue 7).

    def with_invoice(self, item: InvoiceItem) -> CustomerLedger:
        """A copy with ``item`` stored under its invoice id."""
        invoices = FrozenMap.of(self.invoices).with_item(item.invoice_id, item)
        return replace(self, invoices=invoices)

    def with_payment(self, item: PaymentItem) -> CustomerLedger:
        """A copy with ``item`` stored under its payment id."""
        payments = FrozenMap.of(self.payments).with_item(item.payment_id, item)
        return replace(self, payments=payments)

    def with_seen(self, event_id: str, digest: str) -> CustomerLedger:
        """A copy that remembers ``event_id`` with ``digest``."""
        return replace(self, seen=FrozenMap.of(self.seen).with_item(event_id, digest))

    def with_billed(self, billed: Mapping[str, int]) -> CustomerLedger:
        """A copy with the billed-to-date amounts of ``billed`` replaced."""
        merged = FrozenMap.of(self.billed_by_contract).with_items(billed)
        return replace(self, billed_by_contract=merged)

    def held_digest(self, event_id: str) -> str | None:
        """Digest of the held event with ``event_id``, or None when none is held."""
        for held in self.held:
            if held.event.event_id == event_id:
                return held.digest
        return None
