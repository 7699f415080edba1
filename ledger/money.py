"""Money: integer minor units beside an ISO 4217 code, one split rule, one conversion rule.

Owns the currency exponent table (taken once from py-moneyed's currency data: JPY 0,
USD 2, KWD 3), :func:`allocate` (the ONLY way anything in this project splits an amount)
and :func:`convert` (transaction currency to functional currency at a rate of record).

Worked example of :func:`allocate`: ``allocate(100, [1, 1, 1])`` gives exact shares
33.33…; floors ``[33, 33, 33]`` leave 1 unit, which goes to the largest remainder; all
remainders tie, so the lowest index wins: ``[34, 33, 33]``.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``;
py-moneyed only for its currency table, never as an amount type.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from functools import cache

from moneyed import CurrencyDoesNotExist, get_currency

from ledger.errors import InvariantViolation, UnknownCurrency

# Avro ``long`` and PostgreSQL BIGINT are signed 64-bit: anything beyond overflows downstream.
MAX_MINOR = 2**63 - 1
MIN_MINOR = -(2**63)

# Enough digits for a 19-digit amount times a rate with 28 significant digits, exactly.
_CONVERSION_PRECISION = 80


@cache
def exponent(currency: str) -> int:
    """Number of minor-unit decimals of ``currency`` (USD 2, JPY 0, KWD 3).

    Raises:
        UnknownCurrency: the code is not in py-moneyed's currency table, or has no minor unit
            defined (e.g. ``XXX``, ``XAU``: not money this ledger posts).
    """
    try:
        sub_unit = get_currency(currency).sub_unit
    except CurrencyDoesNotExist as exc:
        raise UnknownCurrency(f"unknown currency {currency!r}") from exc
    digits = len(str(sub_unit)) - 1
    if sub_unit != 10**digits or (currency.startswith("X") and currency not in _X_MONEY):
        raise UnknownCurrency(f"currency {currency!r} has no usable minor unit")
    return digits


# ISO codes starting with X are mostly metals, funds and test codes; these few are money.
_X_MONEY = frozenset({"XAF", "XCD", "XOF", "XPF"})


def is_known_currency(currency: str) -> bool:
    """True when :func:`exponent` knows ``currency``."""
    try:
        exponent(currency)
    except UnknownCurrency:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Amount:
    """An amount of money: integer minor units (cents, yen, fils) and its currency code."""

    minor: int
    currency: str

    def __post_init__(self) -> None:
        if type(self.minor) is not int:
            raise InvariantViolation(f"Amount.minor must be int, got {type(self.minor).__name__}")
        exponent(self.currency)

    def to_decimal(self) -> Decimal:
        """The amount in major units, exact (for display and reports only)."""
        return Decimal(self.minor).scaleb(-exponent(self.currency))


def amount_overflows(value: int) -> bool:
    """True when ``value`` does not fit a signed 64-bit integer (Avro long, BIGINT)."""
    return not MIN_MINOR <= value <= MAX_MINOR


def allocate(total_minor: int, weights: Sequence[int]) -> list[int]:
    """Split ``total_minor`` in proportion to ``weights`` by largest remainder.

    Parts sum exactly to ``total_minor``; each part is within one minor unit of its exact
    share; a zero weight gets zero. Ties between equal remainders go to the lower index,
    so the same inputs give the same split on every replay.

    Args:
        total_minor: the amount to split; may be negative (split as ``-allocate(-total)``).
        weights: non-negative integers, at least one positive.

    Returns:
        One integer per weight.

    Raises:
        InvariantViolation: a weight is negative, or all weights are zero.
    """
    if any(w < 0 for w in weights):
        raise InvariantViolation(f"allocate weights must be >= 0, got {list(weights)}")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise InvariantViolation("allocate needs at least one positive weight")
    if total_minor < 0:
        return [-part for part in allocate(-total_minor, weights)]
    floors = [total_minor * w // weight_sum for w in weights]
    remainders = [total_minor * w % weight_sum for w in weights]
    leftover = total_minor - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], i))
    for index in order[:leftover]:
        floors[index] += 1
    return floors


def convert(amount_minor: int, from_currency: str, to_currency: str, rate: Decimal) -> int:
    """Convert minor units of ``from_currency`` into minor units of ``to_currency``.

    ``rate`` is units of ``to_currency`` per unit of ``from_currency``. The exact product
    is rounded once to the target's minor unit with ROUND_HALF_EVEN (banker's rounding:
    no drift on average over many conversions), e.g. 1.005 USD → 1.00, 1.015 → 1.02.

    Raises:
        UnknownCurrency: either code is unknown.
        InvariantViolation: ``rate`` is not a positive finite Decimal.
    """
    if not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0:
        raise InvariantViolation(f"rate must be a positive finite Decimal, got {rate!r}")
    shift = exponent(to_currency) - exponent(from_currency)
    with decimal.localcontext() as context:
        context.prec = _CONVERSION_PRECISION
        exact = (Decimal(amount_minor) * rate).scaleb(shift)
        return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def ratio_minor(total_minor: int, numerator: int, denominator: int) -> int:
    """``total_minor * numerator / denominator`` rounded half-even to an integer.

    Used for cumulative proportional relief (the functional part of a receivable),
    so that relieving the whole always gives back exactly ``total_minor``.
    """
    if denominator <= 0:
        raise InvariantViolation(f"ratio denominator must be positive, got {denominator}")
    quotient, remainder = divmod(total_minor * numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient
