"""Reference data as the posting rules see it: an immutable, replayable view.

Built by folding reference and control records (:class:`EntityConfigured`, :class:`FxRate`,
:class:`ProductMapping`, :class:`GlMapping`, :class:`PeriodClosed`, :class:`ClockAdvanced`)
with :meth:`ReferenceData.with_record`, which returns a new value: the streaming layer keeps
one per worker (from the GlobalTable), a replay folds the same records in the same order.

Rules documented here (one place):

* Rate of record (:meth:`ReferenceData.rate_of_record`): same currency → 1. Otherwise the
  latest rate dated on or before the date, taken from the direct pair (base=from,
  quote=to) or the inverse pair (1 / rate, 34 significant digits, half-even); the later
  date wins, and on the same date the direct pair wins. No triangulation through a third
  currency. A rate re-sent for the same pair and date replaces the earlier one.
* Posting period (:meth:`ReferenceData.posting_period`): an event dated in an open period
  posts on its own date; dated in a closed period (or before the entity's first open
  period) it posts on the first day of the first open period after it.
* Product family (:meth:`ReferenceData.product_family`): the mapping with the latest
  ``effective_from`` on or before the date; if every mapping starts later, the earliest.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import decimal
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_HALF_EVEN, Decimal
from types import MappingProxyType

from ledger.accounts import Account, ProductFamily, resolve_gl_code
from ledger.calendar import first_day, next_period, period_of
from ledger.errors import InvariantViolation
from ledger.events import (
    AmortizationMethod,
    CatchUpPolicy,
    ClockAdvanced,
    EntityConfigured,
    FxRate,
    GlMapping,
    PeriodClosed,
    ProductMapping,
    ReferenceRecord,
    UncollectiblePolicy,
)

# Digits kept when inverting a rate: more than any published rate carries.
_INVERSE_PRECISION = 34

Pair = tuple[str, str]
RateHistory = tuple[tuple[dt.date, Decimal], ...]


@dataclass(frozen=True, slots=True)
class EntityInfo:
    """A legal entity: its functional currency and first open period."""

    entity: str
    name: str
    functional_currency: str
    first_open_period: str
    amortization_method: AmortizationMethod | None = None
    catch_up_policy: CatchUpPolicy = "in_service_months"
    uncollectible_policy: UncollectiblePolicy = "stop_recognition"


def _frozen(values: dict) -> Mapping:
    return MappingProxyType(values)


@dataclass(frozen=True, slots=True)
class ReferenceData:
    """Immutable view of entities, FX rates, products, GL mappings and closed periods."""

    entities: Mapping[str, EntityInfo] = field(default_factory=lambda: _frozen({}))
    fx_rates: Mapping[Pair, RateHistory] = field(default_factory=lambda: _frozen({}))
    products: Mapping[str, tuple[ProductMapping, ...]] = field(default_factory=lambda: _frozen({}))
    gl_mappings: tuple[GlMapping, ...] = ()
    closed_periods: Mapping[str, frozenset[str]] = field(default_factory=lambda: _frozen({}))
    business_date: dt.date | None = None

    @classmethod
    def from_records(cls, records: Iterable[ReferenceRecord]) -> ReferenceData:
        """Fold ``records`` in order into a fresh view."""
        reference = cls()
        for record in records:
            reference = reference.with_record(record)
        return reference

    def with_record(self, record: ReferenceRecord) -> ReferenceData:
        """A new view with ``record`` applied; records of other types leave it unchanged."""
        match record:
            case EntityConfigured():
                info = EntityInfo(
                    record.entity,
                    record.name,
                    record.functional_currency,
                    record.first_open_period,
                    record.amortization_method,
                    record.catch_up_policy,
                    record.uncollectible_policy,
                )
                return replace(self, entities=_frozen({**self.entities, record.entity: info}))
            case FxRate():
                return replace(self, fx_rates=_with_rate(self.fx_rates, record))
            case ProductMapping():
                return replace(self, products=_with_product(self.products, record))
            case GlMapping():
                return replace(self, gl_mappings=(*self.gl_mappings, record))
            case PeriodClosed():
                closed = self.closed_periods.get(record.entity, frozenset()) | {record.period}
                periods = _frozen({**self.closed_periods, record.entity: closed})
                return replace(self, closed_periods=periods)
            case ClockAdvanced():
                return replace(self, business_date=record.business_date)
        return self

    def with_closed_periods(self, closed: Iterable[tuple[str, str]]) -> ReferenceData:
        """This view with the (entity, period) pairs ``closed`` closed as well."""
        periods = {entity: set(names) for entity, names in self.closed_periods.items()}
        for entity, period in closed:
            periods.setdefault(entity, set()).add(period)
        return replace(self, closed_periods=_frozen({e: frozenset(p) for e, p in periods.items()}))

    def has_entity(self, entity: str) -> bool:
        """True when ``entity`` was configured."""
        return entity in self.entities

    def functional_currency(self, entity: str) -> str | None:
        """The functional currency of ``entity``, or None when it is unknown."""
        info = self.entities.get(entity)
        return None if info is None else info.functional_currency

    def rate_of_record(
        self, from_currency: str, to_currency: str, on_date: dt.date
    ) -> Decimal | None:
        """Units of ``to_currency`` per unit of ``from_currency`` on ``on_date`` (module rule)."""
        if from_currency == to_currency:
            return Decimal(1)
        direct = _latest(self.fx_rates.get((from_currency, to_currency), ()), on_date)
        inverse = _latest(self.fx_rates.get((to_currency, from_currency), ()), on_date)
        if inverse is not None and (direct is None or inverse[0] > direct[0]):
            with decimal.localcontext() as context:
                context.prec = _INVERSE_PRECISION
                context.rounding = ROUND_HALF_EVEN
                return Decimal(1) / inverse[1]
        return None if direct is None else direct[1]

    def is_closed(self, entity: str, period: str) -> bool:
        """True when ``period`` is closed for ``entity`` (or before its first open period)."""
        info = self.entities.get(entity)
        if info is not None and period < info.first_open_period:
            return True
        return period in self.closed_periods.get(entity, frozenset())

    def posting_period(self, entity: str, on_date: dt.date) -> tuple[dt.date, str]:
        """``(posting_date, period)`` for an event of ``entity`` dated ``on_date``.

        Raises:
            InvariantViolation: ``entity`` is unknown (callers check it first).
        """
        if entity not in self.entities:
            raise InvariantViolation(f"posting_period for unknown entity {entity!r}")
        period = period_of(on_date)
        if not self.is_closed(entity, period):
            return on_date, period
        while self.is_closed(entity, period):
            period = next_period(period)
        return first_day(period), period

    def product_mapping(self, product_id: str, on_date: dt.date) -> ProductMapping | None:
        """The mapping of ``product_id`` in force on ``on_date`` (module rule), or None."""
        history = self.products.get(product_id, ())
        if not history:
            return None
        dates = [mapping.effective_from for mapping in history]
        index = bisect.bisect_right(dates, on_date) - 1
        return history[max(index, 0)]

    def product_family(self, product_id: str, on_date: dt.date) -> ProductFamily | None:
        """Family of ``product_id`` on ``on_date`` (module rule), or None when unknown."""
        mapping = self.product_mapping(product_id, on_date)
        return None if mapping is None else ProductFamily(mapping.family)

    def amortization_method(
        self, entity: str, product_id: str, on_date: dt.date
    ) -> AmortizationMethod | None:
        """The product's override, else the entity's setting; None: the pattern decides."""
        mapping = self.product_mapping(product_id, on_date)
        if mapping is not None and mapping.amortization_method is not None:
            return mapping.amortization_method
        info = self.entities.get(entity)
        return None if info is None else info.amortization_method

    def uncollectible_policy(self, entity: str) -> UncollectiblePolicy:
        """What writing an invoice of ``entity`` off in full does to its revenue."""
        info = self.entities.get(entity)
        return "stop_recognition" if info is None else info.uncollectible_policy

    def catch_up_policy(self, entity: str) -> CatchUpPolicy:
        """How ``entity`` recognises service that started before its invoice."""
        info = self.entities.get(entity)
        return "in_service_months" if info is None else info.catch_up_policy

    def gl_code(
        self, entity: str, account: Account, family: ProductFamily | None, on_date: dt.date
    ) -> str | None:
        """ERP code of a logical account for ``entity`` on ``on_date`` (see resolve_gl_code)."""
        return resolve_gl_code(self.gl_mappings, entity, account, family, on_date)


def _latest(history: RateHistory, on_date: dt.date) -> tuple[dt.date, Decimal] | None:
    index = bisect.bisect_right([day for day, _ in history], on_date) - 1
    return None if index < 0 else history[index]


def _with_rate(rates: Mapping[Pair, RateHistory], record: FxRate) -> Mapping[Pair, RateHistory]:
    pair = (record.base_currency, record.quote_currency)
    kept = {day: rate for day, rate in rates.get(pair, ())}
    kept[record.rate_date] = Decimal(record.rate)
    return _frozen({**rates, pair: tuple(sorted(kept.items()))})


def _with_product(
    products: Mapping[str, tuple[ProductMapping, ...]], record: ProductMapping
) -> Mapping[str, tuple[ProductMapping, ...]]:
    kept = {m.effective_from: m for m in products.get(record.product_id, ())}
    kept[record.effective_from] = record
    history = tuple(kept[day] for day in sorted(kept))
    return _frozen({**products, record.product_id: history})
