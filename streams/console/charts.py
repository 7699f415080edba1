"""The console's charts as server-side SVG: revenue waterfall, deferred revenue roll-forward,
AR aging.

Pure functions: report rows of :mod:`connectors.postgres.queries` in, an ``<svg>`` string
out (inline it in a page, or serve it as ``image/svg+xml``); no JavaScript, no I/O.

* Money stays integer minor units: a bar's height is ``amount * plot_height / range``
  computed as an exact :class:`~fractions.Fraction` and only rounded to hundredths of a
  pixel when written, so bars are proportional to their amounts whatever the currency's
  exponent. Amounts are labelled with the reports' formatting
  (:func:`streams.reports.format_amount`: the currency's decimals, digits grouped).
* Currencies are never added together: each currency gets its own panel with its own scale.
* Every piece of text (titles, periods, currency codes) is escaped; every bar carries a
  ``<title>`` (the browser's tooltip) and ``data-*`` attributes naming what it shows; the
  ``<svg>`` has ``role="img"`` and an ``aria-label``, plus a ``<desc>`` summing it up.

Must not import: faust, aiokafka, confluent_kafka.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from connectors.postgres.queries import (
    AGING_BUCKETS,
    AgingTotal,
    RollforwardRow,
    WaterfallPeriod,
    WaterfallRow,
    waterfall_by_period,
)
from streams.reports import format_amount

WIDTH = 760
LEGEND_HEIGHT = 34
PANEL_HEIGHT = 270
# Inside a panel: room for the currency heading above, the y labels left, the x labels below.
PLOT_LEFT = 118
PLOT_RIGHT = 16
PLOT_TOP = 30
PLOT_BOTTOM = 58
# More groups than this on the x axis: their labels are turned so that they do not overlap.
_UPRIGHT_LABELS_MAX = 12
# A bar is at most this wide (a chart of one period is not one wall of colour), and a y
# label closer than this to the zero line's label is left out (they would overlap).
_BAR_WIDTH_MAX = 64
_LABEL_GAP = 14

# Colours of the series (colour-blind safe, Okabe-Ito); a legend names each one.
COLOURS = {
    "recognised": "#0072B2",
    "scheduled": "#56B4E9",
    "opening": "#999999",
    "billings": "#009E73",
    "recognised-rf": "#D55E00",
    "adjustments": "#CC79A7",
    "closing": "#0072B2",
    "current": "#009E73",
    "1-30": "#F0E442",
    "31-60": "#E69F00",
    "61-90": "#D55E00",
    "90+": "#A8322D",
}


def waterfall_svg(
    rows: Iterable[WaterfallRow] | Iterable[WaterfallPeriod], *, title: str = "Revenue waterfall"
) -> str:
    """The revenue waterfall: revenue recognised per period, then scheduled per period.

    Args:
        rows: :func:`~connectors.postgres.queries.waterfall` rows (summed per currency and
            period here) or :func:`~connectors.postgres.queries.waterfall_by_period` rows.
        title: the chart's title (escaped).

    Returns:
        An SVG document: one panel per currency, one stacked bar per period (recognised,
        scheduled; a negative part, a net reversal, goes below the zero line).
    """
    periods = _waterfall_periods(rows)
    panels = []
    for currency, of_currency in _by_currency(periods, lambda p: p.currency):
        bars: list[_Bar] = []
        groups: list[tuple[int, int, str]] = []
        for slot, period in enumerate(of_currency):
            groups.append((slot, 1, period.period))
            parts = (("recognised", period.recognised_minor), ("scheduled", period.scheduled_minor))
            bars += _stacked(slot, period.period, currency, parts)
        total_recognised = sum(p.recognised_minor for p in of_currency)
        total_scheduled = sum(p.scheduled_minor for p in of_currency)
        summary = (
            f"{currency}: {_count(len(of_currency), 'period')}, {of_currency[0].period} to"
            f" {of_currency[-1].period}; recognised {_money(total_recognised, currency)},"
            f" scheduled {_money(total_scheduled, currency)}"
        )
        panels.append(_Panel(currency, len(of_currency), bars, groups, summary))
    legend = (("recognised", "Recognised"), ("scheduled", "Scheduled"))
    return _render(title, "waterfall", "Period", legend, panels)


def rollforward_svg(
    rows: Iterable[RollforwardRow], *, title: str = "Deferred revenue roll-forward"
) -> str:
    """The deferred revenue roll-forward as a bridge: opening, then per period billings
    (up), revenue recognised (down), adjustments (either way) and the closing balance.

    Args:
        rows: :func:`~connectors.postgres.queries.deferred_rollforward` rows (transaction
            currency amounts; the functional ones are not drawn).
        title: the chart's title (escaped).

    Returns:
        An SVG document: one panel per currency; the first period's opening balance, then
        for each period three floating bars from the balance before to the balance after
        the movement, and a closing bar from zero.
    """
    panels = []
    for currency, of_currency in _by_currency(list(rows), lambda r: r.currency):
        first = of_currency[0]
        bars = []
        if first.opening_minor != 0:
            opening_tip = f"{first.period} opening: {_money(first.opening_minor, currency)}"
            bars.append(
                _Bar(0, *_span(0, first.opening_minor), "opening", first.period,
                     first.opening_minor, opening_tip)
            )  # fmt: skip
        groups = [(0, 1, "Opening")]
        slot = 1
        for row in of_currency:
            groups.append((slot, 4, row.period))
            level = row.opening_minor
            moves = (
                ("billings", "billings", row.billings_minor),
                ("recognised-rf", "recognised", -row.recognised_minor),
                ("adjustments", "adjustments", row.adjustments_minor),
            )
            for offset, (series, name, change) in enumerate(moves):
                if change != 0:  # a zero movement keeps its place but draws nothing
                    after = level + change
                    tip = (
                        f"{row.period} {name}: {_money(abs(change), currency)}"
                        f" (deferred revenue {_money(level, currency)} → {_money(after, currency)})"
                    )
                    bars.append(
                        _Bar(slot + offset, *_span(level, after), series, row.period, change, tip)
                    )
                    level = after
            closing_tip = f"{row.period} closing: {_money(row.closing_minor, currency)}"
            bars.append(
                _Bar(slot + 3, *_span(0, row.closing_minor), "closing", row.period,
                     row.closing_minor, closing_tip)
            )  # fmt: skip
            slot += 4
        last = of_currency[-1]
        summary = (
            f"{currency}: opening {first.period} {_money(first.opening_minor, currency)},"
            f" billings {_money(sum(r.billings_minor for r in of_currency), currency)},"
            f" recognised {_money(sum(r.recognised_minor for r in of_currency), currency)},"
            f" adjustments {_money(sum(r.adjustments_minor for r in of_currency), currency)},"
            f" closing {last.period} {_money(last.closing_minor, currency)}"
        )
        panels.append(_Panel(currency, slot, bars, groups, summary))
    legend = (
        ("opening", "Opening balance"),
        ("billings", "Billings"),
        ("recognised-rf", "Recognised"),
        ("adjustments", "Adjustments"),
        ("closing", "Closing balance"),
    )
    return _render(title, "rollforward", "Period", legend, panels)


def aging_svg(totals: Iterable[AgingTotal], *, title: str = "AR aging") -> str:
    """Receivables by how late they are: one bar per aging bucket.

    Args:
        totals: :func:`~connectors.postgres.queries.aging_totals` rows (one per currency).
        title: the chart's title (escaped).

    Returns:
        An SVG document: one panel per currency, bars for current, 1-30, 31-60, 61-90 and
        90+ days past due (a net credit in a bucket goes below the zero line).
    """
    panels = []
    for currency, of_currency in _by_currency(list(totals), lambda t: t.currency):
        amounts = dict.fromkeys((b[0] for b in AGING_BUCKETS), 0)
        for total in of_currency:  # aging_totals gives one per currency; add up if not
            amounts["current"] += total.current_minor
            amounts["1-30"] += total.days_1_30_minor
            amounts["31-60"] += total.days_31_60_minor
            amounts["61-90"] += total.days_61_90_minor
            amounts["90+"] += total.days_over_90_minor
        bars = []
        groups = []
        for slot, (bucket, amount) in enumerate(amounts.items()):
            label = "current" if bucket == "current" else f"{bucket} days"
            groups.append((slot, 1, label))
            if amount != 0:
                tip = f"{label}: {_money(amount, currency)}"
                bars.append(_Bar(slot, *_span(0, amount), bucket, bucket, amount, tip))
        summary = f"{currency}: total due {_money(sum(amounts.values()), currency)}; " + ", ".join(
            f"{bucket} {_money(amount, currency)}" for bucket, amount in amounts.items()
        )
        panels.append(_Panel(currency, len(amounts), bars, groups, summary))
    legend = tuple(
        (bucket, "Current" if bucket == "current" else f"{bucket} days")
        for bucket, _, _ in AGING_BUCKETS
    )
    return _render(title, "aging", "Days past due", legend, panels)


# --- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Bar:
    """One rectangle: from ``low_minor`` to ``high_minor`` in the slot ``slot``."""

    slot: int
    low_minor: int
    high_minor: int
    series: str
    label: str  # the period or bucket, for data-label
    amount_minor: int  # signed, as the tooltip states it
    tooltip: str


@dataclass(frozen=True, slots=True)
class _Panel:
    """One currency's bars, on ``slots`` equal slots; ``groups`` label runs of slots."""

    currency: str
    slots: int
    bars: list[_Bar]
    groups: list[tuple[int, int, str]]  # (first slot, slot count, label)
    summary: str


