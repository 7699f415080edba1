"""Bad revenue input through the engine: the status it gets, and that nothing was posted.

A rejected event leaves the books exactly as they were (no entry, no balance, no seen id,
no revenue change); a held event only adds itself to the hold list. Malformed payloads
never reach the engine: pydantic refuses them when the event is built (the wire layer
turns that into a DLQ record).
"""

import datetime as dt

import pytest
from pydantic import ValidationError

from connectors.simulation import builders as b
from ledger.book import OutcomeKind
from ledger.results import EntryStatus
from revenue.engine import CustomerBooks, Outcome, apply, run_clock
from revenue.events import ContractBooked
from revenue.recognition import clock_check
from revenue.replay import replay_all

D = dt.date
REFERENCE = b.reference_data()
SUB_2024 = b.obligation("O1", 1200_00, D(2024, 1, 1), D(2024, 12, 31))
USAGE = b.obligation("OU", 0, D(2024, 1, 1), pattern="usage", product_id="USG", family="usage")


def books_after(*events) -> CustomerBooks:
    """Fresh books of customer C1 with ``events`` applied, each of which must post."""
    books = CustomerBooks.new(b.CUSTOMER)
    for event in events:
        outcome = apply(books, event, REFERENCE)
        assert outcome.kind is OutcomeKind.posted, (event.event_id, outcome.message)
        books = outcome.books
    return books


def assert_rejected(before: CustomerBooks, outcome: Outcome, status: EntryStatus) -> None:
    """Rejected with ``status``: no entry, and the books are the very same."""
    assert (outcome.kind, outcome.status) == (OutcomeKind.rejected, status), outcome.message
    assert outcome.entries == ()
    assert outcome.books == before


def assert_held(before: CustomerBooks, outcome: Outcome, waiting_on: str) -> None:
    """Held on ``waiting_on``: no entry, and nothing changed but the hold list."""
    assert (outcome.kind, outcome.status) == (OutcomeKind.held, EntryStatus.contract_missing)
    assert outcome.waiting_on == waiting_on
    assert outcome.entries == ()
    assert outcome.books.revenue == before.revenue
    ledger = outcome.books.ledger
    assert (ledger.balances, ledger.seen, ledger.invoices) == (
        before.ledger.balances,
        before.ledger.seen,
        before.ledger.invoices,
    )
    assert [h.waiting_on for h in ledger.held] == [
        *(h.waiting_on for h in before.ledger.held),
        waiting_on,
    ]


# --- allocation ----------------------------------------------------------------------------


def test_contract_is_rejected_as_ssp_all_zero_when_every_obligation_has_ssp_zero():
    books = CustomerBooks.new(b.CUSTOMER)
    obligations = [
        b.obligation("O1", 0, D(2024, 1, 1), D(2024, 12, 31)),
        b.obligation("O2", 0, D(2024, 2, 1), pattern="point_in_time", product_id="SVC"),
    ]
    outcome = apply(books, b.contract("K1", 1200_00, obligations), REFERENCE)
    assert_rejected(books, outcome, EntryStatus.ssp_all_zero)
    assert "every obligation has SSP 0" in outcome.message


def test_contract_is_rejected_as_ssp_all_zero_when_only_usage_obligations_carry_a_price():
    books = CustomerBooks.new(b.CUSTOMER)
    outcome = apply(books, b.contract("K1", 100_00, [USAGE]), REFERENCE)
    assert_rejected(books, outcome, EntryStatus.ssp_all_zero)


def test_contract_is_rejected_as_discount_exceeds_price_when_undiscounted_ssp_is_above_it():
    books = CustomerBooks.new(b.CUSTOMER)
    obligations = [
        b.obligation("O1", 1000_00, D(2024, 1, 1), D(2024, 12, 31)),
        b.obligation("O2", 500_00, D(2024, 1, 1), D(2024, 12, 31)),
    ]
    event = b.contract("K1", 900_00, obligations, discounted=["O2"])
    assert_rejected(books, apply(books, event, REFERENCE), EntryStatus.discount_exceeds_price)


# --- malformed payloads --------------------------------------------------------------------


def test_obligation_raises_validation_error_when_service_ends_before_it_starts():
    with pytest.raises(ValidationError, match="service_end before service_start"):
        b.obligation("O1", 100_00, D(2024, 3, 1), D(2024, 2, 29))


def test_obligation_raises_validation_error_when_a_ratable_pattern_has_no_end():
    with pytest.raises(ValidationError, match="ratable pattern needs service_end"):
        b.obligation("O1", 100_00, D(2024, 3, 1), None, pattern="ratable_monthly")


def test_contract_raises_validation_error_when_decoded_with_a_reversed_period():
    wire = b.contract("K1", 1200_00, [SUB_2024]).model_dump()
    wire["obligations"][0]["service_end"] = D(2023, 12, 31)
    with pytest.raises(ValidationError, match="O1: service_end before service_start"):
        ContractBooked.model_validate(wire)


