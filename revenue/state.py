"""Per-customer revenue state: contracts, their performance obligations and schedules.

A :class:`RevenueBook` is immutable like :class:`ledger.state.CustomerLedger`, and lives
beside it (the ledger owns billing and the seen ids; this owns what is recognised). For
each obligation it keeps the schedule (:class:`revenue.schedule.Segment` list), the net
revenue recognised so far, the day recognition has been run through, and the day it was
first billed (the catch-up policy ``at_invoice`` waits for it).

Position of a contract (ASC 606-10-45-1): billed (ledger) − recognised (here); positive is
deferred revenue (a contract liability), negative unbilled AR (a contract asset).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType

from ledger.accounts import ProductFamily
from ledger.events import CatchUpPolicy, RecognitionPattern
from ledger.frozen_map import FrozenMap
from revenue.schedule import Method, Segment, due_through, last_service_day, total_of


def _empty() -> Mapping:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class CreditRecord:
    """What one credit note took from an obligation, kept so that a void restores it.

    ``excess``, ``spread`` and ``now`` are the parts of the credit described in
    :class:`revenue.engine._CreditSplit`; ``segments_before`` / ``segments_after`` the
    schedule just before and just after the credit changed it.
    """

    credit_note_id: str
    excess_minor: int
    spread_minor: int
    now_minor: int
    segments_before: tuple[Segment, ...]
    segments_after: tuple[Segment, ...]

    @property
    def amount_minor(self) -> int:
        """The billing the credit took back from the contract."""
        return self.excess_minor + self.spread_minor + self.now_minor


@dataclass(frozen=True, slots=True)
class Obligation:
    """One performance obligation: what it earns, when, and how much it has earned."""

    obligation_id: str
    contract_id: str
    product_id: str
    family: ProductFamily
    pattern: RecognitionPattern
    # None for usage: recognised as consumed, not on a schedule.
    method: Method | None
    ssp_minor: int
    service_start: dt.date
    service_end: dt.date | None
    segments: tuple[Segment, ...] = ()
    recognized_minor: int = 0
    recognized_through: dt.date | None = None
    billed_on: dt.date | None = None
    # What last changed the schedule ("booking", "amendment:<id>", "credit_note:<id>" ...).
    last_change: str = "booking"
    # Credit notes that lowered this obligation and were not voided, in order.
    credits: tuple[CreditRecord, ...] = ()

    @property
    def is_usage(self) -> bool:
        """True for a usage obligation (priced usage events recognise it)."""
        return self.method is None

    @property
    def allocated_minor(self) -> int:
        """Transaction price allocated now: what the schedule earns in all."""
        if self.is_usage:
            return self.recognized_minor
        return total_of(self.segments)

    def scheduled_through(self, day: dt.date | None) -> int:
        """What the schedule has due through ``day``, billed or not."""
        return due_through(self.segments, day)

    def target(self, day: dt.date | None, policy: CatchUpPolicy) -> int:
        """What should be recognised through ``day`` under ``policy``.

        ``at_invoice``: nothing before the contract's first invoice; from its issue day,
        all that the schedule has due (the elapsed part is caught up then).
        """
        if self.is_usage:
            return self.recognized_minor
        if policy == "at_invoice" and (
            self.billed_on is None or day is None or day < self.billed_on
        ):
            return 0
        return self.scheduled_through(day)

    def last_day(self) -> dt.date | None:
        """Last service day that still earns something (None without a schedule)."""
        return last_service_day(self.segments)

    def first_day(self) -> dt.date | None:
        """First day of the schedule (None without one)."""
        return min((segment.start for segment in self.segments), default=None)


@dataclass(frozen=True, slots=True)
class Contract:
    """A contract and its obligations, in booking order.

    ``rate`` is the rate of record at booking (functional per unit of ``currency``):
    recognition entries convert at it. ``implied`` marks a contract made for an invoice
    line that named none.
    """

    contract_id: str
    entity: str
    currency: str
    booking_date: dt.date
    rate: Decimal
    total_price_minor: int
    obligations: Mapping[str, Obligation] = field(default_factory=_empty)
    amendments: tuple[str, ...] = ()
    cancelled_on: dt.date | None = None
    implied: bool = False
    # (business date, signed amount) of every bill, void and credit on the contract.
    billing: tuple[tuple[dt.date, int], ...] = ()
    # Not state: the contract's canonical JSON, filled once by :mod:`revenue.codec` (see
    # :attr:`ledger.state.InvoiceItem.encoded_json`).
    encoded_json: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def billed_through(self, day: dt.date) -> int:
        """What was billed on the contract by ``day``, net of voids and credits."""
        return sum(amount for on, amount in self.billing if on <= day)

    def with_billing(self, day: dt.date, amount_minor: int) -> Contract:
        """A copy with one more bill (positive) or void / credit (negative)."""
        return replace(self, billing=(*self.billing, (day, amount_minor)))

    def with_obligation(self, obligation: Obligation) -> Contract:
        """A copy with ``obligation`` stored under its id (kept in first-seen order)."""
        merged = {**self.obligations, obligation.obligation_id: obligation}
        return replace(self, obligations=MappingProxyType(merged))

    @property
    def recognized_minor(self) -> int:
        """Net revenue recognised on the contract so far."""
        return sum(o.recognized_minor for o in self.obligations.values())


@dataclass(frozen=True, slots=True)
class RevenueBook:
    """Everything revenue recognition knows about one customer.

    ``contracts`` grows with the customer's history (an implied contract per invoice that
    names none): it is a :class:`FrozenMap`, and nothing asked per event walks all of it.
    """

    customer_id: str
    contracts: Mapping[str, Contract] = field(default_factory=FrozenMap)
    # Business day recognition was last run through for this customer, and by which tick.
    clock: dt.date | None = None
    last_clock_id: str | None = None
    # Derived, neither stored nor compared: how many contracts have revenue still to run
    # (:func:`contract_is_active`). :meth:`is_active` is asked after every event; walking
    # every contract the customer ever had made it O(n) per event (issue 7).
    # :meth:`with_contract` keeps it up to date; -1 (the default) counts it on construction.
    # Change ``contracts`` only through :meth:`with_contract`.
    active_contracts: int = field(default=-1, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.active_contracts < 0:
            active = sum(1 for c in self.contracts.values() if contract_is_active(c))
            object.__setattr__(self, "active_contracts", active)  # frozen: set once, here

    def with_contract(self, contract: Contract) -> RevenueBook:
        """A copy with ``contract`` stored under its id."""
        old = self.contracts.get(contract.contract_id)
        active = self.active_contracts + contract_is_active(contract)
        if old is not None:
            active -= contract_is_active(old)
        contracts = FrozenMap.of(self.contracts).with_item(contract.contract_id, contract)
        return replace(self, contracts=contracts, active_contracts=active)

    def recognized_by_contract(self) -> Mapping[str, int]:
        """Contract id -> net revenue recognised, for the ledger's billing split.

        A view, summed per lookup: a rule asks for the few contracts its event touches.
        """
        return _RecognizedByContract(self.contracts)

    def obligations_with_id(self, obligation_id: str) -> list[Obligation]:
        """Every obligation with ``obligation_id``, across contracts."""
        return [
            c.obligations[obligation_id]
            for c in self.contracts.values()
            if obligation_id in c.obligations
        ]

    def is_active(self) -> bool:
        """True while some scheduled obligation has more to recognise, or is behind."""
        return self.active_contracts > 0


def contract_is_active(contract: Contract) -> bool:
    """True while a scheduled obligation of ``contract`` has more to recognise, or is behind."""
    for obligation in contract.obligations.values():
        if obligation.is_usage:
            continue
        last = obligation.last_day()
        through = obligation.recognized_through
        if last is not None and (through is None or through < last):
            return True
        if obligation.recognized_minor != obligation.allocated_minor:
            return True
    return False


class _RecognizedByContract(Mapping[str, int]):
    """Contract id -> :attr:`Contract.recognized_minor`, computed when looked up."""

    __slots__ = ("_contracts",)

    def __init__(self, contracts: Mapping[str, Contract]) -> None:
        self._contracts = contracts

    def __getitem__(self, contract_id: str) -> int:
        return self._contracts[contract_id].recognized_minor

    def __iter__(self) -> Iterator[str]:
        return iter(self._contracts)

    def __len__(self) -> int:
        return len(self._contracts)
