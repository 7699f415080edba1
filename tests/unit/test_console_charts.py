"""The console's SVG charts: well-formed, proportional, signed, per currency, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from fractions import Fraction

import pytest

from connectors.postgres.queries import AgingTotal, RollforwardRow, WaterfallPeriod, WaterfallRow
from streams.console.charts import aging_svg, rollforward_svg, waterfall_svg

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    """The document parsed strictly (raises on anything not well-formed XML)."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def bars(root: ET.Element, currency: str | None = None) -> list[ET.Element]:
    """The bars of one currency's panel (or of all panels)."""
    panels = [
        g
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "panel" and currency in (None, g.get("data-currency"))
    ]
    return [r for g in panels for r in g.iter(f"{SVG}rect") if "bar" in r.get("class", "")]


def height(bar: ET.Element) -> Fraction:
    return Fraction(bar.get("height"))


def top(bar: ET.Element) -> Fraction:
    return Fraction(bar.get("y"))


def close(a: Fraction, b: Fraction) -> bool:
    """Equal but for the rounding of each written coordinate to hundredths of a pixel."""
    return abs(a - b) <= Fraction(2, 100)


def tooltip(bar: ET.Element) -> str:
    return bar.find(f"{SVG}title").text


def rollforward_row(period: str, opening: int, billings: int, recognised: int, adjustments: int):
    closing = opening + billings - recognised + adjustments
    return RollforwardRow(
        "USD", "USD", period, opening, billings, recognised, adjustments, closing, 0,
        opening, billings, recognised, adjustments, closing,
    )  # fmt: skip


def test_waterfall_bars_are_proportional_to_their_amounts_when_drawn():
    root = parse(
        waterfall_svg(
            [
                WaterfallPeriod("USD", "2026-01", 120_000, 0),
                WaterfallPeriod("USD", "2026-02", 40_000, 0),
                WaterfallPeriod("USD", "2026-03", 0, 30_001),
            ]
        )
    )
    drawn = bars(root)
    assert [(b.get("data-label"), b.get("data-series")) for b in drawn] == [
        ("2026-01", "recognised"),
        ("2026-02", "recognised"),
        ("2026-03", "scheduled"),
    ]
    amounts = [int(b.get("data-amount-minor")) for b in drawn]
    assert amounts == [120_000, 40_000, 30_001]
    # hundredths of a pixel are the only rounding: ratios hold to that precision
    for bar, amount in zip(drawn, amounts, strict=True):
        expected = height(drawn[0]) * amount / 120_000
        assert abs(height(bar) - expected) <= Fraction(1, 100)
    assert close(height(drawn[0]), 3 * height(drawn[1]))
    # every bar stands on the same zero line
    assert len({top(b) + height(b) for b in drawn}) == 1
    assert tooltip(drawn[0]) == "2026-01 recognised: 1,200.00 USD"


def test_waterfall_sums_contract_rows_per_period_when_given_query_rows():
    rows = [
        WaterfallRow("recognised", "USD", "2026-01", "C1", "K1", 10_000),
        WaterfallRow("recognised", "USD", "2026-01", "C2", "K2", 5_000),
        WaterfallRow("scheduled", "USD", "2026-02", "C1", "K1", 7_500),
    ]
    drawn = bars(parse(waterfall_svg(rows)))
    assert [(b.get("data-label"), int(b.get("data-amount-minor"))) for b in drawn] == [
        ("2026-01", 15_000),
        ("2026-02", 7_500),
    ]
    with pytest.raises(TypeError):
        waterfall_svg([rows[0], WaterfallPeriod("USD", "2026-01", 1, 0)])


def test_waterfall_draws_a_net_reversal_below_the_zero_line_when_negative():
    root = parse(
        waterfall_svg(
            [
                WaterfallPeriod("USD", "2026-01", 30_000, 0),
                WaterfallPeriod("USD", "2026-02", -10_000, 20_000),
            ]
        )
    )
    first, reversal, scheduled = bars(root)
    zero_line = top(first) + height(first)
    assert top(reversal) == zero_line  # hangs down from zero
    assert close(height(reversal) * 3, height(first))
    assert top(scheduled) + height(scheduled) == zero_line  # positive part stacks up from zero
    assert close(height(scheduled) * 3, height(first) * 2)
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert labels == ["300.00", "0.00", "-100.00"]
    assert tooltip(reversal) == "2026-02 recognised: -100.00 USD"


def test_each_currency_has_its_own_panel_and_scale_when_several():
    root = parse(
        waterfall_svg(
            [
                WaterfallPeriod("USD", "2026-01", 100, 0),
                WaterfallPeriod("JPY", "2026-01", 1_000_000, 0),
            ]
        )
    )
    panels = [g.get("data-currency") for g in root.iter(f"{SVG}g") if g.get("class") == "panel"]
    assert panels == ["JPY", "USD"]
    # each currency's largest bar fills its own panel: never added up, never on one scale
    assert height(bars(root, "USD")[0]) == height(bars(root, "JPY")[0])


def test_amounts_show_no_decimals_when_the_currency_has_none():
    root = parse(
        aging_svg([AgingTotal("JPY", 1_234_567, 0, 89, 0, -5)]),
    )
    drawn = bars(root, "JPY")
    assert [tooltip(b) for b in drawn] == [
        "current: 1,234,567 JPY",
        "31-60 days: 89 JPY",
        "90+ days: -5 JPY",
    ]
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert labels[0] == "1,234,567"
    assert "total due 1,234,651 JPY" in root.get("aria-label")


