"""The revenue engine: one customer's ledger and revenue book, moved together.

:func:`apply` takes every customer event (billing, payments, usage, contracts). It runs
the ledger's :func:`ledger.book.apply` with a :class:`RevenueRules` rulebook, so one hold
list, one duplicate check and one release loop serve both halves:

* contract events change the :class:`RevenueBook` (:mod:`revenue.contracts`); the ledger
  remembers their ids; an amendment or cancellation for a contract not booked yet waits
  (``contract:<id>``) and is released when it is;
* an invoice line is tied to its obligation: named by contract and obligation; by
  contract and product; by obligation alone; or, naming neither, to an *implied contract*
  ``implied:<invoice id>`` with one obligation per line (the product mapping's pattern
  over the line's service period; point in time on the issue day without one), so every
  invoice is recognised. A line naming an obligation that has not arrived waits for it
  (``obligation:<contract id>/<obligation id>``);
* the ledger splits billing, usage, voids and credits between deferred revenue and
  unbilled AR from the contract position, given the revenue recognised per contract;
* usage must name a usage obligation of its contract, and is recognised as consumed;
* a credit note first takes back billing above what the contract is now allocated
  (after a cancellation or a prospective price cut); then, for the remaining service,
  it lowers the obligation's remaining schedule (a negative segment from its issue
  date to the service end); for past service, a usage or point-in-time obligation, or
  beyond what remains, it reverses recognised revenue at once (contra revenue);
* voiding an invoice ends its implied contract: what it recognised is reversed at the
  next clock run;
* voiding a credit note undoes it as if it had never been issued: the billing it took
  back returns to the contract, what it reversed at once is recognised again (the
  ledger reverses its contra revenue), and each obligation's schedule is put back as it
  was before the credit, so the next clock run catches up what the lowered schedule did
  not earn meanwhile (a change of transaction price: cumulative catch-up). Credit notes
  are undone last in, first out: voiding one whose obligation's schedule changed since
  (a later credit note, an amendment, a cancellation, a write-off) is refused
  (``credit_note_schedule_changed``) for a person to correct.

:func:`run_clock` is a tick for one customer: expire old holds, re-try the others, then
recognise everything due (:func:`revenue.recognition.recognize`).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, replace

from ledger import book
from ledger.book import ExpiredHold, OutcomeKind, RejectedHold
from ledger.entries import JournalEntry
from ledger.events import (
    ClockAdvanced,
    CreditNoteIssued,
    CreditNoteVoided,
    Event,
    InvoiceIssued,
    InvoiceLine,
    InvoiceVoided,
    InvoiceWrittenOff,
    UsageRecorded,
)
from ledger.money import allocate
from ledger.posting import (
    Held,
    Posted,
    Rejected,
    RuleContext,
    RuleResult,
    consume_position,
    product_key,
)
from ledger.reference import ReferenceData
from ledger.results import EntryStatus
from ledger.state import CustomerLedger, digest_of
from revenue.contracts import apply_contract_event, contract_key, method_for
from revenue.events import CONTRACT_EVENTS
from revenue.recognition import recognize
from revenue.schedule import Segment
from revenue.state import Contract, CreditRecord, Obligation, RevenueBook

_DAY = dt.timedelta(days=1)


def implied_contract_id(invoice_id: str) -> str:
    """Id of the contract implied by an invoice whose lines name none."""
    return f"implied:{invoice_id}"


def obligation_key(contract_id: str | None, obligation_id: str) -> str:
    """Hold key of an invoice or usage waiting for an obligation."""
    return f"obligation:{contract_id or ''}/{obligation_id}"


@dataclass(frozen=True, slots=True)
class CustomerBooks:
    """A customer's ledger state and revenue book."""

    ledger: CustomerLedger
    revenue: RevenueBook

    @classmethod
    def new(cls, customer_id: str) -> CustomerBooks:
        """Empty books for ``customer_id``."""
        return cls(CustomerLedger(customer_id), RevenueBook(customer_id))


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of :func:`apply`; the fields of :class:`ledger.book.Outcome`, with books."""

    kind: OutcomeKind
    books: CustomerBooks
    status: EntryStatus
    entries: tuple[JournalEntry, ...] = ()
    message: str = ""
    waiting_on: str | None = None
    released: tuple[str, ...] = ()
    rejected_holds: tuple[RejectedHold, ...] = ()


@dataclass(frozen=True, slots=True)
class ClockRun:
    """Result of :func:`run_clock` for one customer."""

    books: CustomerBooks
    entries: tuple[JournalEntry, ...] = ()
    expired: tuple[ExpiredHold, ...] = ()
    rejected_holds: tuple[RejectedHold, ...] = ()
    # (contract id, obligation id, message): recognition that could not be posted.
    refused: tuple[tuple[str, str, str], ...] = ()


def apply(
    books: CustomerBooks,
    event: Event,
    reference: ReferenceData,
    *,
    token: bytes = b"",
    as_of: dt.date | None = None,
) -> Outcome:
    """Apply one customer event to ``books`` (see the module docstring).

    ``as_of`` is the partition's last tick. Ticks skip a customer with nothing to
    recognise (:func:`needs_clock`); such a customer is first brought up to ``as_of`` as
    if they had run, so a change now is not back-dated into months already closed by
    ticks: the result does not depend on how often the clock ticks.
    """
    rules = RevenueRules(_caught_up(books, as_of).revenue)
    outcome = book.apply(books.ledger, event, reference, token=token, rules=rules)
    # Nothing posted (held, duplicate, rejected): the revenue book stays as it was.
    posted = outcome.kind is OutcomeKind.posted
    return Outcome(
        outcome.kind,
        CustomerBooks(outcome.state, rules.revenue if posted else books.revenue),
        outcome.status,
        outcome.entries,
        outcome.message,
        outcome.waiting_on,
        outcome.released,
        outcome.rejected_holds,
    )


def run_clock(
    books: CustomerBooks,
    clock: ClockAdvanced,
    reference: ReferenceData,
    *,
    hold_timeout_days: int | None = None,
) -> ClockRun:
    """One tick for one customer: expire holds, re-try holds, recognise revenue."""
    state, expired = books.ledger, []
    if hold_timeout_days is not None:
        state, expired = book.expire_holds(state, clock.business_date, hold_timeout_days)
    rules = RevenueRules(books.revenue)
    release = book.retry_holds(state, reference, rules)
    recognition = recognize(release.state, rules.revenue, clock, reference)
    return ClockRun(
        CustomerBooks(recognition.ledger, recognition.revenue),
        release.entries + recognition.entries,
        tuple(expired),
        release.rejected_holds,
        recognition.refused,
    )


def _caught_up(books: CustomerBooks, as_of: dt.date | None) -> CustomerBooks:
    revenue = books.revenue
    if as_of is None or not revenue.contracts or needs_clock(books):
        return books
    if revenue.clock is not None and revenue.clock >= as_of:
        return books
    for contract in tuple(revenue.contracts.values()):
        caught_up = contract
        for obligation in contract.obligations.values():
            through = obligation.recognized_through
            if obligation.segments and (through is None or through < as_of):
                obligation = replace(obligation, recognized_through=as_of)
                caught_up = caught_up.with_obligation(obligation)
        if caught_up is not contract:  # storing an unchanged contract changes nothing
            revenue = revenue.with_contract(caught_up)
    return replace(books, revenue=replace(revenue, clock=as_of))


def needs_clock(books: CustomerBooks) -> bool:
    """True when a tick may do something for this customer (holds, or revenue to run)."""
    return bool(books.ledger.held) or books.revenue.is_active()


class RevenueRules:
    """The ledger rulebook with contracts: see the module docstring.

    Holds the revenue book while one :func:`ledger.book.apply` runs; it changes only
    when an event posts, so a held or rejected event leaves it as it was.
    """

    def __init__(self, revenue: RevenueBook) -> None:
        self.revenue = revenue

    def is_waiting(self, key: str, state: CustomerLedger, reference: ReferenceData) -> bool:
        """Contract and obligation keys here; the others are the ledger's."""
        kind, _, name = key.partition(":")
        if kind == "contract":
            return name not in self.revenue.contracts
        if kind == "obligation":
            contract_id, _, obligation_id = name.partition("/")
            return not self._candidates(contract_id or None, obligation_id)
        return book.is_waiting(key, state, reference)

    def evaluate(self, state: CustomerLedger, event: Event, reference: ReferenceData) -> RuleResult:
        """Run the event's rule against both books; commit the revenue side if posted."""
        if isinstance(event, CONTRACT_EVENTS):
            changed = apply_contract_event(self.revenue, event, reference)
            if not isinstance(changed, RevenueBook):
                return changed
            self.revenue = changed
            return Posted(state.with_seen(event.event_id, digest_of(event)))
        if isinstance(event, InvoiceIssued):
            return self._invoice(state, event, reference)
        if isinstance(event, UsageRecorded):
            return self._usage(state, event, reference)
        if isinstance(event, CreditNoteIssued):
            return self._credit_note(state, event, reference)
        if isinstance(event, CreditNoteVoided):
            return self._credit_note_voided(state, event, reference)
        if isinstance(event, InvoiceWrittenOff):
            return self._write_off(state, event, reference)
        result = book.evaluate(state, event, self._context(reference))
        if isinstance(result, Posted) and isinstance(event, InvoiceVoided):
            self.revenue = _voided(self.revenue, event, state)
        return result

    def _context(
        self,
        reference: ReferenceData,
        credit_to_revenue: Mapping[str, int] | None = None,
        write_off_relief: Mapping[str, tuple[int, int]] | None = None,
    ) -> RuleContext:
        return RuleContext(
            reference,
            self.revenue.recognized_by_contract(),
            credit_to_revenue or {},
            write_off_relief or {},
        )

    # --- uncollectible invoices ----------------------------------------------------------

    def _write_off(
        self, state: CustomerLedger, event: InvoiceWrittenOff, reference: ReferenceData
    ) -> RuleResult:
        """A write-off of all that is due ends the contracts it billed (entity policy).

        Each contract's share of the write-off (by line, net of credits; the tax share
        stays bad debt) first relieves billing ahead of revenue (Dr deferred revenue: it
        will never be earned); the earned rest is bad debt (``stop_recognition``) or
        reverses revenue (``reverse_revenue``). The contracts' obligations stop the day
        before. A partial write-off is a credit loss only: bad debt, recognition goes on.
        """
        item = state.invoices.get(event.invoice_id)
        if item is None or item.voided or event.amount_minor != item.amount_due_minor:
            return book.evaluate(state, event, self._context(reference))
        reverse = reference.uncollectible_policy(event.entity) == "reverse_revenue"
        weights = [line.net_minor - line.credited_minor for line in item.lines]
        shares = allocate(event.amount_minor, [*weights, item.tax_minor])[: len(weights)]
        context = self._context(reference)
        relief: dict[str, tuple[int, int]] = {}
        for line, share in zip(item.lines, shares, strict=True):
            key = line.position_key
            if key is None or key not in self.revenue.contracts or not share:
                continue
            position = context.position(state, key) - sum(relief.get(key, (0, 0))[:1])
            unearned, earned = consume_position(position, share)
            deferred, revenue = relief.get(key, (0, 0))
            relief[key] = (deferred + unearned, revenue + (earned if reverse else 0))
        result = book.evaluate(state, event, self._context(reference, None, relief))
        if isinstance(result, Posted):
            for key, (deferred, revenue) in relief.items():
                self.revenue = self.revenue.with_contract(
                    _uncollectible(self.revenue.contracts[key], event, deferred, revenue)
                )
        return result

    def _candidates(self, contract_id: str | None, obligation_id: str) -> list[Obligation]:
        if contract_id is None:
            return self.revenue.obligations_with_id(obligation_id)
        contract = self.revenue.contracts.get(contract_id)
        if contract is None or obligation_id not in contract.obligations:
            return []
        return [contract.obligations[obligation_id]]

    # --- invoices ----------------------------------------------------------------------

    def _invoice(
        self, state: CustomerLedger, event: InvoiceIssued, reference: ReferenceData
    ) -> RuleResult:
        lines = []
        for line in event.lines:
            resolved = self._resolve_line(event, line, reference)
            if isinstance(resolved, Held | Rejected):
                return resolved
            lines.append(resolved)
        completed = event.model_copy(update={"lines": tuple(lines)})
        result = book.evaluate(state, completed, self._context(reference), seen_as=event)
        if isinstance(result, Posted):
            self.revenue = _invoiced(self.revenue, event, completed, result.state, reference)
        return result

    def _resolve_line(
        self, event: InvoiceIssued, line: InvoiceLine, reference: ReferenceData
    ) -> InvoiceLine | Held | Rejected:
        if line.contract_id is None and line.obligation_id is None:
            if reference.product_mapping(line.product_id, event.issue_date) is None:
                return Held(
                    EntryStatus.unknown_product,
                    product_key(line.product_id),
                    f"product_id {line.product_id!r} has no product mapping",
                )
            return line.model_copy(
                update={
                    "contract_id": implied_contract_id(event.invoice_id),
                    "obligation_id": line.line_id,
                }
            )
        if line.contract_id is not None:
            contract = self.revenue.contracts.get(line.contract_id)
            if contract is None:
                return Held(
                    EntryStatus.contract_missing,
                    contract_key(line.contract_id),
                    f"contract_id {line.contract_id!r} of line {line.line_id!r} has not been"
                    " booked",
                )
            mismatch = _mismatch(contract, event.entity, event.currency)
            if mismatch is not None:
                return mismatch
            if line.obligation_id is None:
                return _by_product(contract, line)
        assert line.obligation_id is not None
        candidates = self._candidates(line.contract_id, line.obligation_id)
        if not candidates:
            return Held(
                EntryStatus.contract_missing,
                obligation_key(line.contract_id, line.obligation_id),
                f"obligation_id {line.obligation_id!r} of line {line.line_id!r} has not been"
                " booked",
            )
        if len(candidates) > 1:
            return Rejected(
                EntryStatus.unknown_obligation,
                f"obligation_id {line.obligation_id!r} of line {line.line_id!r} is in several"
                " contracts; the line must name its contract_id",
            )
        return line.model_copy(update={"contract_id": candidates[0].contract_id})

    # --- usage -------------------------------------------------------------------------

    def _usage(
        self, state: CustomerLedger, event: UsageRecorded, reference: ReferenceData
    ) -> RuleResult:
        contract = self.revenue.contracts.get(event.contract_id)
        if contract is None:
            return Held(
                EntryStatus.contract_missing,
                contract_key(event.contract_id),
                f"contract_id {event.contract_id!r} has not been booked",
            )
        obligation = contract.obligations.get(event.obligation_id)
        if obligation is None:
            return Held(
                EntryStatus.contract_missing,
                obligation_key(event.contract_id, event.obligation_id),
                f"obligation_id {event.obligation_id!r} is not in contract"
                f" {event.contract_id!r} yet",
            )
        mismatch = _mismatch(contract, event.entity, event.currency)
        if mismatch is not None:
            return mismatch
        if not obligation.is_usage:
            return Rejected(
                EntryStatus.not_a_usage_obligation,
                f"obligation_id {event.obligation_id!r} is recognised {obligation.pattern},"
                " not from usage",
            )
        if contract.cancelled_on is not None and event.usage_date >= contract.cancelled_on:
            return Rejected(
                EntryStatus.contract_cancelled,
                f"usage on {event.usage_date} after contract {contract.contract_id!r} was"
                f" cancelled on {contract.cancelled_on}",
            )
        result = book.evaluate(state, event, self._context(reference))
        if isinstance(result, Posted):
            consumed = replace(
                obligation, recognized_minor=obligation.recognized_minor + event.amount_minor
            )
            self.revenue = self.revenue.with_contract(contract.with_obligation(consumed))
        return result

    # --- credit notes ------------------------------------------------------------------

    def _credit_note(
        self, state: CustomerLedger, event: CreditNoteIssued, reference: ReferenceData
    ) -> RuleResult:
        splits = self._credit_splits(state, event)
        to_revenue = {line_id: split.now for line_id, split in splits.items()}
        result = book.evaluate(state, event, self._context(reference, to_revenue))
        if isinstance(result, Posted):
            for split in splits.values():
                contract = self.revenue.contracts[split.obligation.contract_id]
                current = contract.obligations[split.obligation.obligation_id]
                credited = _credited(current, split.spread, split.now, event)
                record = CreditRecord(
                    event.credit_note_id,
                    split.excess,
                    split.spread,
                    split.now,
                    current.segments,
                    credited.segments,
                )
                credited = replace(credited, credits=(*credited.credits, record))
                amount = split.excess + split.spread + split.now
                self.revenue = self.revenue.with_contract(
                    contract.with_obligation(credited).with_billing(event.issue_date, -amount)
                )
        return result

    def _credit_note_voided(
        self, state: CustomerLedger, event: CreditNoteVoided, reference: ReferenceData
    ) -> RuleResult:
        """Undo what the credit note did to its obligations (module docstring)."""
        item = state.invoices.get(event.invoice_id)
        restored: RevenueBook | Rejected | None = None
        if item is not None and item.credit_note(event.credit_note_id) is not None:
            restored = _credit_restored(self.revenue, event)
        result = book.evaluate(state, event, self._context(reference))
        if isinstance(restored, Rejected):
            # The ledger's own refusal (a write-off since ...) names the cause better.
            return result if isinstance(result, Rejected) else restored
        if isinstance(result, Posted) and restored is not None:
            self.revenue = restored
        return result

    def _credit_splits(
        self, state: CustomerLedger, event: CreditNoteIssued
    ) -> dict[str, _CreditSplit]:
        """How each credited line is taken back (see :class:`_CreditSplit`), in line order."""
        item = state.invoices.get(event.invoice_id)
        if item is None:
            return {}  # the ledger holds the credit note until its invoice arrives
        credited = Counter[str]()
        for credit_line in event.lines:
            credited[credit_line.invoice_line_id] += credit_line.amount_minor
        over_billed: dict[str, int] = {}
        splits: dict[str, _CreditSplit] = {}
        for line in item.lines:
            if line.line_id not in credited or line.obligation_id is None:
                continue
            found = self._candidates(line.contract_id, line.obligation_id)
            if len(found) != 1:
                continue
            obligation = found[0]
            contract = self.revenue.contracts[obligation.contract_id]
            if contract.contract_id not in over_billed:
                allocated = sum(o.allocated_minor for o in contract.obligations.values())
                billed = state.billed_by_contract.get(contract.contract_id, 0)
                over_billed[contract.contract_id] = max(0, billed - allocated)
            amount = credited[line.line_id]
            excess = min(amount, over_billed[contract.contract_id])
            over_billed[contract.contract_id] -= excess
            spread, now = _credit_split(obligation, amount - excess, event)
            splits[line.line_id] = _CreditSplit(obligation, excess, spread, now)
        return splits


