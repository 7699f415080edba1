"""Posting rules for billing events: invoice issued and voided, credit note, write-off.

Postings (Dr / Cr):

* invoice issued: Dr AR gross; Cr tax payable; per line Cr unbilled AR while the line's
  contract position is an asset (revenue recognised before billing, from
  ``recognized_to_date``), the rest Cr deferred revenue;
* invoice voided: only when nothing was applied, credited or written off (else
  ``invoice_has_applications``): Cr AR, Dr tax payable; per line Dr deferred revenue while
  the contract position is a liability, the rest Dr unbilled AR (a line without a
  contract: the issue split reversed);
* credit note: Dr tax payable; per line Dr contra revenue for the part the revenue engine
  says reverses recognised revenue (``credit_to_revenue``), the rest Dr deferred revenue /
  unbilled AR as for a void (a line without a contract: in the proportion of the line's
  deferred / unbilled split at issue, the unbilled part to contra revenue); Cr AR up to
  the amount due, the rest Cr customer credit (the invoice was partly or fully paid);
* credit note voided: the credit note's entry with sides swapped, in the void's period:
  Dr AR and Dr customer credit as the note credited them, Cr tax payable, Cr contra
  revenue as it debited it; the part that lowered a contract position raises it again
  (Cr unbilled AR while the contract is an asset, the rest Cr deferred revenue: the
  note's own split unless the position crossed zero since). Refused when the note was
  kept without its entry (state of an older version: ``credit_note_split_unknown``),
  when the invoice was written off since (``credit_note_after_write_off``: it would
  reopen bad debt), or when the customer credit it gave was refunded or applied since
  (``credit_note_credit_used``: there is no credit left to take back; a person re-bills;
  a payment's unapplied cash in the same balance is not taken, it stays refundable).
  The AR part is always reversed: the customer owes it again even if the invoice was
  paid since (the invoice shows it due). A second void changes nothing;
* write-off: Cr AR, at most the amount due; Dr deferred revenue and contra revenue for
  the parts the revenue engine names per contract (``write_off_relief``: billing ahead
  of revenue, and an implied price concession), the rest Dr bad debt.

Foreign-currency invoices are converted at the rate of record of their issue date.
Credit notes, write-offs and voids relieve AR at the invoice's own functional amount
(cumulative share of its functional gross) and are converted at the invoice's rate, so
they need no rate of their own and leave no FX residue in AR.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ledger.accounts import Account, Side
from ledger.drafts import EntryHeader, LineSpec
from ledger.entries import JournalEntry
from ledger.errors import InvariantViolation
from ledger.events import (
    CreditNoteIssued,
    CreditNoteVoided,
    InvoiceIssued,
    InvoiceVoided,
    InvoiceWrittenOff,
)
from ledger.money import allocate
from ledger.posting import (
    Held,
    Posted,
    Rejected,
    RuleContext,
    check_entity_and_currency,
    consume_position,
    credit_note_key,
    dims,
    find_invoice,
    header_for,
    make_entry,
    product_key,
    rate_for,
    restore_position,
)
from ledger.results import EntryStatus
from ledger.state import (
    CreditNoteItem,
    CustomerLedger,
    InvoiceItem,
    InvoiceLineItem,
    PostedLine,
)


def post_invoice_issued(
    state: CustomerLedger, event: InvoiceIssued, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr AR gross; Cr tax payable; Cr deferred revenue / unbilled AR per line."""
    reference = context.reference
    failure = check_entity_and_currency(event, event.currency, reference)
    if failure is not None:
        return failure
    if event.invoice_id in state.invoices:
        return Rejected(
            EntryStatus.invoice_exists,
            f"invoice_id {event.invoice_id!r} was issued by another event",
        )
    lines = _invoice_lines(state, event, context)
    if isinstance(lines, Held):
        return lines
    rate = rate_for(reference, event.entity, event.currency, event.issue_date)
    if isinstance(rate, Held):
        return rate
    item = InvoiceItem(
        invoice_id=event.invoice_id,
        entity=event.entity,
        currency=event.currency,
        issue_date=event.issue_date,
        due_date=event.due_date,
        gross_minor=event.total_minor,
        tax_minor=sum(t.amount_minor for t in event.tax_lines),
        gross_functional_minor=0,
        rate=rate,
        lines=lines,
    )
    header = header_for(event, reference, "invoice_issued", f"Invoice {event.invoice_id} issued")
    entry = make_entry(header, event.currency, _invoice_specs(header, item), rate)
    if isinstance(entry, Rejected):
        return entry
    item = replace(item, gross_functional_minor=entry.lines[0].functional_amount_minor)
    billed = _billed_after(state.billed_by_contract, lines, sign=1)
    return Posted(state.with_invoice(item).with_billed(billed), (entry,))


