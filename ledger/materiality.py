"""Materiality bands: how much money a DLQ record or a held event puts at stake.

An SRE is paged for what loses money, not for every bad message: each dead-lettered or
held event gets a band, low / medium / high, from its amount in the entity's functional
currency against thresholds configured per currency in minor units
(``REVLEDGER_MATERIALITY_THRESHOLDS``, see :func:`parse_thresholds`). The alert rules page
at once on ``high`` and only open a ticket for ``low`` once it has aged.

Worked example with the default ``USD:100000,1000000`` (medium from 1,000.00 USD, high from
10,000.00 USD) for an entity whose functional currency is USD:

- an invoice of 250.00 EUR at a rate of record 1.08 is 270.00 USD: ``low``;
- a payment of 4,500.00 USD: ``medium``;
- a refund of 12,000.00 USD: ``high``;
- a payment in GBP with no GBP/USD rate of record on its date is banded against the GBP
  thresholds when some are configured, else ``unknown`` (like a message that does not
  decode: no amount can be trusted).

The bands only say how urgent a human look is; they never change what the ledger posts.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from ledger.errors import UnknownCurrency
from ledger.money import MAX_MINOR, convert, exponent
from ledger.reference import ReferenceData

# Medium from 1,000 and high from 10,000 major units of the big currencies (JPY about the
# same value): a payment in the hundreds waits for a ticket, a five-figure one pages.
DEFAULT_THRESHOLDS = (
    "USD:100000,1000000;EUR:100000,1000000;GBP:100000,1000000;CHF:100000,1000000;"
    "CAD:100000,1000000;AUD:100000,1000000;JPY:150000,1500000"
)

# Fields that carry an event's money, in the order they are looked for: an invoice's or
# credit note's total, a payment's (refund's, write-off's, payout's, usage's) amount, a
# contract's price. Events without one (a void, a cancellation) have no band of their own.
_AMOUNT_FIELDS = ("total_minor", "amount_minor", "total_price_minor")


class Band(StrEnum):
    """Materiality band, in increasing urgency (``unknown``: no amount could be read)."""

    unknown = "unknown"
    low = "low"
    medium = "medium"
    high = "high"


class MaterialityError(ValueError):
    """Raised by :func:`parse_thresholds` for a threshold text it cannot use."""


@dataclass(frozen=True, slots=True)
class Threshold:
    """Amounts (minor units of one currency) from which an amount is medium, then high."""

    medium_from_minor: int
    high_from_minor: int

    def __post_init__(self) -> None:
        if not 0 < self.medium_from_minor <= self.high_from_minor <= MAX_MINOR:
            raise MaterialityError(
                "thresholds must satisfy 0 < medium <= high <= 2**63-1, got"
                f" {self.medium_from_minor}, {self.high_from_minor}"
            )


Thresholds = Mapping[str, Threshold]


def parse_thresholds(text: str) -> Thresholds:
    """Thresholds from ``"USD:100000,1000000;EUR:90000,900000"`` (minor units per currency).

    Entries are separated by ``;``, each ``CUR:medium_from,high_from``; blanks around the
    parts are ignored; an empty text gives no thresholds (every band is ``unknown``).

    Raises:
        MaterialityError: a malformed entry, an unknown currency, a currency given twice,
            or amounts that are not integers with ``0 < medium <= high``.
    """
    found: dict[str, Threshold] = {}
    for part in (piece.strip() for piece in text.split(";")):
        if not part:
            continue
        currency, sep, amounts = (piece.strip() for piece in part.partition(":"))
        values = [value.strip() for value in amounts.split(",")]
        if not sep or len(values) != 2 or not all(v.isdigit() for v in values):
            raise MaterialityError(f"{part!r}: expected CUR:medium_from,high_from (minor units)")
        try:
            exponent(currency)
        except UnknownCurrency as exc:
            raise MaterialityError(f"{part!r}: unknown currency {currency!r}") from exc
        if currency in found:
            raise MaterialityError(f"{part!r}: {currency} is given twice")
        found[currency] = Threshold(int(values[0]), int(values[1]))
    return MappingProxyType(found)


def band_of(amount_minor: int, currency: str, thresholds: Thresholds) -> Band:
    """The band of an amount (its size: a credit and a debit of 5,000 weigh the same)."""
    threshold = thresholds.get(currency)
    if threshold is None:
        return Band.unknown
    size = abs(amount_minor)
    if size >= threshold.high_from_minor:
        return Band.high
    if size >= threshold.medium_from_minor:
        return Band.medium
    return Band.low


def event_amount(event: object) -> tuple[int, str] | None:
    """The money an event carries, ``(amount_minor, currency)``, or None when it has none."""
    currency = getattr(event, "currency", None)
    if not isinstance(currency, str):
        return None
    for name in _AMOUNT_FIELDS:
        value = getattr(event, name, None)
        if type(value) is int:
            return value, currency
    return None


def event_band(event: object, reference: ReferenceData, thresholds: Thresholds) -> Band:
    """The band of an event: its amount in its entity's functional currency.

    Converted at the rate of record on the day the event occurred (the same rule as the
    postings). Without an entity, a functional currency or a rate, the amount is banded
    in its own currency when thresholds exist for it, else ``unknown``.
    """
    amount = event_amount(event)
    if amount is None:
        return Band.unknown
    amount_minor, currency = amount
    entity = getattr(event, "entity", None)
    functional = reference.functional_currency(entity) if isinstance(entity, str) else None
    occurred_at = getattr(event, "occurred_at", None)
    if functional is not None and occurred_at is not None:
        rate = reference.rate_of_record(currency, functional, occurred_at.date())
        if rate is not None:
            functional_minor = convert(amount_minor, currency, functional, rate)
            return band_of(functional_minor, functional, thresholds)
    return band_of(amount_minor, currency, thresholds)


__all__ = [
    "DEFAULT_THRESHOLDS",
    "Band",
    "MaterialityError",
    "Threshold",
    "Thresholds",
    "band_of",
    "event_amount",
    "event_band",
    "parse_thresholds",
]
