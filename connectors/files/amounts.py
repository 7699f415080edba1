"""Decimal amounts in major units (``"12.34"`` USD) -> integer minor units (``1234``).

Sources without a connector, and Salesforce, send money as decimals in the currency's
major unit. The conversion is exact or refused: an amount with more decimals than the
currency has (``"12.345"`` USD, ``"5.5"`` JPY) names no whole number of minor units and
is refused with a reason, never rounded; a float is refused because it is already
inexact (parse JSON with ``parse_float=Decimal``).

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from ledger.errors import UnknownCurrency
from ledger.money import MAX_MINOR, exponent


class AmountError(ValueError):
    """Raised for an amount that is not an exact number of minor units of its currency.

    ``reason`` is a short code (``amount_not_decimal``, ``amount_sub_minor_unit``,
    ``amount_negative``, ``amount_overflows``, ``amount_float``, ``unknown_currency``);
    the message names the value and the currency.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def decimal_of(value: object) -> Decimal:
    """``value`` (text, int or Decimal) as an exact Decimal.

    Raises:
        AmountError: a float (inexact), a bool, or text that is not a finite decimal.
    """
    if isinstance(value, bool):
        raise AmountError("amount_not_decimal", f"{value!r} is not an amount")
    if isinstance(value, float):
        raise AmountError(
            "amount_float", f"{value!r} arrived as a binary float; send decimal text instead"
        )
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise AmountError("amount_not_decimal", f"{value!r} is not a decimal number") from None
    else:
        raise AmountError("amount_not_decimal", f"{value!r} is not a decimal number")
    if not number.is_finite():
        raise AmountError("amount_not_decimal", f"{value!r} is not a finite number")
    return number


def minor_units(value: object, currency: str, *, allow_zero: bool = True) -> int:
    """An amount in major units as integer minor units of ``currency``, exactly.

    Args:
        value: decimal text (``"12.30"``), an int, or a Decimal; never a float.
        currency: ISO 4217 code; its exponent comes from :func:`ledger.money.exponent`.
        allow_zero: False refuses 0 (amounts that must be positive).

    Returns:
        The amount in minor units (``"12.30"`` USD -> 1230, ``"500"`` JPY -> 500).

    Raises:
        AmountError: not a decimal, negative, zero when not allowed, more decimals than
            the currency has, beyond a signed 64-bit integer, or an unknown currency.
    """
    try:
        digits = exponent(currency)
    except UnknownCurrency as exc:
        raise AmountError("unknown_currency", str(exc)) from exc
    number = decimal_of(value)
    if number < 0:
        raise AmountError("amount_negative", f"{value!r} is negative; amounts are positive")
    scaled = number.scaleb(digits)
    if scaled != scaled.to_integral_value():
        raise AmountError(
            "amount_sub_minor_unit",
            f"{value!r} has more decimals than {currency}'s {digits}",
        )
    minor = int(scaled)
    if minor == 0 and not allow_zero:
        raise AmountError("amount_must_be_positive", f"{value!r} must be more than zero")
    if minor > MAX_MINOR:
        raise AmountError("amount_overflows", f"{value!r} {currency} does not fit 64 bits")
    return minor
