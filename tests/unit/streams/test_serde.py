"""The codec: framings, fingerprints, and one DecodeError reason per way bytes can be bad."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from ledger.events import InvoiceIssued
from streams.messages import ErpAck, JournalEntryPosted, JournalLine
from streams.schemas import load_schemas, schema_for
from streams.serde import Codec, DecodeError, DecodeReason, EncodeError, to_datum

UTC = dt.UTC


def invoice_factory(**changes: object) -> InvoiceIssued:
    line = {
        "line_id": "l1",
        "description": "Pro plan",
        "product_id": "pro",
        "quantity": 1,
        "amount_minor": 12_000,
    }
    fields = {
        "event_id": "evt-1",
        "occurred_at": dt.datetime(2024, 3, 1, 9, 0, tzinfo=UTC),
        "source_system": "stripe",
        "source_id": "in_1",
        "entity": "acme-us",
        "customer_id": "cus-1",
        "invoice_id": "inv-1",
        "issue_date": dt.date(2024, 3, 1),
        "due_date": dt.date(2024, 3, 31),
        "currency": "USD",
        "lines": [line],
        "total_minor": 12_000,
        **changes,
    }
    return InvoiceIssued.model_validate(fields)


def entry_factory() -> JournalEntryPosted:
    def leg(line_no: int, side: str) -> dict[str, object]:
        return {
            "line_no": line_no,
            "account": "accounts_receivable" if side == "debit" else "deferred_revenue",
            "side": side,
            "amount_minor": 12_000,
            "currency": "USD",
            "functional_amount_minor": 12_000,
            "dimensions": {"invoice_id": "inv-1"},
        }

    return JournalEntryPosted.model_validate(
        {
            "entry_id": "evt-1:invoice_issued:0",
            "entity": "acme-us",
            "customer_id": "cus-1",
            "source_event_id": "evt-1",
            "source_event_type": "invoice.issued",
            "rule": "invoice_issued",
            "sequence": 0,
            "posting_date": dt.date(2024, 3, 1),
            "original_date": dt.date(2024, 3, 1),
            "period": "2024-03",
            "functional_currency": "USD",
            "description": "Invoice inv-1",
            "lines": [leg(1, "debit"), leg(2, "credit")],
        }
    )


def avro_body(record_type: type, datum: dict[str, object]) -> bytes:
    """Write ``datum`` with the record type's schema, bypassing pydantic."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema_for(record_type).parsed, datum)
    return buffer.getvalue()


def single_object(record_type: type, datum: dict[str, object]) -> bytes:
    return b"\xc3\x01" + schema_for(record_type).fingerprint + avro_body(record_type, datum)


def decode_error(codec: Codec, data: bytes) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        codec.decode(data)
    return caught.value


@pytest.fixture
def codec() -> Codec:
    return Codec()


@pytest.fixture
def registry() -> SchemaRegistryClient:
    # One mock registry per test: confluent-kafka keeps a mock's store in its instance.
    return SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4()}"})


# --- single-object encoding ---------------------------------------------------------------


def test_encode_writes_single_object_header_when_no_registry(codec: Codec) -> None:
    data = codec.encode(invoice_factory())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_for("InvoiceIssued").fingerprint
    assert codec.decode(data) == invoice_factory()


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO ("Rabin") as written out in the Avro specification."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_fingerprint_is_crc64_avro_of_canonical_form_little_endian_when_loaded() -> None:
    # Test vector of the Avro specification's test suite: "null" -> 7195948357588979594.
    assert crc64_avro(b'"null"') == 7195948357588979594
    for schema in load_schemas().values():
        expected = crc64_avro(schema.canonical.encode()).to_bytes(8, "little")
        assert schema.fingerprint == expected, schema.name


def test_decode_refuses_random_bytes_when_first_byte_matches_no_framing(codec: Codec) -> None:
    for data in (b"hello", b"\xc3\x02" + bytes(20), b'{"json": true}', b"\x7f"):
        assert decode_error(codec, data).reason is DecodeReason.UNKNOWN_ENCODING


@settings(max_examples=200)
@given(data=st.binary(min_size=1, max_size=200))
def test_decode_raises_only_decode_error_when_bytes_are_random(data: bytes) -> None:
    codec = Codec()
    try:
        codec.decode(data)
    except DecodeError as error:
        if data[0] not in (0x00, 0xC3):
            assert error.reason is DecodeReason.UNKNOWN_ENCODING