@dataclass(frozen=True, slots=True)
class _CreditSplit:
    """A credited invoice line, taken back in this order.

    ``excess``: billing above what the contract's obligations are now allocated (after a
    cancellation or a prospective price cut): it only relieves the contract position.
    ``spread``: lowers the rest of the obligation's schedule. ``now``: reverses
    recognised revenue at once (contra revenue).
    """

    obligation: Obligation
    excess: int
    spread: int
    now: int


def _mismatch(contract: Contract, entity: str, currency: str) -> Rejected | None:
    if contract.entity != entity:
        return Rejected(
            EntryStatus.entity_mismatch,
            f"entity {entity!r} differs from contract {contract.contract_id!r} entity"
            f" {contract.entity!r}",
        )
    if contract.currency != currency:
        return Rejected(
            EntryStatus.currency_mismatch,
            f"currency {currency!r} differs from contract {contract.contract_id!r} currency"
            f" {contract.currency!r}",
        )
    return None


def _by_product(contract: Contract, line: InvoiceLine) -> InvoiceLine | Rejected:
    matches = [o for o in contract.obligations.values() if o.product_id == line.product_id]
    if len(matches) != 1:
        return Rejected(
            EntryStatus.unknown_obligation,
            f"line {line.line_id!r} names contract {contract.contract_id!r} but no obligation,"
            f" and {len(matches)} of its obligations are for product {line.product_id!r}",
        )
    return line.model_copy(update={"obligation_id": matches[0].obligation_id})


