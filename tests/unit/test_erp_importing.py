"""The ERP import job's decisions: import, already imported, conflict, pending, reject.

Pure: no Kafka, no files. The job's Kafka and filesystem side is in
``tests/integration/test_erp_import.py``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.erp.importing import (
    CONFLICTS_WITH_IMPORTED,
    CONTROL_TOTALS_MISMATCH,
    ENTITY_NOT_A_FILE_NAME,
    LAYOUT_REFUSED,
    AlreadyImported,
    BatchRef,
    Block,
    Conflict,
    Decision,
    Import,
    ImporterState,
    Pending,
    Reject,
    StreamState,
    Unconfirmed,
    ack_of,
    apply,
    batch_file_name,
    batch_name,
    control_errors,
    decide,
    drainable,
    parse_ledger_ids,
    pending_file_name,
    state_from_json,
    state_to_json,
    stops,
    with_stream,
    with_unconfirmed,
    without_unconfirmed,
)
from ledger.batching import Batch, SummaryLine
from ledger.errors import InvariantViolation

STREAM = ("US1", 2)
BAD = ("USD: debits 100 != credits 90",)


def ref(sequence: int, entity: str = "US1", partition: int = 2) -> BatchRef:
    return BatchRef(batch_name(entity, partition, sequence), entity, partition, sequence)


def state_at(next_sequence: int, blocked: Block | None = None) -> ImporterState:
    return with_stream(ImporterState(), STREAM, StreamState(next_sequence, blocked))


# --- decide: one test per branch --------------------------------------------------------


def test_decide_imports_when_sequence_is_next_and_no_file_exists():
    assert decide(state_at(3), ref(3), "d3", None, ()) == Import(write=True)


def test_decide_imports_without_writing_when_an_identical_file_is_already_there():
    # The file was written just before a crash that kept the state from recording it.
    assert decide(state_at(3), ref(3), "d3", "d3", ()) == Import(write=False)


def test_decide_conflicts_and_blocks_when_another_file_is_where_next_goes():
    decision = decide(state_at(3), ref(3), "d3", "other", ())
    assert isinstance(decision, Conflict)
    assert decision.blocks
    assert decision.code == CONFLICTS_WITH_IMPORTED


def test_decide_says_already_imported_when_a_passed_sequence_comes_again_identical():
    assert decide(state_at(5), ref(3), "d3", "d3", ()) == AlreadyImported(verified=True)


def test_decide_says_already_imported_unverified_when_the_imported_file_was_moved_away():
    assert decide(state_at(5), ref(3), "d3", None, ()) == AlreadyImported(verified=False)


def test_decide_conflicts_without_blocking_when_a_passed_sequence_comes_again_different():
    decision = decide(state_at(5), ref(3), "d3-altered", "d3", ())
    assert isinstance(decision, Conflict)
    assert not decision.blocks


def test_decide_holds_a_batch_when_sequences_before_it_are_missing():
    assert decide(state_at(3), ref(7), "d7", None, ()) == Pending(missing=3, unblocks=False)


def test_decide_rejects_and_blocks_when_controls_do_not_add_up():
    decision = decide(state_at(3), ref(3), "d3", None, BAD)
    assert decision == Reject(CONTROL_TOTALS_MISMATCH, BAD[0], blocks=True)
    assert decide(state_at(3), ref(8), "d8", None, BAD).blocks  # ahead of a gap too


def test_decide_rejects_without_blocking_when_a_bad_copy_of_an_imported_batch_comes():
    decision = decide(state_at(5), ref(3), "d3", "d3", BAD)
    assert decision == Reject(CONTROL_TOTALS_MISMATCH, BAD[0], blocks=False)


def test_decide_rejects_with_the_layouts_reason_when_the_file_layout_refuses_the_batch():
    why = ("gl_code '101--1200' has an empty segment",)
    decision = decide(state_at(3), ref(3), "d3", None, why, LAYOUT_REFUSED)
    assert decision == Reject(LAYOUT_REFUSED, why[0], blocks=True)
    assert decide(state_at(5), ref(3), "d3", "d3", why, LAYOUT_REFUSED).blocks is False


def test_decide_rejects_when_the_entity_cannot_be_a_file_name():
    for entity in ("../etc", "a/b", ".hidden", ""):
        decision = decide(ImporterState(), ref(0, entity=entity), "d", None, ())
        assert isinstance(decision, Reject)
        assert decision.code == ENTITY_NOT_A_FILE_NAME
        assert not decision.blocks


def test_decide_imports_a_resent_batch_and_lifts_the_block_when_it_is_next():
    blocked = state_at(3, Block(3, "control_totals_mismatch: x"))
    assert decide(blocked, ref(3), "d3", None, ()) == Import(write=True)
    after = apply(blocked, ref(3), Import())
    assert after.stream(STREAM) == StreamState(4, None)


def test_decide_holds_a_resent_batch_and_lifts_the_block_when_a_gap_is_before_it():
    blocked = state_at(3, Block(6, "control_totals_mismatch: x"))
    decision = decide(blocked, ref(6), "d6", None, ())
    assert decision == Pending(missing=3, unblocks=True)
    assert apply(blocked, ref(6), decision).stream(STREAM) == StreamState(3, None)
    # A batch after the block waits and does not lift it.
    assert decide(blocked, ref(7), "d7", None, ()) == Pending(missing=3, unblocks=False)


# --- apply, drainable, stops --------------------------------------------------------------


def test_apply_blocks_at_the_lowest_rejected_sequence():
    state = apply(state_at(2), ref(6), Reject(CONTROL_TOTALS_MISMATCH, "six", blocks=True))
    state = apply(state, ref(4), Reject(CONTROL_TOTALS_MISMATCH, "four", blocks=True))
    state = apply(state, ref(9), Reject(CONTROL_TOTALS_MISMATCH, "nine", blocks=True))
    assert state.stream(STREAM).blocked == Block(4, "control_totals_mismatch: four")


def test_apply_changes_nothing_when_the_decision_does_not_move_the_stream():
    state = state_at(5)
    for decision in (
        AlreadyImported(),
        Pending(5),
        Conflict("x", blocks=False),
        Reject(CONTROL_TOTALS_MISMATCH, "x", blocks=False),
    ):
        assert apply(state, ref(7), decision) == state


def test_apply_refuses_an_import_of_a_sequence_other_than_next():
    with pytest.raises(InvariantViolation):
        apply(state_at(3), ref(4), Import())
    with pytest.raises(InvariantViolation):
        apply(state_at(3), ref(2), Reject(CONTROL_TOTALS_MISMATCH, "x", blocks=True))


def test_drainable_returns_the_contiguous_run_from_next_when_batches_pend():
    assert drainable(StreamState(3), [7, 4, 3, 5]) == (3, 4, 5)
    assert drainable(StreamState(3), [4, 5]) == ()
    assert drainable(StreamState(3), []) == ()


def test_drainable_stops_before_a_block_when_a_stale_copy_pends_there():
    assert drainable(StreamState(3, Block(5, "x")), [3, 4, 5, 6]) == (3, 4)


def test_stops_name_the_missing_batch_of_each_stopped_stream():
    state = with_stream(state_at(3), ("EU1", 0), StreamState(2, Block(2, "control_totals_x")))
    state = with_stream(state, ("JP1", 1), StreamState(9))
    found = stops(state, {STREAM: [5, 6], ("JP1", 1): [], ("NEW", 3): [1]})
    assert [(s.missing, s.rejected) for s in found] == [
        ("EU1/p0/2", "control_totals_x"),
        ("NEW/p3/0", None),
        ("US1/p2/3", None),
    ]


def test_ack_of_gives_status_and_message_per_decision():
    assert ack_of(Import()) == ("imported", None)
    assert ack_of(AlreadyImported()) == ("imported", "already imported")
    assert ack_of(AlreadyImported(verified=False))[0] == "imported"
    assert ack_of(Pending(3)) is None
    assert ack_of(Conflict("differs", blocks=False)) == (
        "rejected",
        "conflicts_with_imported: differs",
    )
    assert ack_of(Reject(CONTROL_TOTALS_MISMATCH, "USD: 1 != 2", blocks=True)) == (
        "rejected",
        "control_totals_mismatch: USD: 1 != 2",
    )


# --- names, ledger ids, state.json --------------------------------------------------------


def test_file_names_sort_in_sequence_order_when_sequences_grow():
    assert batch_file_name("US1", 3, 7, "csv") == "US1/US1-p3-000000007.csv"
    assert pending_file_name("US1", 3, 7) == "pending/US1/p3/000000007.bin"
    names = [batch_file_name("US1", 0, n, "json") for n in (9, 10, 100)]
    assert names == sorted(names)
    with pytest.raises(InvariantViolation):
        batch_file_name("../x", 0, 1, "csv")


def test_parse_ledger_ids_takes_a_default_and_entity_pairs():
    ids = parse_ledger_ids(["300000001", "EU1=300000002"])
    assert ids.for_entity("EU1") == "300000002"
    assert ids.for_entity("US1") == "300000001"
    assert parse_ledger_ids(["EU1=1"]).for_entity("US1") is None
    assert parse_ledger_ids([]).empty
    for bad in (["1", "2"], ["EU1=1", "EU1=2"], ["=1"], ["EU1="], [""]):
        with pytest.raises(ValueError):
            parse_ledger_ids(bad)


def test_state_comes_back_the_same_when_written_to_json_and_read():
    state = with_stream(
        state_at(4, Block(4, "conflicts_with_imported: é")), ("EU1", 0), StreamState()
    )
    state = with_unconfirmed(state, Unconfirmed("EU1", 0, 3, 1, 77))
    assert state_from_json(state_to_json(state)) == state
    assert without_unconfirmed(state, state.unconfirmed).unconfirmed == ()


def test_state_from_json_refuses_when_the_version_or_a_field_is_wrong():
    text = state_to_json(state_at(1))
    with pytest.raises(ValueError):
        state_from_json(text.replace('"version": 1', '"version": 2'))
    with pytest.raises(ValueError):
        state_from_json(text.replace('"next": 1', '"next": -1'))
    with pytest.raises(ValueError):
        state_from_json(text.replace('"next": 1', '"nxt": 1'))


# --- control totals -----------------------------------------------------------------------


def batch_factory(lines: tuple[SummaryLine, ...]) -> Batch:
    return Batch(
        batch_id="US1/p2/0",
        entity="US1",
        source_partition=2,
        sequence=0,
        period="2024-03",
        first_date=dt.date(2024, 3, 4),
        last_date=dt.date(2024, 3, 5),
        functional_currency="USD",
        lines=lines,
        entry_ids=("e-1",),
        first_offset=0,
        last_offset=0,
    )


BALANCED = (
    SummaryLine("1100", "receivable", "USD", (), 100, 0, 100, 0),
    SummaryLine("4000", "revenue", "USD", (), 0, 100, 0, 100),
    SummaryLine("1100", "receivable", "EUR", (), 50, 0, 54, 0),
    SummaryLine("4000", "revenue", "EUR", (), 0, 50, 0, 54),
)


def test_control_errors_are_empty_when_the_batch_balances():
    batch = batch_factory(BALANCED)
    assert control_errors(batch) == []
    assert control_errors(batch, {"USD": (100, 100), "EUR": (50, 50)}) == []


def test_control_errors_name_each_failure_when_the_batch_does_not_add_up():
    unbalanced = (replace(BALANCED[0], debit_minor=110), *BALANCED[1:])
    assert control_errors(batch_factory(unbalanced)) == ["USD: debits 110 != credits 100"]
    functional = (replace(BALANCED[0], functional_debit_minor=101), *BALANCED[1:])
    assert control_errors(batch_factory(functional)) == [
        "functional USD: debits 155 != credits 154"
    ]
    stated = control_errors(batch_factory(BALANCED), {"USD": (100, 100), "EUR": (50, 49)})
    assert stated == ["EUR: stated totals (50, 49) != line sums (50, 50)"]
    missing = control_errors(batch_factory(BALANCED), {"USD": (100, 100)})
    assert missing == ["EUR: stated totals None != line sums (50, 50)"]
    negative = (replace(BALANCED[0], debit_minor=-1), replace(BALANCED[1], credit_minor=-1))
    assert "line 1: amounts must be non-negative integers" in control_errors(
        batch_factory(negative)
    )
    assert control_errors(batch_factory(())) == ["batch has no lines"]


amounts = st.integers(min_value=1, max_value=10**12)


@st.composite
def balanced_batches(draw: st.DrawFn) -> Batch:
    """Batches of 1..4 currencies, each a debit line and a credit line of the same amount."""
    currencies = draw(
        st.lists(st.sampled_from(["USD", "EUR", "JPY", "KWD"]), min_size=1, max_size=4, unique=True)
    )
    lines = []
    for currency in currencies:
        amount, functional = draw(amounts), draw(amounts)
        lines.append(SummaryLine("1100", "receivable", currency, (), amount, 0, functional, 0))
        lines.append(SummaryLine("4000", "revenue", currency, (), 0, amount, 0, functional))
    return batch_factory(tuple(lines))


@given(balanced_batches(), st.data())
def test_control_errors_catch_any_altered_amount_when_nothing_else_changes(batch, data):
    assert control_errors(batch) == []
    index = data.draw(st.integers(0, len(batch.lines) - 1))
    field_name = data.draw(
        st.sampled_from(
            ["debit_minor", "credit_minor", "functional_debit_minor", "functional_credit_minor"]
        )
    )
    line = batch.lines[index]
    delta = data.draw(st.integers(1, 10**6))
    altered_line = replace(line, **{field_name: getattr(line, field_name) + delta})
    lines = (*batch.lines[:index], altered_line, *batch.lines[index + 1 :])
    assert control_errors(replace(batch, lines=lines)) != []


# --- the whole stream: any order, duplicates ----------------------------------------------


@dataclass
class StreamRun:
    """Feeds one stream's arrivals through decide/apply/drainable, as the job does."""

    state: ImporterState = field(default_factory=ImporterState)
    files: dict[int, str] = field(default_factory=dict)
    pending: dict[int, str] = field(default_factory=dict)
    imported: list[int] = field(default_factory=list)
    acks: list[tuple[int, str]] = field(default_factory=list)

    def arrive(self, sequence: int, content: str) -> None:
        decision = self._take(sequence, content)
        if isinstance(decision, Import | AlreadyImported):
            while run := drainable(self.state.stream(STREAM), self.pending):
                self._take(run[0], self.pending.pop(run[0]))

    def _take(self, sequence: int, content: str) -> Decision:
        batch = ref(sequence)
        decision = decide(self.state, batch, content, self.files.get(sequence), ())
        if isinstance(decision, Import):
            if decision.write:
                assert sequence not in self.files, "an imported file was overwritten"
                self.files[sequence] = content
            self.imported.append(sequence)
        elif isinstance(decision, Pending):
            self.pending[sequence] = content
        answer = ack_of(decision)
        if answer is not None:
            self.acks.append((sequence, answer[0]))
        self.state = apply(self.state, batch, decision)
        return decision


