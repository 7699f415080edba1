"""Schema governance: each topic's compatibility mode, checked, released and registered.

Owns the evolution policy of docs/SCHEMAS.md as code:

- :data:`TOPIC_COMPATIBILITY`: BACKWARD_TRANSITIVE on topics the workers read (new code
  reads every record ever written), FULL_TRANSITIVE on outputs that ERP import jobs and
  other consumers read (and old consumers also read new records). A schema used on
  several topics, itself or nested in a record, takes the strictest of their modes.
- :func:`check_schemas` / :func:`check_against_revision`: every current schema against
  every released version (``avro/released/<namespace.Name>/<n>.avsc``) or against the
  schemas of a git revision, by the Avro resolution rules twice over: a structural
  comparison that names the field and the rule, and fastavro reading deterministic
  samples written by one version with the other (:func:`generate_samples`).
- :func:`release_schemas`: freeze each changed schema as its next released version.
- :func:`register_schemas`: subjects (:func:`streams.serde.value_subject`) and their
  compatibility levels in a Confluent-compatible registry.
- ``revledger schemas check|release|register`` (:func:`add_schemas_commands`).

Worked example: removing the required ``entry_count`` from ``JournalBatch`` (read by ERP
import jobs) reports ``JournalBatch (against released v1): field `entry_count` removed
without default — forbidden under FULL_TRANSITIVE (old readers need it)``.

Must not import: faust, aiokafka, psycopg; confluent_kafka only inside ``register``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import io
import json
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import fastavro

from streams import topics
from streams.schemas import (
    RELEASED_FOLDER,
    SCHEMA_PACKAGE,
    Schema,
    SchemaError,
    load_released_from,
    load_schemas_from,
)
from streams.serde import value_subject


class Compatibility(StrEnum):
    """A subject's compatibility mode (Confluent names), weakest first."""

    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"


_BACKWARD = Compatibility.BACKWARD_TRANSITIVE
_FULL = Compatibility.FULL_TRANSITIVE
_STRICTNESS = {_BACKWARD: 0, _FULL: 1}

# Inputs are read by the workers, which upgrade before any producer writes a new version;
# outputs are read by ERP import jobs and other teams' consumers on their own calendars,
# so a record of either version must read with the other (docs/SCHEMAS.md).
TOPIC_COMPATIBILITY: Mapping[str, Compatibility] = {
    topics.BILLING.name: _BACKWARD,
    topics.PAYMENTS.name: _BACKWARD,
    topics.CONTRACTS.name: _BACKWARD,
    topics.USAGE.name: _BACKWARD,
    topics.CONTROL.name: _BACKWARD,
    topics.LEDGER_INPUTS.name: _BACKWARD,
    topics.REF_ENTITIES.name: _BACKWARD,
    topics.REF_FX_RATES.name: _BACKWARD,
    topics.REF_PRODUCTS.name: _BACKWARD,
    topics.REF_GL_MAPPINGS.name: _BACKWARD,
    # Written by the ERP side's import job, read by the projection and erp-resend.
    topics.ERP_ACKS.name: _BACKWARD,
    topics.ENTRIES.name: _FULL,
    topics.REVENUE_SCHEDULES.name: _FULL,
    topics.JOURNAL_BATCHES.name: _FULL,
    topics.DLQ.name: _FULL,
    topics.RECON_BREAKS.name: _FULL,
}


def avro_topics() -> tuple[topics.TopicSpec, ...]:
    """The topics whose values are Avro records.

    A topic of raw bytes names its records in words (``"StripeEvent (raw JSON)"``), not by
    schema name: it has no schema, no mode and no subject.
    """
    return tuple(
        spec for spec in topics.TOPICS if any(record.isidentifier() for record in spec.records)
    )


class GovernanceError(RuntimeError):
    """Raised when a check cannot run: git missing, an unknown revision, no schemas there."""


class _Direction(Enum):
    """Which reader reads which writer; a mode forbids what fails in its directions."""

    BACKWARD = "new readers cannot read old records"
    FORWARD = "old readers cannot read new records"


_DIRECTIONS = {_BACKWARD: (_Direction.BACKWARD,), _FULL: (_Direction.BACKWARD, _Direction.FORWARD)}