def _invoiced(
    revenue: RevenueBook,
    event: InvoiceIssued,
    completed: InvoiceIssued,
    ledger: CustomerLedger,
    reference: ReferenceData,
) -> RevenueBook:
    """Implied contracts created, first-billed days set."""
    implied_id = implied_contract_id(event.invoice_id)
    implied = Contract(
        contract_id=implied_id,
        entity=event.entity,
        currency=event.currency,
        booking_date=event.issue_date,
        rate=ledger.invoices[event.invoice_id].rate,
        total_price_minor=0,
        implied=True,
    )
    for original, line in zip(event.lines, completed.lines, strict=True):
        assert line.contract_id is not None and line.obligation_id is not None
        if original.contract_id is None and original.obligation_id is None:
            obligation = _implied_obligation(event, line, reference)
            implied = replace(
                implied.with_obligation(obligation),
                total_price_minor=implied.total_price_minor + line.amount_minor,
            ).with_billing(event.issue_date, line.amount_minor)
            continue
        # The contract's first invoice starts the at_invoice clock of all its obligations:
        # a bundle billed on one line (licence and support) is billed as a whole.
        contract = revenue.contracts[line.contract_id]
        for obligation in contract.obligations.values():
            if obligation.billed_on is None or event.issue_date < obligation.billed_on:
                contract = contract.with_obligation(replace(obligation, billed_on=event.issue_date))
        revenue = revenue.with_contract(contract.with_billing(event.issue_date, line.amount_minor))
    if implied.obligations:
        revenue = revenue.with_contract(implied)
    return revenue


