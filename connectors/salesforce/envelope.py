"""A Salesforce event message -> :class:`Change`: which record, what changed, its state.

Accepted shapes (docs/CRM.md), each with an optional top-level ``"record"``: the record
after the change as the REST API returns it (``attributes``, fields, child relationships
as ``{"totalSize", "done", "records"}``), attached by the bridge that writes
``raw.salesforce.v1``. A change event of an update carries only the changed fields, and
no event carries child records (line items, subscriptions), so contract events need it.

* Change Data Capture, CometD: ``{"channel": "/data/...", "data": {"schema", "payload":
  {"ChangeEventHeader": {...}, <fields>}, "event": {"replayId"}}}`` (and the same without
  the ``data`` wrapper, as API 48+ CometD clients deliver it);
* Change Data Capture, Pub/Sub API, decoded: ``{"ChangeEventHeader": {...}, <fields>}``;
* Platform event: ``{"channel": "/event/<Name>", "data": {"payload": {"CreatedDate", ...,
  "Record__c"?}, "event": {"replayId", "EventUuid"}}}``, the event named in
  ``platform_events``; the record is ``record`` or the JSON text in ``Record__c``.

Identity (what makes redelivery a duplicate): a change event's ``transactionKey`` and
``sequenceNumber`` (unique per change; ``commitNumber`` is not unique across database
instances, as Salesforce documents), a platform event's ``EventUuid``, else its
channel and ``replayId``.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.salesforce.config import SalesforceConfig


class Refusal(Exception):
    """Raised for a message that cannot be translated faithfully (dead-lettered).

    ``reason`` is a ``salesforce_*`` code; ``message`` names the record and the field.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class Skip:
    """A message without contract effect: ``reason`` is a metric label, ``detail`` says why."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Change:
    """One record's change, as the translator needs it.

    ``changed_fields`` is None when the message does not say which fields changed (a
    creation, a platform event, a gap event): the record's state alone then decides.
    """

    entity_name: str
    record_id: str
    change_type: str
    changed_fields: frozenset[str] | None
    record: Mapping[str, Any]
    identity: str
    committed_at: dt.datetime
    transaction_key: str | None


def instant(value: Any, what: str) -> dt.datetime:
    """A Salesforce date-time: ISO text (``...T09:00:00.000Z``) or epoch milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    if isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.replace("+0000", "+00:00"))
        except ValueError:
            pass
        else:
            return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    raise Refusal("salesforce_payload_invalid", f"{what}: {value!r} is not a date-time")


def _mapping(value: Any) -> Mapping[str, Any] | None:
    return value if isinstance(value, Mapping) else None


def _unwrap(message: Mapping[str, Any]) -> tuple[Mapping[str, Any], Mapping[str, Any], str]:
    """(payload, event metadata, channel) of any accepted shape."""
    channel = message.get("channel") if isinstance(message.get("channel"), str) else ""
    data = _mapping(message.get("data")) or message
    if "ChangeEventHeader" in data:
        return data, {}, channel
    payload = _mapping(data.get("payload"))
    if payload is None:
        raise Refusal(
            "salesforce_not_an_event",
            "no payload: expected a change event or platform event message",
        )
    return payload, _mapping(data.get("event")) or {}, channel


def read_change(message: Mapping[str, Any], config: SalesforceConfig) -> Change | Skip:
    """The :class:`Change` a message describes.

    Raises:
        Refusal: the message has none of the accepted shapes, or lacks what identifies it.
    """
    payload, meta, channel = _unwrap(message)
    attached = _mapping(message.get("record"))
    header = _mapping(payload.get("ChangeEventHeader"))
    if header is not None:
        return _change_event(header, payload, attached)
    return _platform_event(payload, meta, channel, attached, config)


def _change_event(
    header: Mapping[str, Any], payload: Mapping[str, Any], attached: Mapping[str, Any] | None
) -> Change:
    entity = header.get("entityName")
    ids = header.get("recordIds")
    change_type = str(header.get("changeType") or "")
    if not isinstance(entity, str) or not isinstance(ids, list) or not ids:
        raise Refusal("salesforce_payload_invalid", "ChangeEventHeader: no entityName/recordIds")
    if len(ids) != 1:
        raise Refusal(
            "salesforce_multiple_records",
            f"{entity} change names {len(ids)} records: write one raw record per record id,"
            " each with its own 'record'",
        )
    key, sequence = header.get("transactionKey"), header.get("sequenceNumber")
    if not isinstance(key, str) or not key or sequence is None:
        raise Refusal(
            "salesforce_payload_invalid", f"{entity} {ids[0]}: no transactionKey/sequenceNumber"
        )
    if change_type.startswith("GAP_") and attached is None:
        raise Refusal(
            "salesforce_gap_event",
            f"{entity} {ids[0]}: {change_type} carries no field values; attach the record",
        )
    fields = {k: v for k, v in payload.items() if k not in ("ChangeEventHeader", "record")}
    for name in header.get("nulledFields") or ():
        fields[name] = None
    record = {**(attached or {}), **fields, "Id": ids[0]}
    changed = header.get("changedFields")
    return Change(
        entity_name=entity,
        record_id=str(ids[0]),
        change_type=change_type.removeprefix("GAP_"),
        changed_fields=(
            frozenset(changed) if change_type == "UPDATE" and isinstance(changed, list) else None
        ),
        record=record,
        identity=f"{key}.{sequence}",
        committed_at=instant(header.get("commitTimestamp"), f"{entity} {ids[0]} commitTimestamp"),
        transaction_key=key,
    )


def _platform_event(
    payload: Mapping[str, Any],
    meta: Mapping[str, Any],
    channel: str,
    attached: Mapping[str, Any] | None,
    config: SalesforceConfig,
) -> Change | Skip:
    name = channel.rsplit("/", 1)[-1] if channel.startswith("/event/") else ""
    entity = config.platform_events.get(name)
    if entity is None:
        return Skip("unknown_platform_event", f"channel {channel or '(none)'}")
    record = attached
    if record is None and isinstance(payload.get("Record__c"), str):
        try:
            record = _mapping(json.loads(payload["Record__c"], parse_float=Decimal))
        except json.JSONDecodeError as exc:
            raise Refusal("salesforce_payload_invalid", f"{name}: Record__c: {exc}") from exc
    if record is None or not isinstance(record.get("Id"), str):
        raise Refusal("salesforce_record_missing", f"{name}: no record with an Id")
    uuid = payload.get("EventUuid") or meta.get("EventUuid")
    replay = meta.get("replayId")
    if not uuid and replay is None:
        raise Refusal("salesforce_payload_invalid", f"{name}: neither EventUuid nor replayId")
    return Change(
        entity_name=entity,
        record_id=record["Id"],
        change_type="EVENT",
        changed_fields=None,
        record=record,
        identity=str(uuid) if uuid else f"{name}.{replay}",
        committed_at=instant(payload.get("CreatedDate"), f"{name} CreatedDate"),
        transaction_key=None,
    )
