"""How a Stripe account maps onto revledger: entities, business dates, and a few policies.

The mapping is plain data (:class:`StripeConfig`), read from a JSON file or from
environment variables by the processes that translate (``revledger stripe-translate``).

Entity: a Stripe event belongs to one Stripe account (``event.account`` for Connect
events, else the configured ``account_id`` of the platform itself) and one currency. The
entity is looked up in ``entities`` by the most specific key that is present::

    "<account>:<CURRENCY>"   e.g. "acct_1Pgaf:EUR" -> "EU1"
    "<account>"              e.g. "acct_1Pgaf"     -> "US1"
    "<CURRENCY>"             e.g. "EUR"            -> "EU1"
    "*"                      everything else       -> "US1"

An event matching no key is dead-lettered (``stripe_entity_unmapped``), never guessed.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.events import ProductFamily, RecognitionPattern

RefundSource = Literal["charge.refunded", "refund.created"]
Livemode = Literal["live", "test", "both"]

_FAMILIES = ("subscription", "usage", "services")
_PATTERNS = ("ratable_daily", "ratable_monthly", "point_in_time", "usage")

# Environment variables read by :func:`config_from_environ` (documented in docs/STRIPE.md).
ENV_CONFIG_FILE = "REVLEDGER_STRIPE_CONFIG"
ENV_ENTITIES = "REVLEDGER_STRIPE_ENTITIES"
ENV_ACCOUNT = "REVLEDGER_STRIPE_ACCOUNT"
ENV_TIMEZONE = "REVLEDGER_STRIPE_TIMEZONE"


class StripeConfigError(ValueError):
    """Raised when a Stripe connector configuration cannot be used (names the setting)."""


@dataclass(frozen=True, slots=True)
class ProductTreatment:
    """How the obligations of one Stripe product are recognised (overrides the defaults)."""

    family: ProductFamily
    pattern: RecognitionPattern


@dataclass(frozen=True, slots=True)
class StripeConfig:
    """Everything the translator needs besides the event itself.

    Attributes:
        entities: entity by ``account:CURRENCY``, ``account``, ``CURRENCY`` or ``*``.
        account_id: the platform's own Stripe account id, for events without ``account``;
            also names the processor balance payouts are keyed by
            (``processor:stripe:<account>``).
        timezone: IANA zone in which Stripe's Unix timestamps become business dates.
        subscription_contracts: subscriptions become contracts (``contract_id`` = the
            subscription id) and their invoice lines name them; False: every invoice is an
            implied contract recognised by its product mapping.
        standalone_charges: ``charge.succeeded`` for a charge that names no invoice is a
            payment to the customer's credit balance. False when every charge comes from an
            invoice (API versions from 2025-03-31 no longer say which invoice a charge paid,
            and ``invoice.paid`` carries the payment).
        refund_source: the one event type refunds are read from (the other is skipped), so
            a refund is never counted twice.
        unidentified_customer_id: customer id for charges without a Stripe customer
            (guest checkouts); None dead-letters them.
        default_product_id: product id of invoice lines that name no price; None
            dead-letters them.
        shipping_product_id: product id of an invoice's shipping line.
        products: recognition treatment per Stripe product id (default: licensed recurring
            prices ratable by day, one-time prices at a point in time).
        livemode: which events to accept: live, test or both (the others are skipped).
    """

    entities: Mapping[str, str]
    account_id: str = "self"
    timezone: str = "UTC"
    subscription_contracts: bool = True
    standalone_charges: bool = True
    refund_source: RefundSource = "charge.refunded"
    unidentified_customer_id: str | None = None
    default_product_id: str | None = None
    shipping_product_id: str = "stripe-shipping"
    products: Mapping[str, ProductTreatment] = field(default_factory=dict)
    livemode: Livemode = "both"

    def __post_init__(self) -> None:
        if not self.entities:
            raise StripeConfigError("entities: at least one mapping (e.g. '*': 'US1') is needed")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise StripeConfigError(f"timezone: unknown zone {self.timezone!r}") from exc
        if self.refund_source not in ("charge.refunded", "refund.created"):
            raise StripeConfigError(f"refund_source: {self.refund_source!r} is not supported")
        if self.livemode not in ("live", "test", "both"):
            raise StripeConfigError(f"livemode: {self.livemode!r} is not live, test or both")

    @property
    def zone(self) -> ZoneInfo:
        """The business-date time zone."""
        return ZoneInfo(self.timezone)

    def entity_for(self, account: str | None, currency: str) -> str | None:
        """The entity of an event of ``account`` (None: the platform) in ``currency``."""
        account = account or self.account_id
        for key in (f"{account}:{currency}", account, currency, "*"):
            if key in self.entities:
                return self.entities[key]
        return None

    def processor_key(self, account: str | None) -> str:
        """The ``customer_id`` of records that belong to the Stripe balance, not a customer."""
        return f"processor:stripe:{account or self.account_id}"


def _parse_entities(text: str) -> dict[str, str]:
    """``"USD=US1,EUR=EU1,*=US1"`` -> mapping (the environment variable's form)."""
    entities: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, entity = item.partition("=")
        if not sep or not key.strip() or not entity.strip():
            raise StripeConfigError(f"{ENV_ENTITIES}: {item!r} is not KEY=ENTITY")
        entities[key.strip()] = entity.strip()
    return entities


def _treatments(raw: Mapping[str, object]) -> dict[str, ProductTreatment]:
    treatments = {}
    for product_id, value in raw.items():
        if not isinstance(value, Mapping):
            raise StripeConfigError(f"products.{product_id}: expected {{family, pattern}}")
        family, pattern = value.get("family"), value.get("pattern")
        if family not in _FAMILIES or pattern not in _PATTERNS:
            raise StripeConfigError(
                f"products.{product_id}: family must be one of {_FAMILIES} and pattern one of"
                f" {_PATTERNS}, got {family!r} / {pattern!r}"
            )
        treatments[product_id] = ProductTreatment(family, pattern)  # type: ignore[arg-type]
    return treatments


def config_from_mapping(raw: Mapping[str, object]) -> StripeConfig:
    """A :class:`StripeConfig` from parsed JSON (the keys are the attribute names).

    Raises:
        StripeConfigError: a key is unknown or a value unusable.
    """
    known = set(StripeConfig.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise StripeConfigError(f"unknown settings {sorted(unknown)}; known: {sorted(known)}")
    values = dict(raw)
    if "products" in values:
        values["products"] = _treatments(values["products"])  # type: ignore[arg-type]
    entities = values.get("entities")
    if not isinstance(entities, Mapping):
        raise StripeConfigError("entities: expected an object of KEY -> entity")
    try:
        return StripeConfig(**values)  # type: ignore[arg-type]
    except TypeError as exc:
        raise StripeConfigError(str(exc)) from exc


def load_config(path: Path) -> StripeConfig:
    """Read a JSON configuration file (see docs/STRIPE.md for an example).

    Raises:
        StripeConfigError: the file is missing, not JSON, or holds unusable settings.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise StripeConfigError(f"{path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise StripeConfigError(f"{path}: expected a JSON object")
    return config_from_mapping(raw)


def config_from_environ(environ: Mapping[str, str] | None = None) -> StripeConfig:
    """The configuration named by the environment.

    ``REVLEDGER_STRIPE_CONFIG`` (a JSON file) wins; else ``REVLEDGER_STRIPE_ENTITIES``
    (``USD=US1,EUR=EU1,*=US1``), ``REVLEDGER_STRIPE_ACCOUNT`` and
    ``REVLEDGER_STRIPE_TIMEZONE`` with the other settings at their defaults.

    Raises:
        StripeConfigError: neither is set, or a value is unusable.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_CONFIG_FILE):
        return load_config(Path(environ[ENV_CONFIG_FILE]))
    if not environ.get(ENV_ENTITIES):
        raise StripeConfigError(
            f"no Stripe configuration: set {ENV_CONFIG_FILE} (JSON file) or {ENV_ENTITIES}"
            " (e.g. 'USD=US1,EUR=EU1,*=US1')"
        )
    values: dict[str, object] = {"entities": _parse_entities(environ[ENV_ENTITIES])}
    if environ.get(ENV_ACCOUNT):
        values["account_id"] = environ[ENV_ACCOUNT]
    if environ.get(ENV_TIMEZONE):
        values["timezone"] = environ[ENV_TIMEZONE]
    return config_from_mapping(values)