def test_decode_refuses_empty_value_when_tombstone(codec: Codec) -> None:
    assert decode_error(codec, b"").reason is DecodeReason.EMPTY_MESSAGE
    assert decode_error(codec, None).reason is DecodeReason.EMPTY_MESSAGE  # type: ignore[arg-type]


def test_decode_refuses_unknown_fingerprint_when_c3_01_header(codec: Codec) -> None:
    data = b"\xc3\x01" + bytes.fromhex("0102030405060708") + b"\x02"
    error = decode_error(codec, data)
    assert error.reason is DecodeReason.UNKNOWN_SCHEMA_FINGERPRINT
    assert "0102030405060708" in error.message


def test_decode_refuses_cut_header_when_shorter_than_fingerprint(codec: Codec) -> None:
    assert decode_error(codec, b"\xc3\x01\x00").reason is DecodeReason.UNKNOWN_ENCODING


def test_decode_names_the_field_when_amount_is_negative(codec: Codec) -> None:
    datum = to_datum(invoice_factory())
    datum["lines"][0]["amount_minor"] = -5
    datum["total_minor"] = -5
    error = decode_error(codec, single_object(InvoiceIssued, datum))
    assert error.reason is DecodeReason.VALIDATION_FAILED
    assert "lines.0.amount_minor" in error.message
    assert "total_minor" in error.message


def test_decode_names_the_field_when_currency_is_lowercase(codec: Codec) -> None:
    datum = {**to_datum(invoice_factory()), "currency": "usd"}
    error = decode_error(codec, single_object(InvoiceIssued, datum))
    assert error.reason is DecodeReason.VALIDATION_FAILED
    assert error.message.startswith("InvoiceIssued: currency:")


def test_validation_message_is_at_most_1_kib_when_many_fields_fail(codec: Codec) -> None:
    line = to_datum(invoice_factory())["lines"][0]
    datum = {
        **to_datum(invoice_factory()),
        "lines": [{**line, "line_id": "", "amount_minor": -1}] * 200,
        "currency": "x" * 5000,
    }
    error = decode_error(codec, single_object(InvoiceIssued, datum))
    assert error.reason is DecodeReason.VALIDATION_FAILED
    assert len(error.message.encode()) <= 1024


def test_decode_refuses_message_when_larger_than_limit() -> None:
    codec = Codec(max_message_bytes=64)
    data = Codec().encode(invoice_factory())
    assert len(data) > 64
    assert decode_error(codec, data).reason is DecodeReason.MESSAGE_TOO_LARGE


