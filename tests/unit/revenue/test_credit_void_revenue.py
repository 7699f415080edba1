"""Credit note voids in the revenue engine: the schedule and revenue as if never credited."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from connectors.simulation.builders import (
    CUSTOMER,
    base_records,
    clock,
    contract,
    credit_note,
    credit_note_void,
    invoice,
    obligation,
    write_off,
)
from ledger.events import Event, ReferenceRecord
from ledger.results import EntryStatus
from revenue.codec import book_from_json, book_to_json
from revenue.replay import EngineReplay, replay_all

D = dt.date
YEAR = (D(2024, 1, 1), D(2024, 12, 31))


def month_end(year: int, month: int):
    """A clock tick on the last day of ``month``."""
    after = D(year + month // 12, month % 12 + 1, 1)
    return clock(after - dt.timedelta(days=1))


def ticks(first: int, last: int) -> list:
    """Month-end ticks of 2024 from month ``first`` to ``last``."""
    return [month_end(2024, month) for month in range(first, last + 1)]


def run(records: Iterable[Event | ReferenceRecord]) -> EngineReplay:
    """Replay after the base reference records."""
    return replay_all(base_records(), list(records))


def nets(result: EngineReplay) -> dict:
    """Net balances per (entity, account, currency), both amounts, zeros left out."""
    state = result.books[CUSTOMER].ledger
    out = {}
    for (entity, account, currency), balance in state.balances.items():
        pair = (balance.net_minor(account), balance.functional_net_minor(account))
        if pair != (0, 0):
            out[(entity, str(account), currency)] = pair
    return out


def obligations(result: EngineReplay) -> dict:
    """(segments, recognised, recognised through, open credits) per obligation."""
    revenue = result.books[CUSTOMER].revenue
    return {
        (contract_id, obligation_id): (
            o.segments,
            o.recognized_minor,
            o.recognized_through,
            o.credits,
        )
        for contract_id, c in revenue.contracts.items()
        for obligation_id, o in c.obligations.items()
    }


def subscription(*middle: Event, last_month: int = 12) -> EngineReplay:
    """K1: 1,200.00 over 2024 by day, billed on 1 January; ``middle`` between ticks."""
    booked = [
        contract("K1", 1200_00, [obligation("OB-1", 1200_00, *YEAR)], on=YEAR[0]),
        invoice("INV-1", lines=[("SUB", 1200_00)], obligations=["OB-1"], on=YEAR[0]),
    ]
    records: list = [*booked]
    month = 1
    for event in middle:
        while month_end(2024, month).business_date < business_day(event):
            records.append(month_end(2024, month))
            month += 1
        records.append(event)
    records += ticks(month, last_month)
    result = run(records)
    assert result.rejected == [] and result.refused == []
    return result


def business_day(event: Event) -> dt.date:
    """The business date of a credit note or its void."""
    return getattr(event, "issue_date", None) or event.void_date


CREDIT = credit_note("CN-1", "INV-1", lines=[("INV-1-L1", 300_00)], on=D(2024, 4, 15))
VOID = credit_note_void("CN-1", "INV-1", on=D(2024, 6, 10))


def test_credit_then_void_leaves_the_books_of_the_invoice_alone():
    alone = subscription()
    voided = subscription(CREDIT, VOID)
    assert nets(voided) == nets(alone)
    assert obligations(voided) == obligations(alone)
    assert voided.books[CUSTOMER].ledger.billed_by_contract == {"K1": 1200_00}
    assert voided.books[CUSTOMER].revenue.contracts["K1"].billed_through(D(2024, 12, 31)) == 1200_00


def test_void_restores_the_schedule_at_once_and_the_next_tick_catches_up():
    alone = subscription(last_month=6)
    voided = subscription(CREDIT, VOID, last_month=6)
    # Through June the books agree again: what the lowered schedule did not earn from
    # 15 April to 9 June is caught up in June, marked with what changed.
    assert nets(voided) == nets(alone)
    assert obligations(voided) == obligations(alone)
    catch_up = [e for e in voided.entries if e.rule == "revenue_catch_up"]
    assert [e.period for e in catch_up] == ["2024-06"]
    assert catch_up[0].lines[0].dimension("change") == "credit_note_void:CN-1"
    [void_entry] = [e for e in voided.entries if e.rule == "credit_note_voided"]
    [credit_entry] = [e for e in voided.entries if e.rule == "credit_note"]
    assert [(str(x.account), str(x.side), x.amount_minor) for x in void_entry.lines] == [
        ("deferred_revenue", "credit", 300_00),
        ("accounts_receivable", "debit", 300_00),
    ]
    assert credit_entry.period == "2024-04" and void_entry.period == "2024-06"


def test_void_of_a_past_service_credit_recognises_the_reversed_revenue_again():
    outage = credit_note(
        "CN-1", "INV-1", lines=[("INV-1-L1", 50_00)], on=D(2024, 4, 15), applies_to="past_service"
    )
    alone = subscription()
    voided = subscription(outage, VOID)
    [void_entry] = [e for e in voided.entries if e.rule == "credit_note_voided"]
    assert [(str(x.account), str(x.side), x.amount_minor) for x in void_entry.lines] == [
        ("contra_revenue", "credit", 50_00),
        ("accounts_receivable", "debit", 50_00),
    ]
    assert nets(voided) == nets(alone)
    assert obligations(voided) == obligations(alone)


def test_credit_notes_are_voided_last_in_first_out():
    second = credit_note("CN-2", "INV-1", lines=[("INV-1-L1", 100_00)], on=D(2024, 5, 2))
    refused = run(
        [
            contract("K1", 1200_00, [obligation("OB-1", 1200_00, *YEAR)], on=YEAR[0]),
            invoice("INV-1", lines=[("SUB", 1200_00)], obligations=["OB-1"], on=YEAR[0]),
            CREDIT,
            second,
            VOID,
        ]
    )
    [(event, status, message)] = refused.rejected
    assert (event.event_id, status) == (VOID.event_id, EntryStatus.credit_note_schedule_changed)
    assert "credit_note:CN-2" in message and "void the later credit notes first" in message
    void_second = credit_note_void("CN-2", "INV-1", on=D(2024, 6, 5))
    alone = subscription()
    both = subscription(CREDIT, second, void_second, VOID)
    assert nets(both) == nets(alone)
    assert obligations(both) == obligations(alone)


def test_void_of_a_credit_on_an_invoice_without_contract_restores_its_implied_contract():
    def implied(*events: Event) -> EngineReplay:
        bill = invoice(
            "INV-9",
            lines=[("SUB", 600_00)],
            on=D(2024, 1, 1),
            service=(D(2024, 1, 1), D(2024, 6, 30)),
        )
        result = run([bill, *events, *ticks(1, 7)])
        assert result.rejected == []
        return result

    credit = credit_note("CN-9", "INV-9", lines=[("INV-9-L1", 60_00)], on=D(2024, 1, 20))
    void = credit_note_void("CN-9", "INV-9", on=D(2024, 1, 25))
    assert nets(implied(credit, void)) == nets(implied())
    assert obligations(implied(credit, void)) == obligations(implied())


def test_revenue_book_keeps_open_credits_through_its_json():
    result = subscription(CREDIT, last_month=5)
    book = result.books[CUSTOMER].revenue
    [record] = book.contracts["K1"].obligations["OB-1"].credits
    assert (record.credit_note_id, record.spread_minor, record.now_minor) == ("CN-1", 300_00, 0)
    assert book_from_json(book_to_json(book)) == book
    # A book without open credits keeps the bytes it had before credits were kept.
    assert b'"credits"' not in book_to_json(subscription().books[CUSTOMER].revenue)


def test_void_that_arrives_before_its_credit_note_waits_and_then_undoes_it():
    alone = subscription()
    early = subscription(VOID.model_copy(update={"void_date": D(2024, 4, 10)}), CREDIT)
    held = [e for e in early.entries if e.rule == "credit_note_voided"]
    assert len(held) == 1 and held[0].period == "2024-04"
    assert nets(early) == nets(alone)
    assert obligations(early) == obligations(alone)


def test_void_after_the_invoice_was_written_off_is_refused_naming_the_write_off():
    result = run(
        [
            contract("K1", 1200_00, [obligation("OB-1", 1200_00, *YEAR)], on=YEAR[0]),
            invoice("INV-1", lines=[("SUB", 1200_00)], obligations=["OB-1"], on=YEAR[0]),
            CREDIT,
            write_off("INV-1", 900_00, on=D(2024, 5, 1)),
            VOID,
        ]
    )
    [(event, status, message)] = result.rejected
    assert (event.event_id, status) == (VOID.event_id, EntryStatus.credit_note_after_write_off)
    assert "written off" in message