def _render(
    title: str,
    kind: str,
    x_title: str,
    legend: Sequence[tuple[str, str]],
    panels: list[_Panel],
) -> str:
    """The SVG document of ``panels`` below a legend; a 'no data' document without panels."""
    if not panels:
        return _empty(title, kind)
    height = LEGEND_HEIGHT + PANEL_HEIGHT * len(panels)
    label = f"{title}. " + " ".join(f"{p.summary}." for p in panels)
    out = [_open(kind, height, label), f"<title>{_esc(title)}</title>"]
    out.append(f"<desc>{_esc(label)}</desc>")
    out.append(_legend(legend))
    for index, panel in enumerate(panels):
        out.append(_panel(panel, LEGEND_HEIGHT + index * PANEL_HEIGHT, x_title))
    out.append("</svg>")
    return "\n".join(out)


def _open(kind: str, height: int, label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}"'
        f' role="img" aria-label="{_esc(label)}" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">'
    )


def _empty(title: str, kind: str) -> str:
    """A chart with nothing to draw says so, in the same frame."""
    height = LEGEND_HEIGHT + 60
    label = f"{title}: no data"
    return "\n".join(
        [
            _open(kind, height, label),
            f"<title>{_esc(title)}</title>",
            f"<desc>{_esc(label)}</desc>",
            f'<text class="no-data" x="{WIDTH // 2}" y="{height // 2}"'
            f' text-anchor="middle">No data</text>',
            "</svg>",
        ]
    )


