"""The wire codec: Avro bytes <-> validated pydantic records.

Owns the two framings a value may arrive in, told apart by the first byte:

- ``C3 01`` + 8-byte CRC-64-AVRO fingerprint (little-endian) + Avro binary body: Avro
  single-object encoding, the default, which needs no registry;
- ``00`` + 4-byte big-endian schema id + Avro binary body: the Confluent Schema Registry
  wire format, used when the codec is given a registry URL (or client).

and every way decoding can fail, each turned into one :class:`DecodeError` reason that the
DLQ records. Schemas are parsed once (:mod:`streams.schemas`); the per-message path is a
dict look-up, one fastavro call and one pydantic validation.

A single-object fingerprint of a released version other than the current one (records
written before a schema evolved) is resolved to the current schema, as a registry id is:
the topics keep records forever and rebuilds read them all (docs/SCHEMAS.md).

Exceptions::

    ValueError
    ├── DecodeError   bytes that are not a valid record (poison: DLQ, never retried)
    └── EncodeError   a record that cannot be written (a bug in the caller)

Registry outages are not poison: errors other than "schema not found" from the registry
propagate unchanged so the worker retries or crashes instead of dead-lettering.

Must not import: faust, aiokafka, psycopg, ``streams`` modules other than ``schemas``,
``messages`` and ``topics`` (agents and the DLQ call the codec, not the reverse).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import fastavro
from pydantic import ValidationError

from ledger.events import Record
from streams.avro_limits import AvroLimitError, check_body
from streams.messages import MODELS
from streams.schemas import Schema, load_released, load_schemas
from streams.topics import BY_NAME, TOPICS, TopicSpec

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
_SINGLE_OBJECT_HEADER = len(SINGLE_OBJECT_MAGIC) + 8
_CONFLUENT_HEADER = len(CONFLUENT_MAGIC) + 4
# Kafka's default max.message.bytes (1 MiB + overhead); a larger value cannot have come
# through a default-configured topic, and refusing it bounds memory per message.
DEFAULT_MAX_MESSAGE_BYTES = 1_048_576
# STYLE 2.5: DLQ error messages are at most 1 KiB.
MAX_ERROR_MESSAGE_BYTES = 1024


class DecodeReason(StrEnum):
    """Why bytes could not be decoded, in the order the checks run."""

    EMPTY_MESSAGE = "empty_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    UNKNOWN_ENCODING = "unknown_encoding"
    UNKNOWN_SCHEMA_FINGERPRINT = "unknown_schema_fingerprint"
    UNKNOWN_SCHEMA_ID = "unknown_schema_id"
    LIMIT_EXCEEDED = "limit_exceeded"
    AVRO_DECODE_FAILED = "avro_decode_failed"
    VALIDATION_FAILED = "validation_failed"


class DecodeError(ValueError):
    """Raised by :meth:`Codec.decode` when bytes are not a valid record.

    Raised when: the value is empty (``empty_message``); longer than the codec's limit
    (``message_too_large``); starts with neither framing or has a cut header
    (``unknown_encoding``); carries a fingerprint or registry id of no known schema
    (``unknown_schema_fingerprint``, ``unknown_schema_id``); has a body that does not
    decode, or bytes left after it (``avro_decode_failed``); or decodes to values the
    model refuses (``validation_failed``).
    """

    def __init__(self, reason: DecodeReason | str, message: str) -> None:
        self.reason = DecodeReason(reason)
        self.message = truncate(message)
        super().__init__(f"{self.reason}: {self.message}")


class EncodeError(ValueError):
    """Raised by :meth:`Codec.encode` for a record of no known schema, or one that does not fit.

    A float where an integer belongs is refused here: fastavro would silently truncate it.
    """


def truncate(message: str, limit: int = MAX_ERROR_MESSAGE_BYTES) -> str:
    """Cut ``message`` to at most ``limit`` UTF-8 bytes."""
    encoded = message.encode()
    if len(encoded) <= limit:
        return message
    return encoded[: limit - 3].decode(errors="ignore") + "..."


def to_datum(record: Record) -> dict[str, Any]:
    """Return the Avro datum of ``record``: its ``model_dump()`` with tuples as lists.

    Raises:
        EncodeError: a float hides in the record (built with ``model_construct``): no
            schema has a float field, and fastavro would truncate it into a long.
    """
    return _plain(record.model_dump(), record.schema_name)


def _plain(value: Any, where: str) -> Any:
    """Turn tuples into lists recursively and refuse floats."""
    if isinstance(value, dict):
        return {key: _plain(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(item, f"{where}.{index}") for index, item in enumerate(value)]
    if isinstance(value, float):
        raise EncodeError(f"{where} is a float; amounts are integer minor units")
    return value


def from_datum(model: type[Record], datum: dict[str, Any]) -> Record:
    """Validate a decoded Avro datum into ``model`` (raises pydantic ValidationError)."""
    return model.model_validate(datum)


def describe_validation_error(model: type[Record], error: ValidationError) -> str:
    """Name each failing field and why, e.g. ``lines.0.amount_minor: Input should be ...``."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        location = ".".join(str(step) for step in item["loc"]) or "(record)"
        parts.append(f"{location}: {item['msg']}")
    return truncate(f"{model.schema_name}: " + "; ".join(parts))