def _invoice_lines(
    state: CustomerLedger, event: InvoiceIssued, context: RuleContext
) -> tuple[InvoiceLineItem, ...] | Held:
    billed: dict[str, int] = {}  # this invoice's lines so far, over the state's billed
    items = []
    for line in event.lines:
        family = context.reference.product_family(line.product_id, event.issue_date)
        if family is None:
            return Held(
                EntryStatus.unknown_product,
                product_key(line.product_id),
                f"product_id {line.product_id!r} has no product mapping",
            )
        unbilled = 0
        key = line.contract_id or line.obligation_id
        if key is not None:
            already = billed.get(key, state.billed_by_contract.get(key, 0))
            position = already - context.recognized_to_date.get(key, 0)
            unbilled, _ = restore_position(position, line.amount_minor)
            billed[key] = already + line.amount_minor
        items.append(
            InvoiceLineItem(
                line_id=line.line_id,
                product_id=line.product_id,
                family=family,
                net_minor=line.amount_minor,
                unbilled_minor=unbilled,
                contract_id=line.contract_id,
                obligation_id=line.obligation_id,
            )
        )
    return tuple(items)


def _billed_after(
    billed: Mapping[str, int],
    lines: tuple[InvoiceLineItem, ...],
    sign: int,
    amounts: list[int] | None = None,
) -> dict[str, int]:
    changed: dict[str, int] = {}
    for line, amount in zip(lines, amounts or [line.net_minor for line in lines], strict=True):
        key = line.position_key
        if key is not None and amount:
            changed[key] = changed.get(key, billed.get(key, 0)) + sign * amount
    return changed


def _invoice_specs(header: EntryHeader, item: InvoiceItem) -> list[LineSpec]:
    """The issue entry's lines, in order; a void posts the same lines with sides swapped."""
    specs = [
        LineSpec(
            Account.accounts_receivable,
            Side.debit,
            item.gross_minor,
            dims(header, invoice_id=item.invoice_id),
        ),
    ]
    if item.tax_minor:
        specs.append(
            LineSpec(
                Account.tax_payable,
                Side.credit,
                item.tax_minor,
                dims(header, invoice_id=item.invoice_id),
            )
        )
    for line in item.lines:
        line_dims = dims(
            header,
            invoice_id=item.invoice_id,
            invoice_line_id=line.line_id,
            product_family=line.family,
            contract_id=line.contract_id,
            obligation_id=line.obligation_id,
        )
        if line.deferred_minor:
            specs.append(
                LineSpec(Account.deferred_revenue, Side.credit, line.deferred_minor, line_dims)
            )
        if line.unbilled_minor:
            specs.append(
                LineSpec(Account.unbilled_receivable, Side.credit, line.unbilled_minor, line_dims)
            )
    return specs


