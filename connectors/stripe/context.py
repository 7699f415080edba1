"""What every Stripe event handler shares: the envelope, dates, entity, ids, and refusals.

Canonical event ids are derived from the Stripe event id (``stripe:<evt id>``, plus a
suffix when one Stripe event gives several canonical events), so Stripe's retry of the
same event gives identical canonical events and the ledger's duplicate check makes it
change nothing. A refund is the exception: its id is ``stripe:<refund id>``, because
``charge.refunded`` lists every refund of the charge so far and the same refund must come
out the same from each of them.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from connectors.stripe.config import StripeConfig
from connectors.stripe.objects import Ref, StripeEvent, StripeObject, expanded, ref_id
from ledger.events import Record
from ledger.money import is_known_currency

SOURCE_SYSTEM = "stripe"
PROCESSOR = "stripe"

_DAY = dt.timedelta(days=1)
_Model = TypeVar("_Model", bound=BaseModel)


class Refusal(Exception):
    """Raised by a handler for an event it cannot translate faithfully (dead-lettered).

    ``reason`` is a ``snake_case`` code starting ``stripe_``; ``message`` names the
    object and the figures.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Skip:
    """A handler's answer for an event that has no accounting effect (counted, skipped)."""

    reason: str
    detail: str


def describe(error: ValidationError) -> str:
    """A short account of a pydantic error: the first few fields and why."""
    parts = []
    for item in error.errors()[:4]:
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def parse(model: type[_Model], data: Any, what: str) -> _Model:
    """Validate a Stripe object; a shape we cannot read is a refusal, not a crash."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Refusal("stripe_payload_invalid", f"{what}: {describe(exc)}") from exc


def build(model: type[Record], what: str, **fields: Any) -> Record:
    """Build a canonical record; the canonical model's refusal names the Stripe object."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise Refusal("stripe_canonical_invalid", f"{what}: {describe(exc)}") from exc


@dataclass(frozen=True, slots=True)
class Context:
    """One Stripe event being translated, with the configuration."""

    event: StripeEvent
    config: StripeConfig

    @property
    def object(self) -> dict[str, Any]:
        """``event.data.object`` as Stripe sent it."""
        return self.event.data.object

    @property
    def previous(self) -> dict[str, Any]:
        """``event.data.previous_attributes`` (empty when absent)."""
        return self.event.data.previous_attributes or {}

    def event_id(self, suffix: str | None = None) -> str:
        """The canonical event id: ``stripe:<evt id>`` (+ ``/<suffix>``)."""
        base = f"{SOURCE_SYSTEM}:{self.event.id}"
        return base if suffix is None else f"{base}/{suffix}"

    def instant(self, seconds: int | None = None) -> dt.datetime:
        """A Unix timestamp as an aware UTC datetime (default: when the event happened).

        Raises:
            Refusal: the timestamp is outside the years 1-9999 (found by the fuzz: a huge
                ``created`` raised ValueError / OverflowError and stopped the translator).
        """
        value = self.event.created if seconds is None else seconds
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (ValueError, OverflowError, OSError) as exc:
            raise Refusal("stripe_payload_invalid", f"timestamp {value} is out of range") from exc

    def date(self, seconds: int | None) -> dt.date:
        """The business date of a Unix timestamp in the configured zone (None: the event's)."""
        instant = self.instant(seconds)
        try:
            return instant.astimezone(self.config.zone).date()
        except OverflowError as exc:  # within a day of year 1 or 9999
            value = self.event.created if seconds is None else seconds
            raise Refusal("stripe_payload_invalid", f"timestamp {value} is out of range") from exc

    def service_period(self, start: int, end: int) -> tuple[dt.date, dt.date]:
        """Stripe's ``[start, end)`` in seconds as inclusive service days."""
        first = self.date(start)
        end_day = self.date(end)
        last = end_day - _DAY if end_day > dt.date.min else end_day
        return first, max(first, last)

    def currency(self, code: str | None, what: str) -> str:
        """Stripe's lower-case currency code as ISO 4217 capitals; unknown codes refused."""
        upper = (code or "").upper()
        if not is_known_currency(upper):
            raise Refusal("stripe_unknown_currency", f"{what}: currency {code!r} is not known")
        return upper

    def entity(self, currency: str, what: str) -> str:
        """The entity of this event's account and ``currency`` (config.entity_for)."""
        entity = self.config.entity_for(self.event.account, currency)
        if entity is None:
            raise Refusal(
                "stripe_entity_unmapped",
                f"{what}: no entity for account {self.event.account or self.config.account_id!r}"
                f" and currency {currency} (set 'entities' in the Stripe configuration)",
            )
        return entity

    def customer(self, *refs: Ref, what: str) -> str:
        """The Stripe customer id from the first reference that has one."""
        for ref in refs:
            customer = ref_id(ref)
            if customer:
                return customer
        if self.config.unidentified_customer_id:
            return self.config.unidentified_customer_id
        raise Refusal(
            "stripe_customer_missing",
            f"{what}: names no Stripe customer (set unidentified_customer_id to post such"
            " payments to one customer)",
        )

    def envelope(
        self,
        *,
        customer_id: str,
        entity: str,
        source_id: str,
        event_id: str | None = None,
        occurred_at: dt.datetime | None = None,
        correlation_id: str | None = None,
    ) -> dict[str, Any]:
        """The canonical envelope fields (id, time, source, entity, customer)."""
        return {
            "event_id": event_id or self.event_id(),
            "occurred_at": occurred_at or self.instant(),
            "source_system": SOURCE_SYSTEM,
            "source_id": source_id,
            "entity": entity,
            "customer_id": customer_id,
            "correlation_id": self.event.id if correlation_id is None else correlation_id,
        }


def customer_of_charge(charge: Ref) -> Ref:
    """The customer of an expanded charge (None when the charge is only an id)."""
    obj = expanded(charge)
    return None if obj is None else obj.get("customer")


__all__ = [
    "PROCESSOR",
    "SOURCE_SYSTEM",
    "Context",
    "Refusal",
    "Skip",
    "StripeObject",
    "build",
    "customer_of_charge",
    "describe",
    "parse",
]