@dataclass(frozen=True, slots=True)
class _Binding:
    """A schema and its model, as the hot path needs them."""

    schema: Schema
    model: type[Record]
    header: bytes  # C3 01 + fingerprint


@dataclass(frozen=True, slots=True)
class _Writer:
    """A writer schema fetched from the registry, resolved against our reader schema."""

    parsed: Any
    binding: _Binding
    same_as_reader: bool


class Codec:
    """Encodes records to Avro bytes and decodes bytes back into validated records.

    Args:
        schemas: schemas by short name; default :func:`streams.schemas.load_schemas`.
        models: models by schema name; default :data:`streams.messages.MODELS`.
        max_message_bytes: values longer than this are refused (``message_too_large``).
        schema_registry_url: Confluent Schema Registry URL (``mock://<name>`` in tests);
            given, :meth:`encode` writes the Confluent wire format.
        registry_client: a ready ``SchemaRegistryClient``, e.g. to share one mock
            registry between an encoding and a decoding codec; overrides the URL.
        released: released versions by full name, readable as writers; default
            :func:`streams.schemas.load_released`.

    Raises:
        ValueError: a model has no schema.
    """

    def __init__(
        self,
        *,
        schemas: dict[str, Schema] | None = None,
        models: dict[str, type[Record]] | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        schema_registry_url: str | None = None,
        registry_client: Any = None,
        released: Mapping[str, Sequence[Schema]] | None = None,
    ) -> None:
        bindings = _bind(schemas or load_schemas(), models or MODELS)
        self._by_model = {binding.model: binding for binding in bindings}
        self._by_fingerprint = {binding.schema.fingerprint: binding for binding in bindings}
        self._by_full_name = {binding.schema.full_name: binding for binding in bindings}
        self._released_writers = _released_writers(
            load_released() if released is None else released, self._by_full_name
        )
        self.max_message_bytes = max_message_bytes
        if registry_client is None and schema_registry_url:
            registry_client = _registry_client(schema_registry_url)
        self._registry = registry_client
        self._schema_ids: dict[tuple[str, str], int] = {}
        self._writers: dict[int, _Writer] = {}

    @property
    def uses_registry(self) -> bool:
        """True when :meth:`encode` writes the Confluent wire format."""
        return self._registry is not None

    def encode(self, record: Record, *, topic: str | None = None) -> bytes:
        """Encode ``record``: single-object encoding, or Confluent framing with a registry.

        Args:
            record: a wire record (a model in ``MODELS``).
            topic: the topic the value goes to; required with a registry, whose subject
                is :func:`value_subject`.

        Raises:
            EncodeError: unknown model, missing topic, or a value that does not fit the schema.
        """
        binding = self._by_model.get(type(record))
        if binding is None:
            raise EncodeError(f"{type(record).__name__} has no schema")
        body = _write_body(binding, record)
        if self._registry is None:
            return binding.header + body
        if topic is None:
            raise EncodeError("a codec with a schema registry needs the topic to encode")
        schema_id = self._register(value_subject(topic, binding.schema.full_name), binding)
        return CONFLUENT_MAGIC + schema_id.to_bytes(4, "big") + body

    def decode(self, data: bytes | None) -> Record:
        """Decode a value in either framing into its validated model.

        Raises:
            DecodeError: the bytes are not a valid record; ``reason`` says why.
        """
        if not data:
            raise DecodeError(DecodeReason.EMPTY_MESSAGE, "value is empty or null")
        if len(data) > self.max_message_bytes:
            raise DecodeError(
                DecodeReason.MESSAGE_TOO_LARGE,
                f"{len(data)} bytes exceed the limit of {self.max_message_bytes}",
            )
        data = bytes(data)
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._decode_single_object(data)
        if data[:1] == CONFLUENT_MAGIC:
            return self._decode_confluent(data)
        raise DecodeError(
            DecodeReason.UNKNOWN_ENCODING, f"first bytes {data[:2].hex()} match no framing"
        )

    def _decode_single_object(self, data: bytes) -> Record:
        if len(data) < _SINGLE_OBJECT_HEADER:
            raise DecodeError(DecodeReason.UNKNOWN_ENCODING, "single-object header is cut short")
        binding = self._by_fingerprint.get(data[2:_SINGLE_OBJECT_HEADER])
        if binding is not None:
            return _read_body(data, _SINGLE_OBJECT_HEADER, binding.schema.parsed, None, binding)
        writer = self._released_writers.get(data[2:_SINGLE_OBJECT_HEADER])
        if writer is None:
            fingerprint = data[2:_SINGLE_OBJECT_HEADER].hex()
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA_FINGERPRINT, f"no schema has fingerprint {fingerprint}"
            )
        reader = writer.binding.schema.parsed
        return _read_body(data, _SINGLE_OBJECT_HEADER, writer.parsed, reader, writer.binding)

    def _decode_confluent(self, data: bytes) -> Record:
        if len(data) < _CONFLUENT_HEADER:
            raise DecodeError(DecodeReason.UNKNOWN_ENCODING, "Confluent header is cut short")
        schema_id = int.from_bytes(data[1:_CONFLUENT_HEADER], "big")
        writer = self._writers.get(schema_id) or self._fetch_writer(schema_id)
        # Same canonical form as ours: skip schema resolution, which costs per message.
        reader = None if writer.same_as_reader else writer.binding.schema.parsed
        return _read_body(data, _CONFLUENT_HEADER, writer.parsed, reader, writer.binding)

    def _register(self, subject: str, binding: _Binding) -> int:
        """Register ``binding``'s schema under ``subject`` once; return its registry id."""
        key = (subject, binding.schema.full_name)
        schema_id = self._schema_ids.get(key)
        if schema_id is None:
            from confluent_kafka.schema_registry import Schema as RegistrySchema

            text = json.dumps(binding.schema.expanded, separators=(",", ":"))
            schema_id = self._registry.register_schema(subject, RegistrySchema(text, "AVRO"))
            self._schema_ids[key] = schema_id
        return schema_id

    def _fetch_writer(self, schema_id: int) -> _Writer:
        """Fetch a writer schema by id, match it to our model by full name, and cache it."""
        if self._registry is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id}: no registry configured"
            )
        text = _fetch_schema_text(self._registry, schema_id)
        try:
            writer_json = json.loads(text)
            parsed = fastavro.parse_schema(writer_json, named_schemas={})
        except (ValueError, fastavro.schema.SchemaParseException) as exc:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} does not parse: {exc}"
            ) from exc
        binding = self._by_full_name.get(parsed.get("name") if isinstance(parsed, dict) else None)
        if binding is None:
            raise DecodeError(
                DecodeReason.UNKNOWN_SCHEMA_ID, f"schema id {schema_id} is of no known record"
            )
        same = fastavro.schema.to_parsing_canonical_form(parsed) == binding.schema.canonical
        writer = _Writer(parsed=parsed, binding=binding, same_as_reader=same)
        self._writers[schema_id] = writer
        return writer


