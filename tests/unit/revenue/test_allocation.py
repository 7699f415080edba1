"""Allocating a transaction price by relative SSP, with discounts tied to some obligations."""

from ledger.results import EntryStatus
from revenue.allocation import AllocationRefused, allocate_by_ssp

# ASC 606-10-55-259, Example 34: products A, B and C with SSP 40, 55 and 45 sold for 100.
EXAMPLE_34 = {"A": 40_00, "B": 55_00, "C": 45_00}


def test_price_is_split_by_relative_ssp_when_no_discount_is_tied():
    assert allocate_by_ssp(900_00, {"A": 600_00, "B": 300_00, "C": 100_00}) == {
        "A": 540_00,
        "B": 270_00,
        "C": 90_00,
    }


def test_rounding_cent_goes_to_the_largest_remainder_when_shares_are_not_whole():
    # Exact shares 28.5714, 39.2857, 32.1429: floors leave one cent, B has the largest rest.
    shares = allocate_by_ssp(100_00, EXAMPLE_34)
    assert shares == {"A": 28_57, "B": 39_29, "C": 32_14}
    assert sum(shares.values()) == 100_00


def test_equal_remainders_go_to_the_first_obligation_when_ssps_are_equal():
    assert allocate_by_ssp(100, {"X": 1, "Y": 1, "Z": 1}) == {"X": 34, "Y": 33, "Z": 33}


def test_result_keeps_the_obligation_order_when_ids_are_not_sorted():
    assert list(allocate_by_ssp(10_00, {"Z": 1, "A": 2, "M": 3})) == ["Z", "A", "M"]


def test_discount_goes_to_the_named_obligations_when_it_is_tied_to_them():
    # Example 34 Case B: the 40 discount relates to B and C; A keeps its SSP of 40.
    assert allocate_by_ssp(100_00, EXAMPLE_34, discounted=("B", "C")) == {
        "A": 40_00,
        "B": 33_00,
        "C": 27_00,
    }


def test_discounted_obligations_get_nothing_when_the_others_take_the_whole_price():
    assert allocate_by_ssp(40_00, EXAMPLE_34, discounted=("B", "C")) == {
        "A": 40_00,
        "B": 0,
        "C": 0,
    }


def test_discount_on_every_obligation_is_the_relative_split_when_all_are_named():
    assert allocate_by_ssp(100_00, EXAMPLE_34, discounted=("A", "B", "C")) == allocate_by_ssp(
        100_00, EXAMPLE_34
    )


def test_ssp_all_zero_is_refused_when_a_price_has_nothing_to_weigh_it_by():
    refused = allocate_by_ssp(100_00, {"A": 0, "B": 0})
    assert isinstance(refused, AllocationRefused)
    assert refused.status is EntryStatus.ssp_all_zero
    assert "100" in refused.message and "A, B" in refused.message


def test_ssp_all_zero_is_refused_when_the_discounted_obligations_have_no_ssp():
    refused = allocate_by_ssp(100_00, {"A": 40_00, "B": 0}, discounted=("B",))
    assert isinstance(refused, AllocationRefused)
    assert refused.status is EntryStatus.ssp_all_zero


def test_discount_exceeds_price_is_refused_when_undiscounted_ssps_exceed_the_price():
    refused = allocate_by_ssp(80_00, EXAMPLE_34, discounted=("C",))
    assert isinstance(refused, AllocationRefused)
    assert refused.status is EntryStatus.discount_exceeds_price
    assert "95" in refused.message and "80" in refused.message


def test_zero_price_gives_every_obligation_zero_when_ssps_are_positive():
    assert allocate_by_ssp(0, EXAMPLE_34) == {"A": 0, "B": 0, "C": 0}


def test_zero_price_gives_every_obligation_zero_when_every_ssp_is_zero():
    assert allocate_by_ssp(0, {"A": 0, "B": 0}) == {"A": 0, "B": 0}


def test_zero_ssp_obligation_gets_nothing_when_others_have_ssp():
    assert allocate_by_ssp(99_99, {"A": 0, "B": 1, "C": 2}) == {"A": 0, "B": 33_33, "C": 66_66}


def test_nothing_is_allocated_when_there_are_no_obligations():
    assert allocate_by_ssp(100_00, {}) == {}