def _legend(legend: Sequence[tuple[str, str]]) -> str:
    out = ['<g class="legend">']
    x = PLOT_LEFT
    for series, name in legend:
        out.append(
            f'<rect x="{x}" y="10" width="12" height="12" fill="{COLOURS[series]}"/>'
            f'<text x="{x + 16}" y="20">{_esc(name)}</text>'
        )
        x += 24 + 7 * len(name)  # a rough text width: enough to keep names apart
    out.append("</g>")
    return "".join(out)


def _panel(panel: _Panel, top: int, x_title: str) -> str:
    """One currency: heading, y axis with amounts at the top, zero and bottom, bars, x labels."""
    currency = panel.currency
    plot_top = top + PLOT_TOP
    plot_height = PANEL_HEIGHT - PLOT_TOP - PLOT_BOTTOM
    plot_width = WIDTH - PLOT_LEFT - PLOT_RIGHT
    high = max([0, *(b.high_minor for b in panel.bars)])
    low = min([0, *(b.low_minor for b in panel.bars)])
    extent = (high - low) or 1  # all zero: bars of no height on the zero line

    def y(amount_minor: int) -> Fraction:
        return plot_top + Fraction((high - amount_minor) * plot_height, extent)

    slot_width = Fraction(plot_width, panel.slots)
    bar_width = min(slot_width * 3 / 4, Fraction(_BAR_WIDTH_MAX))
    out = [f'<g class="panel" data-currency="{_esc(currency)}">']
    out.append(
        f'<text class="panel-title" x="{PLOT_LEFT}" y="{top + 18}" font-weight="bold">'
        f"{_esc(currency)}</text>"
    )
    # y axis: the top, zero and the bottom of the scale, each labelled with its exact amount
    # (an extreme too close to the zero line keeps its grid line but not its label)
    for amount in sorted({high, 0, low}, reverse=True):
        line_y = _n(y(amount))
        stroke = "#333333" if amount == 0 else "#dddddd"
        out.append(
            f'<line x1="{PLOT_LEFT}" x2="{WIDTH - PLOT_RIGHT}" y1="{line_y}" y2="{line_y}"'
            f' stroke="{stroke}"/>'
        )
        if amount == 0 or abs(y(amount) - y(0)) >= _LABEL_GAP:
            out.append(
                f'<text class="y-label" x="{PLOT_LEFT - 6}" y="{line_y}" text-anchor="end"'
                f' dominant-baseline="middle">'
                f"{_esc(format_amount(amount, currency, grouped=True))}</text>"
            )
    middle = _n(Fraction(plot_top) + Fraction(plot_height, 2))
    out.append(
        f'<text class="axis-title" x="14" y="{middle}" text-anchor="middle"'
        f' transform="rotate(-90 14 {middle})">Amount ({_esc(currency)})</text>'
    )
    for bar in panel.bars:
        bar_x = PLOT_LEFT + slot_width * bar.slot + (slot_width - bar_width) / 2
        bar_top = y(bar.high_minor)
        out.append(
            f'<rect class="bar bar-{_esc(bar.series)}" x="{_n(bar_x)}" y="{_n(bar_top)}"'
            f' width="{_n(bar_width)}" height="{_n(y(bar.low_minor) - bar_top)}"'
            f' fill="{COLOURS[bar.series]}" data-series="{_esc(bar.series)}"'
            f' data-label="{_esc(bar.label)}" data-amount-minor="{bar.amount_minor}">'
            f"<title>{_esc(bar.tooltip)}</title></rect>"
        )
    label_y = plot_top + plot_height + 16
    turned = len(panel.groups) > _UPRIGHT_LABELS_MAX
    for first, count, text in panel.groups:
        centre = _n(PLOT_LEFT + slot_width * first + slot_width * count / 2)
        if turned:
            out.append(
                f'<text class="x-label" x="{centre}" y="{label_y}" text-anchor="end"'
                f' transform="rotate(-45 {centre} {label_y})">{_esc(text)}</text>'
            )
        else:
            out.append(
                f'<text class="x-label" x="{centre}" y="{label_y}" text-anchor="middle">'
                f"{_esc(text)}</text>"
            )
    out.append(
        f'<text class="axis-title" x="{PLOT_LEFT + plot_width // 2}"'
        f' y="{top + PANEL_HEIGHT - 6}" text-anchor="middle">{_esc(x_title)}</text>'
    )
    out.append("</g>")
    return "".join(out)


