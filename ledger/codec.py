"""JSON for customer state and journal entries: canonical bytes, no floats.

The streaming layer keeps a :class:`CustomerLedger` per customer in a Faust table as the
bytes of :func:`state_to_json`; :func:`state_from_json` gives it back. Encoding is
canonical (sorted keys, no spaces), so equal states give equal bytes. Decoding refuses
floats, NaN and Infinity anywhere (money is integers, rates are strings), and unknown
event types in held events. Held events keep their canonical event JSON and their token
(base64).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import orjson

from ledger.accounts import Account, ProductFamily, Side
from ledger.entries import JournalEntry, JournalLine
from ledger.errors import StateDecodeError
from ledger.events import BILLING_EVENTS, PAYMENT_EVENTS, USAGE_EVENTS, Event
from ledger.frozen_map import FrozenMap
from ledger.results import EntryStatus
from ledger.state import (
    Balance,
    CreditNoteItem,
    CustomerLedger,
    HeldEvent,
    InvoiceItem,
    InvoiceLineItem,
    PaymentItem,
    PostedLine,
    frozen,
)

# Bump when the layout changes; decoding refuses other versions.
STATE_FORMAT = 1

EVENT_TYPES: dict[str, type[Event]] = {
    cls.model_fields["event_type"].default: cls
    for cls in (*BILLING_EVENTS, *PAYMENT_EVENTS, *USAGE_EVENTS)
}


def _refuse(value: str) -> Any:
    raise StateDecodeError(f"state JSON must not contain floats or constants, got {value!r}")


def dumps(value: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, compact, UTF-8).

    orjson writes the same bytes as the standard library (property-tested) some ten
    times faster: a customer's state is encoded on every event that changes it (issue 7).
    What orjson refuses (an int beyond 64 bits, a key that is not a string) goes to the
    standard library, which decides as it always did.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return json_dumps(value)


def json_dumps(value: Any) -> bytes:
    """:func:`dumps` by the standard library alone (the reference it is tested against)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def loads(data: bytes | str) -> Any:
    """JSON that refuses floats, NaN and Infinity (raises StateDecodeError)."""
    try:
        return json.loads(data, parse_float=_refuse, parse_constant=_refuse)
    except json.JSONDecodeError as exc:
        raise StateDecodeError(f"state is not valid JSON: {exc}") from exc


def event_to_json(event: Event) -> str:
    """The event's canonical JSON (the same text its digest is computed from)."""
    return event.model_dump_json()


def event_from_json(
    event_type: str, text: str, event_types: Mapping[str, type[Event]] = EVENT_TYPES
) -> Event:
    """Decode an event of ``event_type`` (one of ``event_types``) from its JSON, strictly."""
    cls = event_types.get(event_type)
    if cls is None:
        raise StateDecodeError(f"unknown event_type {event_type!r} in state")
    return cls.model_validate_json(text)


def state_to_json(state: CustomerLedger) -> bytes:
    """Canonical JSON bytes of a customer's state.

    The bytes of ``dumps`` of the whole state, put together from parts in key order: each
    invoice and payment is encoded once in its life (:func:`encoded_once`), not per save.
    """
    balances = [
        [
            entity,
            str(account),
            currency,
            b.debit_minor,
            b.credit_minor,
            b.functional_debit_minor,
            b.functional_credit_minor,
        ]
        for (entity, account, currency), b in sorted(state.balances.items())
    ]
    before_invoices = {
        "balances": balances,
        "billed_by_contract": dict(state.billed_by_contract),
        "customer_id": state.customer_id,
        "format": STATE_FORMAT,
        "held": [_held_out(held) for held in state.held],
    }
    return b"".join(
        (
            b"{",
            object_members(before_invoices),
            b',"invoices":',
            joined_array(encoded_once(i, _invoice_out) for _, i in sorted_items(state.invoices)),
            b',"next_hold_sequence":',
            dumps(state.next_hold_sequence),
            b',"payments":',
            joined_array(encoded_once(p, _payment_out) for _, p in sorted_items(state.payments)),
            b',"seen":',
            dumps(dict(state.seen)),
            b"}",
        )
    )