def post_invoice_voided(
    state: CustomerLedger, event: InvoiceVoided, context: RuleContext
) -> Posted | Held | Rejected:
    """Reverse the issue entry (same functional amounts) when nothing touched the invoice."""
    reference = context.reference
    failure = check_entity_and_currency(event, None, reference)
    if failure is not None:
        return failure
    item = find_invoice(state, event, event.invoice_id, None)
    if not isinstance(item, InvoiceItem):
        return item
    if item.applications or item.credits or item.write_offs:
        return Rejected(
            EntryStatus.invoice_has_applications,
            f"invoice_id {event.invoice_id!r} has payments, credits or write-offs"
            f" ({item.relieved_minor} of {item.gross_minor} relieved)",
        )
    header = header_for(event, reference, "invoice_voided", f"Invoice {item.invoice_id} voided")
    issued = _invoice_specs(header, item)
    specs = [replace(s, side=s.side.opposite()) for s in issued if not _is_line_spec(s)]
    amounts = {line.line_id: line.net_minor for line in item.lines}
    specs += _relief_specs(header, state, context, item, amounts, {})
    entry = make_entry(header, item.currency, specs, item.rate)
    if isinstance(entry, Rejected):
        return entry
    billed = _billed_after(state.billed_by_contract, item.lines, sign=-1)
    voided = replace(item, voided=True)
    return Posted(state.with_invoice(voided).with_billed(billed), (entry,))