@dataclass(frozen=True, slots=True)
class Violation:
    """One change that the policy forbids, said the way the report prints it."""

    schema: str
    against: str
    subject: str
    change: str
    rule: str
    why: str

    def __str__(self) -> str:
        where = f"{self.schema} (against {self.against})" if self.against else self.schema
        # A compatibility mode forbids "under"; the other rules of docs/SCHEMAS.md "by".
        preposition = "under" if self.rule in Compatibility.__members__ else "by"
        forbidden = f"forbidden {preposition} {self.rule} ({self.why})"
        return f"{where}: {self.subject} {self.change} — {forbidden}"


@dataclass(frozen=True, slots=True)
class CheckReport:
    """What a check found: its violations and how much it compared."""

    violations: tuple[Violation, ...]
    schemas: int
    versions: int
    against: str = "released versions"

    def summary(self) -> str:
        """One line: schemas and versions checked, and the number of violations."""
        found = f"{len(self.violations)} violation(s)" if self.violations else "no violations"
        return (
            f"schemas check: {self.schemas} schemas, {self.versions} {self.against} "
            f"checked, {found}"
        )


# --- policy per schema -------------------------------------------------------------------


def schema_modes(current: Mapping[str, Schema]) -> tuple[dict[str, Compatibility], list[str]]:
    """The mode of every current schema (by full name), and the topic table's gaps.

    A schema takes the strictest mode of the topics whose records use it, itself or nested
    (an enum, a line record); one on no topic is held to FULL_TRANSITIVE.
    """
    modes: dict[str, Compatibility] = {}
    gaps: list[str] = []
    for spec in avro_topics():
        mode = TOPIC_COMPATIBILITY.get(spec.name)
        if mode is None:
            gaps.append(f"topic {spec.name} has no compatibility mode in TOPIC_COMPATIBILITY")
            continue
        for record in spec.records:
            if record not in current:
                gaps.append(f"topic {spec.name} carries {record}, which has no schema file")
                continue
            for full_name in _named_types(current[record].parsed):
                previous = modes.get(full_name)
                if previous is None or _STRICTNESS[mode] > _STRICTNESS[previous]:
                    modes[full_name] = mode
    for schema in current.values():
        modes.setdefault(schema.full_name, _FULL)
    return modes, gaps


def _named_types(parsed: Any) -> list[str]:
    """Full names of every named type a parsed schema defines, itself included."""
    return list(parsed.get("__named_schemas", {})) if isinstance(parsed, dict) else []


# --- structural comparison (the Avro resolution rules, named) ----------------------------

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED_OR_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
# (writer type, reader type) pairs that the Avro specification resolves by promotion. Not
# bytes -> string, which the specification allows too: bytes that are not UTF-8 fail to
# read as a string (fastavro raises), so records written before would not decode.
_PROMOTIONS = frozenset(
    {
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
    }
)


@dataclass(frozen=True, slots=True)
class _Issue:
    path: str
    change: str
    why: str


