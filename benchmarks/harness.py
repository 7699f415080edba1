"""Pure helpers of the benchmarks: percentiles, pacing, figures against targets, the table.

A benchmark produces :class:`Figure` objects (a value, its unit, and optionally the
:class:`Target` it is held against); :func:`format_table` prints them with ``met`` /
``NOT met`` and :func:`results_document` turns a run into the JSON written to
``benchmarks/results/``. Targets are reported, never asserted.

Must not import: faust, confluent_kafka, psycopg (unit-tested without services).
"""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (0 <= fraction <= 1), linear between ranks.

    The same rule as numpy's default ("linear"): the rank is ``fraction * (n - 1)``, and
    a rank between two values takes the weighted mean of both. Chosen over nearest-rank
    so that a p99 of 100 samples is not simply the maximum.

    Raises:
        ValueError: ``values`` is empty or ``fraction`` is outside [0, 1].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction {fraction} is outside [0, 1]")
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    weight = rank - low
    return ordered[low] + (ordered[high] - ordered[low]) * weight


def rate(count: int, seconds: float) -> float:
    """``count`` per second; infinity for a zero duration (a count of 0 gives 0)."""
    if count == 0:
        return 0.0
    return count / seconds if seconds > 0 else math.inf


@dataclass(frozen=True, slots=True)
class Pacer:
    """A fixed offered load: event ``i`` is due ``i / rate`` seconds after ``started``.

    The schedule is absolute, not "sleep 1/rate after each send", so time lost in one
    send (a full producer queue, a GIL pause) is made up by the next ones and the mean
    rate stays the one offered.
    """

    rate: float  # events per second
    started: float  # clock reading at which event 0 is due

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be positive, got {self.rate}")

    def due(self, now: float) -> int:
        """How many events are due at ``now`` (event 0 is due at ``started``)."""
        if now < self.started:
            return 0
        return math.floor((now - self.started) * self.rate) + 1

    def wait(self, sent: int, now: float) -> float:
        """Seconds from ``now`` until event number ``sent`` is due (0 if already due)."""
        return max(0.0, self.started + sent / self.rate - now)


@dataclass(frozen=True, slots=True)
class Target:
    """What a figure should reach: ``value >= bound`` (``at_least``) or ``value <= bound``."""

    bound: float
    kind: Literal["at_least", "at_most"]
    text: str  # as the issue states it, e.g. ">= 10,000 events/s"

    def met(self, value: float) -> bool:
        """Whether ``value`` reaches the target."""
        return value >= self.bound if self.kind == "at_least" else value <= self.bound


@dataclass(slots=True)
class Figure:
    """One measured figure; ``value`` None means it could not be measured (``note`` says why)."""

    key: str  # stable id in the JSON, e.g. "e2e.events_per_second"
    label: str  # what the table prints
    value: float | None
    unit: str
    target: Target | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def verdict(self) -> str:
        """``met``, ``NOT met``, ``not measured`` or ``""`` (no target)."""
        if self.target is None:
            return ""
        if self.value is None or math.isnan(self.value):
            return "not measured"
        return "met" if self.target.met(self.value) else "NOT met"


def format_value(value: float | None, unit: str) -> str:
    """A figure for the table: thousands separators, 2 decimals below 100, 3 below 1."""
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    if unit in ("x", "ratio"):
        return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.3f}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def format_table(figures: Iterable[Figure]) -> str:
    """The figures as an aligned text table: label, value, unit, target, verdict, note."""
    header = ("figure", "value", "unit", "target", "verdict", "note")
    rows = [
        (
            figure.label,
            format_value(figure.value, figure.unit),
            figure.unit,
            figure.target.text if figure.target else "",
            figure.verdict(),
            figure.note,
        )
        for figure in figures
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for n, row in enumerate([header, *rows]):
        cells = [
            row[0].ljust(widths[0]),
            row[1].rjust(widths[1]),
            row[2].ljust(widths[2]),
            row[3].ljust(widths[3]),
            row[4].ljust(widths[4]),
            row[5],
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return "\n".join(lines)


def figure_dict(figure: Figure) -> dict[str, Any]:
    """One figure as JSON-ready data."""
    value = figure.value
    if value is not None and (math.isnan(value) or math.isinf(value)):
        value = None
    return {
        "key": figure.key,
        "label": figure.label,
        "value": value,
        "unit": figure.unit,
        "target": figure.target.text if figure.target else None,
        "verdict": figure.verdict() or None,
        "note": figure.note or None,
        "details": figure.details,
    }


def results_document(
    figures: Sequence[Figure],
    *,
    mode: str,
    load_start: Sequence[float],
    load_end: Sequence[float],
    seconds: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON of one run: the machine, the load around it, and every figure."""
    return {
        "mode": mode,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "loadavg_start": [round(x, 2) for x in load_start],
        "loadavg_end": [round(x, 2) for x in load_end],
        "seconds": round(seconds, 1),
        "figures": [figure_dict(figure) for figure in figures],
        **(extra or {}),
    }


# The targets of issue 7, in one place.
TARGET_VS_PASSTHROUGH = Target(0.6, "at_least", ">= 0.6 x pass-through")
TARGET_ONE_WORKER = Target(10_000, "at_least", ">= 10,000 events/s")
TARGET_P99 = Target(1.0, "at_most", "<= 1 s at half max")
TARGET_RECOGNITION = Target(10.0, "at_most", "<= 10 s for 10,000 contracts")
TARGET_PROJECTION = Target(50_000, "at_least", ">= 50,000 rows/s")
TARGET_RSS = Target(500.0, "at_most", "<= 500 MB at 100,000 customers")