def sorted_items(values: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``values``' items in key order (keys are unique: values are never compared)."""
    return sorted(values.items(), key=lambda pair: pair[0])


def object_members(values: Mapping[str, Any]) -> bytes:
    """``dumps(values)`` without its braces: members to put between others in key order."""
    return dumps(values)[1:-1]


def joined_array(encoded: Iterable[bytes]) -> bytes:
    """What :func:`dumps` gives for an array whose items are already ``encoded``."""
    return b"[" + b",".join(encoded) + b"]"


def encoded_once(item: Any, out: Callable[[Any], Any]) -> bytes:
    """``dumps(out(item))``, kept on the (immutable) item's ``encoded_json`` once made."""
    encoded = item.encoded_json
    if encoded is None:
        encoded = dumps(out(item))
        object.__setattr__(item, "encoded_json", encoded)  # a memo, not state: see the field
    return encoded


def state_from_json(
    data: bytes | str, event_types: Mapping[str, type[Event]] = EVENT_TYPES
) -> CustomerLedger:
    """Decode :func:`state_to_json` output; held events may be any of ``event_types``.

    Raises:
        StateDecodeError: malformed JSON, floats, unknown format or event type.
    """
    raw = loads(data)
    try:
        if raw["format"] != STATE_FORMAT:
            raise StateDecodeError(f"state format {raw['format']!r} is not {STATE_FORMAT}")
        return _state_in(raw, event_types)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, StateDecodeError):
            raise
        raise StateDecodeError(f"malformed state: {exc!r}") from exc


def _state_in(raw: dict, event_types: Mapping[str, type[Event]]) -> CustomerLedger:
    invoices = [_invoice_in(item) for item in raw["invoices"]]
    payments = [_payment_in(item) for item in raw["payments"]]
    balances = {
        (entity, Account(account), currency): Balance(*_ints(rest))
        for entity, account, currency, *rest in raw["balances"]
    }
    return CustomerLedger(
        customer_id=raw["customer_id"],
        # FrozenMap: the maps that grow with the customer's history (ledger.frozen_map).
        seen=FrozenMap(raw["seen"]),
        invoices=FrozenMap({item.invoice_id: item for item in invoices}),
        payments=FrozenMap({item.payment_id: item for item in payments}),
        balances=frozen(balances),
        billed_by_contract=FrozenMap(raw["billed_by_contract"]),
        held=tuple(_held_in(held, event_types) for held in raw["held"]),
        next_hold_sequence=raw["next_hold_sequence"],
    )


def _ints(values: list) -> list[int]:
    if not all(type(v) is int for v in values):
        raise StateDecodeError(f"expected integers, got {values!r}")
    return values


def _invoice_out(item: InvoiceItem) -> dict:
    out = {
        "invoice_id": item.invoice_id,
        "entity": item.entity,
        "currency": item.currency,
        "issue_date": item.issue_date.isoformat(),
        "due_date": item.due_date.isoformat(),
        "gross_minor": item.gross_minor,
        "tax_minor": item.tax_minor,
        "gross_functional_minor": item.gross_functional_minor,
        "rate": str(item.rate),
        "lines": [
            [
                line.line_id,
                line.product_id,
                str(line.family),
                line.net_minor,
                line.unbilled_minor,
                line.credited_minor,
                line.contract_id,
                line.obligation_id,
            ]
            for line in item.lines
        ],
        "applications": [list(pair) for pair in item.applications],
        "credits": [list(triple) for triple in item.credits],
        "write_offs": [list(pair) for pair in item.write_offs],
        "voided": item.voided,
    }
    # Written only when present, so the state of an invoice without credit notes keeps
    # the bytes it had before these were kept (and older state decodes unchanged).
    if item.credit_notes:
        out["credit_notes"] = [_credit_note_out(note) for note in item.credit_notes]
    if item.voided_credits:
        out["voided_credits"] = list(item.voided_credits)
    return out


def _credit_note_out(note: CreditNoteItem) -> dict:
    return {
        "credit_note_id": note.credit_note_id,
        "issue_date": note.issue_date.isoformat(),
        "credited": [list(pair) for pair in note.credited],
        "lines": [
            [
                str(line.account),
                str(line.side),
                line.amount_minor,
                line.functional_minor,
                line.invoice_line_id,
            ]
            for line in note.lines
        ],
        "write_offs_before": note.write_offs_before,
    }


def _credit_note_in(raw: dict) -> CreditNoteItem:
    return CreditNoteItem(
        credit_note_id=raw["credit_note_id"],
        issue_date=dt.date.fromisoformat(raw["issue_date"]),
        credited=tuple((line_id, _ints([amount])[0]) for line_id, amount in raw["credited"]),
        lines=tuple(
            PostedLine(Account(account), Side(side), *_ints([amount, functional]), line_id)
            for account, side, amount, functional, line_id in raw["lines"]
        ),
        write_offs_before=_ints([raw["write_offs_before"]])[0],
    )