class _Resolution:
    """Compares a reader schema with a writer schema by the Avro specification's rules."""

    def __init__(self, reader: Any, writer: Any, direction: _Direction) -> None:
        self.reader_names = reader.get("__named_schemas", {})
        self.writer_names = writer.get("__named_schemas", {})
        self.direction = direction
        self._visiting: set[tuple[str, str]] = set()

    def issues(self, reader: Any, writer: Any, path: str) -> list[_Issue]:
        """Everything that stops ``writer``'s data from reading as ``reader``, with where."""
        reader = _deref(reader, self.reader_names)
        writer = _deref(writer, self.writer_names)
        if isinstance(writer, list):
            return self._writer_union(reader, writer, path)
        if isinstance(reader, list):
            return self._reader_union(reader, writer, path)
        found = self._logical(reader, writer, path)
        kind_r, kind_w = _kind(reader), _kind(writer)
        if (kind_r == kind_w and kind_r in _PRIMITIVES) or (kind_w, kind_r) in _PROMOTIONS:
            return found
        if kind_r != kind_w:
            return [*found, self._type_change(reader, writer, path)]
        if kind_r == "record":
            return found + self._record(reader, writer, path)
        if kind_r == "enum":
            return found + self._enum(reader, writer, path)
        if kind_r == "array":
            return found + self.issues(reader["items"], writer["items"], f"{path}[]")
        if kind_r == "map":
            return found + self.issues(reader["values"], writer["values"], f"{path}{{}}")
        if not _same_name(reader, writer) or reader.get("size") != writer.get("size"):
            return [*found, self._type_change(reader, writer, path)]
        return found

    def _writer_union(self, reader: Any, writer: list[Any], path: str) -> list[_Issue]:
        """Every branch the writer may have written must read as the reader."""
        found: list[_Issue] = []
        for branch in writer:
            branch_issues = self.issues(reader, branch, path)
            if any(
                issue.path == path and issue.change.startswith("type") for issue in branch_issues
            ):
                return [self._type_change(reader, writer, path)]
            found.extend(branch_issues)
        return found

    def _reader_union(self, reader: list[Any], writer: Any, path: str) -> list[_Issue]:
        """The writer's type must read as one branch of the reader's union."""
        closest: list[_Issue] | None = None
        for branch in reader:
            branch_issues = self.issues(branch, writer, path)
            if not branch_issues:
                return []
            target = _deref(branch, self.reader_names)
            if closest is None and _kind(target) == _kind(writer) and _same_name(target, writer):
                closest = branch_issues
        return closest if closest is not None else [self._type_change(reader, writer, path)]

    def _record(self, reader: Any, writer: Any, path: str) -> list[_Issue]:
        if not _same_name(reader, writer):
            return [self._type_change(reader, writer, path)]
        key = (reader["name"], writer["name"])
        if key in self._visiting:  # a recursive type: its fields are being compared already
            return []
        self._visiting.add(key)
        written = {field["name"]: field for field in writer["fields"]}
        found: list[_Issue] = []
        for field in reader["fields"]:
            where = f"{path}.{field['name']}" if path else field["name"]
            names = [field["name"], *field.get("aliases", ())]
            source = next((written[name] for name in names if name in written), None)
            if source is not None:
                found.extend(self.issues(field["type"], source["type"], where))
            elif "default" not in field:
                found.append(self._missing(where))
        self._visiting.discard(key)
        return found

    def _enum(self, reader: Any, writer: Any, path: str) -> list[_Issue]:
        if not _same_name(reader, writer):
            return [self._type_change(reader, writer, path)]
        unknown = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
        if not unknown or "default" in reader:
            return []
        if self.direction is _Direction.BACKWARD:
            change = f"lost enum symbol(s) {', '.join(unknown)}"
        else:
            change = f"gained enum symbol(s) {', '.join(unknown)} and the old enum has no default"
        return [_Issue(path, change, f"{self.direction.value} that carry them")]

    def _missing(self, path: str) -> _Issue:
        if self.direction is _Direction.BACKWARD:
            return _Issue(path, "added without default", self.direction.value)
        return _Issue(path, "removed without default", "old readers need it")

    def _type_change(self, reader: Any, writer: Any, path: str) -> _Issue:
        old, new = (writer, reader) if self.direction is _Direction.BACKWARD else (reader, writer)
        old_text = _describe(old, self.writer_names if old is writer else self.reader_names)
        new_text = _describe(new, self.writer_names if new is writer else self.reader_names)
        return _Issue(path, f"type {old_text} → {new_text}", self.direction.value)

    def _logical(self, reader: Any, writer: Any, path: str) -> list[_Issue]:
        """A changed logical type resolves in Avro but changes what the number means."""
        logical_r, logical_w = _logical_type(reader), _logical_type(writer)
        if logical_r == logical_w:
            return []
        old, new = logical_w, logical_r
        if self.direction is _Direction.FORWARD:
            old, new = new, old
        return [
            _Issue(
                path,
                f"logical type {old or 'none'} → {new or 'none'}",
                "readers would misread the values",
            )
        ]


def _deref(node: Any, names: Mapping[str, Any]) -> Any:
    """Follow named references and ``{"type": <type>}`` wrappers to a type definition.

    A primitive stays a dict only when it carries a logical type; a union stays a list.
    """
    while True:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            node = names[node]
        elif isinstance(node, dict):
            kind = node["type"]
            if isinstance(kind, str) and kind in _NAMED_OR_COMPLEX:
                return node
            if isinstance(kind, str) and kind in _PRIMITIVES:
                return node if _logical_type(node) else kind
            node = kind
        else:
            return node


def _kind(node: Any) -> str:
    """``"long"``, ``"record"``, ``"union"`` ... of a dereferenced type."""
    if isinstance(node, list):
        return "union"
    if isinstance(node, str):
        return node
    return "record" if node["type"] == "error" else node["type"]


def _logical_type(node: Any) -> str | None:
    return node.get("logicalType") if isinstance(node, dict) else None


