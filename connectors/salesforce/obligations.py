"""Salesforce line records -> performance obligations: product, price, SSP and term.

Three kinds of line, each read in the shape the REST API returns it:

* ``OpportunityLineItem``: price ``TotalPrice``; SSP per unit ``ListPrice`` (or the
  expanded ``PricebookEntry.UnitPrice``); term from ``ServiceDate`` (else the
  opportunity's ``CloseDate``) for ``default_term_months``.
* ``SBQQ__Subscription__c``: price ``SBQQ__NetPrice__c`` x ``SBQQ__Quantity__c``; SSP per
  unit ``SBQQ__ListPrice__c``; term ``SBQQ__StartDate__c`` .. ``SBQQ__EndDate__c`` (else
  the contract's ``StartDate`` .. ``EndDate``).
* ``SBQQ__QuoteLine__c`` of an amendment: the added quantity (``SBQQ__Quantity__c`` less
  ``SBQQ__PriorQuantity__c``) at ``SBQQ__NetTotal__c``; SSP per unit
  ``SBQQ__ListPrice__c``; term ``SBQQ__EffectiveStartDate__c`` / ``SBQQ__StartDate__c``
  .. end date, or the start plus ``SBQQ__SubscriptionTerm__c`` months.

Money is Salesforce's decimal (a JSON number read as Decimal, or text) converted exactly
to minor units (:func:`connectors.files.amounts.minor_units`); an amount finer than the
currency's minor unit is refused, never rounded. Quantities must be whole (the canonical
obligation counts units). Usage-priced lines (``SBQQ__ChargeType__c`` = ``Usage``, or a
product whose treatment is ``usage``) are not obligations with a fixed price: they are
recognised as usage is recorded, like Stripe's metered prices.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from connectors.files.amounts import AmountError, decimal_of, minor_units
from connectors.salesforce.config import ProductTreatment, SalesforceConfig
from connectors.salesforce.envelope import Refusal
from revenue.events import PerformanceObligationSpec

_DAY = dt.timedelta(days=1)


def add_months(start: dt.date, months: int) -> dt.date:
    """``start`` moved by ``months`` calendar months (day clamped to the month's end)."""
    index = start.month - 1 + months
    year, month = start.year + index // 12, index % 12 + 1
    return start.replace(
        year=year, month=month, day=min(start.day, calendar.monthrange(year, month)[1])
    )


def term_end(start: dt.date, months: int) -> dt.date:
    """The last day of a term of ``months`` starting ``start`` (inclusive)."""
    return add_months(start, months) - _DAY


def date_of(value: Any, what: str) -> dt.date | None:
    """A Salesforce date: ``YYYY-MM-DD`` text, or days since the epoch (Pub/Sub Avro)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.date(1970, 1, 1) + dt.timedelta(days=value)
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            pass
    raise Refusal("salesforce_payload_invalid", f"{what}: {value!r} is not a date")


def money(value: Any, currency: str, what: str) -> int:
    """A Salesforce currency value as exact minor units, or a refusal naming it."""
    try:
        return minor_units(value, currency)
    except AmountError as exc:
        raise Refusal("salesforce_amount_invalid", f"{what}: {exc.reason}: {exc}") from None


def whole(value: Any, what: str) -> int:
    """A Salesforce quantity (a double) that must be a whole number of units."""
    try:
        number = decimal_of(1 if value is None else value)
    except AmountError as exc:
        raise Refusal("salesforce_payload_invalid", f"{what}: {exc}") from None
    if number != number.to_integral_value():
        raise Refusal(
            "salesforce_quantity_fractional", f"{what}: quantity {value} is not whole units"
        )
    return int(number)


@dataclass(frozen=True, slots=True)
class Line:
    """A line reduced to what an obligation needs (amounts still decimal text / Decimal)."""

    kind: str
    line_id: str
    product_id: str | None
    product_code: str | None
    quantity: int
    price: Any
    unit_sales_price: Any
    unit_list_price: Any
    start: dt.date | None
    end: dt.date | None
    term_months: int | None
    charge_type: str | None

    @property
    def what(self) -> str:
        return f"{self.kind} {self.line_id}"


def children(record: Mapping[str, Any], relationship: str, what: str) -> list[Mapping[str, Any]]:
    """The child records under ``relationship`` (a query result or a plain list).

    Raises:
        Refusal: absent (the bridge must attach them) or only partly listed.
    """
    value = record.get(relationship)
    if isinstance(value, list):
        return [item for item in value if isinstance(item, Mapping)]
    if not isinstance(value, Mapping) or not isinstance(value.get("records"), list):
        raise Refusal(
            "salesforce_children_missing",
            f"{what}: attach its {relationship} to the record (docs/CRM.md)",
        )
    if value.get("done") is False:
        raise Refusal(
            "salesforce_children_truncated",
            f"{what}: {relationship} lists only part of its records (done: false)",
        )
    return [item for item in value["records"] if isinstance(item, Mapping)]


def _code(record: Mapping[str, Any], nested: str) -> str | None:
    product = record.get(nested)
    if isinstance(product, Mapping) and isinstance(product.get("ProductCode"), str):
        return product["ProductCode"]
    return record.get("ProductCode") if isinstance(record.get("ProductCode"), str) else None


def opportunity_line(item: Mapping[str, Any], close_date: dt.date | None) -> Line:
    """An ``OpportunityLineItem`` (standard object reference field names)."""
    line_id = str(item.get("Id") or "")
    what = f"OpportunityLineItem {line_id}"
    quantity = whole(item.get("Quantity"), what)
    entry = item.get("PricebookEntry")
    list_price = item.get("ListPrice")
    if list_price is None and isinstance(entry, Mapping):
        list_price = entry.get("UnitPrice")
    price = item.get("TotalPrice")
    if price is None and item.get("UnitPrice") is not None:
        price = _times(item.get("UnitPrice"), quantity, what)
    return Line(
        kind="OpportunityLineItem",
        line_id=line_id,
        product_id=item.get("Product2Id"),
        product_code=_code(item, "Product2"),
        quantity=quantity,
        price=price,
        unit_sales_price=item.get("UnitPrice"),
        unit_list_price=list_price,
        start=date_of(item.get("ServiceDate"), f"{what} ServiceDate") or close_date,
        end=None,
        term_months=None,
        charge_type=None,
    )


def subscription_line(item: Mapping[str, Any], contract: Mapping[str, Any]) -> Line:
    """An ``SBQQ__Subscription__c`` (CPQ subscription fields)."""
    line_id = str(item.get("Id") or "")
    what = f"SBQQ__Subscription__c {line_id}"
    quantity = whole(item.get("SBQQ__Quantity__c"), what)
    start = item.get("SBQQ__StartDate__c") or item.get("SBQQ__SubscriptionStartDate__c")
    end = item.get("SBQQ__EndDate__c") or item.get("SBQQ__SubscriptionEndDate__c")
    net = item.get("SBQQ__NetPrice__c")
    return Line(
        kind="SBQQ__Subscription__c",
        line_id=line_id,
        product_id=item.get("SBQQ__Product__c"),
        product_code=_code(item, "SBQQ__Product__r"),
        quantity=quantity,
        price=None if net is None else _times(net, quantity, what),
        unit_sales_price=net,
        unit_list_price=item.get("SBQQ__ListPrice__c"),
        start=date_of(start or contract.get("StartDate"), f"{what} start"),
        end=date_of(end or contract.get("EndDate"), f"{what} end"),
        term_months=_int(contract.get("ContractTerm")),
        charge_type=item.get("SBQQ__ChargeType__c"),
    )


def quote_line(item: Mapping[str, Any], quote: Mapping[str, Any]) -> Line:
    """An amendment's ``SBQQ__QuoteLine__c``: the added quantity and its net total."""
    line_id = str(item.get("Id") or "")
    what = f"SBQQ__QuoteLine__c {line_id}"
    added = whole(item.get("SBQQ__Quantity__c"), what) - whole(
        item.get("SBQQ__PriorQuantity__c") or 0, what
    )
    start = (
        item.get("SBQQ__EffectiveStartDate__c")
        or item.get("SBQQ__StartDate__c")
        or quote.get("SBQQ__StartDate__c")
    )
    end = (
        item.get("SBQQ__EffectiveEndDate__c")
        or item.get("SBQQ__EndDate__c")
        or quote.get("SBQQ__EndDate__c")
    )
    term = item.get("SBQQ__SubscriptionTerm__c") or quote.get("SBQQ__SubscriptionTerm__c")
    return Line(
        kind="SBQQ__QuoteLine__c",
        line_id=line_id,
        product_id=item.get("SBQQ__Product__c"),
        product_code=_code(item, "SBQQ__Product__r"),
        quantity=added,
        price=item.get("SBQQ__NetTotal__c"),
        unit_sales_price=item.get("SBQQ__NetPrice__c"),
        unit_list_price=item.get("SBQQ__ListPrice__c"),
        start=date_of(start, f"{what} start"),
        end=date_of(end, f"{what} end"),
        term_months=_int(term),
        charge_type=item.get("SBQQ__ChargeType__c"),
    )


def _int(value: Any) -> int | None:
    try:
        number = decimal_of(value) if value is not None else None
    except AmountError:
        return None
    return int(number) if number is not None and number > 0 else None


def _times(unit: Any, quantity: int, what: str) -> Decimal:
    try:
        return decimal_of(unit) * quantity
    except AmountError as exc:
        raise Refusal("salesforce_amount_invalid", f"{what}: {exc}") from None


def treatment_of(line: Line, config: SalesforceConfig) -> ProductTreatment:
    """The recognition treatment of a line: configured, else by CPQ charge type, else default."""
    configured = config.treatment_for(line.product_id, line.product_code)
    if line.product_id in config.products or line.product_code in config.products:
        return configured
    if line.charge_type == "Usage":
        return ProductTreatment("usage", "usage")
    if line.charge_type == "One-Time":
        return ProductTreatment("services", "point_in_time")
    return configured


def _ssp_minor(line: Line, currency: str, config: SalesforceConfig) -> int:
    if config.ssp_source == "table":
        prices = config.ssp_table.get(line.product_id or "") or config.ssp_table.get(
            line.product_code or ""
        )
        unit = None if prices is None else prices.get(currency)
        if unit is None:
            raise Refusal(
                "salesforce_ssp_missing",
                f"{line.what}: product {line.product_id or line.product_code} has no {currency}"
                " SSP in ssp_table",
            )
    elif config.ssp_source == "sales_price":
        unit = line.unit_sales_price
    else:
        unit = line.unit_list_price
    if unit is None:
        raise Refusal(
            "salesforce_ssp_missing",
            f"{line.what}: no {config.ssp_source.replace('_', ' ')} to take the SSP from",
        )
    return money(_times(unit, line.quantity, line.what), currency, f"{line.what} SSP")


def _period(line: Line, treatment: ProductTreatment, config: SalesforceConfig):
    if line.start is None:
        raise Refusal("salesforce_term_missing", f"{line.what}: no start date")
    if treatment.pattern not in ("ratable_daily", "ratable_monthly"):
        return line.start, line.end
    if line.end is not None:
        return line.start, line.end
    return line.start, term_end(line.start, line.term_months or config.default_term_months)


def obligation(
    line: Line, currency: str, config: SalesforceConfig
) -> PerformanceObligationSpec | None:
    """The line's obligation (None: a usage-priced line, recognised as usage arrives).

    Raises:
        Refusal: no product, no price, an inexact amount, no SSP, or no start date.
    """
    treatment = treatment_of(line, config)
    if treatment.pattern == "usage":
        return None
    product = line.product_id or line.product_code
    if not product:
        raise Refusal("salesforce_payload_invalid", f"{line.what}: names no product")
    if line.price is None:
        raise Refusal("salesforce_payload_invalid", f"{line.what}: no price")
    start, end = _period(line, treatment, config)
    try:
        return PerformanceObligationSpec(
            obligation_id=line.line_id,
            product_id=product,
            family=treatment.family,
            quantity=line.quantity,
            price_minor=money(line.price, currency, f"{line.what} price"),
            ssp_minor=_ssp_minor(line, currency, config),
            pattern=treatment.pattern,
            service_start=start,
            service_end=end,
        )
    except ValidationError as exc:
        item = exc.errors()[0]
        where = ".".join(str(p) for p in item["loc"]) or "(line)"
        raise Refusal(
            "salesforce_canonical_invalid", f"{line.what}: {where}: {item['msg']}"
        ) from None