def _bind(schemas: dict[str, Schema], models: dict[str, type[Record]]) -> list[_Binding]:
    """Pair every model with its schema and precompute its single-object header."""
    missing = sorted(set(models) - set(schemas))
    if missing:
        raise ValueError(f"models without a schema: {missing}")
    return [
        _Binding(schemas[name], model, SINGLE_OBJECT_MAGIC + schemas[name].fingerprint)
        for name, model in models.items()
    ]


def _released_writers(
    released: Mapping[str, Sequence[Schema]], by_full_name: Mapping[str, _Binding]
) -> dict[bytes, _Writer]:
    """Released versions that differ from today's schema, by fingerprint, as writers.

    A version with today's fingerprint is read without resolution through the binding;
    versions of names without a model (shared enums, nested-only types) are never framed.
    """
    writers: dict[bytes, _Writer] = {}
    for full_name, versions in released.items():
        binding = by_full_name.get(full_name)
        if binding is None:
            continue
        for version in versions:
            if version.fingerprint != binding.schema.fingerprint:
                writers[version.fingerprint] = _Writer(version.parsed, binding, False)
    return writers


def value_subject(topic: str, full_name: str) -> str:
    """The registry subject of a value of record ``full_name`` written to ``topic``.

    ``<topic>-value`` (TopicNameStrategy) on a topic that carries one record type, and
    ``<topic>-<full name>`` (TopicRecordNameStrategy) on a topic that carries several:
    a registry checks compatibility within a subject, and two different records in one
    subject are never compatible (docs/SCHEMAS.md). A test topic with a prefix is the
    topic its name ends with; an unknown topic gets ``<topic>-value``.
    """
    spec = _spec_of(topic)
    if spec is not None and len(spec.records) > 1:
        return f"{topic}-{full_name}"
    return f"{topic}-value"