def _same_name(reader: Any, writer: Any) -> bool:
    """Named types resolve when the full names match or a reader alias names the writer."""
    if not isinstance(reader, dict) or "name" not in reader:
        return True
    namespace = reader["name"].rpartition(".")[0]
    aliases = {
        alias if "." in alias or not namespace else f"{namespace}.{alias}"
        for alias in reader.get("aliases", ())
    }
    return writer.get("name") == reader["name"] or writer.get("name") in aliases


def _describe(node: Any, names: Mapping[str, Any]) -> str:
    """A short human form of a type: ``long``, ``[null, string]``, ``array<InvoiceLine>``."""
    node = _deref(node, names)
    if isinstance(node, list):
        return "[" + ", ".join(_describe(branch, names) for branch in node) + "]"
    if isinstance(node, str):
        return node
    kind = _kind(node)
    if kind == "array":
        return f"array<{_describe(node['items'], names)}>"
    if kind == "map":
        return f"map<{_describe(node['values'], names)}>"
    if "name" in node:
        return f"{kind} {node['name'].rsplit('.', 1)[-1]}"
    logical = _logical_type(node)
    return f"{kind} ({logical})" if logical else kind


def structural_violations(
    old: Schema, new: Schema, mode: Compatibility, against: str
) -> list[Violation]:
    """The changes from ``old`` to ``new`` that ``mode`` forbids, each naming its field."""
    merged: dict[tuple[str, str], list[str]] = {}
    for direction in _DIRECTIONS[mode]:
        reader, writer = (new, old) if direction is _Direction.BACKWARD else (old, new)
        resolution = _Resolution(reader.parsed, writer.parsed, direction)
        for issue in resolution.issues(reader.parsed, writer.parsed, ""):
            whys = merged.setdefault((issue.path, issue.change), [])
            if issue.why not in whys:
                whys.append(issue.why)
    root = "the schema" if new.expanded.get("type") == "enum" else "the record"
    return [
        Violation(
            schema=new.name,
            against=against,
            subject=f"field `{path}`" if path else root,
            change=change,
            rule=mode.value,
            why="; ".join(whys),
        )
        for (path, change), whys in merged.items()
    ]


# --- defaults ----------------------------------------------------------------------------

_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def default_violations(schema: Schema) -> list[Violation]:
    """Field defaults that do not fit their type (a union's default fits its first branch).

    An unfit default breaks resolution only when a reader needs it, which is too late.
    """
    found: list[Violation] = []
    names = schema.parsed.get("__named_schemas", {})
    for full_name, definition in names.items():
        if definition.get("type") not in ("record", "error"):
            continue
        for field in definition["fields"]:
            if "default" in field and not _default_fits(field["default"], field["type"], names):
                where = f"{full_name.rsplit('.', 1)[-1]}.{field['name']}"
                found.append(
                    Violation(
                        schema=schema.name,
                        against="",
                        subject=f"field `{where}`",
                        change=f"has default {field['default']!r}, which is not a "
                        f"{_describe(field['type'], names)}",
                        rule="the Avro specification",
                        why="readers that fill the default would fail",
                    )
                )
    return found


def _default_fits(value: Any, node: Any, names: Mapping[str, Any]) -> bool:
    """Whether ``value`` (as JSON) is a valid default of the type ``node``."""
    node = _deref(node, names)
    if isinstance(node, list):
        return bool(node) and _default_fits(value, node[0], names)
    kind = _kind(node)
    if kind in _INT_RANGE:
        low, high = _INT_RANGE[kind]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    simple = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "double": isinstance(value, (int, float)) and not isinstance(value, bool),
        "bytes": isinstance(value, str),
        "string": isinstance(value, str),
    }
    if kind in simple:
        return simple[kind]
    if kind == "fixed":
        return isinstance(value, str) and len(value) == node["size"]
    if kind == "enum":
        return value in node["symbols"]
    if kind == "array":
        return isinstance(value, list) and all(
            _default_fits(item, node["items"], names) for item in value
        )
    if kind == "map":
        return isinstance(value, dict) and all(
            _default_fits(item, node["values"], names) for item in value.values()
        )
    return isinstance(value, dict) and all(
        _default_fits(value[field["name"]], field["type"], names)
        if field["name"] in value
        else "default" in field
        for field in node["fields"]
    )


# --- samples -----------------------------------------------------------------------------

