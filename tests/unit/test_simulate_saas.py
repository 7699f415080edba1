"""The simulated SaaS company: deterministic, posted whole by the engine, and believable.

Features are counted here from the records themselves (what an accountant would see in
them), not from the generator's own counters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.simulation.contracts import month_ends
from connectors.simulation.saas import CLOCKS, Simulation, simulate_company
from ledger.accounts import Account, Side
from ledger.events import (
    ClockAdvanced,
    CreditNoteIssued,
    DisputeClosed,
    InvoiceIssued,
    PaymentFailed,
    PaymentSettled,
    PeriodClosed,
)
from revenue.events import ContractAmended, ContractBooked
from revenue.replay import EngineReplay, replay_all
from streams.serde import Codec
from streams.simulate import ProgressBar, add_simulate_commands, main_simulate

SEED = 7
HOLD_TIMEOUT_DAYS = 7  # the worker's default


@pytest.fixture(scope="module")
def company() -> Simulation:
    return simulate_company(customers=100, months=12, seed=SEED)


@pytest.fixture(scope="module")
def replayed(company: Simulation) -> EngineReplay:
    return replay_all(company.reference, company.records, hold_timeout_days=HOLD_TIMEOUT_DAYS)


def _encoded(simulation: Simulation) -> list[bytes]:
    codec = Codec()
    return [codec.encode(record) for record in [*simulation.reference, *simulation.records]]


def _nothing_refused(result: EngineReplay) -> None:
    assert result.rejected == []
    assert result.rejected_holds == []
    assert result.expired == []
    assert result.refused == []
    assert [cid for cid, books in result.books.items() if books.ledger.held] == []


def _deferred(entries) -> dict[tuple[str, str], list[int]]:
    """Deferred revenue per (entity, currency): credit balance in both amounts."""
    balances: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for entry in entries:
        for line in entry.lines:
            if line.account is Account.deferred_revenue:
                sign = 1 if line.side is Side.credit else -1
                balance = balances[entry.entity, line.currency]
                balance[0] += sign * line.amount_minor
                balance[1] += sign * line.functional_amount_minor
    return balances


def _debit_balances(balances: dict[tuple[str, str], list[int]]) -> dict:
    return {key: value for key, value in balances.items() if min(value) < 0}


# --- determinism --------------------------------------------------------------------------


def test_same_seed_gives_same_avro_bytes_when_simulated_twice():
    first = _encoded(simulate_company(customers=12, months=4, seed=3))
    assert first == _encoded(simulate_company(customers=12, months=4, seed=3))
    assert first != _encoded(simulate_company(customers=12, months=4, seed=4))


def test_clock_cadence_changes_only_the_ticks_when_daily_instead_of_monthly():
    monthly = simulate_company(customers=20, months=3, seed=5, clock="monthly")
    daily = simulate_company(customers=20, months=3, seed=5, clock="daily")

    def others(simulation: Simulation) -> list:
        return [r for r in simulation.records if not isinstance(r, ClockAdvanced)]

    assert others(daily) == others(monthly)
    ticks = [r.business_date for r in daily.records if isinstance(r, ClockAdvanced)]
    assert ticks == [daily.start + dt.timedelta(n) for n in range(len(ticks))]
    assert ticks[-1] == daily.end == dt.date(2024, 3, 31)


def test_bad_arguments_are_refused_when_counts_or_clock_are_wrong():
    with pytest.raises(ValueError, match="at least 1"):
        simulate_company(customers=0, months=12, seed=1)
    with pytest.raises(ValueError, match="clock must be one of"):
        simulate_company(customers=1, months=1, seed=1, clock="hourly")


# --- the engine posts it all --------------------------------------------------------------


def test_replay_posts_every_event_when_the_whole_stream_is_replayed(company, replayed):
    _nothing_refused(replayed)
    assert replayed.clock == company.end
    customer_events = [r for r in company.records if not isinstance(r, ClockAdvanced)]
    customer_events = [r for r in customer_events if not isinstance(r, PeriodClosed)]
    seen = {eid for books in replayed.books.values() for eid in books.ledger.seen}
    assert {e.event_id for e in customer_events} <= seen
    assert len(replayed.entries) > len({e.event_id for e in customer_events})


def test_trial_balance_is_zero_per_entity_and_currency_when_every_entry_balances(replayed):
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for entry in replayed.entries:
        per_entry: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for line in entry.lines:
            sign = 1 if line.side is Side.debit else -1
            for total in (per_entry[line.currency], totals[entry.entity, line.currency]):
                total[0] += sign * line.amount_minor
                total[1] += sign * line.functional_amount_minor
        assert all(value == [0, 0] for value in per_entry.values()), entry.entry_id
    assert set(totals) == {("US1", "USD"), ("US1", "EUR"), ("EU1", "EUR")}
    assert all(value == [0, 0] for value in totals.values())


def test_deferred_revenue_is_never_a_debit_balance_when_a_month_end_tick_has_run(company, replayed):
    entries = replayed.entries
    first_at: dict[str, int] = {}
    for position, record in enumerate(company.records):
        first_at.setdefault(record.event_id, position)
    # A recognition entry's source is "<tick id>/<customer>".
    emitted_from = [first_at[entry.source_event_id.split("/")[0]] for entry in entries]
    ticks = [(n, r) for n, r in enumerate(company.records) if isinstance(r, ClockAdvanced)]
    assert [tick.business_date for _, tick in ticks] == month_ends(company.start, 12)
    for position, tick in ticks:
        # What the engine had posted when the tick was done: nothing waits across a tick,
        # so the entries sourced up to the tick are exactly those emitted by then.
        posted = sum(1 for at in emitted_from if at <= position)
        assert max(at for at in emitted_from[:posted]) <= position
        assert _debit_balances(_deferred(entries[:posted])) == {}, tick.business_date
        # The accountant's view: balances as of the month end, by posting date.
        as_of = [e for e in entries if e.posting_date <= tick.business_date]
        assert _debit_balances(_deferred(as_of)) == {}, tick.business_date
    assert all(value[0] > 0 for value in _deferred(entries).values())


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
@given(
    seed=st.integers(0, 2**32),
    customers=st.integers(1, 6),
    months=st.integers(1, 5),
    clock=st.sampled_from(CLOCKS),
    start=st.dates(dt.date(2023, 1, 1), dt.date(2026, 12, 31)),
)
def test_any_small_company_is_posted_whole_when_it_starts_on_any_day(
    seed, customers, months, clock, start
):
    simulation = simulate_company(customers, months, seed, clock, start)
    result = replay_all(simulation.reference, simulation.records, hold_timeout_days=7)
    _nothing_refused(result)
    for month_end in month_ends(start, months):
        as_of = [e for e in result.entries if e.posting_date <= month_end]
        assert _debit_balances(_deferred(as_of)) == {}, month_end


# --- a believable company -----------------------------------------------------------------


def _features(simulation: Simulation) -> Counter[str]:
    """Business features counted from the records (first deliveries only)."""
    found: Counter[str] = Counter()
    first: dict[str, object] = {}
    invoices: dict[str, InvoiceIssued] = {}
    failed: set[str] = set()
    totals: dict[str, int] = {}
    closed: set[tuple[str, str]] = set()
    for record in simulation.records:
        if record.event_id in first:
            found["redelivered"] += 1
            continue
        first[record.event_id] = record
        found[record.schema_name] += 1
        found[f"entity {getattr(record, 'entity', '-')}"] += 1
        if isinstance(record, PeriodClosed):
            closed.add((record.entity, record.period))
        elif isinstance(record, ContractBooked):
            totals[record.contract_id] = record.total_price_minor
            patterns = {o.pattern for o in record.obligations}
            found["one-off service"] += "point_in_time" in patterns
            found["usage obligation"] += "usage" in patterns
            ends = [o.service_end for o in record.obligations if o.pattern.startswith("ratable")]
            days = [(end - record.booking_date).days for end in ends if end is not None]
            found["annual plan"] += any(days_ > 300 for days_ in days)
            found["monthly plan"] += any(days_ < 32 for days_ in days)
        elif isinstance(record, ContractAmended):
            before = totals[record.contract_id]
            totals[record.contract_id] = record.total_price_minor
            found["upgrade" if record.total_price_minor > before else "downgrade"] += 1
        elif isinstance(record, InvoiceIssued):
            invoices[record.invoice_id] = record
            found["taxed invoice"] += bool(record.tax_lines)
            found["proration line"] += any(
                line.description.startswith("Proration") for line in record.lines
            )
            found["usage line"] += any(line.product_id == "API" for line in record.lines)
        elif isinstance(record, CreditNoteIssued):
            found[f"credit {record.applies_to}"] += 1
            found["taxed credit note"] += bool(record.tax_lines)
        elif isinstance(record, PaymentFailed):
            failed.update(record.invoice_ids)
        elif isinstance(record, PaymentSettled):
            _payment_features(record, invoices, failed, closed, found)
        elif isinstance(record, DisputeClosed):
            found[f"dispute {record.outcome}"] += 1
    return found


def _payment_features(
    payment: PaymentSettled,
    invoices: dict[str, InvoiceIssued],
    failed: set[str],
    closed: set[tuple[str, str]],
    found: Counter[str],
) -> None:
    invoice_id = payment.applications[0].invoice_id
    invoice = invoices.get(invoice_id)
    found["payment before its invoice"] += invoice is None
    found["retried after failing"] += invoice_id in failed
    found["overpaid"] += payment.amount_minor > sum(a.amount_minor for a in payment.applications)
    found["late"] += invoice is not None and payment.settled_date > invoice.due_date
    period = f"{payment.settled_date:%Y-%m}"
    found["arrived after its month closed"] += (payment.entity, period) in closed


def test_every_business_feature_occurs_when_100_customers_run_12_months(company):
    found = _features(company)
    expected = [
        "ContractAmended",
        "upgrade",
        "downgrade",
        "proration line",
        "UsageRecorded",
        "usage line",
        "one-off service",
        "annual plan",
        "monthly plan",
        "PaymentFailed",
        "retried after failing",
        "late",
        "overpaid",
        "RefundIssued",
        "credit remaining_service",
        "credit past_service",
        "dispute won",
        "dispute lost",
        "ContractCancelled",
        "InvoiceWrittenOff",
        "PayoutPaid",
        "entity EU1",
        "entity US1",
        "taxed invoice",
        "taxed credit note",
        "redelivered",
        "payment before its invoice",
        "arrived after its month closed",
    ]
    assert [name for name in expected if found[name] == 0] == []
    assert found["PeriodClosed"] == 2 * 11  # both entities close each month but the last
    assert found["ClockAdvanced"] == 12
    assert found["CustomerUpserted"] == 100
    print(dict(sorted(found.items())))


def test_five_hundred_customers_over_twelve_months_generate_more_than_ten_thousand_events():
    # How fast is for the benchmarks (never a timed test: CI machines are shared).
    simulation = simulate_company(customers=500, months=12, seed=SEED)
    assert len(simulation) > 10_000


# --- revledger simulate --out, and progress -----------------------------------------------


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_simulate_commands(parser.add_subparsers(dest="command"))
    return main_simulate(parser.parse_args(["simulate", *argv]))


def test_out_writes_the_same_bytes_when_run_twice_with_the_same_seed(tmp_path, capsys):
    paths = [tmp_path / name for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    for path, seed in zip(paths, ("11", "11", "12"), strict=True):
        assert _run("--customers", "15", "--months", "3", "--seed", seed, "--out", str(path)) == 0
    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]
    assert digests[0] == digests[1] != digests[2]
    lines = [json.loads(line) for line in paths[0].read_text().splitlines()]
    simulation = simulate_company(customers=15, months=3, seed=11)
    assert len(lines) == len(simulation.reference) + len(simulation.records)
    assert [line["record"]["event_id"] for line in lines] == [
        r.event_id for r in [*simulation.reference, *simulation.records]
    ]
    by_type = {line["type"]: line for line in lines}
    assert by_type["ClockAdvanced"]["topic"] == "control.v1"
    assert by_type["ClockAdvanced"]["key"] is None
    invoice = by_type["InvoiceIssued"]
    assert invoice["topic"] == "billing.events.v1"
    assert invoice["key"] == invoice["record"]["customer_id"]
    assert "wrote" in capsys.readouterr().out


def test_simulate_exits_2_with_a_message_when_arguments_are_wrong(tmp_path, capsys):
    assert _run("--customers", "0", "--out", str(tmp_path / "x.jsonl")) == 2
    assert _run("--start", "2024-13-01", "--out", str(tmp_path / "x.jsonl")) == 2
    assert _run("--paced", "--out", str(tmp_path / "x.jsonl")) == 2
    errors = capsys.readouterr().err
    assert "at least 1" in errors and "month must be in 1..12" in errors
    assert "--paced goes with --to-kafka" in errors
    assert not (tmp_path / "x.jsonl").exists()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_a_line_every_ten_percent_when_not_a_terminal():
    stream = io.StringIO()
    bar = ProgressBar(stream)
    for done in range(1, 1001):
        bar(done, 1000)
    lines = stream.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == [f"{p}%" for p in range(10, 101, 10)]


def test_progress_redraws_one_bar_when_a_terminal():
    stream = _Terminal()
    bar = ProgressBar(stream)
    for done in range(1, 401):
        bar(done, 400)
    text = stream.getvalue()
    assert text.count("\r") == 100 and text.endswith("100% 400/400\n")
    assert "[" + "#" * 30 + "]" in text
