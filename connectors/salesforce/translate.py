"""Salesforce events -> canonical contract events: the one pure entry point, :func:`translate`.

* ``Opportunity`` (orgs without CPQ) that becomes won (``IsWon``, or ``StageName`` =
  ``won_stage``) -> ``ContractBooked``: contract = the opportunity, obligations = its
  ``OpportunityLineItems``.
* ``Contract`` (CPQ) that becomes ``Activated`` -> ``ContractBooked``: contract = the
  contract, obligations = its ``SBQQ__Subscriptions__r``. A renewal's new contract is
  booked the same way (ASC 606 treats a renewal as a new contract).
* ``Contract`` (CPQ) that becomes ``Terminated`` -> ``ContractCancelled`` from its
  ``EndDate`` (else the commit date).
* ``SBQQ__Quote__c`` (CPQ) with ``SBQQ__Type__c`` = ``Amendment`` that becomes ordered or
  accepted -> ``ContractAmended`` (``separate_contract``) of ``SBQQ__AmendedContract__c``
  with the quantities its ``SBQQ__LineItems__r`` add.

Everything else is skipped with a reason (a quote of new business or a renewal: its
contract books it; a line or subscription record on its own: it rides on its parent).

Canonical event ids are ``salesforce:<record id>@<identity>`` (see
:mod:`connectors.salesforce.envelope`), so a redelivered event gives the same ids and
the ledger's duplicate check makes it change nothing.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from connectors.salesforce.config import SalesforceConfig
from connectors.salesforce.envelope import Change, Refusal, Skip, instant, read_change
from connectors.salesforce.obligations import (
    children,
    date_of,
    obligation,
    opportunity_line,
    quote_line,
    subscription_line,
)
from ledger.events import Event
from ledger.money import is_known_currency
from revenue.events import ContractAmended, ContractBooked, ContractCancelled

SOURCE_SYSTEM = "salesforce"


@dataclass(frozen=True, slots=True)
class Translated:
    """The canonical events of one Salesforce event."""

    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    """A message deliberately not posted: ``reason`` says why (a metric label)."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """A message that cannot be posted as it is: the DLQ reason and a message naming it."""

    reason: str
    message: str


Translation = Translated | Skipped | Malformed


# --- shared --------------------------------------------------------------------------------


def _currency(change: Change, config: SalesforceConfig) -> str:
    code = change.record.get("CurrencyIsoCode") or config.default_currency
    if not isinstance(code, str) or not is_known_currency(code):
        raise Refusal(
            "salesforce_unknown_currency",
            f"{change.entity_name} {change.record_id}: currency {code!r} is not known"
            " (multi-currency orgs send CurrencyIsoCode; else set default_currency)",
        )
    return code


def _envelope(change: Change, config: SalesforceConfig, currency: str, account: str):
    entity = config.entity_for(currency)
    if entity is None:
        raise Refusal(
            "salesforce_entity_unmapped",
            f"{change.entity_name} {change.record_id}: no entity for {currency}",
        )
    customer = change.record.get(config.customer_field) if config.customer_field else None
    customer = customer or change.record.get(account)
    if not isinstance(customer, str) or not customer:
        raise Refusal(
            "salesforce_customer_missing",
            f"{change.entity_name} {change.record_id}: no {config.customer_field or account}",
        )
    return {
        "event_id": f"{SOURCE_SYSTEM}:{change.record_id}@{change.identity}",
        "occurred_at": change.committed_at,
        "source_system": SOURCE_SYSTEM,
        "source_id": change.record_id,
        "entity": entity,
        "customer_id": customer,
        "correlation_id": change.transaction_key,
    }


def _business_date(change: Change, config: SalesforceConfig) -> dt.date:
    return change.committed_at.astimezone(config.zone).date()


def _touched(change: Change, fields: set[str]) -> bool:
    """Whether the change may have set one of ``fields`` (unknown: assume it did)."""
    return change.changed_fields is None or bool(fields & change.changed_fields)


def _priced(lines, currency: str, config: SalesforceConfig, what: str) -> dict[str, Any]:
    specs = [spec for line in lines if (spec := obligation(line, currency, config))]
    if not specs:
        raise Refusal("salesforce_no_obligations", f"{what}: no line with a fixed price")
    return {
        "currency": currency,
        "obligations": tuple(specs),
        "total_price_minor": sum(spec.price_minor for spec in specs),
    }


# --- handlers -------------------------------------------------------------------------------


def opportunity(change: Change, config: SalesforceConfig) -> list[Event] | Skip:
    """A won ``Opportunity`` with its line items -> ``ContractBooked`` (orgs without CPQ)."""
    record, what = change.record, f"Opportunity {change.record_id}"
    if config.cpq:
        return Skip("cpq_books_from_contract", what)
    if change.change_type == "DELETE":
        return Skip("deleted", what)
    won = record.get("IsWon") is True or record.get("StageName") == config.won_stage
    if not won or not _touched(change, {"StageName", "IsWon"}):
        return Skip("not_closed_won" if not won else "no_contract_change", what)
    currency = _currency(change, config)
    close = date_of(record.get("CloseDate"), f"{what} CloseDate")
    lines = [
        opportunity_line(item, close) for item in children(record, "OpportunityLineItems", what)
    ]
    return [
        ContractBooked(
            **_envelope(change, config, currency, "AccountId"),
            contract_id=change.record_id,
            booking_date=close or _business_date(change, config),
            **_priced(lines, currency, config, what),
        )
    ]


def _status(record: Mapping[str, Any]) -> str:
    return str(record.get("StatusCode") or record.get("Status") or "")


def contract(change: Change, config: SalesforceConfig) -> list[Event] | Skip:
    """A CPQ ``Contract`` activated -> ``ContractBooked``; terminated -> ``ContractCancelled``."""
    record, what = change.record, f"Contract {change.record_id}"
    if not config.cpq:
        return Skip("contracts_book_with_cpq_only", what)
    if change.change_type == "DELETE" or not _touched(change, {"Status", "StatusCode"}):
        return Skip("no_contract_change", what)
    status = _status(record)
    currency = _currency(change, config)
    if status == "Terminated":
        end = date_of(record.get("EndDate"), f"{what} EndDate")
        return [
            ContractCancelled(
                **_envelope(change, config, currency, "AccountId"),
                contract_id=change.record_id,
                effective_date=end or _business_date(change, config),
                reason="contract terminated in Salesforce",
            )
        ]
    if status != "Activated":
        return Skip("not_activated", f"{what} is {status or 'without status'}")
    subscriptions = [
        item
        for item in children(record, "SBQQ__Subscriptions__r", what)
        # Amendments add subscriptions that revise earlier ones: the amendment quote books those.
        if not item.get("SBQQ__RevisedSubscription__c")
    ]
    lines = [subscription_line(item, record) for item in subscriptions]
    signed = record.get("CustomerSignedDate") or record.get("StartDate")
    return [
        ContractBooked(
            **_envelope(change, config, currency, "AccountId"),
            contract_id=change.record_id,
            booking_date=date_of(signed, f"{what} signed") or _business_date(change, config),
            **_priced(lines, currency, config, what),
        )
    ]


def quote(change: Change, config: SalesforceConfig) -> list[Event] | Skip:
    """A final CPQ amendment quote -> ``ContractAmended`` adding what it adds."""
    record, what = change.record, f"SBQQ__Quote__c {change.record_id}"
    if not config.cpq:
        return Skip("quotes_need_cpq", what)
    final = (
        record.get("SBQQ__Ordered__c") is True
        or record.get("SBQQ__Status__c") in config.quote_accepted_statuses
    )
    if change.change_type == "DELETE" or not final:
        return Skip("quote_not_final", what)
    if not _touched(change, {"SBQQ__Ordered__c", "SBQQ__Status__c"}):
        return Skip("no_contract_change", what)
    kind = record.get("SBQQ__Type__c") or "Quote"
    if kind == "Renewal":
        return Skip("renewal_books_with_its_contract", what)
    if kind != "Amendment":
        return Skip("quote_books_with_its_contract", what)
    amended = record.get("SBQQ__AmendedContract__c")
    if not isinstance(amended, str) or not amended:
        raise Refusal("salesforce_payload_invalid", f"{what}: no SBQQ__AmendedContract__c")
    lines = [quote_line(item, record) for item in children(record, "SBQQ__LineItems__r", what)]
    reduced = [line.line_id for line in lines if line.quantity < 0]
    if reduced:
        raise Refusal(
            "salesforce_amendment_reduction",
            f"{what}: lines {reduced} reduce quantities; a reduction is a prospective"
            " modification that needs the whole contract's obligations and total, and the"
            " quote carries only the prorated change (docs/CRM.md): send it as a generic"
            " contract.amended",
        )
    added = [line for line in lines if line.quantity > 0]
    if not added:
        return Skip("no_added_obligations", what)
    currency = _currency(change, config)
    effective = date_of(record.get("SBQQ__StartDate__c"), f"{what} SBQQ__StartDate__c")
    return [
        ContractAmended(
            **_envelope(change, config, currency, "SBQQ__Account__c"),
            contract_id=amended,
            amendment_id=change.record_id,
            effective_date=effective or _business_date(change, config),
            # Added products at their SSP are a separate contract (ASC 606-10-25-12).
            treatment="separate_contract",
            **_priced(added, currency, config, what),
        )
    ]


HANDLERS: Mapping[str, Callable[[Change, SalesforceConfig], list[Event] | Skip]] = {
    "Opportunity": opportunity,
    "Contract": contract,
    "SBQQ__Quote__c": quote,
}
"""The sObject types the connector translates, each with its handler."""

RIDES_ON_PARENT = frozenset({"OpportunityLineItem", "SBQQ__QuoteLine__c", "SBQQ__Subscription__c"})


def translate(message: Mapping[str, Any], config: SalesforceConfig) -> Translation:
    """Translate one Salesforce event message (parsed JSON, numbers as Decimal).

    Returns:
        :class:`Translated`, :class:`Skipped` or :class:`Malformed`; never raises for bad
        input.
    """
    if not isinstance(message, Mapping):
        return Malformed("salesforce_not_an_event", "the message is not a JSON object")
    try:
        change = read_change(message, config)
        if isinstance(change, Skip):
            return Skipped(change.reason, change.detail)
        handler = HANDLERS.get(change.entity_name)
        if handler is None:
            reason = (
                "rides_on_parent" if change.entity_name in RIDES_ON_PARENT else "unknown_entity"
            )
            return Skipped(reason, change.entity_name)
        answer = handler(change, config)
    except Refusal as refusal:
        return Malformed(refusal.reason, refusal.message)
    except ValidationError as exc:
        item = exc.errors()[0]
        where = ".".join(str(p) for p in item["loc"]) or "(event)"
        return Malformed("salesforce_canonical_invalid", f"{where}: {item['msg']}")
    if isinstance(answer, Skip):
        return Skipped(answer.reason, answer.detail)
    return Translated(tuple(answer))


def routing_key(message: Mapping[str, Any]) -> str:
    """A key for the raw topic: the record id of the change (never raises).

    The translated events are keyed by customer, so the raw key only keeps one record's
    changes in order.
    """
    data = message.get("data") if isinstance(message.get("data"), Mapping) else message
    payload = data.get("payload") if isinstance(data.get("payload"), Mapping) else data
    header = payload.get("ChangeEventHeader") if isinstance(payload, Mapping) else None
    if isinstance(header, Mapping) and isinstance(header.get("recordIds"), list):
        ids = header["recordIds"]
        if ids:
            return str(ids[0])
    record = message.get("record")
    if isinstance(record, Mapping) and isinstance(record.get("Id"), str):
        return record["Id"]
    return "salesforce"


__all__ = [
    "HANDLERS",
    "Malformed",
    "Skipped",
    "Translated",
    "Translation",
    "instant",
    "routing_key",
    "translate",
]