# At least this many samples, so int and long take each of their four values.
_MIN_SAMPLES = 4
# Past this nesting depth, unions take their null branch and arrays and maps stay empty,
# so that a recursive type ends.
_MAX_SAMPLE_DEPTH = 6
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LONGS = (0, 1, -(2**63), 2**63 - 1)
_INTS = (0, 1, -(2**31), 2**31 - 1)
_DAYS = (0, 1, 19_783, 2_932_896)  # 1970-01-01, 1970-01-02, 2024-03-01, 9999-12-31
_MICROS = (0, 1, 1_709_296_215_123_456, 7_258_118_400_000_000)  # ... 2200-01-01
_STRINGS = ("", "a", "Ünïcode ✓", "x" * 40)
_BYTES = (b"", b"\x00", b"\xff\xfe", b"revledger")


def generate_samples(parsed: Any) -> list[Any]:
    """Deterministic data of the parsed schema ``parsed``, as fastavro writes it.

    Sample k takes branch ``k mod n`` of each union and symbol ``k mod n`` of each enum
    (offset by the field's position), arrays and maps of 0, 1 and 2 items, both limits of
    int and long, dates and timestamps as dates and aware datetimes: together the samples
    take every branch and symbol. The same schema always gives the same samples.
    """
    names = parsed.get("__named_schemas", {}) if isinstance(parsed, dict) else {}
    count = max(_MIN_SAMPLES, _widest(parsed, names, set()))
    return [_sample(parsed, names, index, 0) for index in range(count)]


def _widest(node: Any, names: Mapping[str, Any], seen: set[str]) -> int:
    """The largest union or enum in ``node``: that many samples cover every choice."""
    if isinstance(node, list):
        return max([len(node), *(_widest(branch, names, seen) for branch in node)])
    if isinstance(node, str):
        if node in _PRIMITIVES or node in seen:
            return 0
        seen.add(node)
        return _widest(names[node], names, seen)
    kind = node["type"]
    if not isinstance(kind, str) or kind not in _NAMED_OR_COMPLEX:
        return 0 if isinstance(kind, str) and kind in _PRIMITIVES else _widest(kind, names, seen)
    if "name" in node:
        seen.add(node["name"])
    if kind == "enum":
        return len(node["symbols"])
    if kind == "array":
        return _widest(node["items"], names, seen)
    if kind == "map":
        return _widest(node["values"], names, seen)
    if kind in ("record", "error"):
        return max([0, *(_widest(field["type"], names, seen) for field in node["fields"])])
    return 0


def _sample(node: Any, names: Mapping[str, Any], k: int, depth: int) -> Any:
    if isinstance(node, list):
        if depth >= _MAX_SAMPLE_DEPTH and "null" in node:
            return None
        return _sample(node[k % len(node)], names, k, depth)
    node = _deref(node, names)
    if isinstance(node, str):
        return _primitive(node, None, k, {})
    kind = _kind(node)
    if kind in _PRIMITIVES:
        return _primitive(kind, _logical_type(node), k, node)
    if kind == "record":
        return {
            field["name"]: _sample(field["type"], names, k + index, depth + 1)
            for index, field in enumerate(node["fields"])
        }
    if kind == "enum":
        return node["symbols"][k % len(node["symbols"])]
    size = 0 if depth >= _MAX_SAMPLE_DEPTH else k % 3
    if kind == "array":
        return [_sample(node["items"], names, k + item, depth + 1) for item in range(size)]
    if kind == "map":
        return {
            f"key{item}": _sample(node["values"], names, k + item, depth + 1)
            for item in range(size)
        }
    return bytes([k % 256]) * node["size"]  # fixed


def _primitive(kind: str, logical: str | None, k: int, node: Mapping[str, Any]) -> Any:
    """Value ``k`` of a primitive type, as the Python type fastavro takes for it."""
    pick = k % 4
    if logical == "date":
        return dt.date(1970, 1, 1) + dt.timedelta(days=_DAYS[pick])
    if logical in ("timestamp-micros", "timestamp-millis"):
        micros = _MICROS[pick] if logical == "timestamp-micros" else _MICROS[pick] // 1000 * 1000
        return _EPOCH + dt.timedelta(microseconds=micros)
    if logical == "decimal":
        return decimal.Decimal(_INTS[pick] % 10**6).scaleb(-int(node.get("scale", 0)))
    if logical == "uuid":
        return str(uuid.UUID(int=k))
    values: dict[str, Any] = {
        "null": None,
        "boolean": k % 2 == 1,
        "int": _INTS[pick],
        "long": _LONGS[pick],
        # Avro float and double fields only; amounts are longs (no schema has a float).
        "float": (0.0, 1.5, -2.25, 1e10)[pick],
        "double": (0.0, 1.5, -2.25, 1e10)[pick],
        "bytes": _BYTES[pick],
        "string": _STRINGS[pick],
    }
    return values[kind]


