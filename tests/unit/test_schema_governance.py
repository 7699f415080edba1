"""``revledger schemas check|release|register`` on temporary copies of the schema folder.

Each test edits a copy of ``avro/`` (current files and released versions) the way a
developer would, runs the command through :func:`main_schemas`, and reads what it prints.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, ServerConfig

from ledger.events import InvoiceIssued, InvoiceLine
from streams.schema_governance import (
    TOPIC_COMPATIBILITY,
    Compatibility,
    add_schemas_commands,
    avro_topics,
    generate_samples,
    main_schemas,
    register_schemas,
)
from streams.schemas import (
    SchemaError,
    load_released,
    load_released_from,
    load_schemas,
)
from streams.serde import Codec, value_subject
from streams.topics import JOURNAL_BATCHES, TOPICS

AVRO = Path(__file__).resolve().parents[2] / "avro"
SUMMARY = re.compile(r"^schemas check: (\d+) schemas, (\d+) released versions checked, (.+)$")


# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def avro_dir(tmp_path: Path) -> Path:
    """A copy of the schema folder: current files and released versions."""
    target = tmp_path / "avro"
    shutil.copytree(AVRO, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target


def schemas(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """Run ``revledger schemas ARGV``; its exit code and the lines it printed."""
    parser = argparse.ArgumentParser(prog="revledger")
    add_schemas_commands(parser.add_subparsers(dest="command"))
    code = main_schemas(parser.parse_args(["schemas", *argv]))
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).splitlines()


def edit(avro_dir: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Change the current schema file of ``name`` in place."""
    path = avro_dir / f"{name}.v1.avsc"
    schema = json.loads(path.read_text(encoding="utf-8"))
    change(schema)
    path.write_text(json.dumps(schema, indent=2), encoding="utf-8")


def field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in schema["fields"] if item["name"] == name)


def remove_field(name: str) -> Callable[[dict[str, Any]], None]:
    def change(schema: dict[str, Any]) -> None:
        schema["fields"] = [item for item in schema["fields"] if item["name"] != name]

    return change