def post_credit_note(
    state: CustomerLedger, event: CreditNoteIssued, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr deferred revenue / contra-revenue / tax payable; Cr AR, rest Cr customer credit."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    item = find_invoice(state, event, event.invoice_id, event.currency)
    if not isinstance(item, InvoiceItem):
        return item
    credited = _credited_by_line(event, item)
    if isinstance(credited, Rejected):
        return credited
    ar_part = min(event.total_minor, item.amount_due_minor)
    header = header_for(
        event,
        context.reference,
        "credit_note",
        f"Credit note {event.credit_note_id} on invoice {item.invoice_id}",
    )
    specs = _credit_specs(header, event, state, context, item, credited, ar_part)
    entry = make_entry(header, item.currency, specs, item.rate)
    if isinstance(entry, Rejected):
        return entry
    lines = tuple(
        replace(line, credited_minor=line.credited_minor + credited.get(line.line_id, 0))
        for line in item.lines
    )
    credits = (*item.credits, (event.credit_note_id, event.total_minor, ar_part))
    billed = _billed_after(
        state.billed_by_contract,
        item.lines,
        sign=-1,
        amounts=[credited.get(line.line_id, 0) for line in item.lines],
    )
    note = CreditNoteItem(
        credit_note_id=event.credit_note_id,
        issue_date=event.issue_date,
        credited=tuple(
            (line.line_id, credited[line.line_id])
            for line in item.lines
            if line.line_id in credited
        ),
        lines=_posted_lines(entry),
        write_offs_before=len(item.write_offs),
    )
    credited_item = replace(
        item, lines=lines, credits=credits, credit_notes=(*item.credit_notes, note)
    )
    return Posted(state.with_invoice(credited_item).with_billed(billed), (entry,))


def _posted_lines(entry: JournalEntry) -> tuple[PostedLine, ...]:
    return tuple(
        PostedLine(
            line.account,
            line.side,
            line.amount_minor,
            line.functional_amount_minor,
            dict(line.dimensions).get("invoice_line_id"),
        )
        for line in entry.lines
    )


def post_credit_note_voided(
    state: CustomerLedger, event: CreditNoteVoided, context: RuleContext
) -> Posted | Held | Rejected:
    """Reverse a credit note's entry in the void's period (module docstring)."""
    failure = check_entity_and_currency(event, None, context.reference)
    if failure is not None:
        return failure
    item = state.invoices.get(event.invoice_id)
    what = f"credit note {event.credit_note_id!r} on invoice {event.invoice_id!r}"
    if item is not None and event.credit_note_id in item.voided_credits:
        # Voided already (by another event id): nothing left to take back.
        return Posted(state)
    if item is None or not item.has_credit(event.credit_note_id):
        return Held(
            EntryStatus.credit_note_missing,
            credit_note_key(event.credit_note_id),
            f"{what} has not arrived",
        )
    if item.entity != event.entity:
        return Rejected(
            EntryStatus.entity_mismatch,
            f"entity {event.entity!r} differs from invoice {item.invoice_id!r} entity"
            f" {item.entity!r}",
        )
    note = item.credit_note(event.credit_note_id)
    if note is None:
        return Rejected(
            EntryStatus.credit_note_split_unknown,
            f"{what} was posted before credit notes kept their entries: its split between"
            " contra revenue, deferred revenue and unbilled AR is unknown; reverse it by hand",
        )
    if len(item.write_offs) > note.write_offs_before:
        return Rejected(
            EntryStatus.credit_note_after_write_off,
            f"invoice {item.invoice_id!r} was written off after {what}: voiding it would"
            " reopen a receivable written off as bad debt; re-bill it if it is collectible",
        )
    to_credit, _ = note.posted(Account.customer_credit)
    available = _credit_from_notes(state, item.entity, item.currency)
    if to_credit > available:
        return Rejected(
            EntryStatus.credit_note_credit_used,
            f"{what} gave {to_credit} {item.currency} of customer credit, and only"
            f" {available} of credit from credit notes is left (refunded or applied since):"
            " re-bill the difference",
        )
    header = header_for(
        event,
        context.reference,
        "credit_note_voided",
        f"Credit note {event.credit_note_id} on invoice {item.invoice_id} voided",
    )
    specs = _void_specs(header, state, context, item, note)
    entry = make_entry(header, item.currency, specs, item.rate, fx_difference=True)
    if isinstance(entry, Rejected):
        return entry
    credited = dict(note.credited)
    lines = tuple(
        replace(line, credited_minor=line.credited_minor - credited.get(line.line_id, 0))
        for line in item.lines
    )
    billed = _billed_after(
        state.billed_by_contract,
        item.lines,
        sign=1,
        amounts=[credited.get(line.line_id, 0) for line in item.lines],
    )
    restored = replace(
        item,
        lines=lines,
        credits=tuple(c for c in item.credits if c[0] != note.credit_note_id),
        credit_notes=tuple(n for n in item.credit_notes if n is not note),
        voided_credits=(*item.voided_credits, note.credit_note_id),
    )
    return Posted(state.with_invoice(restored).with_billed(billed), (entry,))


def _credit_from_notes(state: CustomerLedger, entity: str, currency: str) -> int:
    """Customer credit that is not a payment's unapplied cash (credit notes left it).

    A payment's unapplied cash stays refundable as such (:func:`post_refund` takes it
    from customer credit), so a void may only take back credit beyond it.
    """
    balance = state.balance(entity, Account.customer_credit, currency)
    unapplied = sum(
        payment.unapplied_minor
        for payment in state.payments.values()
        if (payment.entity, payment.currency) == (entity, currency)
    )
    return max(0, balance.net_minor(Account.customer_credit) - unapplied)


def _void_specs(
    header: EntryHeader,
    state: CustomerLedger,
    context: RuleContext,
    item: InvoiceItem,
    note: CreditNoteItem,
) -> list[LineSpec]:
    """The note's lines with sides swapped, in the note's order, at its functional amounts.

    A line that relieved a contract position (deferred revenue, unbilled AR) raises it
    again from where it is now (:func:`restore_position`), so the contract ends either
    deferred or unbilled, never both; while the position has not crossed zero since the
    note, this is the note's own split. AR is reopened at the invoice's cumulative
    functional share, like every relief of it, so it keeps no FX residue; when a payment
    in between makes that share differ from what the note relieved (a foreign invoice,
    a minor unit of rounding), the difference is realized FX.
    """
    base = {"invoice_id": item.invoice_id, "credit_note_id": note.credit_note_id}
    specs: list[LineSpec] = []
    tax, tax_functional = note.posted(Account.tax_payable)
    specs.append(
        LineSpec(Account.tax_payable, Side.credit, tax, dims(header, **base), tax_functional)
    )
    positions: dict[str, int] = {}
    for line in item.lines:
        if not any(line_id == line.line_id for line_id, _ in note.credited):
            continue
        line_dims = dims(
            header,
            invoice_id=item.invoice_id,
            invoice_line_id=line.line_id,
            product_family=line.family,
            contract_id=line.contract_id,
            obligation_id=line.obligation_id,
            credit_note_id=note.credit_note_id,
        )
        contra = note.posted(Account.contra_revenue, line.line_id)
        deferred = note.posted(Account.deferred_revenue, line.line_id)
        unbilled = note.posted(Account.unbilled_receivable, line.line_id)
        key = line.position_key
        if key is not None:
            position = positions.get(key, context.position(state, key))
            amount = deferred[0] + unbilled[0]
            new_unbilled, new_deferred = restore_position(position, amount)
            positions[key] = position + amount
            if (new_deferred, new_unbilled) != (deferred[0], unbilled[0]):
                functional = allocate(deferred[1] + unbilled[1], [new_deferred, new_unbilled])
                deferred = (new_deferred, functional[0])
                unbilled = (new_unbilled, functional[1])
        for account, (amount, functional) in (
            (Account.contra_revenue, contra),
            (Account.deferred_revenue, deferred),
            (Account.unbilled_receivable, unbilled),
        ):
            specs.append(LineSpec(account, Side.credit, amount, line_dims, functional))
    ar_part, _ = note.posted(Account.accounts_receivable)
    relieved = item.relieved_minor
    reopened = item.functional_relieved(relieved) - item.functional_relieved(relieved - ar_part)
    specs.append(
        LineSpec(Account.accounts_receivable, Side.debit, ar_part, dims(header, **base), reopened)
    )
    credit, credit_functional = note.posted(Account.customer_credit)
    specs.append(
        LineSpec(
            Account.customer_credit, Side.debit, credit, dims(header, **base), credit_functional
        )
    )
    return [s for s in specs if s.amount_minor or s.functional_minor]


def _credited_by_line(event: CreditNoteIssued, item: InvoiceItem) -> dict[str, int] | Rejected:
    lines = {line.line_id: line for line in item.lines}
    credited: dict[str, int] = {}
    for line in event.lines:
        if line.invoice_line_id not in lines:
            return Rejected(
                EntryStatus.unknown_invoice_line,
                f"invoice_line_id {line.invoice_line_id!r} is not on invoice {item.invoice_id!r}",
            )
        credited[line.invoice_line_id] = credited.get(line.invoice_line_id, 0) + line.amount_minor
    for line_id, amount in credited.items():
        if amount > lines[line_id].creditable_minor:
            return Rejected(
                EntryStatus.credit_exceeds_invoice,
                f"credit {amount} on line {line_id!r} exceeds its creditable"
                f" {lines[line_id].creditable_minor}",
            )
    creditable = item.gross_minor - item.credited_minor - item.written_off_minor
    if event.total_minor > creditable:
        return Rejected(
            EntryStatus.credit_exceeds_invoice,
            f"total_minor {event.total_minor} exceeds invoice {item.invoice_id!r}"
            f" creditable {creditable}",
        )
    return credited


def _credit_specs(
    header: EntryHeader,
    event: CreditNoteIssued,
    state: CustomerLedger,
    context: RuleContext,
    item: InvoiceItem,
    credited: Mapping[str, int],
    ar_part: int,
) -> list[LineSpec]:
    base = {"invoice_id": item.invoice_id, "credit_note_id": event.credit_note_id}
    specs: list[LineSpec] = []
    tax = sum(t.amount_minor for t in event.tax_lines)
    if tax:
        specs.append(LineSpec(Account.tax_payable, Side.debit, tax, dims(header, **base)))
    specs += _relief_specs(header, state, context, item, credited, base)
    relief = item.functional_relieved(item.relieved_minor + ar_part) - item.functional_relieved(
        item.relieved_minor
    )
    specs.append(
        LineSpec(Account.accounts_receivable, Side.credit, ar_part, dims(header, **base), relief)
    )
    rest = event.total_minor - ar_part
    specs.append(LineSpec(Account.customer_credit, Side.credit, rest, dims(header, **base)))
    return [s for s in specs if s.amount_minor or s.functional_minor]


def _is_line_spec(spec: LineSpec) -> bool:
    return any(key == "invoice_line_id" for key, _ in spec.dimensions)


def _relief_specs(
    header: EntryHeader,
    state: CustomerLedger,
    context: RuleContext,
    item: InvoiceItem,
    amounts: Mapping[str, int],
    base: Mapping[str, str],
) -> list[LineSpec]:
    """Debits that take ``amounts`` (per line id) of billing back (a void or credit note).

    A line with a contract: contra revenue for its ``credit_to_revenue`` part, the rest
    lowers the contract position (deferred revenue first, then unbilled AR). A line
    without: the issue split reversed (a credit's unbilled part goes to contra revenue).
    """
    positions: dict[str, int] = {}
    recognized_account = Account.contra_revenue if base else Account.unbilled_receivable
    specs: list[LineSpec] = []
    for line in item.lines:
        amount = amounts.get(line.line_id, 0)
        if not amount:
            continue
        line_dims = dims(
            header,
            invoice_id=item.invoice_id,
            invoice_line_id=line.line_id,
            product_family=line.family,
            contract_id=line.contract_id,
            obligation_id=line.obligation_id,
            **{k: v for k, v in base.items() if k != "invoice_id"},
        )
        key = line.position_key
        if key is None:
            deferred, recognized = allocate(amount, [line.deferred_minor, line.unbilled_minor])
            specs.append(LineSpec(Account.deferred_revenue, Side.debit, deferred, line_dims))
            specs.append(LineSpec(recognized_account, Side.debit, recognized, line_dims))
            continue
        to_revenue = min(amount, context.credit_to_revenue.get(line.line_id, 0))
        position = positions.get(key, context.position(state, key))
        deferred, unbilled = consume_position(position, amount - to_revenue)
        positions[key] = position - (amount - to_revenue)
        specs.append(LineSpec(Account.contra_revenue, Side.debit, to_revenue, line_dims))
        specs.append(LineSpec(Account.deferred_revenue, Side.debit, deferred, line_dims))
        specs.append(LineSpec(Account.unbilled_receivable, Side.debit, unbilled, line_dims))
    return [spec for spec in specs if spec.amount_minor]


def post_write_off(
    state: CustomerLedger, event: InvoiceWrittenOff, context: RuleContext
) -> Posted | Held | Rejected:
    """Dr bad debt / Cr AR, at most the invoice's amount due."""
    failure = check_entity_and_currency(event, event.currency, context.reference)
    if failure is not None:
        return failure
    item = find_invoice(state, event, event.invoice_id, event.currency)
    if not isinstance(item, InvoiceItem):
        return item
    if event.amount_minor > item.amount_due_minor:
        return Rejected(
            EntryStatus.write_off_exceeds_amount_due,
            f"amount_minor {event.amount_minor} exceeds invoice {item.invoice_id!r}"
            f" amount due {item.amount_due_minor}",
        )
    header = header_for(
        event, context.reference, "write_off", f"Invoice {item.invoice_id} written off"
    )
    relief = item.functional_relieved(item.relieved_minor + event.amount_minor)
    relief -= item.functional_relieved(item.relieved_minor)
    line_dims = dims(header, invoice_id=item.invoice_id)
    specs: list[LineSpec] = []
    billed: dict[str, int] = {}
    for key, (deferred, revenue) in sorted(context.write_off_relief.items()):
        key_dims = dims(header, invoice_id=item.invoice_id, contract_id=key)
        specs.append(LineSpec(Account.deferred_revenue, Side.debit, deferred, key_dims))
        specs.append(LineSpec(Account.contra_revenue, Side.debit, revenue, key_dims))
        billed[key] = state.billed_by_contract.get(key, 0) - deferred - revenue
    bad_debt = event.amount_minor - sum(s.amount_minor for s in specs)
    if bad_debt < 0:
        raise InvariantViolation(
            f"write-off relief exceeds {event.amount_minor} on {item.invoice_id}"
        )
    specs = [
        LineSpec(Account.bad_debt, Side.debit, bad_debt, line_dims),
        *specs,
        LineSpec(Account.accounts_receivable, Side.credit, event.amount_minor, line_dims, relief),
    ]
    entry = make_entry(header, item.currency, [s for s in specs if s.amount_minor], item.rate)
    if isinstance(entry, Rejected):
        return entry
    write_offs = (*item.write_offs, (event.event_id, event.amount_minor))
    written_off = state.with_invoice(replace(item, write_offs=write_offs)).with_billed(billed)
    return Posted(written_off, (entry,))
