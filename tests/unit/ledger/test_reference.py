"""Reference data: rates of record, posting periods, products, GL mappings."""

import datetime as dt
from decimal import Decimal

import pytest

from connectors.simulation.builders import (
    EU,
    US,
    entity,
    fx,
    gl,
    period_closed,
    product,
    reference_data,
)
from ledger.accounts import Account, ProductFamily, Side, balance_of, normal_side
from ledger.errors import InvariantViolation

JAN = dt.date(2024, 1, 1)


def test_rate_of_record_is_one_when_currencies_are_equal():
    assert reference_data(base=False).rate_of_record("USD", "USD", JAN) == Decimal(1)


def test_rate_of_record_takes_latest_on_or_before_date_when_several_exist():
    reference = reference_data(
        fx("EUR", "USD", "1.10", JAN), fx("EUR", "USD", "1.20", dt.date(2024, 1, 10)), base=False
    )
    assert reference.rate_of_record("EUR", "USD", dt.date(2024, 1, 9)) == Decimal("1.10")
    assert reference.rate_of_record("EUR", "USD", dt.date(2024, 1, 10)) == Decimal("1.20")
    assert reference.rate_of_record("EUR", "USD", dt.date(2023, 12, 31)) is None


def test_rate_of_record_inverts_pair_when_only_inverse_exists():
    reference = reference_data(fx("USD", "EUR", "0.8", JAN), base=False)
    assert reference.rate_of_record("EUR", "USD", JAN) == Decimal("1.25")


def test_rate_of_record_prefers_direct_pair_when_both_have_same_date():
    reference = reference_data(
        fx("USD", "EUR", "0.8", JAN), fx("EUR", "USD", "1.3", JAN), base=False
    )
    assert reference.rate_of_record("EUR", "USD", JAN) == Decimal("1.3")


def test_rate_of_record_replaces_rate_when_resent_for_same_date():
    reference = reference_data(
        fx("EUR", "USD", "1.1", JAN), fx("EUR", "USD", "1.2", JAN), base=False
    )
    assert reference.rate_of_record("EUR", "USD", JAN) == Decimal("1.2")


def test_posting_period_moves_to_first_open_day_when_period_is_closed():
    reference = reference_data(period_closed("2024-01"), period_closed("2024-02"))
    assert reference.posting_period(US, dt.date(2024, 1, 20)) == (dt.date(2024, 3, 1), "2024-03")
    assert reference.posting_period(EU, dt.date(2024, 1, 20)) == (dt.date(2024, 1, 20), "2024-01")


def test_posting_period_moves_when_date_is_before_first_open_period():
    reference = reference_data(entity("LATE", "USD", first_open="2024-06"), base=False)
    assert reference.posting_period("LATE", dt.date(2024, 2, 3)) == (dt.date(2024, 6, 1), "2024-06")


def test_posting_period_raises_when_entity_is_unknown():
    with pytest.raises(InvariantViolation):
        reference_data().posting_period("NOPE", JAN)


def test_product_family_follows_effective_date_when_mapping_changes():
    reference = reference_data(
        product("P", "services", dt.date(2024, 1, 1)),
        product("P", "subscription", dt.date(2024, 6, 1)),
        base=False,
    )
    assert reference.product_family("P", dt.date(2024, 5, 31)) is ProductFamily.services
    assert reference.product_family("P", dt.date(2024, 6, 1)) is ProductFamily.subscription
    assert reference.product_family("P", dt.date(2023, 1, 1)) is ProductFamily.services
    assert reference.product_family("Q", JAN) is None


def test_gl_code_prefers_family_mapping_and_respects_effective_dates():
    reference = reference_data(
        gl(US, "revenue", "4000"),
        gl(
            US,
            "revenue",
            "4100",
            family="usage",
            effective_from=dt.date(2024, 3, 1),
            effective_to=dt.date(2024, 3, 31),
        ),
    )
    assert reference.gl_code(US, Account.revenue, ProductFamily.usage, dt.date(2024, 3, 31)) == (
        "4100"
    )
    assert reference.gl_code(US, Account.revenue, ProductFamily.usage, dt.date(2024, 4, 1)) == (
        "4000"
    )
    assert reference.gl_code(US, Account.revenue, None, dt.date(2024, 3, 15)) == "4000"
    assert reference.gl_code(EU, Account.revenue, None, dt.date(2024, 3, 15)) is None


def test_normal_side_is_debit_when_account_is_asset_or_expense():
    assert normal_side(Account.accounts_receivable) is Side.debit
    assert normal_side(Account.bad_debt) is Side.debit
    assert normal_side(Account.deferred_revenue) is Side.credit
    assert balance_of(Account.revenue, 10, 30) == 20