def test_decode_fails_avro_when_body_is_truncated(codec: Codec) -> None:
    data = codec.encode(invoice_factory())
    for cut in (11, len(data) // 2, len(data) - 1):
        assert decode_error(codec, data[:cut]).reason is DecodeReason.AVRO_DECODE_FAILED


def test_decode_fails_avro_when_bytes_trail_the_body(codec: Codec) -> None:
    error = decode_error(codec, codec.encode(invoice_factory()) + b"\x00")
    assert error.reason is DecodeReason.AVRO_DECODE_FAILED
    assert "1 bytes after the body" in error.message


def test_round_trip_keeps_nested_records_and_maps_when_entry() -> None:
    codec = Codec()
    entry = entry_factory()
    decoded = codec.decode(codec.encode(entry))
    assert decoded == entry
    assert isinstance(decoded.lines[0], JournalLine)  # type: ignore[attr-defined]
    assert isinstance(decoded.lines, tuple)  # type: ignore[attr-defined]


# --- floats ----------------------------------------------------------------------------------


def test_model_refuses_float_when_amount_is_float() -> None:
    with pytest.raises(ValidationError):
        invoice_factory(total_minor=12_000.0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydantic warns while dumping the float
def test_encode_refuses_float_when_smuggled_past_validation(codec: Codec) -> None:
    # fastavro would write 12000.7 into a long as 12000: the codec must refuse instead.
    smuggled = invoice_factory().model_copy(update={"total_minor": 12_000.7})
    with pytest.raises(EncodeError, match="total_minor is a float"):
        codec.encode(smuggled)


def test_decode_refuses_float_when_writer_schema_has_double_amount(
    registry: SchemaRegistryClient,
) -> None:
    expanded = json.loads(json.dumps(schema_for(InvoiceIssued).expanded))
    for field in expanded["fields"]:
        if field["name"] == "total_minor":
            field["type"] = "double"
    schema_id = registry.register_schema(
        "billing.events.v1-value", RegistrySchema(json.dumps(expanded), "AVRO")
    )
    datum = {**to_datum(invoice_factory()), "total_minor": 12_000.5}
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(expanded), datum)
    data = b"\x00" + schema_id.to_bytes(4, "big") + buffer.getvalue()
    error = decode_error(Codec(registry_client=registry), data)
    assert error.reason is DecodeReason.AVRO_DECODE_FAILED


# --- Confluent wire format ---------------------------------------------------------------


def test_confluent_round_trip_when_mock_registry(registry: SchemaRegistryClient) -> None:
    producer = Codec(registry_client=registry)
    consumer = Codec(registry_client=registry)
    data = producer.encode(invoice_factory(), topic="billing.events.v1")
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert (
        registry.get_latest_version("billing.events.v1-io.revledger.v1.InvoiceIssued").schema_id
        == schema_id
    )
    assert consumer.decode(data) == invoice_factory()
    assert consumer.decode(data) == invoice_factory()  # second time from the cache


def test_decode_tells_framings_apart_when_both_arrive(registry: SchemaRegistryClient) -> None:
    codec = Codec(registry_client=registry)
    confluent = codec.encode(entry_factory(), topic="ledger.entries.v1")
    single = Codec().encode(entry_factory())
    assert confluent[0] == 0x00 and single[:2] == b"\xc3\x01"
    assert codec.decode(confluent) == codec.decode(single) == entry_factory()


def test_codec_builds_mock_registry_when_given_mock_url() -> None:
    codec = Codec(schema_registry_url=f"mock://{uuid.uuid4()}")
    assert codec.uses_registry
    data = codec.encode(invoice_factory(), topic="billing.events.v1")
    assert codec.decode(data) == invoice_factory()


def test_encode_needs_topic_when_registry(registry: SchemaRegistryClient) -> None:
    with pytest.raises(EncodeError, match="topic"):
        Codec(registry_client=registry).encode(invoice_factory())


def test_decode_refuses_unknown_schema_id_when_registry_lacks_it(
    registry: SchemaRegistryClient,
) -> None:
    error = decode_error(Codec(registry_client=registry), b"\x00\x00\x00\x03\xe7\x02")
    assert error.reason is DecodeReason.UNKNOWN_SCHEMA_ID


def test_decode_refuses_schema_id_when_no_registry(codec: Codec) -> None:
    data = b"\x00\x00\x00\x00\x01" + b"\x02"
    assert decode_error(codec, data).reason is DecodeReason.UNKNOWN_SCHEMA_ID


def test_decode_refuses_schema_id_when_writer_record_is_not_ours(
    registry: SchemaRegistryClient,
) -> None:
    foreign = {"type": "record", "name": "Other", "namespace": "x", "fields": []}
    schema_id = registry.register_schema("x-value", RegistrySchema(json.dumps(foreign), "AVRO"))
    data = b"\x00" + schema_id.to_bytes(4, "big")
    error = decode_error(Codec(registry_client=registry), data + b"\x00")
    assert error.reason is DecodeReason.UNKNOWN_SCHEMA_ID


def test_decode_resolves_older_writer_when_field_was_added(
    registry: SchemaRegistryClient,
) -> None:
    # A producer on a schema without correlation_id: our reader fills the default.
    expanded = json.loads(json.dumps(schema_for(InvoiceIssued).expanded))
    expanded["fields"] = [f for f in expanded["fields"] if f["name"] != "correlation_id"]
    schema_id = registry.register_schema(
        "billing.events.v1-value", RegistrySchema(json.dumps(expanded), "AVRO")
    )
    datum = to_datum(invoice_factory())
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(expanded), datum)
    data = b"\x00" + schema_id.to_bytes(4, "big") + buffer.getvalue()
    assert Codec(registry_client=registry).decode(data) == invoice_factory()


# --- output records refused at the wire --------------------------------------------------


def test_decode_refuses_entry_when_debits_differ_from_credits(codec: Codec) -> None:
    datum = to_datum(entry_factory())
    datum["lines"][1]["amount_minor"] = 11_999
    error = decode_error(codec, single_object(JournalEntryPosted, datum))
    assert error.reason is DecodeReason.VALIDATION_FAILED
    assert "debits differ from credits" in error.message


def test_output_model_refuses_naive_datetime_when_timestamp() -> None:
    with pytest.raises(ValidationError, match="time zone"):
        ErpAck(
            batch_id="b1",
            entity="acme-us",
            sequence=1,
            status="imported",
            acknowledged_at=dt.datetime(2024, 3, 1, 9, 0),
        )
