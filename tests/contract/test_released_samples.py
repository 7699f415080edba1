"""Contract: records written with every released schema version decode with today's code.

``samples/<namespace.Name>/<n>.<variant>.bin`` are single-object encoded records written with
released version n when it was released, from the samples of ``test_schemas.py`` (variant
``full``: every field set; ``minimal``: defaulted fields left out). They are never
rewritten: a failure here means today's code can no longer read records that the topics
keep forever. After ``revledger schemas release``, store the new version's samples with
``python tests/contract/test_released_samples.py``.

``samples/synthetic/InvoiceIssued.v0.avsc`` is an older InvoiceIssued invented for these
tests: without ``correlation_id``, ``tax_lines`` and the invoice line's contract and service
fields, as if they had been added later with defaults. Decoding its records proves that the
codec resolves an old writer to today's reader rather than only matching fingerprints.
"""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import Schema as RegistrySchema
from confluent_kafka.schema_registry import SchemaRegistryClient
from test_schemas import INVOICE_LINE, SAMPLES, _minimal

from ledger.events import Record
from streams.messages import MODELS
from streams.schema_governance import Compatibility, compare_versions
from streams.schemas import Schema, load_released, load_schemas, standalone_schema
from streams.serde import (
    CONFLUENT_MAGIC,
    SINGLE_OBJECT_MAGIC,
    Codec,
    DecodeError,
    DecodeReason,
    to_datum,
    value_subject,
)

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
VARIANTS = ("full", "minimal")
RELEASED = [
    version
    for _, versions in sorted(load_released().items())
    for version in versions
    if version.name in MODELS
]


def sample_path(version: Schema, variant: str) -> Path:
    return SAMPLES_DIR / version.full_name / f"{version.version}.{variant}.bin"


def sample_record(name: str, variant: str) -> Record:
    model = MODELS[name]
    sample = SAMPLES[name] if variant == "full" else _minimal(model, SAMPLES[name])
    return model.model_validate(sample)


def encode_with(version: Schema, datum: dict[str, Any]) -> bytes:
    """Single-object encode ``datum`` with ``version``, as a producer on it would."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, version.parsed, datum)
    return SINGLE_OBJECT_MAGIC + version.fingerprint + buffer.getvalue()


def write_missing_samples() -> list[Path]:
    """Store the samples of released versions that have none (today's versions only).

    Raises:
        RuntimeError: an older released version has no samples; they can only be written
            while it is today's schema, when the sample records match it.
    """
    written: list[Path] = []
    for version in RELEASED:
        for variant in VARIANTS:
            path = sample_path(version, variant)
            if path.exists():
                continue
            if version.fingerprint != load_schemas()[version.name].fingerprint:
                raise RuntimeError(f"{path}: v{version.version} is no longer today's schema")
            record = sample_record(version.name, variant)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode_with(version, to_datum(record)))
            written.append(path)
    return written


# --- every released version ----------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", RELEASED, ids=[f"{v.name}-v{v.version}" for v in RELEASED])
def test_stored_sample_of_every_released_version_decodes_with_todays_codec(
    version: Schema, variant: str
) -> None:
    path = sample_path(version, variant)
    assert path.is_file(), f"{path} is missing: python tests/contract/test_released_samples.py"
    data = path.read_bytes()
    assert data[2:10] == version.fingerprint
    codec = Codec()
    record = codec.decode(data)
    assert type(record) is MODELS[version.name]
    if version.fingerprint == load_schemas()[version.name].fingerprint:
        # Today's version: decoding lost nothing, byte for byte.
        assert codec.encode(record) == data


def test_every_schema_with_a_model_has_a_released_version() -> None:
    assert {version.name for version in RELEASED} == set(MODELS)


# --- an old writer, resolved ---------------------------------------------------------------

SYNTHETIC_V0 = standalone_schema(
    json.loads((SAMPLES_DIR / "synthetic/InvoiceIssued.v0.avsc").read_text(encoding="utf-8")),
    0,
)
TODAY = load_schemas()["InvoiceIssued"]


def old_invoice() -> tuple[bytes, Record]:
    """Bytes of an invoice written with v0, and the record today's code must read from them."""
    written = {**SAMPLES["InvoiceIssued"], "tax_lines": [], "total_minor": 120_000}
    datum = to_datum(MODELS["InvoiceIssued"].model_validate(written))
    # What v0 cannot carry comes back as today's defaults.
    line = {key: INVOICE_LINE[key] for key in ("line_id", "description", "product_id")}
    line |= {"quantity": INVOICE_LINE["quantity"], "amount_minor": INVOICE_LINE["amount_minor"]}
    expected = MODELS["InvoiceIssued"].model_validate(
        {**written, "correlation_id": None, "lines": [line]}
    )
    return encode_with(SYNTHETIC_V0, datum), expected


def test_old_writer_decodes_through_resolution_when_its_version_is_released() -> None:
    data, expected = old_invoice()
    assert SYNTHETIC_V0.fingerprint != TODAY.fingerprint
    released = dict(load_released())
    released[TODAY.full_name] = (SYNTHETIC_V0, *released[TODAY.full_name])
    record = Codec(released=released).decode(data)
    assert record == expected
    assert record.correlation_id is None and record.tax_lines == ()
    assert record.lines[0].service_start is None


def test_old_writer_is_an_unknown_fingerprint_when_its_version_was_never_released() -> None:
    data, _ = old_invoice()
    with pytest.raises(DecodeError) as caught:
        Codec().decode(data)
    assert caught.value.reason is DecodeReason.UNKNOWN_SCHEMA_FINGERPRINT


def test_old_writer_decodes_from_its_registry_id() -> None:
    data, expected = old_invoice()
    registry = SchemaRegistryClient.new_client({"url": f"mock://{uuid.uuid4()}"})
    text = json.dumps(SYNTHETIC_V0.expanded, separators=(",", ":"))
    subject = value_subject("billing.events.v1", TODAY.full_name)
    schema_id = registry.register_schema(subject, RegistrySchema(text, "AVRO"))
    framed = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + data[10:]
    assert Codec(registry_client=registry).decode(framed) == expected


def test_synthetic_old_version_to_today_is_a_compatible_change() -> None:
    for mode in Compatibility:
        assert compare_versions(SYNTHETIC_V0, TODAY, mode, "v0") == []


if __name__ == "__main__":
    for stored in write_missing_samples():
        print(f"wrote {stored.relative_to(SAMPLES_DIR.parent)}")