def arrivals(count: int, duplicates: list[int]) -> list[tuple[int, str]]:
    return [(s, f"content-{s}") for s in [*range(count), *(d % count for d in duplicates)]]


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 15).flatmap(
        lambda n: (
            st.permutations(arrivals(n, list(range(0, 3 * n, 2))))
            | st.permutations(arrivals(n, []))
        )
    )
)
def test_every_batch_is_imported_once_in_order_when_arrivals_are_permuted_and_repeated(order):
    count = len({sequence for sequence, _ in order})
    run = StreamRun()
    for sequence, content in order:
        run.arrive(sequence, content)
    assert run.imported == list(range(count))
    assert run.files == {s: f"content-{s}" for s in range(count)}
    assert run.state.stream(STREAM) == StreamState(count, None)
    assert not run.pending
    assert {s for s, status in run.acks} == set(range(count))
    assert all(status == "imported" for _, status in run.acks)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda n: st.permutations(
            [(s, f"content-{s}") for s in range(n)] + [(s, f"altered-{s}") for s in range(0, n, 3)]
        )
    )
)
def test_no_imported_file_is_ever_overwritten_when_altered_copies_arrive(order):
    count = len({sequence for sequence, _ in order})
    run = StreamRun()
    written: dict[int, str] = {}
    for sequence, content in order:
        run.arrive(sequence, content)
        for imported_sequence, imported in run.files.items():
            assert written.setdefault(imported_sequence, imported) == imported
    assert run.imported == list(range(count))
    assert run.state.stream(STREAM).next == count