def _implied_obligation(
    event: InvoiceIssued, line: InvoiceLine, reference: ReferenceData
) -> Obligation:
    """One obligation for an invoice line without a contract (module docstring)."""
    mapping = reference.product_mapping(line.product_id, event.issue_date)
    assert mapping is not None  # checked before the ledger posted
    ratable = mapping.pattern in ("ratable_daily", "ratable_monthly")
    has_period = line.service_start is not None and line.service_end is not None
    start = line.service_start or event.issue_date
    if ratable and has_period:
        method = method_for(mapping.pattern, event.entity, line.product_id, start, reference)
        assert method is not None and line.service_end is not None
        segment = Segment(start, max(start, line.service_end), line.amount_minor, method)
        end: dt.date | None = segment.end
    else:
        # Point in time, usage billed without a usage record, or no service period: the
        # invoice is the delivery (recognised at the end of any stated service period).
        start = line.service_end or start
        segment = Segment(start, start, line.amount_minor, "point_in_time")
        end = None
    return Obligation(
        obligation_id=line.line_id,
        contract_id=implied_contract_id(event.invoice_id),
        product_id=line.product_id,
        family=mapping.family,
        pattern=mapping.pattern,
        method=segment.method,
        ssp_minor=line.amount_minor,
        service_start=segment.start,
        service_end=end,
        segments=(segment,),
        billed_on=event.issue_date,
        last_change=f"invoice:{event.invoice_id}",
    )


