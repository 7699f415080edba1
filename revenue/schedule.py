"""Recognition schedules: how much of an allocated amount is due through a given day.

A :class:`Segment` spreads one amount over a service period ``[start, end]`` (both days
inclusive: a service day is a whole day) by one method. An obligation's schedule is a sum
of segments: its booking, then what modifications and credits add or cut off.

Methods (Stripe names the same choices "by day", "by month evenly" and "by month evenly,
first and last month prorated": docs.stripe.com/revenue-recognition/revenue-controls):

* ``daily``: every service day earns the same; the first day counts whole. Due through
  day D = amount x days served / days in the period, rounded half-even, so the
  cumulative figure is exact to the cent and reaches the amount on the last day.
* ``monthly_even``: each service month earns the same. The number of months is the term
  in months rounded to the nearest whole month (Jun 15 to Oct 12 is 4; Jan 15 to Jan 14
  is 12; at least 1), the first share going to the month the service starts in; a
  partial last month beyond that count earns nothing. Shares are split by largest
  remainder, the extra cents to the earliest months.
* ``monthly_prorated``: a partial first or last calendar month earns amount x its service
  days / all service days; the whole months share the rest evenly.
* ``point_in_time``: the whole amount is due on the delivery day (``start``).

Within a month, the monthly methods accrue that month's share by day (first day whole),
so per-month totals are the same whether the clock ticks daily or monthly, and an
obligation cut off mid-month earns the days it served.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

from ledger.calendar import first_day, next_period, period_of
from ledger.errors import InvariantViolation
from ledger.money import allocate, ratio_minor

Method = Literal["daily", "monthly_even", "monthly_prorated", "point_in_time"]
METHODS: tuple[Method, ...] = ("daily", "monthly_even", "monthly_prorated", "point_in_time")

_DAY = dt.timedelta(days=1)


def last_day(period: str) -> dt.date:
    """Last calendar day of ``period`` (``YYYY-MM``)."""
    start = first_day(period)
    return start.replace(day=calendar.monthrange(start.year, start.month)[1])


def periods_between(first: dt.date, last: dt.date) -> list[str]:
    """Periods from the one containing ``first`` to the one containing ``last``, in order."""
    periods: list[str] = []
    period = period_of(first)
    while period <= period_of(last):
        periods.append(period)
        period = next_period(period)
    return periods


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole months, clamped to the month's last day (Jan 31 + 1 = Feb 28)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def term_in_months(start: dt.date, end: dt.date) -> int:
    """Whole months from ``start`` to the day after ``end``, rounded half up, at least 1."""
    after = end + _DAY
    whole = (after.year - start.year) * 12 + after.month - start.month
    while whole > 0 and add_months(start, whole) > after:
        whole -= 1
    anniversary = add_months(start, whole)
    rest = (after - anniversary).days
    month_length = (add_months(start, whole + 1) - anniversary).days
    return max(1, whole + (1 if 2 * rest >= month_length else 0))


@dataclass(frozen=True, slots=True)
class Span:
    """The service days of one calendar month and the share of the amount they earn."""

    first: dt.date
    last: dt.date
    share_minor: int

    @property
    def days(self) -> int:
        """Service days in this span."""
        return (self.last - self.first).days + 1


@dataclass(frozen=True)
class Segment:
    """``amount_minor`` spread over ``[start, end]`` by ``method``; nothing after ``stop``.

    ``amount_minor`` may be negative (a credit spread over the rest of the service).
    ``stop`` cuts the segment off: days after it earn nothing, so the segment's total
    becomes what was due through ``stop`` (a cancellation, or the old terms of a
    prospective modification).
    """

    start: dt.date
    end: dt.date
    amount_minor: int
    method: Method
    stop: dt.date | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InvariantViolation(f"unknown amortization method {self.method!r}")
        if self.end < self.start:
            raise InvariantViolation(f"segment ends {self.end} before it starts {self.start}")
        if self.method == "point_in_time" and self.end != self.start:
            raise InvariantViolation("a point-in-time segment is one day")

    @property
    def total_minor(self) -> int:
        """What the segment earns in all (its amount, or less when stopped early)."""
        return self.due_through(self.end)

    def stopped(self, last_service_day: dt.date) -> Segment:
        """This segment earning nothing after ``last_service_day``."""
        stop = last_service_day if self.stop is None else min(self.stop, last_service_day)
        return replace(self, stop=stop)

    def due_through(self, day: dt.date | None) -> int:
        """Cumulative amount due through ``day`` inclusive (0 for None or before start)."""
        if day is None:
            return 0
        if self.stop is not None:
            day = min(day, self.stop)
        if day < self.start:
            return 0
        if day >= self.end:
            return self.amount_minor
        if self.method == "point_in_time":
            return self.amount_minor
        if self.method == "daily":
            total_days = (self.end - self.start).days + 1
            return ratio_minor(self.amount_minor, (day - self.start).days + 1, total_days)
        due = 0
        for span in self.spans:
            if day >= span.last:
                due += span.share_minor
            elif day >= span.first:
                due += ratio_minor(span.share_minor, (day - span.first).days + 1, span.days)
        return due

    @cached_property
    def spans(self) -> tuple[Span, ...]:
        """The monthly spans of a monthly method (empty for the others)."""
        if self.method == "monthly_even":
            return self._even_spans()
        if self.method == "monthly_prorated":
            return self._prorated_spans()
        return ()

    def _service_days(self, period: str) -> tuple[dt.date, dt.date]:
        return max(self.start, first_day(period)), min(self.end, last_day(period))

    def _even_spans(self) -> tuple[Span, ...]:
        periods = periods_between(self.start, self.end)
        count = min(len(periods), term_in_months(self.start, self.end))
        shares = allocate(self.amount_minor, [1] * count)
        return tuple(
            Span(*self._service_days(period), share)
            for period, share in zip(periods[:count], shares, strict=True)
        )

    def _prorated_spans(self) -> tuple[Span, ...]:
        periods = periods_between(self.start, self.end)
        days = [self._service_days(period) for period in periods]
        if len(periods) == 1:
            return (Span(*days[0], self.amount_minor),)
        total_days = (self.end - self.start).days + 1
        partial = [
            index
            for index in (0, len(periods) - 1)
            if days[index] != (first_day(periods[index]), last_day(periods[index]))
        ]
        shares = [0] * len(periods)
        for index in partial:
            served = (days[index][1] - days[index][0]).days + 1
            shares[index] = ratio_minor(self.amount_minor, served, total_days)
        rest = self.amount_minor - sum(shares)
        whole = [index for index in range(len(periods)) if index not in partial]
        if not whole:
            shares[-1] += rest
        else:
            for index, share in zip(whole, allocate(rest, [1] * len(whole)), strict=True):
                shares[index] = share
        return tuple(Span(*span, share) for span, share in zip(days, shares, strict=True))


def due_through(segments: tuple[Segment, ...], day: dt.date | None) -> int:
    """Sum of what ``segments`` have due through ``day``."""
    return sum(segment.due_through(day) for segment in segments)


def total_of(segments: tuple[Segment, ...]) -> int:
    """Sum of what ``segments`` earn in all."""
    return sum(segment.total_minor for segment in segments)


def last_service_day(segments: tuple[Segment, ...]) -> dt.date | None:
    """The last day on which any of ``segments`` still earns something."""
    days = [s.end if s.stop is None else min(s.end, s.stop) for s in segments]
    return max(days, default=None)
