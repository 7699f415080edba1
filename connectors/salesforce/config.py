"""How a Salesforce org maps onto revledger: entities, CPQ or not, SSPs, recognition.

Plain data (:class:`SalesforceConfig`), read from a JSON file or the environment by the
processes that translate (``revledger crm-translate``, ``revledger import contracts``).

Entity: by the record's currency (``CurrencyIsoCode``; ``default_currency`` in
single-currency orgs, which do not send it), else ``"*"``; no match is a refusal.

SSP (standalone selling price per unit, ASC 606-10-32-31): ``ssp_source``

* ``list_price`` - the price book entry's list price (``ListPrice`` on the line, or the
  expanded ``PricebookEntry.UnitPrice``; ``SBQQ__ListPrice__c`` in CPQ);
* ``sales_price`` - the line's own unit price (every line sold at its SSP);
* ``table`` - ``ssp_table[<product id or code>][<CURRENCY>]``, a decimal per unit; a
  product missing from the table is refused (``salesforce_ssp_missing``).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.events import ProductFamily, RecognitionPattern

SspSource = Literal["list_price", "sales_price", "table"]

_FAMILIES = ("subscription", "usage", "services")
_PATTERNS = ("ratable_daily", "ratable_monthly", "point_in_time", "usage")

ENV_CONFIG_FILE = "REVLEDGER_SALESFORCE_CONFIG"
ENV_ENTITIES = "REVLEDGER_SALESFORCE_ENTITIES"


class SalesforceConfigError(ValueError):
    """Raised when a Salesforce configuration cannot be used (names the setting)."""


@dataclass(frozen=True, slots=True)
class ProductTreatment:
    """How the obligations of one product are recognised."""

    family: ProductFamily
    pattern: RecognitionPattern


@dataclass(frozen=True, slots=True)
class SalesforceConfig:
    """Everything the Salesforce translator needs besides the event.

    Attributes:
        entities: entity by currency code, or ``"*"`` for every currency.
        default_currency: currency of records without ``CurrencyIsoCode`` (single-currency
            orgs); None refuses such records.
        timezone: IANA zone of the org, in which timestamps become business dates.
        cpq: the org uses Salesforce CPQ: contracts book from ``Contract`` with their
            ``SBQQ__Subscription__c`` records and amend from amendment quotes; closed-won
            opportunities are then skipped (CPQ contracts them). False: each closed-won
            ``Opportunity`` with its line items is a contract.
        won_stage: the ``StageName`` that means won (when ``IsWon`` is not sent).
        quote_accepted_statuses: ``SBQQ__Status__c`` values at which a quote is final
            (besides ``SBQQ__Ordered__c`` = true).
        default_term_months: service term of an opportunity line without an end date.
        ssp_source: where SSPs come from (module docstring).
        ssp_table: unit SSP as decimal text by product id (or code) and currency.
        products: recognition treatment by product id (``Product2Id``,
            ``SBQQ__Product__c``) or product code; others take ``default_treatment``.
        default_treatment: treatment of products not in ``products``.
        platform_events: sObject type by platform event name (``Closed_Won__e``) for
            platform events that carry a record of that type.
        customer_field: the record field holding the customer id the billing system uses
            (e.g. ``Billing_Customer_Id__c``); None or absent on the record: the Salesforce
            account id (``AccountId``, ``SBQQ__Account__c``).
    """

    entities: Mapping[str, str]
    default_currency: str | None = None
    timezone: str = "UTC"
    cpq: bool = False
    won_stage: str = "Closed Won"
    quote_accepted_statuses: tuple[str, ...] = ("Accepted",)
    default_term_months: int = 12
    ssp_source: SspSource = "list_price"
    ssp_table: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    products: Mapping[str, ProductTreatment] = field(default_factory=dict)
    default_treatment: ProductTreatment = ProductTreatment("subscription", "ratable_daily")
    platform_events: Mapping[str, str] = field(default_factory=dict)
    customer_field: str | None = None

    def __post_init__(self) -> None:
        if not self.entities:
            raise SalesforceConfigError("entities: at least one mapping (e.g. '*': 'US1')")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SalesforceConfigError(f"timezone: unknown zone {self.timezone!r}") from exc
        if self.ssp_source not in ("list_price", "sales_price", "table"):
            raise SalesforceConfigError(f"ssp_source: {self.ssp_source!r} is not supported")
        if self.default_term_months < 1:
            raise SalesforceConfigError("default_term_months: must be at least 1")
        for product, prices in self.ssp_table.items():
            for code, unit in prices.items():
                try:
                    Decimal(unit)
                except (InvalidOperation, TypeError) as exc:
                    raise SalesforceConfigError(
                        f"ssp_table.{product}.{code}: {unit!r} is not decimal text"
                    ) from exc

    @property
    def zone(self) -> ZoneInfo:
        """The org's time zone."""
        return ZoneInfo(self.timezone)

    def entity_for(self, currency: str) -> str | None:
        """The entity of records in ``currency``."""
        return self.entities.get(currency) or self.entities.get("*")

    def treatment_for(self, *keys: str | None) -> ProductTreatment:
        """The treatment of the first of ``keys`` (product id, code) that is configured."""
        for key in keys:
            if key and key in self.products:
                return self.products[key]
        return self.default_treatment