# --- contracts that have not arrived ---------------------------------------------------------


def test_amendment_is_held_on_its_contract_when_the_contract_is_unknown():
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)))
    event = b.amendment(
        "A1", "prospective", 1300_00, [SUB_2024], contract_id="K9", effective=D(2024, 1, 15)
    )
    assert_held(books, apply(books, event, REFERENCE), "contract:K9")


def test_held_amendment_expires_as_orphan_event_when_its_contract_never_comes():
    event = b.amendment(
        "A1", "prospective", 1300_00, [SUB_2024], contract_id="K9", effective=D(2024, 1, 15)
    )
    books = apply(CustomerBooks.new(b.CUSTOMER), event, REFERENCE).books
    early = run_clock(books, b.clock(D(2024, 1, 19)), REFERENCE, hold_timeout_days=5)
    assert (early.expired, len(early.books.ledger.held)) == ((), 1)
    late = run_clock(books, b.clock(D(2024, 1, 31)), REFERENCE, hold_timeout_days=5)
    [expired] = late.expired
    assert (expired.reason, expired.waiting_on, expired.event) == (
        EntryStatus.orphan_event,
        "contract:K9",
        event,
    )
    assert (late.entries, late.books.ledger.held) == ((), ())
    assert late.books.revenue.contracts == books.revenue.contracts


def test_replay_expires_the_amendment_as_orphan_event_when_hold_timeout_days_pass():
    event = b.amendment(
        "A1", "cumulative_catch_up", 100_00, [SUB_2024], contract_id="K9", effective=D(2024, 1, 2)
    )
    result = replay_all(
        b.base_records(),
        [event, b.clock(D(2024, 1, 31)), b.clock(D(2024, 2, 29))],
        hold_timeout_days=5,
    )
    [expired] = result.expired
    assert (expired.reason, expired.event.event_id) == (EntryStatus.orphan_event, event.event_id)
    assert (result.entries, result.books[b.CUSTOMER].ledger.held) == ([], ())


def test_invoice_line_is_held_until_an_amendment_adds_its_obligation_when_it_is_unknown():
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)))
    invoice = b.invoice("INV-9", lines=[("SVC", 300_00)], obligations=["O9"], on=D(2024, 2, 1))
    held = apply(books, invoice, REFERENCE)
    assert_held(books, held, "obligation:K1/O9")
    added = b.obligation("O9", 300_00, D(2024, 2, 1), pattern="point_in_time", product_id="SVC")
    amendment = b.amendment("A1", "separate_contract", 300_00, [added], effective=D(2024, 2, 1))
    released = apply(held.books, amendment, REFERENCE)
    assert (released.kind, released.released) == (OutcomeKind.posted, (invoice.event_id,))
    [entry] = released.entries
    assert entry.source_event_id == invoice.event_id
    assert {line.dimension("obligation_id") for line in entry.lines[1:]} == {"O9"}
    assert released.books.ledger.billed_by_contract == {"K1": 300_00}
    assert released.books.ledger.held == ()


# --- usage -------------------------------------------------------------------------------------


def test_usage_is_rejected_as_not_a_usage_obligation_when_it_names_a_ratable_one():
    books = books_after(b.contract("K1", 1200_00, [SUB_2024, USAGE], on=D(2024, 1, 1)))
    outcome = apply(books, b.usage("U1", 5_00, obligation="O1"), REFERENCE)
    assert_rejected(books, outcome, EntryStatus.not_a_usage_obligation)


def test_usage_is_rejected_as_contract_cancelled_when_it_is_dated_after_the_cancellation():
    books = books_after(
        b.contract("K1", 1200_00, [SUB_2024, USAGE], on=D(2024, 1, 1)),
        b.cancellation("K1", D(2024, 3, 1)),
    )
    late = apply(books, b.usage("U1", 5_00, on=D(2024, 3, 1), obligation="OU"), REFERENCE)
    assert_rejected(books, late, EntryStatus.contract_cancelled)
    served = apply(books, b.usage("U2", 5_00, on=D(2024, 2, 29), obligation="OU"), REFERENCE)
    assert served.kind is OutcomeKind.posted


# --- contract identity and modifications -----------------------------------------------------


def test_contract_is_rejected_as_contract_exists_when_another_event_books_the_same_id():
    first = b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1))
    books = books_after(first)
    other = b.contract("K1", 900_00, [SUB_2024], on=D(2024, 1, 1), event_id="evt-ctr-K1-again")
    assert_rejected(books, apply(books, other, REFERENCE), EntryStatus.contract_exists)
    again = apply(books, first, REFERENCE)
    assert (again.kind, again.status, again.books) == (
        OutcomeKind.duplicate,
        EntryStatus.exists,
        books,
    )


