"""Journal entries on the wire: the domain :class:`ledger.entries.JournalEntry` as a record.

The one place this mapping is written, both ways: the ledger agent sends
:func:`entry_record` to ``ledger.entries.v1``; the batcher (and any reader that wants the
domain value) turns a record back with :func:`entry_from_record`. Dimensions are sorted
pairs in the domain and a map on the wire; sorting on the way back gives the same entry.
"""

from __future__ import annotations

from ledger.accounts import Account, Side
from ledger.entries import JournalEntry
from ledger.entries import JournalLine as DomainLine
from streams.messages import JournalEntryPosted, JournalLine


def entry_record(entry: JournalEntry) -> JournalEntryPosted:
    """The wire record of a domain entry."""
    return JournalEntryPosted(
        entry_id=entry.entry_id,
        entity=entry.entity,
        customer_id=entry.customer_id,
        source_event_id=entry.source_event_id,
        source_event_type=entry.source_event_type,
        rule=entry.rule,
        sequence=entry.sequence,
        posting_date=entry.posting_date,
        original_date=entry.original_date,
        period=entry.period,
        functional_currency=entry.functional_currency,
        description=entry.description,
        lines=tuple(
            JournalLine(
                line_no=line.line_no,
                account=str(line.account),
                side=str(line.side),
                amount_minor=line.amount_minor,
                currency=line.currency,
                functional_amount_minor=line.functional_amount_minor,
                dimensions=dict(line.dimensions),
            )
            for line in entry.lines
        ),
    )


def entry_from_record(record: JournalEntryPosted) -> JournalEntry:
    """The domain entry of a validated wire record (the entry re-checks its invariants).

    Raises:
        ValueError: an account or side the domain does not know (a foreign writer).
        ledger.errors.InvariantViolation: the lines do not make a valid entry.
    """
    return JournalEntry(
        entry_id=record.entry_id,
        entity=record.entity,
        customer_id=record.customer_id,
        source_event_id=record.source_event_id,
        source_event_type=record.source_event_type,
        rule=record.rule,
        sequence=record.sequence,
        posting_date=record.posting_date,
        original_date=record.original_date,
        period=record.period,
        functional_currency=record.functional_currency,
        description=record.description,
        lines=tuple(
            DomainLine(
                line_no=line.line_no,
                account=Account(line.account),
                side=Side(line.side),
                amount_minor=line.amount_minor,
                currency=line.currency,
                functional_amount_minor=line.functional_amount_minor,
                dimensions=tuple(sorted(line.dimensions.items())),
            )
            for line in record.lines
        ),
    )
