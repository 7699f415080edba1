"""Contract events from the CRM / CPQ: what was sold, for how much, and over which period.

Each class mirrors one Avro schema in ``avro/``. The envelope, money conventions and
strictness are those of :mod:`ledger.events`.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from ledger.events import (
    CurrencyCode,
    Event,
    Identifier,
    Items,
    NonNegativeMinor,
    ProductFamily,
    RecognitionPattern,
    Record,
)

# ASC 606-10-25-12 (separate contract) and 25-13 (a: prospective, b: cumulative catch-up).
ModificationTreatment = Literal["separate_contract", "prospective", "cumulative_catch_up"]


class PerformanceObligationSpec(Record):
    """A distinct promise in a contract, as booked: price, SSP, pattern and service period."""

    schema_name: ClassVar[str] = "PerformanceObligationSpec"
    obligation_id: Identifier
    product_id: Identifier
    family: ProductFamily
    quantity: int = Field(ge=0)
    price_minor: NonNegativeMinor
    ssp_minor: NonNegativeMinor
    pattern: RecognitionPattern
    service_start: dt.date
    service_end: dt.date | None = None

    @model_validator(mode="after")
    def _period_is_ordered(self) -> PerformanceObligationSpec:
        if self.service_end is not None and self.service_end < self.service_start:
            raise ValueError(f"obligation {self.obligation_id}: service_end before service_start")
        if self.pattern in ("ratable_daily", "ratable_monthly") and self.service_end is None:
            raise ValueError(
                f"obligation {self.obligation_id}: a ratable pattern needs service_end"
            )
        return self


def _check_obligations(obligations: tuple[PerformanceObligationSpec, ...]) -> None:
    ids = [o.obligation_id for o in obligations]
    if len(ids) != len(set(ids)):
        raise ValueError("an obligation_id appears twice")


class ContractBooked(Event):
    """A contract was signed. Its transaction price is allocated over obligations by SSP.

    ``total_price_minor`` excludes usage: usage obligations take what is consumed
    (ASC 606-10-32-40). ``discount_obligation_ids`` names the obligations a discount
    relates to (ASC 606-10-32-37); the others then get their SSP.
    """

    schema_name: ClassVar[str] = "ContractBooked"
    business_date_field: ClassVar[str] = "booking_date"
    event_type: Literal["contract.booked"] = "contract.booked"
    contract_id: Identifier
    booking_date: dt.date
    currency: CurrencyCode
    total_price_minor: NonNegativeMinor
    obligations: Annotated[tuple[PerformanceObligationSpec, ...], Items] = Field(min_length=1)
    discount_obligation_ids: Annotated[tuple[str, ...], Items] = ()

    @model_validator(mode="after")
    def _obligations_are_distinct(self) -> ContractBooked:
        _check_obligations(self.obligations)
        unknown = set(self.discount_obligation_ids) - {o.obligation_id for o in self.obligations}
        if unknown:
            raise ValueError(f"discount_obligation_ids {sorted(unknown)} are not obligations")
        return self


class ContractAmended(Event):
    """A contract modification; ``treatment`` says which ASC 606 treatment applies.

    * ``separate_contract`` (25-12): ``obligations`` are the added ones only and
      ``total_price_minor`` their price; the existing obligations are untouched.
    * ``prospective`` (25-13a) and ``cumulative_catch_up`` (25-13b): ``obligations`` is
      the full set after the change (a missing id ends at ``effective_date``) and
      ``total_price_minor`` the modified contract's whole transaction price. Under
      ``prospective`` each ``ssp_minor`` is the SSP of what remains to deliver from
      ``effective_date``.
    """

    schema_name: ClassVar[str] = "ContractAmended"
    business_date_field: ClassVar[str] = "effective_date"
    event_type: Literal["contract.amended"] = "contract.amended"
    contract_id: Identifier
    amendment_id: Identifier
    effective_date: dt.date
    treatment: ModificationTreatment
    currency: CurrencyCode
    total_price_minor: NonNegativeMinor
    obligations: Annotated[tuple[PerformanceObligationSpec, ...], Items] = Field(min_length=1)

    @model_validator(mode="after")
    def _obligations_are_distinct(self) -> ContractAmended:
        _check_obligations(self.obligations)
        return self


class ContractCancelled(Event):
    """A contract ends early: recognition stops at ``effective_date``."""

    schema_name: ClassVar[str] = "ContractCancelled"
    business_date_field: ClassVar[str] = "effective_date"
    event_type: Literal["contract.cancelled"] = "contract.cancelled"
    contract_id: Identifier
    effective_date: dt.date
    reason: str


CONTRACT_EVENTS: tuple[type[Event], ...] = (ContractBooked, ContractAmended, ContractCancelled)