def test_amendment_is_rejected_as_contract_exists_when_its_id_was_applied_by_another_event():
    amendment = b.amendment("A1", "prospective", 1300_00, [SUB_2024], effective=D(2024, 7, 1))
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)), amendment)
    other = amendment.model_copy(update={"event_id": "evt-amd-A1-again"})
    assert_rejected(books, apply(books, other, REFERENCE), EntryStatus.contract_exists)


def test_separate_contract_is_rejected_as_obligation_exists_when_it_re_adds_an_obligation():
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)))
    event = b.amendment("A1", "separate_contract", 100_00, [SUB_2024], effective=D(2024, 7, 1))
    assert_rejected(books, apply(books, event, REFERENCE), EntryStatus.obligation_exists)


def test_prospective_amendment_is_rejected_when_the_new_total_is_below_what_was_due():
    # By Jun 30, 182 of 366 days are due: 1,200.00 x 182 / 366 = 596.72.
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)))
    below = b.amendment("A1", "prospective", 596_71, [SUB_2024], effective=D(2024, 7, 1))
    outcome = apply(books, below, REFERENCE)
    assert_rejected(books, outcome, EntryStatus.modification_below_recognized)
    assert "596" in outcome.message and "59671" in outcome.message
    equal = below.model_copy(update={"total_price_minor": 596_72})
    assert apply(books, equal, REFERENCE).kind is OutcomeKind.posted


def test_catch_up_amendment_is_rejected_when_the_new_total_is_below_what_ended_ones_keep():
    other = b.obligation("O2", 1200_00, D(2024, 1, 1), D(2024, 12, 31))
    books = books_after(b.contract("K1", 2400_00, [SUB_2024, other], on=D(2024, 1, 1)))
    # O2 ends on Jun 30 with 596.72 earned; the new total cannot be below that.
    event = b.amendment("A1", "cumulative_catch_up", 500_00, [SUB_2024], effective=D(2024, 7, 1))
    assert_rejected(
        books, apply(books, event, REFERENCE), EntryStatus.modification_below_recognized
    )


def test_prospective_amendment_is_rejected_as_ssp_all_zero_when_nothing_delivers_the_rest():
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)))
    ended = b.obligation("O1", 1200_00, D(2024, 1, 1), D(2024, 6, 30))
    event = b.amendment("A1", "prospective", 1200_00, [ended], effective=D(2024, 7, 1))
    assert_rejected(books, apply(books, event, REFERENCE), EntryStatus.ssp_all_zero)


def test_amendment_is_rejected_as_contract_cancelled_when_the_contract_was_cancelled():
    books = books_after(
        b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)),
        b.cancellation("K1", D(2024, 6, 1)),
    )
    event = b.amendment("A1", "prospective", 1300_00, [SUB_2024], effective=D(2024, 7, 1))
    assert_rejected(books, apply(books, event, REFERENCE), EntryStatus.contract_cancelled)


# --- the business clock ----------------------------------------------------------------------


def test_replay_rejects_a_tick_as_clock_backwards_when_it_is_dated_before_the_last_one():
    events = [
        b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)),
        b.invoice("INV-1", lines=[("SUB", 1200_00)], obligations=["O1"], on=D(2024, 1, 1)),
        b.clock(D(2024, 2, 29)),
    ]
    backwards = b.clock(D(2024, 1, 31))
    with_tick = replay_all(b.base_records(), [*events, backwards])
    without = replay_all(b.base_records(), events)
    [(record, status, message)] = with_tick.rejected
    assert (record, status) == (backwards, EntryStatus.clock_backwards)
    assert "2024-02-29" in message and "2024-01-31" in message
    assert not [e for e in with_tick.entries if e.source_event_id.startswith(backwards.event_id)]
    assert (with_tick.entries, with_tick.books) == (without.entries, without.books)
    assert (with_tick.clock, with_tick.clock_id) == (D(2024, 2, 29), "ref-clock-2024-02-29")


def test_clock_check_tells_a_redelivered_tick_from_a_backwards_one_when_dates_repeat():
    last = b.clock(D(2024, 2, 29))
    assert clock_check(last.business_date, last.event_id, last) is EntryStatus.exists
    assert clock_check(last.business_date, last.event_id, b.clock(D(2024, 2, 28))) is (
        EntryStatus.clock_backwards
    )
    same_day = last.model_copy(update={"event_id": "ref-clock-2024-02-29-second"})
    assert clock_check(last.business_date, last.event_id, same_day) is None
    assert clock_check(None, None, last) is None


def test_run_clock_posts_nothing_when_the_tick_is_older_than_the_last_run():
    books = books_after(b.contract("K1", 1200_00, [SUB_2024], on=D(2024, 1, 1)))
    ran = run_clock(books, b.clock(D(2024, 2, 29)), REFERENCE)
    assert ran.entries
    older = run_clock(ran.books, b.clock(D(2024, 1, 31)), REFERENCE)
    assert (older.entries, older.books) == ((), ran.books)