def sample_violations(
    old: Schema, new: Schema, mode: Compatibility, against: str
) -> list[Violation]:
    """Samples of one version that fastavro cannot read with the other, per direction."""
    found: list[Violation] = []
    for direction in _DIRECTIONS[mode]:
        if direction is _Direction.BACKWARD:
            writer, reader, labels = old, new, (against, "the current schema")
        else:
            writer, reader, labels = new, old, ("the current schema", against)
        for datum in generate_samples(writer.parsed):
            failure = _read_failure(writer.parsed, reader.parsed, datum)
            if failure is not None:
                found.append(
                    Violation(
                        schema=new.name,
                        against=against,
                        subject="samples",
                        change=f"written with {labels[0]} fail to read with {labels[1]} "
                        f"({failure})",
                        rule=mode.value,
                        why=direction.value,
                    )
                )
                break
    return found


def _read_failure(writer: Any, reader: Any, datum: Any) -> str | None:
    """Write ``datum`` with ``writer``, read it with ``reader``: None, or why it failed."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, writer, datum)
    buffer.seek(0)
    try:
        fastavro.schemaless_reader(buffer, writer, reader)
    # fastavro signals a failed resolution with several exception types.
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        return text if len(text) <= 200 else text[:197] + "..."
    return None


# --- checks --------------------------------------------------------------------------------


def compare_versions(
    old: Schema, new: Schema, mode: Compatibility, against: str
) -> list[Violation]:
    """Structural and sample violations of changing ``old`` into ``new`` under ``mode``."""
    found = structural_violations(old, new, mode, against)
    return found + sample_violations(old, new, mode, against)


def check_schemas(
    current: Mapping[str, Schema],
    released: Mapping[str, Sequence[Schema]],
    *,
    allow_unreleased: bool = False,
) -> CheckReport:
    """Check every current schema against every released version of it.

    Args:
        current: today's schemas by short name (:func:`streams.schemas.load_schemas_from`).
        released: released versions by full name (:func:`streams.schemas.load_released_from`).
        allow_unreleased: do not report schemas that differ from their last released
            version (while editing; CI does not allow them).
    """
    modes, gaps = schema_modes(current)
    found = [Violation("topics", "", gap, "", "the policy", "docs/SCHEMAS.md") for gap in gaps]
    compared = 0
    for schema in current.values():
        versions = released.get(schema.full_name, ())
        for version in versions:
            compared += 1
            against = f"released v{version.version}"
            found += compare_versions(version, schema, modes[schema.full_name], against)
        found += default_violations(schema)
        if not allow_unreleased and _needs_release(schema, versions):
            found.append(_unreleased(schema, versions))
    current_names = {schema.full_name for schema in current.values()}
    for full_name in sorted(set(released) - current_names):
        found.append(
            Violation(
                full_name.rsplit(".", 1)[-1],
                "",
                "the schema",
                "was removed although it has released versions",
                "the retirement rule",
                "the topics keep its records and a rebuild must decode them: keep the file",
            )
        )
    return CheckReport(tuple(found), len(current), compared)


def _needs_release(schema: Schema, versions: Sequence[Schema]) -> bool:
    return not versions or _comparable(versions[-1].expanded) != _comparable(schema.expanded)


def _unreleased(schema: Schema, versions: Sequence[Schema]) -> Violation:
    state = f"has changed since released v{len(versions)}" if versions else "was never released"
    return Violation(
        schema.name,
        "",
        "the schema",
        state,
        "the release rule",
        "a record written with a version that is not kept becomes unreadable once the "
        "schema changes again: run `revledger schemas release`",
    )


def _comparable(node: Any) -> Any:
    """A schema without its docs: a doc-only change needs no release."""
    if isinstance(node, list):
        return [_comparable(item) for item in node]
    if isinstance(node, dict):
        return {key: _comparable(value) for key, value in node.items() if key != "doc"}
    return node


def check_against_revision(avro_dir: Path, revision: str) -> CheckReport:
    """Check the schemas in ``avro_dir`` against those of git ``revision``.

    Each current schema is compared with the same name at ``revision``; a schema there
    that is gone now, or a released file there that is changed or gone now, is reported.

    Raises:
        GovernanceError: git is missing, ``revision`` is unknown or has no schemas.
    """
    current = load_schemas_from(avro_dir)
    listing = _git(avro_dir, "ls-tree", "-r", "--name-only", revision, "--", ".")
    files = listing.decode().splitlines()
    before = _schemas_at(avro_dir, revision, files)
    modes, gaps = schema_modes(current)
    found = [Violation("topics", "", gap, "", "the policy", "docs/SCHEMAS.md") for gap in gaps]
    compared = 0
    for schema in current.values():
        found += default_violations(schema)
        old = before.pop(schema.full_name, None)
        if old is not None:
            compared += 1
            found += compare_versions(old, schema, modes[schema.full_name], revision)
    for full_name in sorted(before):
        found.append(
            Violation(
                full_name.rsplit(".", 1)[-1],
                revision,
                "the schema",
                "was removed",
                "the retirement rule",
                "consumers and rebuilds still read its records",
            )
        )
    for name in files:
        if name.startswith(f"{RELEASED_FOLDER}/") and not _same_file(avro_dir, revision, name):
            found.append(
                Violation(
                    name,
                    revision,
                    "the released file",
                    "was changed or removed",
                    "the release rule",
                    "released versions are immutable",
                )
            )
    return CheckReport(tuple(found), len(current), compared, f"schemas of {revision}")


def _schemas_at(avro_dir: Path, revision: str, files: Sequence[str]) -> dict[str, Schema]:
    """The current schemas of ``revision`` (its top-level files), by full name."""
    top_level = [name for name in files if name.endswith(".avsc") and "/" not in name]
    if not top_level:
        raise GovernanceError(f"{revision} has no .avsc files in {avro_dir}")
    with tempfile.TemporaryDirectory(prefix="revledger-schemas-") as folder:
        for name in top_level:
            (Path(folder) / name).write_bytes(_git(avro_dir, "show", f"{revision}:./{name}"))
        schemas = load_schemas_from(Path(folder))
    return {schema.full_name: schema for schema in schemas.values()}


def _same_file(avro_dir: Path, revision: str, name: str) -> bool:
    path = avro_dir / name
    return path.is_file() and path.read_bytes() == _git(avro_dir, "show", f"{revision}:./{name}")


def _git(folder: Path, *arguments: str) -> bytes:
    """Run git in ``folder``; its output, or GovernanceError with git's message."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), *arguments], capture_output=True, check=False, timeout=60
        )
    except FileNotFoundError as exc:
        raise GovernanceError("--against needs git, which is not installed") from exc
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise GovernanceError(f"git {' '.join(arguments)}: {message}")
    return result.stdout


