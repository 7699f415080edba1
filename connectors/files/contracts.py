"""The generic CRM contract JSON (docs/CRM.md) -> ContractBooked / Amended / Cancelled.

For CRMs without a connector: one JSON object per contract event, money as decimal text
in major units (``"1200.00"``), dates as ``YYYY-MM-DD``. The event id is
``<source_system>:<id>`` with ``id`` the CRM's own id of the change, so the same file
imported twice gives the same events (duplicates to the ledger).

A refusal names the field by its JSON path (``obligations[1].price``) and why.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from connectors.files.amounts import AmountError, minor_units
from connectors.files.canonical import CellError
from ledger.events import Event
from ledger.money import is_known_currency
from revenue.events import (
    ContractAmended,
    ContractBooked,
    ContractCancelled,
    PerformanceObligationSpec,
)

CONTRACT_TYPES = ("contract.booked", "contract.amended", "contract.cancelled")
DEFAULT_SOURCE_SYSTEM = "crm"
_FAMILIES = ("subscription", "usage", "services")
_PATTERNS = ("ratable_daily", "ratable_monthly", "point_in_time", "usage")
_TREATMENTS = ("separate_contract", "prospective", "cumulative_catch_up")


def is_generic_contract(obj: Mapping[str, Any]) -> bool:
    """Whether ``obj`` claims to be a generic contract record (its ``type``)."""
    return isinstance(obj.get("type"), str) and obj["type"].startswith("contract.")


class _Reader:
    """Typed access to one JSON object; every refusal names its JSON path and line."""

    def __init__(self, obj: Mapping[str, Any], line: int, path: str = "") -> None:
        self.obj = obj
        self.line = line
        self.path = path

    def where(self, key: str) -> str:
        return f"{self.path}{key}"

    def fail(self, key: str, reason: str) -> CellError:
        return CellError(self.line, self.where(key), reason)

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.obj.get(key)
        if value is None or value == "":
            if required:
                raise self.fail(key, "required")
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {value!r}")
        return value

    def choice(self, key: str, allowed: tuple[str, ...], default: str | None = None) -> str:
        value = self.text(key, required=default is None) or default
        if value not in allowed:
            raise self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return value  # type: ignore[return-value]

    def date(self, key: str, *, required: bool = True) -> dt.date | None:
        value = self.text(key, required=required)
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise self.fail(key, f"{value!r} is not a date (YYYY-MM-DD)") from None

    def instant(self, key: str, default: dt.date) -> dt.datetime:
        value = self.text(key, required=False)
        if value is None:
            return dt.datetime(default.year, default.month, default.day, tzinfo=dt.UTC)
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(key, f"{value!r} is not an ISO date-time") from None
        if moment.tzinfo is None:
            raise self.fail(key, f"{value!r} has no time zone")
        return moment

    def currency(self, key: str = "currency") -> str:
        code = self.text(key) or ""
        if code != code.upper() or not is_known_currency(code):
            raise self.fail(key, f"{code!r} is not a known ISO 4217 code (e.g. USD)")
        return code

    def amount(self, key: str, code: str, *, required: bool = True) -> int | None:
        value = self.obj.get(key)
        if value is None:
            if required:
                raise self.fail(key, "required")
            return None
        try:
            return minor_units(value, code)
        except AmountError as exc:
            raise self.fail(key, f"{exc.reason}: {exc}") from None

    def quantity(self, key: str) -> int:
        value = self.obj.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(key, f"{value!r} is not a whole number >= 0")
        return value

    def items(self, key: str) -> list[_Reader]:
        value = self.obj.get(key)
        if not isinstance(value, list) or not value:
            raise self.fail(key, "expected a non-empty list")
        readers = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{key}[{index}]", "expected an object")
            readers.append(_Reader(item, self.line, f"{self.where(key)}[{index}]."))
        return readers


def _obligation(item: _Reader, code: str) -> PerformanceObligationSpec:
    price = item.amount("price", code)
    ssp = item.amount("ssp", code, required=False)
    return PerformanceObligationSpec(
        obligation_id=item.text("obligation_id"),
        product_id=item.text("product_id"),
        family=item.choice("family", _FAMILIES, "subscription"),
        quantity=item.quantity("quantity"),
        price_minor=price,
        # Without an SSP the contract price is its own standalone price.
        ssp_minor=price if ssp is None else ssp,
        pattern=item.choice("pattern", _PATTERNS),
        service_start=item.date("service_start"),
        service_end=item.date("service_end", required=False),
    )


def _envelope(reader: _Reader, business_date: dt.date) -> dict[str, Any]:
    source = reader.text("source_system", required=False) or DEFAULT_SOURCE_SYSTEM
    change_id = reader.text("id")
    return {
        "event_id": f"{source}:{change_id}",
        "occurred_at": reader.instant("occurred_at", business_date),
        "source_system": source,
        "source_id": change_id,
        "entity": reader.text("entity"),
        "customer_id": reader.text("customer_id"),
    }


def _priced(reader: _Reader) -> dict[str, Any]:
    code = reader.currency()
    obligations = tuple(_obligation(item, code) for item in reader.items("obligations"))
    total = reader.amount("total_price", code, required=False)
    return {
        "currency": code,
        "obligations": obligations,
        "total_price_minor": (
            sum(o.price_minor for o in obligations if o.pattern != "usage")
            if total is None
            else total
        ),
    }


def generic_contract_event(obj: Mapping[str, Any], line: int = 1) -> Event:
    """The canonical contract event of one generic CRM contract record.

    Args:
        obj: the record, parsed with numbers as Decimal (``rows.json_object``).
        line: its line in the file, for the refusal.

    Raises:
        CellError: a field is missing or unusable (``column`` is its JSON path), or the
            canonical event refuses the values (obligation ids repeated, dates out of order).
    """
    reader = _Reader(obj, line)
    kind = reader.choice("type", CONTRACT_TYPES)
    try:
        if kind == "contract.booked":
            booked = reader.date("booking_date")
            return ContractBooked(
                **_envelope(reader, booked),
                contract_id=reader.text("contract_id"),
                booking_date=booked,
                discount_obligation_ids=tuple(obj.get("discount_obligation_ids") or ()),
                **_priced(reader),
            )
        effective = reader.date("effective_date")
        if kind == "contract.amended":
            return ContractAmended(
                **_envelope(reader, effective),
                contract_id=reader.text("contract_id"),
                amendment_id=reader.text("amendment_id"),
                effective_date=effective,
                treatment=reader.choice("treatment", _TREATMENTS),
                **_priced(reader),
            )
        return ContractCancelled(
            **_envelope(reader, effective),
            contract_id=reader.text("contract_id"),
            effective_date=effective,
            reason=reader.text("reason", required=False) or "",
        )
    except ValidationError as exc:
        item = exc.errors()[0]
        where = ".".join(str(part) for part in item["loc"])
        raise CellError(line, where, item["msg"].removeprefix("Value error, ")) from None