def _treatment(where: str, value: object) -> ProductTreatment:
    if not isinstance(value, Mapping):
        raise SalesforceConfigError(f"{where}: expected {{family, pattern}}")
    family, pattern = value.get("family"), value.get("pattern")
    if family not in _FAMILIES or pattern not in _PATTERNS:
        raise SalesforceConfigError(
            f"{where}: family must be one of {_FAMILIES} and pattern one of {_PATTERNS},"
            f" got {family!r} / {pattern!r}"
        )
    return ProductTreatment(family, pattern)  # type: ignore[arg-type]


def config_from_mapping(raw: Mapping[str, object]) -> SalesforceConfig:
    """A :class:`SalesforceConfig` from parsed JSON (keys are the attribute names).

    Raises:
        SalesforceConfigError: a key is unknown or a value unusable.
    """
    known = set(SalesforceConfig.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise SalesforceConfigError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
    values = dict(raw)
    if not isinstance(values.get("entities"), Mapping):
        raise SalesforceConfigError("entities: expected an object of CURRENCY -> entity")
    if "products" in values:
        products = values["products"]
        if not isinstance(products, Mapping):
            raise SalesforceConfigError("products: expected an object")
        values["products"] = {k: _treatment(f"products.{k}", v) for k, v in products.items()}
    if "default_treatment" in values:
        values["default_treatment"] = _treatment("default_treatment", values["default_treatment"])
    if "quote_accepted_statuses" in values:
        values["quote_accepted_statuses"] = tuple(values["quote_accepted_statuses"])  # type: ignore[arg-type]
    try:
        return SalesforceConfig(**values)  # type: ignore[arg-type]
    except TypeError as exc:
        raise SalesforceConfigError(str(exc)) from exc


def load_config(path: Path) -> SalesforceConfig:
    """Read a JSON configuration file (docs/CRM.md has an example).

    Raises:
        SalesforceConfigError: missing file, not JSON, or unusable settings.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SalesforceConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SalesforceConfigError(f"{path}: expected a JSON object")
    return config_from_mapping(raw)


def config_from_environ(environ: Mapping[str, str] | None = None) -> SalesforceConfig:
    """``REVLEDGER_SALESFORCE_CONFIG`` (a JSON file), else ``REVLEDGER_SALESFORCE_ENTITIES``.

    ``REVLEDGER_SALESFORCE_ENTITIES`` is ``USD=US1,EUR=EU1,*=US1``; the other settings
    keep their defaults.

    Raises:
        SalesforceConfigError: neither is set, or a value is unusable.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_CONFIG_FILE):
        return load_config(Path(environ[ENV_CONFIG_FILE]))
    text = environ.get(ENV_ENTITIES)
    if not text:
        raise SalesforceConfigError(
            f"no Salesforce configuration: set {ENV_CONFIG_FILE} (JSON file) or {ENV_ENTITIES}"
            " (e.g. 'USD=US1,EUR=EU1,*=US1')"
        )
    entities: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, entity = item.partition("=")
        if not sep or not key.strip() or not entity.strip():
            raise SalesforceConfigError(f"{ENV_ENTITIES}: {item!r} is not CURRENCY=ENTITY")
        entities[key.strip()] = entity.strip()
    return config_from_mapping({"entities": entities})
