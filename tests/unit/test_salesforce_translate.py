"""The Salesforce translator on payloads in the shapes Salesforce documents.

Documentation each payload is modelled on:

* Change event message (CometD ``data``/``payload``/``event.replayId``, and the header
  fields ``entityName``, ``recordIds``, ``changeType``, ``changedFields``,
  ``transactionKey``, ``sequenceNumber``, ``commitTimestamp``, ``commitNumber``):
  https://developer.salesforce.com/docs/atlas.en-us.248.0.change_data_capture.meta/change_data_capture/cdc_message_structure.htm
  https://developer.salesforce.com/docs/platform/apex-ref/references/apex-ref/apex-class-eventbus-changeeventheader.html
  (``commitNumber`` "is not guaranteed to be unique": ids use transactionKey + sequenceNumber)
* The attached record and its child relationships (``attributes``, ``totalSize``,
  ``done``, ``records``):
  https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/api/sforce_api_calls_soql_relationships_query_results.htm
* Opportunity (``StageName``, ``IsWon``, ``CloseDate``, ``AccountId``, ``CurrencyIsoCode``):
  https://developer.salesforce.com/docs/atlas.en-us.228.0.sfFieldRef.meta/sfFieldRef/salesforce_field_reference_Opportunity.htm
* OpportunityLineItem (``Quantity``, ``UnitPrice``, ``ListPrice``, ``TotalPrice``,
  ``ServiceDate``, ``Product2Id``, ``ProductCode``, ``PricebookEntryId``):
  https://developer.salesforce.com/docs/atlas.en-us.228.0.sfFieldRef.meta/sfFieldRef/salesforce_field_reference_OpportunityLineItem.htm
* Contract (``Status``/``StatusCode`` Activated / Terminated, ``StartDate``, ``EndDate``,
  ``ContractTerm``, ``CustomerSignedDate``):
  https://developer.salesforce.com/docs/platform/field-reference/references/field-reference/salesforce-field-reference-contract.html
  https://developer.salesforce.com/docs/platform/object-reference/references/standard-objects/object-contractstatus.html
* CPQ subscription fields (``SBQQ__Product__c``, ``SBQQ__Quantity__c``,
  ``SBQQ__ListPrice__c``, ``SBQQ__NetPrice__c``, ``SBQQ__ChargeType__c``, dates):
  https://help.salesforce.com/s/articleView?id=sales.cpq_subscription_fields.htm&language=en_US&type=5
* CPQ quote and quote line fields (``SBQQ__Type__c``, ``SBQQ__StartDate__c``,
  ``SBQQ__SubscriptionTerm__c``, ``SBQQ__NetTotal__c``, ``SBQQ__PriorQuantity__c``) and
  the amendment / renewal lookups (``SBQQ__AmendedContract__c``, ``SBQQ__RenewedContract__c``):
  https://help.salesforce.com/s/articleView?id=sales.cpq_quote_fields.htm&language=en_US&type=5
  https://help.salesforce.com/s/articleView?id=sales.cpq_quote_line_fields.htm&language=ko&type=5
  https://help.salesforce.com/s/articleView?id=000381707&language=de&type=1
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.salesforce import (
    Malformed,
    ProductTreatment,
    SalesforceConfig,
    SalesforceConfigError,
    Skipped,
    Translated,
    config_from_environ,
    config_from_mapping,
    routing_key,
    translate,
)
from revenue.events import ContractAmended, ContractBooked, ContractCancelled
from streams.crm_translator import outcome_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"

PLAIN = SalesforceConfig(
    entities={"USD": "US1", "EUR": "EU1", "*": "US1"},
    products={"ONBOARDING": ProductTreatment("services", "point_in_time")},
    platform_events={"Opportunity_Closed_Won__e": "Opportunity"},
)
CPQ = SalesforceConfig(entities={"*": "EU1"}, cpq=True)


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def won_opportunity() -> dict[str, Any]:
    return load("opportunity_closed_won.cdc.json")


def activated_contract() -> dict[str, Any]:
    return load("cpq_contract_activated.cdc.json")


def amendment() -> dict[str, Any]:
    message = load("cpq_amendment_quote.cdc.json")
    message["record"] = load("cpq_amendment_quote.record.json")
    return message


def only_event(outcome: Any) -> Any:
    assert isinstance(outcome, Translated), outcome
    (event,) = outcome.events
    return event


def test_opportunity_closed_won_books_a_contract_with_its_line_items():
    event = only_event(translate(won_opportunity(), PLAIN))

    assert isinstance(event, ContractBooked)
    assert event.event_id == (
        "salesforce:0065g00000ABCDEAA1@0002343d-9d90-e395-ed20-cf416ba652ad.1"
    )
    assert (event.contract_id, event.customer_id, event.entity) == (
        "0065g00000ABCDEAA1",
        "0015g00000ACCTAAA1",
        "US1",
    )
    assert (event.booking_date, event.currency, event.total_price_minor) == (
        dt.date(2024, 7, 1),
        "USD",
        13_000_00,
    )
    assert event.occurred_at == dt.datetime(2024, 7, 1, 9, tzinfo=dt.UTC)
    platform, onboarding = event.obligations
    # 10 seats at 1,200 sold, list price 1,500: SSP from the price book entry.
    assert (platform.price_minor, platform.ssp_minor, platform.quantity) == (
        12_000_00,
        15_000_00,
        10,
    )
    assert (platform.pattern, platform.service_start, platform.service_end) == (
        "ratable_daily",
        dt.date(2024, 7, 1),
        dt.date(2025, 6, 30),
    )
    # No ServiceDate: the close date; configured by product code as a point-in-time service.
    assert (onboarding.family, onboarding.pattern, onboarding.service_start) == (
        "services",
        "point_in_time",
        dt.date(2024, 7, 1),
    )
    assert (onboarding.price_minor, onboarding.ssp_minor) == (1_000_00, 2_000_00)


def test_redelivered_change_event_gives_identical_events_when_replayed():
    first = translate(won_opportunity(), PLAIN)
    again = won_opportunity()
    again["data"]["event"]["replayId"] = 9999  # a replay from another subscription
    assert translate(again, PLAIN) == first


def test_opportunity_update_is_skipped_when_the_stage_did_not_change():
    message = won_opportunity()
    header = message["data"]["payload"]["ChangeEventHeader"]
    header["changedFields"] = ["Description", "LastModifiedDate"]
    message["record"]["StageName"] = "Closed Won"
    assert translate(message, PLAIN) == Skipped(
        "no_contract_change", "Opportunity 0065g00000ABCDEAA1"
    )


def test_opportunity_is_skipped_when_it_is_lost():
    message = won_opportunity()
    message["data"]["payload"].update(StageName="Closed Lost", IsWon=False)
    outcome = translate(message, PLAIN)
    assert isinstance(outcome, Skipped) and outcome.reason == "not_closed_won"


def test_opportunity_is_refused_when_its_line_items_are_not_attached():
    message = won_opportunity()
    del message["record"]["OpportunityLineItems"]
    outcome = translate(message, PLAIN)
    assert outcome == Malformed(
        "salesforce_children_missing",
        "Opportunity 0065g00000ABCDEAA1: attach its OpportunityLineItems to the record"
        " (docs/CRM.md)",
    )


def test_opportunity_is_refused_when_only_part_of_its_lines_is_listed():
    message = won_opportunity()
    message["record"]["OpportunityLineItems"]["done"] = False
    outcome = translate(message, PLAIN)
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_children_truncated"


def test_sub_cent_amount_is_refused_when_the_currency_has_two_decimals():
    message = won_opportunity()
    message["record"]["OpportunityLineItems"]["records"][0]["TotalPrice"] = Decimal("12000.005")
    outcome = translate(message, PLAIN)
    assert outcome == Malformed(
        "salesforce_amount_invalid",
        "OpportunityLineItem 00k5g00000LINE1AA1 price: amount_sub_minor_unit:"
        " Decimal('12000.005') has more decimals than USD's 2",
    )


def test_float_amount_is_refused_when_json_was_parsed_into_floats():
    message = json.loads((FIXTURES / "opportunity_closed_won.cdc.json").read_text())
    outcome = translate(message, PLAIN)
    assert outcome == Malformed(
        "salesforce_payload_invalid",
        "OpportunityLineItem 00k5g00000LINE1AA1: 10.0 arrived as a binary float;"
        " send decimal text instead",
    )


def test_fractional_quantity_is_refused():
    message = won_opportunity()
    message["record"]["OpportunityLineItems"]["records"][0]["Quantity"] = Decimal("2.5")
    outcome = translate(message, PLAIN)
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_quantity_fractional"


def test_ssp_comes_from_the_configured_table_and_missing_products_are_refused():
    table = SalesforceConfig(
        entities={"*": "US1"},
        ssp_source="table",
        ssp_table={"PLATFORM": {"USD": "1400.00"}, "01t5g00000ONBDAA1": {"USD": "900"}},
    )
    event = only_event(translate(won_opportunity(), table))
    assert [o.ssp_minor for o in event.obligations] == [14_000_00, 900_00]

    missing = SalesforceConfig(
        entities={"*": "US1"}, ssp_source="table", ssp_table={"PLATFORM": {"USD": "1"}}
    )
    outcome = translate(won_opportunity(), missing)
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_ssp_missing"


def test_unknown_currency_and_unmapped_entity_are_refused():
    message = won_opportunity()
    message["record"]["CurrencyIsoCode"] = "XYZ"
    assert translate(message, PLAIN).reason == "salesforce_unknown_currency"  # type: ignore[union-attr]

    message = won_opportunity()
    outcome = translate(message, SalesforceConfig(entities={"EUR": "EU1"}))
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_entity_unmapped"


def test_customer_id_comes_from_the_configured_field_when_the_record_has_it():
    message = won_opportunity()
    message["record"]["Billing_Customer__c"] = "cus_QXg1o8vcGmoR32"
    config = SalesforceConfig(entities={"*": "US1"}, customer_field="Billing_Customer__c")
    assert only_event(translate(message, config)).customer_id == "cus_QXg1o8vcGmoR32"


def test_pub_sub_api_payload_without_wrapper_is_read_like_cometd():
    wrapped = won_opportunity()
    bare = {**wrapped["data"]["payload"], "record": wrapped["record"]}
    assert translate(bare, PLAIN) == translate(wrapped, PLAIN)


def test_change_event_with_several_records_is_refused():
    message = won_opportunity()
    message["data"]["payload"]["ChangeEventHeader"]["recordIds"].append("0065g00000OTHERAA1")
    outcome = translate(message, PLAIN)
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_multiple_records"


def test_gap_event_is_refused_when_no_record_is_attached():
    message = won_opportunity()
    message["data"]["payload"]["ChangeEventHeader"]["changeType"] = "GAP_UPDATE"
    del message["record"]
    outcome = translate(message, PLAIN)
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_gap_event"


def test_platform_event_books_a_contract_in_yen():
    event = only_event(translate(load("platform_event_closed_won.json"), PLAIN))
    assert event.event_id == "salesforce:0065g00000PEVTAA1@5a1bd5a0-3c3a-4f4b-8f10-5b4e0bb1d9a7"
    assert (event.currency, event.total_price_minor) == ("JPY", 150_000)
    # The price book entry's UnitPrice is the list price when the line has no ListPrice.
    assert event.obligations[0].ssp_minor == 180_000


def test_platform_event_of_an_unconfigured_channel_is_skipped():
    message = load("platform_event_closed_won.json")
    message["channel"] = "/event/Something_Else__e"
    outcome = translate(message, PLAIN)
    assert isinstance(outcome, Skipped) and outcome.reason == "unknown_platform_event"


def test_cpq_contract_activated_books_its_subscriptions_without_usage():
    event = only_event(translate(activated_contract(), CPQ))

    assert isinstance(event, ContractBooked)
    assert (event.contract_id, event.entity, event.currency) == ("8005g00000CNTRAAA1", "EU1", "EUR")
    assert event.booking_date == dt.date(2024, 6, 28)  # CustomerSignedDate
    seats, support = event.obligations
    # 5 x net 1,000 for the term, list 1,200; dates from the contract when the line has none.
    assert (seats.price_minor, seats.ssp_minor) == (5_000_00, 6_000_00)
    assert (seats.service_start, seats.service_end) == (dt.date(2024, 7, 1), dt.date(2025, 6, 30))
    assert (support.service_start, support.price_minor) == (dt.date(2024, 10, 1), 2_000_00)
    assert event.total_price_minor == 7_000_00  # the usage subscription is not an obligation


def test_cpq_contract_terminated_cancels_it_from_its_end_date():
    message = activated_contract()
    message["payload"].update(Status="Terminated", StatusCode="Terminated", EndDate="2024-12-31")
    event = only_event(translate(message, CPQ))
    assert isinstance(event, ContractCancelled)
    assert (event.contract_id, event.effective_date) == (
        "8005g00000CNTRAAA1",
        dt.date(2024, 12, 31),
    )


def test_contract_and_opportunity_are_each_skipped_in_the_other_mode():
    assert translate(activated_contract(), PLAIN).reason == "contracts_book_with_cpq_only"  # type: ignore[union-attr]
    assert translate(won_opportunity(), CPQ).reason == "cpq_books_from_contract"  # type: ignore[union-attr]


def test_cpq_amendment_quote_adds_the_increased_quantity_as_a_separate_contract():
    event = only_event(translate(amendment(), CPQ))

    assert isinstance(event, ContractAmended)
    assert (event.contract_id, event.amendment_id, event.treatment) == (
        "8005g00000CNTRAAA1",
        "a0x5g00000QAMDAA1",
        "separate_contract",
    )
    assert event.effective_date == dt.date(2024, 10, 1)
    (added,) = event.obligations  # the support line's quantity did not change
    assert (added.obligation_id, added.quantity, added.price_minor, added.ssp_minor) == (
        "a0w5g00000QL1AA1",
        3,
        2_250_00,
        2_700_00,
    )
    assert (added.service_start, added.service_end) == (dt.date(2024, 10, 1), dt.date(2025, 6, 30))
    assert event.occurred_at == dt.datetime(2024, 10, 1, 9, tzinfo=dt.UTC)


def test_cpq_amendment_without_end_date_uses_the_subscription_term():
    message = amendment()
    del message["record"]["SBQQ__EndDate__c"]
    (added,) = only_event(translate(message, CPQ)).obligations
    assert added.service_end == dt.date(2025, 6, 30)  # 9 months from 1 October


def test_cpq_amendment_is_refused_when_it_reduces_a_quantity():
    message = amendment()
    message["record"]["SBQQ__LineItems__r"]["records"][1]["SBQQ__Quantity__c"] = 0
    outcome = translate(message, CPQ)
    assert isinstance(outcome, Malformed) and outcome.reason == "salesforce_amendment_reduction"
    assert "a0w5g00000QL2AA1" in outcome.message


def test_renewal_and_new_business_quotes_are_skipped_because_their_contract_books_them():
    renewal = amendment()
    renewal["record"]["SBQQ__Type__c"] = "Renewal"
    assert translate(renewal, CPQ).reason == "renewal_books_with_its_contract"  # type: ignore[union-attr]
    quote = amendment()
    quote["record"]["SBQQ__Type__c"] = "Quote"
    assert translate(quote, CPQ).reason == "quote_books_with_its_contract"  # type: ignore[union-attr]


def test_quote_that_is_not_final_is_skipped():
    message = amendment()
    message["SBQQ__Ordered__c"] = False
    assert translate(message, CPQ).reason == "quote_not_final"  # type: ignore[union-attr]


def test_line_records_and_unknown_objects_are_skipped():
    line = copy.deepcopy(won_opportunity())
    line["data"]["payload"]["ChangeEventHeader"]["entityName"] = "OpportunityLineItem"
    assert translate(line, PLAIN) == Skipped("rides_on_parent", "OpportunityLineItem")
    account = copy.deepcopy(won_opportunity())
    account["data"]["payload"]["ChangeEventHeader"]["entityName"] = "Account"
    assert translate(account, PLAIN) == Skipped("unknown_entity", "Account")


def test_raw_bytes_that_are_not_an_event_are_malformed():
    assert outcome_of(b"", PLAIN) == Malformed("salesforce_not_json", "empty record")
    assert outcome_of(b"[1]", PLAIN).reason == "salesforce_not_an_event"  # type: ignore[union-attr]
    assert outcome_of(b"{}", PLAIN).reason == "salesforce_not_an_event"  # type: ignore[union-attr]
    raw = (FIXTURES / "opportunity_closed_won.cdc.json").read_bytes()
    assert outcome_of(raw, PLAIN) == translate(won_opportunity(), PLAIN)


def test_routing_key_is_the_record_id():
    assert routing_key(won_opportunity()) == "0065g00000ABCDEAA1"
    assert routing_key(load("platform_event_closed_won.json")) == "salesforce"


def test_configuration_is_refused_when_a_setting_is_unknown_or_unusable():
    with pytest.raises(SalesforceConfigError, match="unknown settings"):
        config_from_mapping({"entities": {"*": "US1"}, "colour": "red"})
    with pytest.raises(SalesforceConfigError, match=r"ssp_table\.P\.USD"):
        config_from_mapping({"entities": {"*": "US1"}, "ssp_table": {"P": {"USD": "abc"}}})
    with pytest.raises(SalesforceConfigError, match="REVLEDGER_SALESFORCE_CONFIG"):
        config_from_environ({})
    config = config_from_environ({"REVLEDGER_SALESFORCE_ENTITIES": "USD=US1,*=EU1"})
    assert (config.entity_for("USD"), config.entity_for("GBP")) == ("US1", "EU1")