def test_aging_bars_are_proportional_and_empty_buckets_are_labelled_when_some_are_zero():
    root = parse(aging_svg([AgingTotal("EUR", 50_000, 25_000, 0, 0, 12_500)]))
    current, days_1_30, over_90 = bars(root)
    assert close(height(current), 2 * height(days_1_30))
    assert close(height(current), 4 * height(over_90))
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert labels == ["current", "1-30 days", "31-60 days", "61-90 days", "90+ days"]
    assert [b.get("data-series") for b in (current, days_1_30, over_90)] == [
        "current",
        "1-30",
        "90+",
    ]


def test_rollforward_bridges_each_balance_to_the_next_when_drawn():
    rows = [
        rollforward_row("2026-01", 0, 120_000, 10_000, 0),
        rollforward_row("2026-02", 110_000, 0, 10_000, -5_000),
    ]
    root = parse(rollforward_svg(rows))
    drawn = {(b.get("data-label"), b.get("data-series")): b for b in bars(root)}
    assert list(drawn) == [
        ("2026-01", "billings"),
        ("2026-01", "recognised-rf"),
        ("2026-01", "closing"),
        ("2026-02", "recognised-rf"),
        ("2026-02", "adjustments"),
        ("2026-02", "closing"),
    ]  # zero movements and the zero opening draw nothing
    billings = drawn["2026-01", "billings"]
    unit = height(billings) / 120_000  # pixels per minor unit
    zero_line = top(billings) + height(billings)
    recognised = drawn["2026-01", "recognised-rf"]
    assert close(height(recognised), 10_000 * unit)
    assert top(recognised) == top(billings)  # hangs down from the balance after billings
    closing = drawn["2026-01", "closing"]
    assert close(top(closing), zero_line - 110_000 * unit)
    assert close(height(closing), 110_000 * unit)
    adjustment = drawn["2026-02", "adjustments"]
    assert close(top(adjustment), zero_line - 100_000 * unit)
    assert close(height(adjustment), 5_000 * unit)
    assert int(drawn["2026-02", "recognised-rf"].get("data-amount-minor")) == -10_000
    assert tooltip(recognised) == (
        "2026-01 recognised: 100.00 USD (deferred revenue 1,200.00 USD → 1,100.00 USD)"
    )
    assert "closing 2026-02 950.00 USD" in root.get("aria-label")


def test_rollforward_starts_with_the_opening_balance_when_not_zero():
    root = parse(rollforward_svg([rollforward_row("2026-03", 40_000, 10_000, 0, 0)]))
    opening, billings, closing = bars(root)
    assert opening.get("data-series") == "opening"
    assert close(height(opening) * 5, height(closing) * 4)
    assert top(billings) == top(closing)


@pytest.mark.parametrize(
    ("chart", "empty"),
    [(waterfall_svg, []), (rollforward_svg, []), (aging_svg, [])],
)
def test_chart_says_no_data_when_there_are_no_rows(chart, empty):
    root = parse(chart(empty))
    assert bars(root) == []
    assert [t.text for t in root.iter(f"{SVG}text")] == ["No data"]
    assert root.get("aria-label").endswith(": no data")
    assert root.get("role") == "img"


def test_all_zero_amounts_draw_flat_bars_when_nothing_is_due():
    root = parse(aging_svg([AgingTotal("USD", 0, 0, 0, 0, 0)]))
    assert bars(root) == []
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "y-label"]
    assert labels == ["0.00"]


def test_hostile_text_is_escaped_when_it_reaches_the_chart():
    hostile = '</text><script>alert("x")</script>&amp;\'"'
    svg = waterfall_svg(
        [WaterfallPeriod("USD", hostile, 100, 0)],
        title=f"Revenue of {hostile}",
    )
    root = parse(svg)  # still one well-formed document
    assert "<script" not in svg
    assert list(root.iter(f"{SVG}script")) == []
    assert root.find(f"{SVG}title").text == f"Revenue of {hostile}"
    (bar,) = bars(root)
    assert bar.get("data-label") == hostile
    assert tooltip(bar) == f"{hostile} recognised: 1.00 USD"
    assert hostile in root.get("aria-label")
    for chart in (
        aging_svg([AgingTotal("USD", 1, 0, 0, 0, 0)], title=hostile),
        rollforward_svg([rollforward_row(hostile, 0, 5, 0, 0)], title=hostile),
        aging_svg([], title=hostile),
    ):
        assert parse(chart).find(f"{SVG}title").text == hostile
        assert "<script" not in chart


@pytest.mark.parametrize(
    "svg",
    [
        waterfall_svg([WaterfallPeriod("USD", "2026-01", 1, 0)]),
        rollforward_svg([rollforward_row("2026-01", 0, 1, 0, 0)]),
        aging_svg([AgingTotal("USD", 1, 0, 0, 0, 0)]),
    ],
)
def test_chart_is_accessible_when_drawn(svg):
    root = parse(svg)
    assert root.get("role") == "img"
    assert root.get("aria-label")
    assert root.find(f"{SVG}title").text
    assert root.find(f"{SVG}desc").text == root.get("aria-label")
    assert all(tooltip(b) for b in bars(root))
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")]
    titles = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "axis-title"]
    assert titles[0] == "Amount (USD)"
    assert len(titles) == 2


def test_many_periods_turn_their_labels_when_they_would_overlap():
    periods = [WaterfallPeriod("USD", f"2026-{m:02d}", m, 0) for m in range(1, 13)]
    upright = parse(waterfall_svg(periods))
    more = [*periods, WaterfallPeriod("USD", "2027-01", 13, 0)]
    turned = parse(waterfall_svg(more))

    def rotations(root):
        return [t.get("transform") for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]

    assert rotations(upright) == [None] * 12
    assert all(r.startswith("rotate(-45") for r in rotations(turned))