def _voided(revenue: RevenueBook, event: InvoiceVoided, before: CustomerLedger) -> RevenueBook:
    """The bill is taken back; an implied contract ends with it: its schedules earn nothing."""
    for line in before.invoices[event.invoice_id].lines:
        billed = revenue.contracts.get(line.contract_id or "")
        if billed is not None:
            revenue = revenue.with_contract(billed.with_billing(event.void_date, -line.net_minor))
    contract = revenue.contracts.get(implied_contract_id(event.invoice_id))
    if contract is None:
        return revenue
    change = f"void:{event.invoice_id}"
    for obligation in contract.obligations.values():
        first = obligation.first_day() or obligation.service_start
        ended = tuple(s.stopped(first - _DAY) for s in obligation.segments)
        contract = contract.with_obligation(replace(obligation, segments=ended, last_change=change))
    return revenue.with_contract(contract)


def _credit_restored(revenue: RevenueBook, event: CreditNoteVoided) -> RevenueBook | Rejected:
    """``revenue`` as if the credit note had never been issued (module docstring).

    Per obligation the credit's records are undone newest first; each must find the
    schedule exactly as the credit left it, else the void is refused.
    """
    change = f"credit_note_void:{event.credit_note_id}"
    for contract_id in sorted(revenue.contracts):
        contract = revenue.contracts[contract_id]
        amount = 0
        for obligation in tuple(contract.obligations.values()):
            records = [r for r in obligation.credits if r.credit_note_id == event.credit_note_id]
            if not records:
                continue
            current = obligation
            for record in reversed(records):
                if current.segments != record.segments_after:
                    return Rejected(
                        EntryStatus.credit_note_schedule_changed,
                        f"the schedule of obligation {obligation.obligation_id!r} of contract"
                        f" {contract_id!r} changed after credit note"
                        f" {event.credit_note_id!r} (last change {obligation.last_change!r}):"
                        " void the later credit notes first, or correct it by hand",
                    )
                current = replace(
                    current,
                    segments=record.segments_before,
                    recognized_minor=current.recognized_minor + record.now_minor,
                )
                amount += record.amount_minor
            kept = tuple(r for r in obligation.credits if r.credit_note_id != event.credit_note_id)
            contract = contract.with_obligation(replace(current, credits=kept, last_change=change))
        if amount:
            contract = contract.with_billing(event.void_date, amount)
        if contract is not revenue.contracts[contract_id]:
            revenue = revenue.with_contract(contract)
    return revenue


