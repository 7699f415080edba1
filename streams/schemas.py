"""The Avro schemas of the wire records, loaded once from the installed ``revledger_avro`` data.

Owns reading ``<Name>.v<N>.avsc`` files (through :mod:`importlib.resources`, so it works
from a wheel as well as an editable install), resolving named references across files,
and each schema's Parsing Canonical Form and CRC-64-AVRO fingerprint (the id that the
single-object encoding carries). Also reads the released versions kept beside them,
``released/<namespace.Name>/<n>.avsc`` (standalone, frozen; docs/SCHEMAS.md), which the
codec needs to read records written by any version ever released.

A named reference such as ``"io.revledger.v1.InvoiceLine"`` is expanded in place the first
time it occurs in a schema and left as a name afterwards, as the Avro specification's
canonical form requires; the result is a standalone schema that any Avro library (or the
schema registry) can parse without the other files.

Must not import: faust, aiokafka, confluent_kafka, psycopg, ``streams.messages`` or other
``streams`` modules (the codec combines schemas and models; this module knows files only).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from fastavro.schema import SchemaParseException, parse_schema, to_parsing_canonical_form
from fastavro.schema import fingerprint as fastavro_fingerprint

SCHEMA_PACKAGE = "revledger_avro"
RELEASED_FOLDER = "released"
_RELEASED_FILE_NAME = re.compile(r"^(?P<version>[1-9][0-9]*)\.avsc$")
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


class SchemaError(ValueError):
    """Raised when a schema file is malformed, misnamed or refers to an unknown type."""


@dataclass(frozen=True, slots=True)
class Schema:
    """One Avro schema file, resolved and ready for the codec.

    Attributes:
        name: the short name, e.g. ``"InvoiceIssued"`` (also the file name stem).
        full_name: namespace-qualified name, e.g. ``"io.revledger.v1.InvoiceIssued"``.
        version: the ``v<N>`` of the file name.
        expanded: standalone schema JSON (docs and defaults kept; references inlined).
        parsed: fastavro parsed form of ``expanded``.
        canonical: Parsing Canonical Form.
        fingerprint: CRC-64-AVRO of ``canonical``, 8 bytes little-endian.
    """

    name: str
    full_name: str
    version: int
    expanded: dict[str, Any]
    parsed: Any
    canonical: str
    fingerprint: bytes


def _full_name(name: str, namespace: str | None) -> str:
    """Qualify ``name`` with ``namespace`` unless it already is qualified."""
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _read_files(root: Traversable) -> dict[str, tuple[int, dict[str, Any]]]:
    """Read every ``.avsc`` of the folder ``root``: full name -> (version, raw JSON)."""
    raw: dict[str, tuple[int, dict[str, Any]]] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".avsc"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise SchemaError(f"schema file {entry.name} is not named <Name>.v<N>.avsc")
        schema = json.loads(entry.read_text(encoding="utf-8"))
        if schema.get("name") != match["name"] or schema.get("type") not in _NAMED:
            raise SchemaError(f"{entry.name} must define the named type {match['name']}")
        full_name = _full_name(schema["name"], schema.get("namespace"))
        if full_name in raw:
            raise SchemaError(f"{full_name} is defined by two files")
        raw[full_name] = (int(match["version"]), schema)
    return raw


def expand(
    node: Any, library: dict[str, dict[str, Any]], namespace: str | None, seen: set[str]
) -> Any:
    """Return ``node`` with every named reference to ``library`` defined at first use.

    Args:
        node: a schema or part of one (name string, union list or type object).
        library: top-level named schemas of the files, by full name.
        namespace: the enclosing namespace, for resolving short names.
        seen: full names already defined in the schema being built (updated).

    Returns:
        The standalone schema; references to names in ``seen`` stay names.
    """
    if isinstance(node, list):
        return [expand(branch, library, namespace, seen) for branch in node]
    if isinstance(node, str):
        if node in _PRIMITIVES:
            return node
        full_name = _full_name(node, namespace)
        if full_name in seen:
            return full_name
        if full_name not in library:
            raise SchemaError(f"unknown named type {full_name}")
        return expand(library[full_name], library, namespace, seen)
    return _expand_object(node, library, namespace, seen)


def _expand_object(
    node: dict[str, Any], library: dict[str, dict[str, Any]], namespace: str | None, seen: set[str]
) -> dict[str, Any]:
    """Expand one type object (record, enum, fixed, array, map or annotated primitive)."""
    kind = node["type"]
    if not isinstance(kind, str) or kind not in _PRIMITIVES | _NAMED | {"array", "map"}:
        # ``{"type": <another type>}``: a wrapped reference or nested definition.
        return {**node, "type": expand(kind, library, namespace, seen)}
    if kind in _NAMED:
        namespace = node.get("namespace", namespace)
        full_name = _full_name(node["name"], namespace)
        if full_name in seen:
            raise SchemaError(f"{full_name} is defined twice in one schema")
        seen.add(full_name)
    if kind in ("record", "error"):
        fields = [
            {**field, "type": expand(field["type"], library, namespace, seen)}
            for field in node["fields"]
        ]
        return {**node, "fields": fields}
    if kind == "array":
        return {**node, "items": expand(node["items"], library, namespace, seen)}
    if kind == "map":
        return {**node, "values": expand(node["values"], library, namespace, seen)}
    return node


def _build(full_name: str, version: int, library: dict[str, dict[str, Any]]) -> Schema:
    """Resolve, parse and fingerprint one schema file."""
    return standalone_schema(expand(full_name, library, None, set()), version)


def standalone_schema(expanded: dict[str, Any], version: int) -> Schema:
    """Parse and fingerprint a standalone (already expanded) schema of version ``version``.

    Raises:
        SchemaError: the JSON is not a named Avro type.
    """
    if (
        not isinstance(expanded, dict)
        or expanded.get("type") not in _NAMED
        or not isinstance(expanded.get("name"), str)
    ):
        raise SchemaError("a standalone schema must be a named type (record, enum, fixed)")
    full_name = _full_name(expanded["name"], expanded.get("namespace"))
    try:
        parsed = parse_schema(expanded, named_schemas={})
    except SchemaParseException as exc:
        raise SchemaError(f"{full_name}: {exc}") from exc
    canonical = to_parsing_canonical_form(parsed)
    # fastavro prints the CRC-64-AVRO value as hex of its little-endian bytes, the byte
    # order that the single-object encoding puts on the wire.
    fingerprint = bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    return Schema(
        name=full_name.rsplit(".", 1)[-1],
        full_name=full_name,
        version=version,
        expanded=expanded,
        parsed=parsed,
        canonical=canonical,
        fingerprint=fingerprint,
    )


@functools.cache
def load_schemas() -> dict[str, Schema]:
    """Load, resolve and fingerprint every schema file of ``revledger_avro``.

    Returns:
        Schemas by short name (``"InvoiceIssued"``), records and shared enums alike.
        Cached: every caller shares one parse.

    Raises:
        SchemaError: a file is misnamed, malformed or refers to an unknown type.
    """
    return load_schemas_from(resources.files(SCHEMA_PACKAGE))


def load_schemas_from(root: Traversable) -> dict[str, Schema]:
    """Like :func:`load_schemas` for the ``.avsc`` files of any folder (not cached).

    ``revledger schemas check`` reads a working copy or a git revision with it.
    """
    raw = _read_files(root)
    library = {full_name: schema for full_name, (_, schema) in raw.items()}
    schemas = [_build(full_name, version, library) for full_name, (version, _) in raw.items()]
    by_name = {schema.name: schema for schema in schemas}
    if len(by_name) != len(schemas):
        raise SchemaError("two schema files share a short name in different namespaces")
    return dict(sorted(by_name.items()))


@functools.cache
def load_released() -> dict[str, tuple[Schema, ...]]:
    """Load every released version of ``revledger_avro`` (cached).

    Returns:
        By full name, the released versions in version order (1, 2, ...).

    Raises:
        SchemaError: see :func:`load_released_from`.
    """
    return load_released_from(resources.files(SCHEMA_PACKAGE).joinpath(RELEASED_FOLDER))


def load_released_from(folder: Traversable) -> dict[str, tuple[Schema, ...]]:
    """Read ``<folder>/<namespace.Name>/<n>.avsc``: standalone schemas, frozen when released.

    A missing folder means nothing was released yet.

    Raises:
        SchemaError: a file is misnamed or malformed, defines another name than its folder,
            or the versions of a name are not 1..n without a gap.
    """
    released: dict[str, tuple[Schema, ...]] = {}
    if not folder.is_dir():
        return released
    for directory in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if not directory.is_dir():
            continue
        versions: list[Schema] = []
        for entry in directory.iterdir():
            match = _RELEASED_FILE_NAME.match(entry.name)
            if match is None:
                raise SchemaError(f"{directory.name}/{entry.name} is not named <n>.avsc")
            where = f"{RELEASED_FOLDER}/{directory.name}/{entry.name}"
            try:
                text = json.loads(entry.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise SchemaError(f"{where} is not JSON: {exc}") from exc
            schema = standalone_schema(text, int(match["version"]))
            if schema.full_name != directory.name:
                raise SchemaError(f"{where} defines {schema.full_name}")
            versions.append(schema)
        versions.sort(key=lambda schema: schema.version)
        if [schema.version for schema in versions] != list(range(1, len(versions) + 1)):
            raise SchemaError(f"{RELEASED_FOLDER}/{directory.name}: versions are not 1..n")
        released[directory.name] = tuple(versions)
    return released


def schema_for(model_or_name: Any) -> Schema:
    """Return the schema of a model class, a model instance, or a short or full name.

    Raises:
        KeyError: no schema has that name.
    """
    name = model_or_name
    if not isinstance(name, str):
        name = model_or_name.schema_name
    return load_schemas()[name.rsplit(".", 1)[-1]]