# --- release -------------------------------------------------------------------------------


def release_schemas(avro_dir: Path) -> tuple[CheckReport, list[Path]]:
    """Write each schema that differs from its last released version as the next one.

    Nothing is written when the check (unreleased schemas allowed) finds a violation: a
    released version can never be taken back.

    Returns:
        The check's report and the files written.
    """
    current = load_schemas_from(avro_dir)
    released = load_released_from(avro_dir / RELEASED_FOLDER)
    report = check_schemas(current, released, allow_unreleased=True)
    if report.violations:
        return report, []
    written: list[Path] = []
    for schema in current.values():
        versions = released.get(schema.full_name, ())
        if not _needs_release(schema, versions):
            continue
        path = avro_dir / RELEASED_FOLDER / schema.full_name / f"{len(versions) + 1}.avsc"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(schema.expanded, indent=2, ensure_ascii=False) + "\n"
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return report, written


# --- registry ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """One subject as registered: its level and the ids of its versions, oldest first."""

    subject: str
    compatibility: Compatibility
    schema_ids: tuple[int, ...]


def planned_subjects(current: Mapping[str, Schema]) -> Iterator[tuple[str, Compatibility, Schema]]:
    """Every (subject, level, schema) of the topic table, as the codec names subjects."""
    for spec in avro_topics():
        mode = TOPIC_COMPATIBILITY[spec.name]
        for record in spec.records:
            schema = current[record]
            yield value_subject(spec.name, schema.full_name), mode, schema