def _spec_of(topic: str) -> TopicSpec | None:
    """The topic of ``topic``'s name, or of the longest canonical name it ends with."""
    spec = BY_NAME.get(topic)
    if spec is None:
        ends = [candidate for candidate in TOPICS if topic.endswith(candidate.name)]
        spec = max(ends, key=lambda candidate: len(candidate.name), default=None)
    return spec


def _registry_client(url: str) -> Any:
    """Build a registry client (``mock://`` gives confluent-kafka's in-memory mock)."""
    # Imported here: the registry extra pulls in an HTTP stack that the default
    # single-object encoding does not need.
    from confluent_kafka.schema_registry import SchemaRegistryClient

    return SchemaRegistryClient.new_client({"url": url})


def _fetch_schema_text(registry: Any, schema_id: int) -> str:
    """Return the schema string of ``schema_id``; a 404 is poison, other errors propagate."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        return registry.get_schema(schema_id).schema_str
    except SchemaRegistryError as exc:
        if exc.http_status_code != 404:
            raise
        raise DecodeError(
            DecodeReason.UNKNOWN_SCHEMA_ID, f"registry has no schema id {schema_id}"
        ) from exc


def _write_body(binding: _Binding, record: Record) -> bytes:
    """Write ``record``'s Avro binary body with its schema."""
    datum = to_datum(record)
    buffer = io.BytesIO()
    try:
        fastavro.schemaless_writer(buffer, binding.schema.parsed, datum)
    except (TypeError, ValueError, OverflowError, KeyError) as exc:
        raise EncodeError(f"{binding.schema.name}: {exc}") from exc
    return buffer.getvalue()


def _read_body(data: bytes, offset: int, writer: Any, reader: Any, binding: _Binding) -> Record:
    """Read the Avro body at ``offset`` to the end of ``data`` and validate it."""
    try:
        check_body(writer, data, offset)
    except AvroLimitError as exc:
        raise DecodeError(exc.reason, f"{binding.schema.name}: {exc.message}") from exc
    buffer = io.BytesIO(data)
    buffer.seek(offset)
    try:
        datum = fastavro.schemaless_reader(buffer, writer, reader)
    # fastavro signals bad bytes with many exception types (EOFError, ValueError,
    # SchemaResolutionError, UnicodeDecodeError, IndexError ...): all mean poison here.
    except Exception as exc:
        raise DecodeError(
            DecodeReason.AVRO_DECODE_FAILED,
            f"{binding.schema.name}: {type(exc).__name__}: {exc}",
        ) from exc
    if buffer.tell() != len(data):
        raise DecodeError(
            DecodeReason.AVRO_DECODE_FAILED,
            f"{binding.schema.name}: {len(data) - buffer.tell()} bytes after the body",
        )
    try:
        return from_datum(binding.model, datum)
    except ValidationError as exc:
        raise DecodeError(
            DecodeReason.VALIDATION_FAILED, describe_validation_error(binding.model, exc)
        ) from exc
