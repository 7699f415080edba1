"""Materiality bands: an amount in the entity's functional currency against thresholds."""

from __future__ import annotations

import pytest

from connectors.simulation import builders as b
from ledger.materiality import (
    DEFAULT_THRESHOLDS,
    Band,
    MaterialityError,
    Threshold,
    band_of,
    event_amount,
    event_band,
    parse_thresholds,
)

USD = parse_thresholds("USD:100000,1000000")


def test_thresholds_are_read_when_text_lists_currencies():
    thresholds = parse_thresholds(" USD:100000,1000000 ; JPY:150000,1500000;")
    assert thresholds == {
        "USD": Threshold(100_000, 1_000_000),
        "JPY": Threshold(150_000, 1_500_000),
    }


def test_defaults_parse_when_loaded():
    thresholds = parse_thresholds(DEFAULT_THRESHOLDS)
    assert {"USD", "EUR", "GBP", "JPY"} <= set(thresholds)
    assert thresholds["EUR"] == Threshold(100_000, 1_000_000)


def test_no_thresholds_when_text_is_empty():
    assert parse_thresholds("") == {}


@pytest.mark.parametrize(
    "text",
    [
        "USD",  # no amounts
        "USD:100000",  # one amount
        "USD:1.5,2",  # not minor units
        "USD:-1,2",  # negative
        "USD:0,10",  # medium from 0: everything would be medium
        "USD:10,5",  # high below medium
        "ZZZ:1,2",  # unknown currency
        "USD:1,2;USD:3,4",  # twice
    ],
)
def test_thresholds_are_refused_when_malformed(text):
    with pytest.raises(MaterialityError):
        parse_thresholds(text)


@pytest.mark.parametrize(
    ("amount", "band"),
    [
        (1, Band.low),
        (99_999, Band.low),
        (100_000, Band.medium),
        (999_999, Band.medium),
        (1_000_000, Band.high),
        (-1_000_000, Band.high),  # a size: the sign is a side
    ],
)
def test_band_follows_the_thresholds_when_amount_crosses_them(amount, band):
    assert band_of(amount, "USD", USD) is band


def test_band_is_unknown_when_currency_has_no_thresholds():
    assert band_of(10**12, "EUR", USD) is Band.unknown


def test_event_amount_is_the_total_or_the_amount_when_the_event_carries_money():
    assert event_amount(b.invoice(lines=[("SUB", 100_00)], tax=5_00)) == (105_00, "USD")
    assert event_amount(b.payment(amount=42_00)) == (42_00, "USD")
    assert event_amount(b.void("INV-1")) is None


def test_event_band_converts_to_the_functional_currency_when_a_rate_exists():
    reference = b.reference_data()  # EUR/USD 1.10; US1 in USD
    invoice = b.invoice(lines=[("SUB", 95_000_00)], currency="EUR")  # 104,500.00 USD in US1
    thresholds = parse_thresholds("USD:100000,10000000;EUR:100000,100000000")

    assert event_band(invoice, reference, thresholds) is Band.high


def test_event_band_uses_its_own_currency_when_no_rate_converts_it():
    reference = b.reference_data()  # no GBP rate
    invoice = b.invoice(lines=[("SUB", 5_000_00)], currency="GBP")
    with_gbp = parse_thresholds("USD:1,2;GBP:100000,1000000")

    assert event_band(invoice, reference, with_gbp) is Band.medium
    assert event_band(invoice, reference, USD) is Band.unknown


def test_event_band_is_unknown_when_the_event_carries_no_money():
    assert event_band(b.void("INV-1"), b.reference_data(), USD) is Band.unknown
