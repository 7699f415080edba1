"""Journal batches through the wire record and the Avro codec: same batch back, controls kept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.simulation import builders as b
from ledger.accounts import Account
from ledger.batching import BatcherState, BatchPolicy, add_entry
from ledger.reference import ReferenceData
from revenue.replay import replay_all
from streams.batches import batch_from_record, batch_record
from streams.serde import Codec


def _batch():
    gl = [b.gl("US1", str(account), f"4{n:03d}") for n, account in enumerate(Account)]
    reference = ReferenceData.from_records([*b.base_records(), *gl])
    events = [b.invoice("INV-1", tax=10_00), b.invoice("INV-2", currency="EUR")]
    entries = replay_all(b.base_records(), events).entries
    state, policy = BatcherState(partition=2), BatchPolicy(max_entries=len(entries))
    for offset, entry in enumerate(entries, start=40):
        run = add_entry(state, entry, offset, reference, policy)
        state = run.state
    (batch,) = run.batches
    return batch


def test_batch_comes_back_the_same_when_sent_through_the_avro_codec():
    batch = _batch()
    codec = Codec()
    record = batch_record(batch)
    assert codec.decode(codec.encode(record)) == record
    assert batch_from_record(record) == batch
    assert (record.first_source_offset, record.last_source_offset) == (40, 41)
    assert {t.currency: (t.debit_minor, t.credit_minor) for t in record.totals} == {
        "EUR": (100_00, 100_00),
        "USD": (110_00, 110_00),
    }


def test_wire_batch_is_refused_when_its_controls_do_not_agree():
    record = batch_record(_batch())
    with pytest.raises(ValidationError, match="digest"):
        record.model_validate({**record.model_dump(), "entry_ids_digest": "0" * 64})
    with pytest.raises(ValidationError, match="last_source_offset"):
        record.model_validate({**record.model_dump(), "last_source_offset": 1})