def _invoice_in(raw: dict) -> InvoiceItem:
    lines = tuple(
        InvoiceLineItem(
            line_id,
            product_id,
            ProductFamily(family),
            *_ints([net, unbilled, credited]),
            contract_id=contract_id,
            obligation_id=obligation_id,
        )
        for line_id, product_id, family, net, unbilled, credited, contract_id, obligation_id in raw[
            "lines"
        ]
    )
    return InvoiceItem(
        invoice_id=raw["invoice_id"],
        entity=raw["entity"],
        currency=raw["currency"],
        issue_date=dt.date.fromisoformat(raw["issue_date"]),
        due_date=dt.date.fromisoformat(raw["due_date"]),
        gross_minor=_ints([raw["gross_minor"]])[0],
        tax_minor=_ints([raw["tax_minor"]])[0],
        gross_functional_minor=_ints([raw["gross_functional_minor"]])[0],
        rate=Decimal(raw["rate"]),
        lines=lines,
        applications=tuple((k, v) for k, v in raw["applications"]),
        credits=tuple((k, total, ar) for k, total, ar in raw["credits"]),
        write_offs=tuple((k, v) for k, v in raw["write_offs"]),
        voided=raw["voided"],
        credit_notes=tuple(_credit_note_in(note) for note in raw.get("credit_notes", ())),
        voided_credits=tuple(raw.get("voided_credits", ())),
    )


def _payment_out(item: PaymentItem) -> dict:
    return {
        "payment_id": item.payment_id,
        "entity": item.entity,
        "currency": item.currency,
        "settled_date": item.settled_date.isoformat(),
        "amount_minor": item.amount_minor,
        "fee_minor": item.fee_minor,
        "applications": [list(p) for p in item.applications],
        "unapplied_minor": item.unapplied_minor,
        "refunded_minor": item.refunded_minor,
        "disputed_minor": item.disputed_minor,
    }


def _payment_in(raw: dict) -> PaymentItem:
    amounts = _ints(
        [
            raw["amount_minor"],
            raw["fee_minor"],
            raw["unapplied_minor"],
            raw["refunded_minor"],
            raw["disputed_minor"],
        ]
    )
    return PaymentItem(
        payment_id=raw["payment_id"],
        entity=raw["entity"],
        currency=raw["currency"],
        settled_date=dt.date.fromisoformat(raw["settled_date"]),
        amount_minor=amounts[0],
        fee_minor=amounts[1],
        applications=tuple((k, v) for k, v in raw["applications"]),
        unapplied_minor=amounts[2],
        refunded_minor=amounts[3],
        disputed_minor=amounts[4],
    )


def _held_out(held: HeldEvent) -> dict:
    return {
        "sequence": held.sequence,
        "event_type": held.event.event_type,
        "event": event_to_json(held.event),
        "digest": held.digest,
        "token": base64.b64encode(held.token).decode("ascii"),
        "waiting_on": held.waiting_on,
        "status": str(held.status),
        "held_on": held.held_on.isoformat(),
    }


def _held_in(raw: dict, event_types: Mapping[str, type[Event]]) -> HeldEvent:
    return HeldEvent(
        sequence=raw["sequence"],
        event=event_from_json(raw["event_type"], raw["event"], event_types),
        digest=raw["digest"],
        token=base64.b64decode(raw["token"], validate=True),
        waiting_on=raw["waiting_on"],
        status=EntryStatus(raw["status"]),
        held_on=dt.date.fromisoformat(raw["held_on"]),
    )


def entry_to_dict(entry: JournalEntry) -> dict:
    """A JSON-ready dict of an entry (dates ISO, amounts int)."""
    return {
        "entry_id": entry.entry_id,
        "entity": entry.entity,
        "customer_id": entry.customer_id,
        "source_event_id": entry.source_event_id,
        "source_event_type": entry.source_event_type,
        "rule": entry.rule,
        "sequence": entry.sequence,
        "posting_date": entry.posting_date.isoformat(),
        "original_date": entry.original_date.isoformat(),
        "period": entry.period,
        "functional_currency": entry.functional_currency,
        "description": entry.description,
        "lines": [
            {
                "line_no": line.line_no,
                "account": str(line.account),
                "side": str(line.side),
                "amount_minor": line.amount_minor,
                "currency": line.currency,
                "functional_amount_minor": line.functional_amount_minor,
                "dimensions": [list(pair) for pair in line.dimensions],
            }
            for line in entry.lines
        ],
    }


def entry_from_dict(raw: dict) -> JournalEntry:
    """Inverse of :func:`entry_to_dict` (the entry re-checks its invariants)."""
    lines = tuple(
        JournalLine(
            line_no=line["line_no"],
            account=Account(line["account"]),
            side=Side(line["side"]),
            amount_minor=line["amount_minor"],
            currency=line["currency"],
            functional_amount_minor=line["functional_amount_minor"],
            dimensions=tuple((k, v) for k, v in line["dimensions"]),
        )
        for line in raw["lines"]
    )
    fields = {k: v for k, v in raw.items() if k != "lines"}
    for name in ("posting_date", "original_date"):
        fields[name] = dt.date.fromisoformat(fields[name])
    return JournalEntry(**fields, lines=lines)