def _uncollectible(
    contract: Contract, event: InvoiceWrittenOff, deferred: int, revenue: int
) -> Contract:
    """``contract`` after its invoice was written off: no more recognition, revenue reversed."""
    last = event.write_off_date - _DAY
    change = f"write_off:{event.invoice_id}"
    left = revenue
    for obligation in sorted(contract.obligations.values(), key=lambda o: o.obligation_id):
        reversed_here = min(left, max(0, obligation.recognized_minor)) if left else 0
        left -= reversed_here
        segments = tuple(s.stopped(last) for s in obligation.segments)
        if reversed_here and not obligation.is_usage:
            through = obligation.recognized_through
            first = obligation.first_day() or event.write_off_date
            day = min(event.write_off_date, through if through is not None else first)
            segments += (Segment(day, day, -reversed_here, "point_in_time"),)
        contract = contract.with_obligation(
            replace(
                obligation,
                segments=segments,
                recognized_minor=obligation.recognized_minor - reversed_here,
                last_change=change,
            )
        )
    return contract.with_billing(event.write_off_date, -(deferred + revenue))


def _credit_split(
    obligation: Obligation, amount_minor: int, event: CreditNoteIssued
) -> tuple[int, int]:
    """``(spread over the rest of the service, reversed now)`` of a credit on a line."""
    if (
        event.applies_to == "past_service"
        or obligation.is_usage
        or obligation.method == "point_in_time"
    ):
        return 0, amount_minor
    remaining = obligation.allocated_minor - obligation.scheduled_through(event.issue_date - _DAY)
    spread = min(amount_minor, max(0, remaining))
    return spread, amount_minor - spread