def register_schemas(
    client: Any, current: Mapping[str, Schema], released: Mapping[str, Sequence[Schema]]
) -> list[Registration]:
    """Set each subject's compatibility level, then register its versions in order.

    The released versions go first, oldest first, then today's schema when it is not
    released yet: the registry's transitive check then compares with the same history as
    ``schemas check``. The schema text is the codec's, so the ids are those it uses.

    Raises:
        confluent_kafka.schema_registry.error.SchemaRegistryError: the registry refused a
            level or a version (409: incompatible with the subject's history).
    """
    from confluent_kafka.schema_registry import ConfigCompatibilityLevel, ServerConfig
    from confluent_kafka.schema_registry import Schema as RegistrySchema

    registrations: list[Registration] = []
    for subject, mode, schema in planned_subjects(current):
        # Set before registering, so that the registry checks these versions by it.
        client.set_config(subject, ServerConfig(compatibility=ConfigCompatibilityLevel(mode.value)))
        versions = list(released.get(schema.full_name, ()))
        if _needs_release(schema, versions):
            versions.append(schema)
        ids = tuple(
            client.register_schema(subject, RegistrySchema(_registry_text(version), "AVRO"))
            for version in versions
        )
        registrations.append(Registration(subject, mode, ids))
    return registrations


def _registry_text(schema: Schema) -> str:
    """The schema as the codec registers it (:meth:`streams.serde.Codec._register`)."""
    return json.dumps(schema.expanded, separators=(",", ":"))


# --- CLI -----------------------------------------------------------------------------------


def add_schemas_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger schemas check|release|register`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "schemas", help="check, release and register the Avro schemas (docs/SCHEMAS.md)"
    )
    actions = parser.add_subparsers(dest="schemas_action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="compare every schema with its released versions; exit 1 on a violation"
    )
    check.add_argument(
        "--against",
        metavar="REF",
        default=None,
        help="compare with the schemas at git revision REF instead of the released versions",
    )
    check.add_argument(
        "--allow-unreleased",
        action="store_true",
        help="do not report schemas that differ from their last released version",
    )
    release = actions.add_parser(
        "release", help="freeze each changed schema as its next released version"
    )
    register = actions.add_parser(
        "register", help="register every schema and set each subject's compatibility level"
    )
    register.add_argument("--registry", required=True, metavar="URL", help="mock://NAME in tests")
    for command in (check, release, register):
        command.add_argument(
            "--avro-dir",
            default=None,
            metavar="DIR",
            help="the schema folder (default: the installed revledger_avro, the source tree "
            "in an editable install)",
        )


def main_schemas(args: argparse.Namespace) -> int:
    """Entry point of ``revledger schemas``: 0 when all is well, 1 on a violation, 2 on error."""
    avro_dir = Path(args.avro_dir) if args.avro_dir else Path(str(resources.files(SCHEMA_PACKAGE)))
    try:
        if args.schemas_action == "check":
            return _main_check(avro_dir, args.against, args.allow_unreleased)
        if args.schemas_action == "release":
            return _main_release(avro_dir)
        return _main_register(avro_dir, args.registry)
    except (SchemaError, GovernanceError) as exc:
        print(f"revledger schemas: {exc}", file=sys.stderr)
        return 2


def _main_check(avro_dir: Path, against: str | None, allow_unreleased: bool) -> int:
    if against is not None:
        report = check_against_revision(avro_dir, against)
    else:
        current = load_schemas_from(avro_dir)
        released = load_released_from(avro_dir / RELEASED_FOLDER)
        report = check_schemas(current, released, allow_unreleased=allow_unreleased)
    for violation in report.violations:
        print(violation)
    print(report.summary())
    return 1 if report.violations else 0


def _main_release(avro_dir: Path) -> int:
    report, written = release_schemas(avro_dir)
    for violation in report.violations:
        print(violation)
    if report.violations:
        print(f"schemas release: nothing released, {len(report.violations)} violation(s)")
        return 1
    for path in written:
        print(f"released {path.relative_to(avro_dir)}")
    print(f"schemas release: {len(written)} new released version(s)")
    return 0


def _main_register(avro_dir: Path, url: str) -> int:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    current = load_schemas_from(avro_dir)
    released = load_released_from(avro_dir / RELEASED_FOLDER)
    client = SchemaRegistryClient.new_client({"url": url})
    try:
        registrations = register_schemas(client, current, released)
    except SchemaRegistryError as exc:
        print(f"revledger schemas register: the registry refused: {exc}", file=sys.stderr)
        return 1
    for registration in registrations:
        ids = ",".join(str(schema_id) for schema_id in registration.schema_ids)
        print(f"{registration.subject}\t{registration.compatibility}\tids {ids}")
    print(f"schemas register: {len(registrations)} subjects at {url}")
    return 0
