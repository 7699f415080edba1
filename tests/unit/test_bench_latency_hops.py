"""The latency phase's per-hop figures (``benchmarks.pipeline.Latency``): pure, no broker."""

from __future__ import annotations

import pytest

from benchmarks.pipeline import Latency


def test_the_summary_gives_each_hop_its_own_quantiles() -> None:
    phase = Latency(offered_rate=50.0, events=3, seconds=1.0)
    phase.latencies = [0.30, 0.50, 1.10]
    phase.sequencer = [0.10, 0.20, 0.90]
    phase.ledger = [0.20, 0.30, 0.20]
    summary = phase.summary()
    assert summary["p50"] == pytest.approx(0.50)
    assert summary["sequencer_p50"] == pytest.approx(0.20)
    assert summary["ledger_p50"] == pytest.approx(0.20)
    assert summary["sequencer_p99"] == pytest.approx(0.20 + 0.70 * 0.98)
    assert summary["ledger_p99"] == pytest.approx(0.20 + 0.10 * 0.98)
    assert phase.describe() == (
        "p50/p99 0.50/1.09 s; sequencer hop 0.20/0.89 s; ledger hop 0.20/0.30 s"
    )


def test_without_hop_samples_only_the_totals_are_given() -> None:
    phase = Latency(offered_rate=50.0, events=1, seconds=1.0, latencies=[0.4])
    assert set(phase.summary()) == {"p50", "p90", "p99", "max"}
    assert phase.describe() == "p50/p99 0.40/0.40 s"
    assert Latency(offered_rate=1.0, events=0, seconds=1.0).describe() == "no event matched"