def _credited(obligation: Obligation, spread: int, now: int, event: CreditNoteIssued) -> Obligation:
    """The obligation after a credit: the rest of its schedule lowered, revenue reversed.

    ``spread``: the schedule from the credit's date is re-planned for what remains less
    the credit, by the obligation's method (a fresh segment, never a negative one, so
    no month of the rest earns less than nothing). ``now``: a reversal dated where what
    was recognised already counts it (the credit's date, or the last run if earlier).
    """
    segments = obligation.segments
    first = obligation.first_day() or event.issue_date
    if spread:
        last = obligation.last_day()
        assert last is not None  # spread > 0 means service remains after the credit
        start = min(max(event.issue_date, first), last)
        left = obligation.allocated_minor - obligation.scheduled_through(start - _DAY)
        method = obligation.method or "daily"
        end = start if method == "point_in_time" else last
        segments = tuple(s.stopped(start - _DAY) for s in segments)
        segments += (Segment(start, end, left - spread, method),)
    if now and not obligation.is_usage:
        through = obligation.recognized_through
        day = min(event.issue_date, through if through is not None else first)
        segments += (Segment(day, day, -now, "point_in_time"),)
    return replace(
        obligation,
        segments=segments,
        recognized_minor=obligation.recognized_minor - now,
        last_change=f"credit_note:{event.credit_note_id}",
    )
