"""Accounting periods (``YYYY-MM``) and business days: pure date arithmetic.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``;
and never the wall clock: every date comes from an event payload or the business clock.
"""

from __future__ import annotations

import datetime as dt

from ledger.errors import InvariantViolation


def period_of(day: dt.date) -> str:
    """The accounting period (``YYYY-MM``) a date falls in."""
    return f"{day.year:04d}-{day.month:02d}"


def first_day(period: str) -> dt.date:
    """First calendar day of ``period``.

    Raises:
        InvariantViolation: ``period`` is not ``YYYY-MM``.
    """
    try:
        year, month = (int(part) for part in period.split("-"))
        return dt.date(year, month, 1)
    except ValueError as exc:
        raise InvariantViolation(f"period must be YYYY-MM, got {period!r}") from exc


def next_period(period: str) -> str:
    """The period after ``period`` (``2024-12`` → ``2025-01``)."""
    start = first_day(period)
    if start.month == 12:
        return f"{start.year + 1:04d}-01"
    return f"{start.year:04d}-{start.month + 1:02d}"


def business_days_between(start: dt.date, end: dt.date) -> int:
    """Weekdays (Monday to Friday) in ``(start, end]``; 0 when ``end <= start``.

    No holiday calendar: a business day here is any weekday.
    """
    if end <= start:
        return 0
    days = (end - start).days
    full_weeks, rest = divmod(days, 7)
    count = full_weeks * 5
    for offset in range(1, rest + 1):
        if (start + dt.timedelta(days=full_weeks * 7 + offset)).weekday() < 5:
            count += 1
    return count
