"""What the simulated SaaS company remembers of a customer while it generates its life.

A :class:`Customer` holds the customer's traits and the :class:`Item` s generated so far
(an event with its business day and same-day rank); :class:`Term`, :class:`Invoice`,
:class:`Payment` and their parts are the business objects later events refer to (what an
invoice still owes, what a credit may still take, what a refund may still give back).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

from connectors.simulation.saas_catalogue import Plan, TaxRegime
from ledger.events import Event
from revenue.events import PerformanceObligationSpec

DAY = dt.timedelta(days=1)
# Same-day order in business time: what an event needs sorts before it.
(
    CUSTOMER,
    BOOKING,
    AMENDMENT,
    CANCELLATION,
    INVOICE,
    USAGE,
    CREDIT,
    FAILURE,
    PAYMENT,
    REFUND,
    DISPUTE,
    WRITE_OFF,
) = range(12)
# Groups of a day in business order: period closes, customers' events, payouts.
CLOSE_GROUP, CUSTOMER_GROUP, PAYOUT_GROUP = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Item:
    """An event with its place in business order (``group``: ``*_GROUP``)."""

    day: dt.date
    group: int
    customer: int
    rank: int
    order: int
    event: Event

    @property
    def key(self) -> tuple:
        """Business order: by day; a day's closes first; one customer's events together."""
        return (self.day, self.group, self.customer, self.rank, self.order)


@dataclass(frozen=True, slots=True)
class Charge:
    """An invoice line to be: product, amount, and the obligation and service it bills."""

    product_id: str
    description: str
    quantity: int
    amount_minor: int
    contract_id: str
    obligation_id: str
    service: tuple[dt.date, dt.date] | None = None


@dataclass(slots=True)
class Line:
    """An issued invoice line and what credit notes may still take from it."""

    line_id: str
    amount: int
    left: int


@dataclass(frozen=True, slots=True)
class Credit:
    """A credit note issued: its day and total (net plus tax)."""

    day: dt.date
    total: int


@dataclass(slots=True)
class Invoice:
    """An issued invoice, the credits dated against it, and what payments applied."""

    invoice_id: str
    day: dt.date
    gross: int
    tax_left: int
    lines: list[Line]
    dunning: bool
    credits: list[Credit] = field(default_factory=list)
    paid: int = 0
    paid_on: dt.date | None = None
    write_off_on: dt.date | None = None

    @property
    def creditable(self) -> int:
        """What credits may still take, never the whole invoice."""
        return self.gross - 1 - sum(credit.total for credit in self.credits)

    def due_on(self, day: dt.date) -> int:
        """Amount due on ``day``, after that day's credits and every payment recorded."""
        return self.gross - self.paid - sum(c.total for c in self.credits if c.day <= day)


@dataclass(slots=True)
class Payment:
    """A settled payment and what a refund or a lost dispute may still take back."""

    payment_id: str
    day: dt.date
    amount: int
    extra: int
    invoice: Invoice
    refundable: int
    refunded: bool = False


@dataclass(slots=True)
class Term:
    """A plan term: its contract, seats and the invoice line that bills it."""

    contract_id: str
    plan: Plan
    begins: dt.date
    ends: dt.date
    seats: int
    seat_price: int  # per seat per term, after discount
    total: int
    seats_spec: PerformanceObligationSpec
    usage_spec: PerformanceObligationSpec | None
    invoice: Invoice | None = None
    amendments: int = 0

    @property
    def days(self) -> int:
        """Days of service in the term."""
        return (self.ends - self.begins).days + 1


@dataclass(slots=True)
class Customer:
    """One customer's traits and the events of its life under generation."""

    rng: random.Random
    index: int
    customer_id: str
    entity: str
    currency: str
    tax: TaxRegime | None
    country: str
    tier: str
    plan_months: int
    seats: int
    method: str
    metered: bool
    signup: dt.date
    last: dt.date  # horizon: later events are not generated
    items: list[Item] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    # (invoice, line, first and last day of service) of subscription lines, for outage credits.
    service_lines: list[tuple[Invoice, Line, dt.date, dt.date]] = field(default_factory=list)
    active_until: dt.date | None = None
    features: Counter[str] = field(default_factory=Counter)
    counter: int = 0

    def next_id(self, prefix: str) -> str:
        """A business id unique across the company: ``<prefix>-<customer>-<n>``."""
        self.counter += 1
        return f"{prefix}-{self.customer_id}-{self.counter:03d}"

    def add(self, day: dt.date, rank: int, event: Event) -> bool:
        """Record ``event`` on ``day``; False (nothing recorded) past the horizon."""
        if day > self.last:
            return False
        self.items.append(Item(day, CUSTOMER_GROUP, self.index, rank, len(self.items), event))
        return True

    def envelope(self, source: str, business_id: str, day: dt.date) -> dict:
        """Event envelope: ids from the business id, recorded at noon UTC of ``day``."""
        return {
            "event_id": f"evt-{business_id}",
            "occurred_at": dt.datetime.combine(day, dt.time(12), dt.UTC),
            "source_system": source,
            "source_id": business_id,
            "entity": self.entity,
            "customer_id": self.customer_id,
        }