def add_field(name: str, avro_type: Any, **extra: Any) -> Callable[[dict[str, Any]], None]:
    def change(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": name, "type": avro_type, "doc": "Added.", **extra})

    return change


def set_type(name: str, avro_type: Any) -> Callable[[dict[str, Any]], None]:
    def change(schema: dict[str, Any]) -> None:
        field(schema, name)["type"] = avro_type

    return change


# --- check on the repository (runs in make test) ------------------------------------------


def test_check_passes_when_the_repository_schemas_are_all_released(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, lines = schemas(capsys, "check")
    assert code == 0, "\n".join(lines)
    match = SUMMARY.match(lines[-1])
    assert match is not None, lines
    assert int(match[1]) == len(load_schemas())
    assert int(match[2]) == sum(len(versions) for versions in load_released().values())
    assert match[3] == "no violations"


def test_every_topic_has_a_compatibility_mode() -> None:
    assert set(TOPIC_COMPATIBILITY) == {spec.name for spec in avro_topics()}
    assert TOPIC_COMPATIBILITY[JOURNAL_BATCHES.name] is Compatibility.FULL_TRANSITIVE
    assert TOPIC_COMPATIBILITY["billing.events.v1"] is Compatibility.BACKWARD_TRANSITIVE


# --- breaking changes ---------------------------------------------------------------------------


def test_check_fails_naming_the_field_when_a_required_output_field_is_removed(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "JournalBatch", remove_field("entry_count"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert (
        "JournalBatch (against released v1): field `entry_count` removed without default — "
        "forbidden under FULL_TRANSITIVE (old readers need it)"
    ) in lines
    # fastavro agrees: a new batch does not read with the released schema.
    assert any(line.startswith("JournalBatch (against released v1): samples") for line in lines)
    assert lines[-1].endswith("2 violation(s)"), lines


def test_check_fails_naming_the_field_when_a_type_changes(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "InvoiceIssued", set_type("total_minor", "string"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert (
        "InvoiceIssued (against released v1): field `total_minor` type long → string — "
        "forbidden under BACKWARD_TRANSITIVE (new readers cannot read old records)"
    ) in lines
    assert any("samples written with released v1 fail to read" in line for line in lines)


def test_check_names_the_path_in_every_record_when_a_nested_type_changes(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "InvoiceLine", set_type("amount_minor", "int"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert any(
        line.startswith(
            "InvoiceIssued (against released v1): field `lines[].amount_minor` type long → int"
        )
        for line in lines
    ), lines
    assert any(
        line.startswith("InvoiceLine (against released v1): field `amount_minor`") for line in lines
    )


def test_check_fails_when_an_input_gains_a_field_without_default(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "CreditNoteIssued", add_field("tax_minor", "long"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert (
        "CreditNoteIssued (against released v1): field `tax_minor` added without default — "
        "forbidden under BACKWARD_TRANSITIVE (new readers cannot read old records)"
    ) in lines


def test_check_fails_on_outputs_only_when_a_field_becomes_optional(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "BatchLine", set_type("gl_code", ["null", "string"]))
    edit(avro_dir, "ErpAck", set_type("erp_document_id", ["null", "string", "long"]))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert (
        "JournalBatch (against released v1): field `lines[].gl_code` type string → "
        "[null, string] — forbidden under FULL_TRANSITIVE (old readers cannot read new records)"
    ) in lines
    # erp.acks.v1 is read by the workers only: wider types are backward compatible there.
    assert not any(line.startswith("ErpAck") for line in lines), lines


def test_check_allows_a_promotion_on_inputs_only_and_never_bytes_to_string(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "CustomerUpserted", set_type("schema_version", "long"))
    edit(avro_dir, "JournalBatch", set_type("source_partition", "long"))
    edit(avro_dir, "DlqRecord", set_type("original_key", ["null", "string"]))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert not any(line.startswith("CustomerUpserted") for line in lines), lines
    assert (
        "JournalBatch (against released v1): field `source_partition` type int → long — "
        "forbidden under FULL_TRANSITIVE (old readers cannot read new records)"
    ) in lines
    # Avro promotes bytes to string, but bytes that are not UTF-8 do not read as one.
    assert any(
        line.startswith(
            "DlqRecord (against released v1): field `original_key` type "
            "[null, bytes] → [null, string]"
        )
        for line in lines
    ), lines


def test_check_allows_removing_an_input_field_that_the_workers_stop_reading(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "PayoutPaid", remove_field("bank_account"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 0, lines


def test_check_reports_a_lost_enum_symbol_and_allows_a_new_one_on_inputs(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "ProductFamily", lambda schema: schema["symbols"].remove("services"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert (
        "ProductMapping (against released v1): field `family` lost enum symbol(s) services — "
        "forbidden under BACKWARD_TRANSITIVE (new readers cannot read old records that carry "
        "them)"
    ) in lines
    edit(avro_dir, "ProductFamily", lambda schema: schema["symbols"].extend(["services", "hw"]))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 0, lines


def test_check_reports_a_changed_logical_type(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    timestamp = {"type": "long", "logicalType": "timestamp-micros"}
    edit(avro_dir, "ClockAdvanced", set_type("business_date", timestamp))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    # ClockAdvanced is on control.v1 and, applied, on ledger.entries.v1: the strictest wins.
    assert (
        "ClockAdvanced (against released v1): field `business_date` logical type date → "
        "timestamp-micros — forbidden under FULL_TRANSITIVE (readers would misread the values)"
    ) in lines


def test_check_reports_a_default_that_does_not_fit_its_type(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "PayoutPaid", add_field("note", ["null", "string"], default="none"))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 1
    assert (
        "PayoutPaid: field `PayoutPaid.note` has default 'none', which is not a [null, string] "
        "— forbidden by the Avro specification (readers that fill the default would fail)"
    ) in lines


def test_check_reports_a_schema_removed_after_release(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (avro_dir / "ReconBreak.v1.avsc").unlink()
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir))
    assert code == 1
    assert any(
        line.startswith("ReconBreak: the schema was removed although it has released")
        for line in lines
    ), lines


# --- additive change, release ---------------------------------------------------------------


def test_additive_change_with_default_passes_and_release_freezes_it(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    optional = ["null", "string"]
    edit(avro_dir, "InvoiceIssued", add_field("purchase_order", optional, default=None))
    edit(avro_dir, "JournalBatch", add_field("erp_reference", optional, default=None))
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--allow-unreleased")
    assert code == 0, lines

    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir))
    assert code == 1
    assert sorted(line.split(":")[0] for line in lines[:-1]) == ["InvoiceIssued", "JournalBatch"]
    assert "has changed since released v1 — forbidden by the release rule" in lines[0]

    code, lines = schemas(capsys, "release", "--avro-dir", str(avro_dir))
    assert code == 0, lines
    assert lines == [
        "released released/io.revledger.v1.InvoiceIssued/2.avsc",
        "released released/io.revledger.v1.JournalBatch/2.avsc",
        "schemas release: 2 new released version(s)",
    ]
    released = load_released_from(avro_dir / "released")
    assert [v.version for v in released["io.revledger.v1.InvoiceIssued"]] == [1, 2]

    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir))
    assert code == 0, lines
    match = SUMMARY.match(lines[-1])
    assert match is not None and int(match[2]) == len(released) + 2

    # A doc-only change needs no release.
    edit(avro_dir, "InvoiceIssued", lambda schema: schema.update(doc="Reworded."))
    assert schemas(capsys, "release", "--avro-dir", str(avro_dir))[1] == [
        "schemas release: 0 new released version(s)"
    ]


def test_release_writes_nothing_when_the_change_is_breaking(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(avro_dir, "JournalBatch", remove_field("entry_count"))
    code, lines = schemas(capsys, "release", "--avro-dir", str(avro_dir))
    assert code == 1
    assert lines[-1] == "schemas release: nothing released, 2 violation(s)"
    assert not (avro_dir / "released/io.revledger.v1.JournalBatch/2.avsc").exists()


def test_released_versions_must_be_numbered_from_one_under_their_name(tmp_path: Path) -> None:
    folder = tmp_path / "released" / "io.revledger.v1.ErpAck"
    folder.mkdir(parents=True)
    shutil.copy(AVRO / "released/io.revledger.v1.ErpAck/1.avsc", folder / "2.avsc")
    with pytest.raises(SchemaError, match=r"versions are not 1\.\.n"):
        load_released_from(tmp_path / "released")
    (folder / "2.avsc").rename(folder / "1.avsc")
    folder.rename(folder.with_name("io.revledger.v1.Other"))
    with pytest.raises(SchemaError, match=r"defines io\.revledger\.v1\.ErpAck"):
        load_released_from(tmp_path / "released")


# --- against a git revision -------------------------------------------------------------------


def git(folder: Path, *argv: str) -> None:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", *identity, *argv], cwd=folder, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_check_against_a_committed_revision_fails_naming_the_field(
    avro_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    git(avro_dir, "init", "-q")
    git(avro_dir, "add", "-A")
    git(avro_dir, "commit", "-qm", "released schemas")
    edit(avro_dir, "JournalBatch", remove_field("entry_count"))
    edit(avro_dir, "InvoiceIssued", set_type("total_minor", "string"))
    released = avro_dir / "released/io.revledger.v1.ErpAck/1.avsc"
    released.write_text(released.read_text().replace("imported", "loaded"))
    git(avro_dir, "commit", "-qam", "a breaking change")

    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--against", "HEAD~1")
    assert code == 1
    assert (
        "JournalBatch (against HEAD~1): field `entry_count` removed without default — "
        "forbidden under FULL_TRANSITIVE (old readers need it)"
    ) in lines
    assert any(
        line.startswith("InvoiceIssued (against HEAD~1): field `total_minor` type long")
        for line in lines
    )
    assert (
        "released/io.revledger.v1.ErpAck/1.avsc (against HEAD~1): the released file was "
        "changed or removed — forbidden by the release rule (released versions are immutable)"
    ) in lines
    assert lines[-1].startswith("schemas check: 39 schemas, 39 schemas of HEAD~1 checked")

    assert schemas(capsys, "check", "--avro-dir", str(avro_dir), "--against", "HEAD")[0] == 0
    code, lines = schemas(capsys, "check", "--avro-dir", str(avro_dir), "--against", "nope")
    assert code == 2 and lines[0].startswith("revledger schemas: git ls-tree")


# --- registry ---------------------------------------------------------------------------------


# confluent-kafka's in-memory registry; its class is not exported under a public name.
MockRegistry: type = type(SchemaRegistryClient.new_client({"url": "mock://probe"}))


class RecordingRegistry(MockRegistry):  # type: ignore[misc, valid-type]
    """The mock registry, which ignores subject configs, remembering them."""

    def __init__(self) -> None:
        super().__init__({"url": f"mock://{uuid.uuid4()}"})
        self.configs: dict[str, ServerConfig] = {}

    def set_config(self, subject_name: str | None = None, config: Any = None) -> Any:
        self.configs[subject_name or ""] = config
        return config

    def get_config(self, subject_name: str | None = None) -> Any:
        return self.configs[subject_name or ""]


def test_register_sets_each_subjects_level_and_the_codec_writes_the_registered_ids() -> None:
    registry = RecordingRegistry()
    registrations = register_schemas(registry, load_schemas(), load_released())
    subjects = {registration.subject: registration for registration in registrations}
    assert len(subjects) == sum(len(spec.records) for spec in avro_topics())
    assert sorted(registry.get_subjects()) == sorted(subjects)
    batches = subjects["erp.journal-batches.v1-value"]
    invoices = subjects["billing.events.v1-io.revledger.v1.InvoiceIssued"]
    assert batches.compatibility is Compatibility.FULL_TRANSITIVE
    assert invoices.compatibility is Compatibility.BACKWARD_TRANSITIVE
    for subject, registration in subjects.items():
        assert registry.get_config(subject).compatibility.value == registration.compatibility
        assert len(registration.schema_ids) == 1  # one released version each today

    data = Codec(registry_client=registry).encode(invoice(), topic="billing.events.v1")
    assert int.from_bytes(data[1:5], "big") == invoices.schema_ids[-1]
    # The codec found the registered version: the subject did not grow.
    assert registry.get_versions("billing.events.v1-io.revledger.v1.InvoiceIssued") == [1]


def test_register_command_prints_every_subject_with_its_level(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"mock://{uuid.uuid4()}"
    code, lines = schemas(capsys, "register", "--registry", url)
    assert code == 0, lines
    assert (
        lines[-1]
        == f"schemas register: {sum(len(s.records) for s in avro_topics())} subjects at {url}"
    )
    assert any(
        line.startswith("erp.journal-batches.v1-value\tFULL_TRANSITIVE\tids ") for line in lines
    )
    assert any(
        line.startswith("control.v1-io.revledger.v1.ClockAdvanced\tBACKWARD_TRANSITIVE")
        for line in lines
    )


def test_value_subject_is_per_record_on_topics_that_carry_several() -> None:
    assert value_subject("erp.journal-batches.v1", "io.revledger.v1.JournalBatch") == (
        "erp.journal-batches.v1-value"
    )
    assert value_subject("billing.events.v1", "io.revledger.v1.InvoiceIssued") == (
        "billing.events.v1-io.revledger.v1.InvoiceIssued"
    )
    assert value_subject("t1a2-ledger.entries.v1", "io.revledger.v1.ClockAdvanced") == (
        "t1a2-ledger.entries.v1-io.revledger.v1.ClockAdvanced"
    )
    assert value_subject("elsewhere", "x.Y") == "elsewhere-value"


def test_a_topic_of_raw_bytes_is_not_governed() -> None:
    raw = [spec for spec in TOPICS if spec not in avro_topics()]
    assert all(not record.isidentifier() for spec in raw for record in spec.records)


# --- samples ------------------------------------------------------------------------------------

INNER = {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "long"}]}
COVERAGE_SCHEMA = {
    "type": "record",
    "name": "Everything",
    "namespace": "test",
    "fields": [
        {
            "name": "choice",
            "type": [
                "null",
                "string",
                {"type": "record", "name": "Inner", "fields": [{"name": "n", "type": "long"}]},
            ],
        },
        {
            "name": "colour",
            "type": {
                "type": "enum",
                "name": "Colour",
                "symbols": ["red", "green", "blue", "cyan", "black"],
            },
        },
        {"name": "items", "type": {"type": "array", "items": "Inner"}},
        {"name": "tags", "type": {"type": "map", "values": "bytes"}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "size", "type": "int"},
    ],
}


def test_samples_take_every_union_branch_and_enum_symbol_and_repeat_exactly() -> None:
    parsed = fastavro.parse_schema(COVERAGE_SCHEMA, named_schemas={})
    samples = generate_samples(parsed)
    assert len(samples) == 5  # the widest choice: five colours
    assert {sample["colour"] for sample in samples} == {"red", "green", "blue", "cyan", "black"}
    assert {type(sample["choice"]).__name__ for sample in samples} == {"NoneType", "str", "dict"}
    assert {len(sample["items"]) for sample in samples} == {0, 1, 2}
    assert {len(sample["tags"]) for sample in samples} == {0, 1, 2}
    assert {sample["size"] for sample in samples} >= {-(2**31), 2**31 - 1}
    assert all(isinstance(sample["day"], dt.date) for sample in samples)
    assert all(sample["at"].tzinfo is dt.UTC for sample in samples)
    assert generate_samples(parsed) == samples
    for sample in samples:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, sample)
        buffer.seek(0)
        assert fastavro.schemaless_reader(buffer, parsed, None) == sample


@pytest.mark.parametrize("name", sorted(load_schemas()))
def test_samples_of_every_schema_write_and_read_back(name: str) -> None:
    parsed = load_schemas()[name].parsed
    for sample in generate_samples(parsed):
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, parsed, sample)
        buffer.seek(0)
        assert fastavro.schemaless_reader(buffer, parsed, None) == sample


def invoice() -> InvoiceIssued:
    line = InvoiceLine(
        line_id="l1", description="Pro", product_id="pro", quantity=1, amount_minor=1_200
    )
    return InvoiceIssued(
        event_id="evt-1",
        occurred_at=dt.datetime(2024, 3, 1, tzinfo=dt.UTC),
        source_system="billing",
        source_id="in_1",
        entity="acme-us",
        customer_id="cus-1",
        invoice_id="inv-1",
        issue_date=dt.date(2024, 3, 1),
        due_date=dt.date(2024, 3, 31),
        currency="EUR",
        lines=(line,),
        total_minor=1_200,
    )