# --- helpers ---------------------------------------------------------------------------------


def _waterfall_periods(
    rows: Iterable[WaterfallRow] | Iterable[WaterfallPeriod],
) -> list[WaterfallPeriod]:
    """Per-contract rows summed per currency and period; per-period rows as they are."""
    items = list(rows)
    if items and all(isinstance(r, WaterfallRow) for r in items):
        return waterfall_by_period(items)
    if not all(isinstance(r, WaterfallPeriod) for r in items):
        raise TypeError("waterfall_svg takes WaterfallRow or WaterfallPeriod rows, not a mix")
    return sorted(items, key=lambda p: (p.currency, p.period))


def _by_currency(items, currency_of) -> list[tuple[str, list]]:
    """``items`` grouped by currency, currencies sorted, order within each kept."""
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(currency_of(item), []).append(item)
    return sorted(groups.items())


def _stacked(slot: int, period: str, currency: str, parts) -> list[_Bar]:
    """Bars of ``parts`` stacked in one slot: positive parts up from zero, negative down."""
    above = below = 0
    bars = []
    for series, amount in parts:
        if amount == 0:
            continue
        if amount > 0:
            low, high, above = above, above + amount, above + amount
        else:
            low, high, below = below + amount, below, below + amount
        tip = f"{period} {series}: {_money(amount, currency)}"
        bars.append(_Bar(slot, low, high, series, period, amount, tip))
    return bars


def _span(a: int, b: int) -> tuple[int, int]:
    """(low, high) of the bar between two levels."""
    return (a, b) if a <= b else (b, a)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _money(amount_minor: int, currency: str) -> str:
    return f"{format_amount(amount_minor, currency, grouped=True)} {currency}"


def _n(value: Fraction | int) -> str:
    """A coordinate rounded half up to hundredths of a pixel (exact until written)."""
    hundredths = int((Fraction(value) * 100 + Fraction(1, 2)) // 1)
    sign = "-" if hundredths < 0 else ""
    whole, part = divmod(abs(hundredths), 100)
    return f"{sign}{whole}.{part:02d}" if part else f"{sign}{whole}"


def _esc(text: str) -> str:
    """Text and attribute values escaped for XML (quotes too)."""
    return html.escape(str(text), quote=True)
