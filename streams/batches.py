"""Journal batches on the wire: the domain :class:`ledger.batching.Batch` as a ``JournalBatch``.

The one place this mapping is written, both ways: the batcher sends
:func:`batch_record` to ``erp.journal-batches.v1``; an ERP import job turns what it read
back into a domain batch with :func:`batch_from_record` (the file formats in
:mod:`connectors.erp` take the domain value). ``window_start`` / ``window_end`` are the
first and last posting dates at 00:00 UTC: business dates, never the wall clock, so a
rebuild produces the same bytes.
"""

from __future__ import annotations

import datetime as dt

from ledger.batching import Batch, SummaryLine
from streams.messages import BatchLine, BatchTotal, JournalBatch, digest_entry_ids


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)


def batch_record(batch: Batch) -> JournalBatch:
    """The wire record of ``batch`` (control totals and digest computed here)."""
    return JournalBatch(
        batch_id=batch.batch_id,
        entity=batch.entity,
        source_partition=batch.source_partition,
        sequence=batch.sequence,
        period=batch.period,
        window_start=_midnight(batch.first_date),
        window_end=_midnight(batch.last_date),
        functional_currency=batch.functional_currency,
        lines=tuple(
            BatchLine(
                line_no=number,
                gl_code=line.gl_code,
                account=line.account,
                currency=line.currency,
                debit_minor=line.debit_minor,
                credit_minor=line.credit_minor,
                functional_debit_minor=line.functional_debit_minor,
                functional_credit_minor=line.functional_credit_minor,
                dimensions=dict(line.dimensions),
            )
            for number, line in enumerate(batch.lines, start=1)
        ),
        entry_count=len(batch.entry_ids),
        line_count=len(batch.lines),
        entry_ids_digest=digest_entry_ids(batch.entry_ids),
        entry_ids=batch.entry_ids,
        totals=tuple(
            BatchTotal(currency=currency, debit_minor=debit, credit_minor=credit)
            for currency, (debit, credit) in sorted(batch.totals().items())
        ),
        first_source_offset=batch.first_offset,
        last_source_offset=batch.last_offset,
    )


def batch_from_record(record: JournalBatch) -> Batch:
    """The domain batch of a validated wire record (its controls were checked on decode)."""
    return Batch(
        batch_id=record.batch_id,
        entity=record.entity,
        source_partition=record.source_partition,
        sequence=record.sequence,
        period=record.period,
        first_date=record.window_start.date(),
        last_date=record.window_end.date(),
        functional_currency=record.functional_currency,
        lines=tuple(
            SummaryLine(
                gl_code=line.gl_code,
                account=line.account,
                currency=line.currency,
                dimensions=tuple(sorted(line.dimensions.items())),
                debit_minor=line.debit_minor,
                credit_minor=line.credit_minor,
                functional_debit_minor=line.functional_debit_minor,
                functional_credit_minor=line.functional_credit_minor,
            )
            for line in record.lines
        ),
        entry_ids=record.entry_ids,
        first_offset=record.first_source_offset,
        last_offset=record.last_source_offset,
    )
