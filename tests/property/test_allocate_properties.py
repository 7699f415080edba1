"""allocate() and convert(): the split and rounding rules everything else relies on."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.money import allocate, convert

weights_strategy = st.lists(st.integers(0, 10**6), min_size=1, max_size=12).filter(any)


def parts_sum_to_total(total, weights):
    return sum(allocate(total, weights)) == total


def each_part_within_one_unit_of_exact_share(total, weights):
    whole = sum(weights)
    return all(
        abs(part * whole - total * weight) < whole
        for part, weight in zip(allocate(total, weights), weights, strict=True)
    )


def zero_weight_gets_zero(total, weights):
    return all(
        part == 0
        for part, weight in zip(allocate(total, weights), weights, strict=True)
        if weight == 0
    )


@settings(derandomize=True, deadline=None, max_examples=300)
@given(st.integers(-(2**63), 2**63 - 1), weights_strategy)
def test_allocate_is_exact_fair_and_zero_safe_when_weights_are_valid(total, weights):
    assert parts_sum_to_total(total, weights)
    assert each_part_within_one_unit_of_exact_share(total, weights)
    assert zero_weight_gets_zero(total, weights)


@settings(derandomize=True, deadline=None, max_examples=200)
@given(
    st.integers(0, 10**12),
    st.integers(0, 10**12),
    st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1000), places=4),
)
def test_convert_is_monotonic_when_amount_grows(small, extra, rate):
    assert convert(small, "EUR", "USD", rate) <= convert(small + extra, "EUR", "USD", rate)
