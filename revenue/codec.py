"""JSON for a :class:`RevenueBook`: canonical bytes, no floats (rates are strings).

The streaming layer keeps a customer's revenue book in a Faust table beside the ledger
state, as the bytes of :func:`book_to_json`. Encoding is canonical (sorted keys, compact)
like :mod:`ledger.codec`, so equal books give equal bytes; decoding refuses floats and
unknown formats. :data:`EVENT_TYPES` lists every customer event a held event may be,
contract events included, for :func:`ledger.codec.state_from_json`.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from ledger.accounts import ProductFamily
from ledger.codec import EVENT_TYPES as LEDGER_EVENT_TYPES
from ledger.codec import dumps, encoded_once, joined_array, loads, object_members
from ledger.errors import StateDecodeError
from ledger.events import Event
from ledger.frozen_map import FrozenMap
from revenue.events import CONTRACT_EVENTS
from revenue.schedule import Segment
from revenue.state import Contract, CreditRecord, Obligation, RevenueBook

# Bump when the layout changes; decoding refuses other versions.
BOOK_FORMAT = 1

EVENT_TYPES: dict[str, type[Event]] = {
    **LEDGER_EVENT_TYPES,
    **{cls.model_fields["event_type"].default: cls for cls in CONTRACT_EVENTS},
}


def _day(value: dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _day_in(value: str | None) -> dt.date | None:
    return None if value is None else dt.date.fromisoformat(value)


def book_to_json(book: RevenueBook) -> bytes:
    """Canonical JSON bytes of ``book`` (``dumps`` of the whole; each contract encoded once
    in its life, :func:`ledger.codec.encoded_once`)."""
    after_contracts = {
        "customer_id": book.customer_id,
        "format": BOOK_FORMAT,
        "last_clock_id": book.last_clock_id,
    }
    return b"".join(
        (
            b'{"clock":',
            dumps(_day(book.clock)),
            b',"contracts":',
            joined_array(encoded_once(c, _contract_out) for c in book.contracts.values()),
            b",",
            object_members(after_contracts),
            b"}",
        )
    )


def book_from_json(data: bytes | str) -> RevenueBook:
    """Decode :func:`book_to_json` output.

    Raises:
        StateDecodeError: malformed JSON, floats, or an unknown format.
    """
    raw = loads(data)
    try:
        if raw["format"] != BOOK_FORMAT:
            raise StateDecodeError(f"revenue book format {raw['format']!r} is not {BOOK_FORMAT}")
        contracts = [_contract_in(item) for item in raw["contracts"]]
        return RevenueBook(
            customer_id=raw["customer_id"],
            contracts=FrozenMap({c.contract_id: c for c in contracts}),
            clock=_day_in(raw["clock"]),
            last_clock_id=raw["last_clock_id"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, StateDecodeError):
            raise
        raise StateDecodeError(f"malformed revenue book: {exc!r}") from exc


def _contract_out(contract: Contract) -> dict[str, Any]:
    return {
        "contract_id": contract.contract_id,
        "entity": contract.entity,
        "currency": contract.currency,
        "booking_date": contract.booking_date.isoformat(),
        "rate": str(contract.rate),
        "total_price_minor": contract.total_price_minor,
        "obligations": [_obligation_out(o) for o in contract.obligations.values()],
        "amendments": list(contract.amendments),
        "cancelled_on": _day(contract.cancelled_on),
        "implied": contract.implied,
        "billing": [[day.isoformat(), amount] for day, amount in contract.billing],
    }


def _contract_in(raw: dict[str, Any]) -> Contract:
    obligations = [_obligation_in(item) for item in raw["obligations"]]
    return Contract(
        contract_id=raw["contract_id"],
        entity=raw["entity"],
        currency=raw["currency"],
        booking_date=dt.date.fromisoformat(raw["booking_date"]),
        rate=Decimal(raw["rate"]),
        total_price_minor=_int(raw["total_price_minor"]),
        obligations=MappingProxyType({o.obligation_id: o for o in obligations}),
        amendments=tuple(raw["amendments"]),
        cancelled_on=_day_in(raw["cancelled_on"]),
        implied=bool(raw["implied"]),
        billing=tuple((dt.date.fromisoformat(day), _int(amount)) for day, amount in raw["billing"]),
    )


def _segments_out(segments: tuple[Segment, ...]) -> list[list[Any]]:
    return [
        [s.start.isoformat(), s.end.isoformat(), s.amount_minor, s.method, _day(s.stop)]
        for s in segments
    ]


def _segments_in(raw: list[list[Any]]) -> tuple[Segment, ...]:
    return tuple(
        Segment(
            dt.date.fromisoformat(start),
            dt.date.fromisoformat(end),
            _int(amount),
            method,
            _day_in(stop),
        )
        for start, end, amount, method, stop in raw
    )


def _credit_out(record: CreditRecord) -> dict[str, Any]:
    return {
        "credit_note_id": record.credit_note_id,
        "excess_minor": record.excess_minor,
        "spread_minor": record.spread_minor,
        "now_minor": record.now_minor,
        "segments_before": _segments_out(record.segments_before),
        "segments_after": _segments_out(record.segments_after),
    }


def _credit_in(raw: dict[str, Any]) -> CreditRecord:
    return CreditRecord(
        credit_note_id=raw["credit_note_id"],
        excess_minor=_int(raw["excess_minor"]),
        spread_minor=_int(raw["spread_minor"]),
        now_minor=_int(raw["now_minor"]),
        segments_before=_segments_in(raw["segments_before"]),
        segments_after=_segments_in(raw["segments_after"]),
    )


def _obligation_out(obligation: Obligation) -> dict[str, Any]:
    out = {
        "obligation_id": obligation.obligation_id,
        "contract_id": obligation.contract_id,
        "product_id": obligation.product_id,
        "family": str(obligation.family),
        "pattern": obligation.pattern,
        "method": obligation.method,
        "ssp_minor": obligation.ssp_minor,
        "service_start": obligation.service_start.isoformat(),
        "service_end": _day(obligation.service_end),
        "segments": _segments_out(obligation.segments),
        "recognized_minor": obligation.recognized_minor,
        "recognized_through": _day(obligation.recognized_through),
        "billed_on": _day(obligation.billed_on),
        "last_change": obligation.last_change,
    }
    # Written only when present: a book without open credit notes keeps its old bytes.
    if obligation.credits:
        out["credits"] = [_credit_out(record) for record in obligation.credits]
    return out


def _obligation_in(raw: dict[str, Any]) -> Obligation:
    return Obligation(
        obligation_id=raw["obligation_id"],
        contract_id=raw["contract_id"],
        product_id=raw["product_id"],
        family=ProductFamily(raw["family"]),
        pattern=raw["pattern"],
        method=raw["method"],
        ssp_minor=_int(raw["ssp_minor"]),
        service_start=dt.date.fromisoformat(raw["service_start"]),
        service_end=_day_in(raw["service_end"]),
        segments=_segments_in(raw["segments"]),
        recognized_minor=_int(raw["recognized_minor"]),
        recognized_through=_day_in(raw["recognized_through"]),
        billed_on=_day_in(raw["billed_on"]),
        last_change=raw["last_change"],
        credits=tuple(_credit_in(record) for record in raw.get("credits", ())),
    )


def _int(value: Any) -> int:
    if type(value) is not int:
        raise StateDecodeError(f"expected an integer, got {value!r}")
    return value
