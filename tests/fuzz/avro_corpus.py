"""Inputs for fuzzing the Avro decoder: valid encodings, mutations of them, random schemas.

Shared by ``tests/unit/test_avro_limits.py`` (a few hundred examples in ``make test``) and
``tests/fuzz/fuzz_decoder.py`` (the long run). Pure: no broker, no database.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import string
from typing import Any

import fastavro
from hypothesis import strategies as st

from connectors.simulation import builders as b
from connectors.simulation.contracts import generate_contracts
from ledger.accounts import Account
from ledger.batching import BatcherState, BatchPolicy, add_entry
from ledger.reference import ReferenceData
from revenue.replay import replay_all
from streams.batches import batch_record
from streams.dlq import Failure, SourceRecord, dlq_record
from streams.entries import entry_record
from streams.messages import ErpAck
from streams.serde import Codec


@functools.cache
def valid_encodings() -> tuple[bytes, ...]:
    """Single-object encodings of one record of (nearly) every wire type, and then some.

    Events and reference records of a small simulated company, the journal entries the
    pure replay makes of them, a journal batch and a DLQ record.
    """
    codec = Codec()
    stream = generate_contracts(seed=7, customers=3, months=3)
    records: list[Any] = [*stream.reference, *stream.events[:60]]
    records.extend(
        make()
        for make in (
            b.void,
            b.write_off,
            b.payment_failed,
            b.refund,
            b.dispute,
            b.payout,
            b.usage,
            b.customer_upserted,
            b.cancellation,
        )
    )
    records.append(b.period_closed("2024-01"))
    records.append(_ack())
    events = [b.invoice("INV-1", tax=10_00), b.invoice("INV-2", currency="EUR")]
    entries = replay_all(b.base_records(), events).entries
    records.extend(entry_record(entry) for entry in entries)
    records.append(_batch(entries))
    records.append(_dlq(codec.encode(events[0])))
    encoded: dict[str, bytes] = {}
    extra: list[bytes] = []
    for record in records:
        data = codec.encode(record)
        # One of each type first, then a few more of the richer ones.
        if record.schema_name not in encoded:
            encoded[record.schema_name] = data
        elif len(extra) < 40:
            extra.append(data)
    return (*encoded.values(), *extra)


def _batch(entries: list[Any]) -> Any:
    gl = [b.gl("US1", str(account), f"4{n:03d}") for n, account in enumerate(Account)]
    reference = ReferenceData.from_records([*b.base_records(), *gl])
    state, policy = BatcherState(partition=2), BatchPolicy(max_entries=len(entries))
    run = None
    for offset, entry in enumerate(entries, start=40):
        run = add_entry(state, entry, offset, reference, policy)
        state = run.state
    assert run is not None and run.batches
    return batch_record(run.batches[0])


def _ack() -> ErpAck:
    at = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    return ErpAck(
        batch_id="b-1",
        entity="US1",
        sequence=3,
        status="rejected",
        message="no",
        acknowledged_at=at,
    )


def _dlq(original: bytes) -> Any:
    source = SourceRecord(
        "billing.events.v1", 3, 41, b"C1", original, (("trace", b"abc"), ("redrive.attempt", b"1"))
    )
    failure = Failure("unknown_entity", "entity NEW1 is not configured", event_id="ev-1")
    at = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)
    return dlq_record(failure, source, service_version="0.1.0", failed_at=at)


# --- mutations ------------------------------------------------------------------------------


def zigzag_varint(value: int) -> bytes:
    """The Avro (zig-zag, base-128) encoding of ``value``."""
    number = (value << 1) ^ (value >> 63) if value >= 0 else ((-value - 1) << 1) | 1
    out = bytearray()
    while True:
        low = number & 0x7F
        number >>= 7
        if number:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


_BIG_NUMBERS = st.sampled_from(
    [-1, -(2**31), -(2**63), 63, 64, 2**16, 2**31 - 1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1]
)


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    """One random edit of ``data``; the first 10 bytes (the framing) are kept mostly."""
    body = bytearray(data)
    # Mostly mutate the body; sometimes the header too (unknown fingerprint, cut header).
    low = 0 if draw(st.integers(0, 9)) == 0 else min(10, len(body))
    at = draw(st.integers(low, max(low, len(body) - 1)))
    kind = draw(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "varint", "splice"])
    )
    if kind == "flip" and at < len(body):
        body[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "set" and at < len(body):
        body[at] = draw(st.integers(0, 255))
    elif kind == "insert":
        body[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif kind == "delete":
        del body[at : at + draw(st.integers(1, 8))]
    elif kind == "truncate":
        del body[at:]
    elif kind == "varint":
        # A huge or negative length/count where a small one stood.
        body[at : at + draw(st.integers(0, 2))] = zigzag_varint(draw(_BIG_NUMBERS))
    elif kind == "splice":
        start = draw(st.integers(low, max(low, len(body) - 1)))
        body[at:at] = body[start : start + draw(st.integers(1, 32))]
    return bytes(body)


@st.composite
def mutated_encodings(draw: st.DrawFn, max_edits: int = 4) -> bytes:
    """A valid encoding with 1 to ``max_edits`` random edits."""
    data = draw(st.sampled_from(valid_encodings()))
    for _ in range(draw(st.integers(1, max_edits))):
        data = draw(mutation(data))
    return data


# --- random schemas and their data ----------------------------------------------------------

_names = iter(range(10**12))


def _primitive_schemas() -> st.SearchStrategy[Any]:
    def fixed(size: int) -> dict[str, Any]:
        return {"type": "fixed", "name": f"F{next(_names)}", "size": size}

    primitives = ["null", "boolean", "int", "long", "float", "double", "string", "bytes"]
    return st.sampled_from(primitives) | st.builds(fixed, st.integers(0, 9))


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def record(fields: list[Any]) -> dict[str, Any]:
        return {
            "type": "record",
            "name": f"R{next(_names)}",
            "fields": [{"name": f"f{i}", "type": t} for i, t in enumerate(fields)],
        }

    def union(branches: list[Any]) -> list[Any]:
        # Avro: no union directly inside a union, and no two branches of one type unless
        # they are named types with different names.
        kept: dict[str, Any] = {}
        for branch in branches:
            if isinstance(branch, list):
                continue
            key = branch if isinstance(branch, str) else branch.get("name", branch["type"])
            kept.setdefault(key, branch)
        return list(kept.values()) or ["null"]

    def enum(symbols: int) -> dict[str, Any]:
        return {
            "type": "enum",
            "name": f"E{next(_names)}",
            "symbols": [f"S{i}" for i in range(symbols)],
        }

    return st.one_of(
        st.builds(record, st.lists(children, max_size=4)),
        st.builds(lambda t: {"type": "array", "items": t}, children),
        st.builds(lambda t: {"type": "map", "values": t}, children),
        st.builds(union, st.lists(children, min_size=1, max_size=3)),
        st.builds(enum, st.integers(1, 4)),
    )


def schemas() -> st.SearchStrategy[Any]:
    """Random (non-recursive) Avro schemas: records, arrays, maps, unions, enums, fixed."""
    return st.recursive(_primitive_schemas(), _extend, max_leaves=12)


_TEXT = st.text(string.printable + "éü€😀", max_size=80)


def datum_for(schema: Any) -> st.SearchStrategy[Any]:
    """Data valid under ``schema`` (the unparsed JSON form :func:`schemas` makes)."""
    if isinstance(schema, list):
        return st.one_of([datum_for(branch) for branch in schema]) if schema else st.none()
    if isinstance(schema, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(allow_nan=False, width=32),
            "double": st.floats(allow_nan=False),
            "string": _TEXT,
            "bytes": st.binary(max_size=80),
        }[schema]
    kind = schema["type"]
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(datum_for(schema["items"]), max_size=6)
    if kind == "map":
        return st.dictionaries(_TEXT, datum_for(schema["values"]), max_size=4)
    fields = {f["name"]: datum_for(f["type"]) for f in schema["fields"]}
    return st.fixed_dictionaries(fields)


@st.composite
def schema_and_body(draw: st.DrawFn) -> tuple[Any, bytes]:
    """A random schema (fastavro-parsed) and the Avro body of a random datum under it."""
    schema = draw(schemas())
    datum = draw(datum_for(schema))
    parsed = fastavro.parse_schema(schema, named_schemas={})
    buffer = io.BytesIO()
    # A union of a record and a map (or of two records) can be ambiguous to fastavro's
    # writer; ``return_record_name`` is not needed: any encoding it makes is valid.
    fastavro.schemaless_writer(buffer, parsed, datum)
    return parsed, buffer.getvalue()
