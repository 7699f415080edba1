"""Money: exponents, allocate, convert, overflow."""

from decimal import Decimal

import pytest

from ledger.errors import InvariantViolation, UnknownCurrency
from ledger.money import (
    MAX_MINOR,
    Amount,
    allocate,
    amount_overflows,
    convert,
    exponent,
    ratio_minor,
)


def test_exponent_comes_from_currency_table_when_code_is_known():
    assert (exponent("JPY"), exponent("USD"), exponent("KWD"), exponent("EUR")) == (0, 2, 3, 2)


@pytest.mark.parametrize("code", ["ABC", "XXX", "XAU"])
def test_exponent_raises_when_code_is_unknown_or_not_money(code):
    with pytest.raises(UnknownCurrency):
        exponent(code)


def test_amount_raises_when_currency_is_unknown():
    with pytest.raises(UnknownCurrency):
        Amount(1, "ABC")


def test_amount_to_decimal_when_currency_has_three_decimals():
    assert Amount(1_234, "KWD").to_decimal() == Decimal("1.234")


def test_allocate_gives_remainder_to_lower_index_when_remainders_tie():
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]


def test_allocate_gives_remainder_to_largest_remainder_when_they_differ():
    # exact shares 14.2857, 28.5714, 57.1428: one unit left, index 1 has the largest remainder
    assert allocate(100, [1, 2, 4]) == [14, 29, 57]


def test_allocate_gives_zero_when_weight_is_zero():
    assert allocate(10, [0, 3, 0, 1]) == [0, 8, 0, 2]


def test_allocate_raises_when_all_weights_are_zero():
    with pytest.raises(InvariantViolation):
        allocate(10, [0, 0])


def test_allocate_raises_when_a_weight_is_negative():
    with pytest.raises(InvariantViolation):
        allocate(10, [3, -1])


def test_allocate_mirrors_when_total_is_negative():
    assert allocate(-100, [1, 1, 1]) == [-34, -33, -33]


def test_convert_rounds_half_even_when_result_is_halfway():
    assert convert(1_005, "USD", "USD", Decimal("0.1")) == 100  # 100.5 -> 100
    assert convert(1_015, "USD", "USD", Decimal("0.1")) == 102  # 101.5 -> 102


def test_convert_adjusts_exponent_when_currencies_differ_in_decimals():
    assert convert(10_000, "JPY", "USD", Decimal("0.0067")) == 6_700  # 10,000 JPY = 67.00 USD
    assert convert(1_00, "USD", "JPY", Decimal("150.5")) == 150  # 150.5 -> 150 (half even)
    assert convert(1_00, "USD", "KWD", Decimal("0.3075")) == 308  # 0.3075 KWD = 307.5 fils


def test_convert_raises_when_rate_is_not_positive_decimal():
    with pytest.raises(InvariantViolation):
        convert(1, "USD", "EUR", Decimal(0))
    with pytest.raises(InvariantViolation):
        convert(1, "USD", "EUR", 1.1)  # type: ignore[arg-type]


def test_amount_overflows_when_outside_signed_64_bit():
    assert not amount_overflows(MAX_MINOR)
    assert amount_overflows(MAX_MINOR + 1)
    assert amount_overflows(-(2**63) - 1)


def test_ratio_minor_returns_whole_when_numerator_equals_denominator():
    assert ratio_minor(11_000, 10_000, 10_000) == 11_000
    assert ratio_minor(3, 1, 2) == 2  # 1.5 -> 2 (half even)
    assert ratio_minor(5, 1, 2) == 2  # 2.5 -> 2
