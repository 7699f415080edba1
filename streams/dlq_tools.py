"""``revledger dlq list|show|redrive``: read dead-letter records, and put them back.

- ``list`` prints one line per record (oldest first per partition) and a count per reason;
- ``show P:O`` (a DLQ partition and offset, as ``list`` prints them) or ``show EVENT_ID``
  prints a record in full: reason, message, source, original key and headers, and the
  original value decoded (as JSON) when it decodes, else in hex;
- ``redrive`` re-produces each record's original key, value and headers to its source
  topic and partition.

``--reason R`` and ``--customer C`` select records for all three. The customer of a record
is its Kafka key (the original key: customer-keyed topics are keyed by customer id), else
the ``customer_id`` of its original value.

Redrive keeps a customer's order: a customer's records all sit in one DLQ partition (the
DLQ is co-partitioned with the inputs, DESIGN.md section 2), which is read in offset order
and produced by one idempotent producer to the source partition, so they arrive in their
DLQ order. Each redriven record carries ``redrive.of`` (the DLQ ``partition:offset``) and
``redrive.attempt`` (1 on the first redrive; a record that fails again keeps its headers in
its new DLQ record, so the next redrive writes 2, and so on).

Redrive runs in one Kafka transaction with the commit of the redrive group's DLQ offsets,
so a record is redriven once even if the command is run again or killed half-way. The
group is per filter (``revledger-dlq-redrive-<reason|all>[-<customer>]``): each filter
redrives every record it selects once. A record redriven twice (by two filters) is a
duplicate event that the ledger recognises by its event id and ignores.

Must not import faust.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer

from streams.devstack_env import settings_from_devstack
from streams.messages import DlqRecord
from streams.reading import committed_reader, read_partitions_to_end, read_to_end
from streams.serde import DEFAULT_MAX_MESSAGE_BYTES, Codec, DecodeError
from streams.settings import Settings, kafka_client_config
from streams.topics import DLQ

REDRIVE_OF = "redrive.of"
REDRIVE_ATTEMPT = "redrive.attempt"
UNDECODABLE = "undecodable_dlq_record"
_HEX_LINE_BYTES = 32


@dataclass(frozen=True, slots=True)
class DlqEntry:
    """One record of the DLQ topic: where it is, and what it says (None if undecodable)."""

    partition: int
    offset: int
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    value: bytes | None
    record: DlqRecord | None
    original: object | None  # the original value decoded, when it decodes

    @property
    def position(self) -> str:
        """``partition:offset`` of the DLQ record, as ``list`` prints and ``show`` takes."""
        return f"{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        """The reason code; for an undecodable record, its ``error.code`` header if any."""
        if self.record is not None:
            return self.record.reason
        return _text(dict(self.headers).get("error.code", b"")) or UNDECODABLE

    @property
    def customer(self) -> str | None:
        """The original key as text, else the original value's customer id."""
        if self.key:
            return _text(self.key)
        return getattr(self.original, "customer_id", None)

    @property
    def event_id(self) -> str | None:
        """The event id the DLQ record names, else the original value's."""
        if self.record is not None and self.record.event_id:
            return self.record.event_id
        return getattr(self.original, "event_id", None)

    @property
    def attempts(self) -> int:
        """How many times the original was redriven before it failed this time."""
        if self.record is None:
            return 0
        return _attempt(self.record.original_headers.get(REDRIVE_ATTEMPT))


@dataclass(frozen=True, slots=True)
class DlqFilter:
    """Which records a command applies to: by reason code and by customer."""

    reason: str | None = None
    customer: str | None = None

    def matches(self, entry: DlqEntry) -> bool:
        """True when ``entry`` passes every filter that is set."""
        if self.reason is not None and entry.reason != self.reason:
            return False
        return self.customer is None or entry.customer == self.customer

    def describe(self) -> str:
        """`` with reason R for customer C`` (empty without filters), for messages."""
        parts = [f" with reason {self.reason}" if self.reason else ""]
        parts.append(f" for customer {self.customer}" if self.customer else "")
        return "".join(parts)


def dlq_codec(settings: Settings) -> Codec:
    """A codec for DLQ records, which hold whole original messages plus their envelope."""
    return Codec(max_message_bytes=max(4 * settings.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES))


def dlq_entries(messages: Iterable[Message], codec: Codec) -> Iterator[DlqEntry]:
    """Turn DLQ topic messages into entries, decoding what decodes."""
    for message in messages:
        try:
            record = codec.decode(message.value())
        except DecodeError:
            record = None
        if not isinstance(record, DlqRecord):
            record = None
        original = None
        if record is not None and record.original_value:
            try:
                original = codec.decode(record.original_value)
            except DecodeError:
                original = None
        yield DlqEntry(
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            headers=tuple((k, v or b"") for k, v in (message.headers() or [])),
            value=message.value(),
            record=record,
            original=original,
        )


# --- list -----------------------------------------------------------------------------------


def list_dlq(settings: Settings, selection: DlqFilter | None = None, limit: int = 100) -> int:
    """Print the selected DLQ records (at most ``limit``) and a count per reason.

    The counts cover every record of the selected customer (or all), whatever their
    reason, so a reason filter still shows what else is waiting.
    """
    selection = selection or DlqFilter()
    topic = settings.topic_prefix + DLQ.name
    shown = 0
    counts: Counter[str] = Counter()
    by_customer = DlqFilter(customer=selection.customer)
    for entry in dlq_entries(read_partitions_to_end(settings, topic), dlq_codec(settings)):
        if not by_customer.matches(entry):
            continue
        counts[entry.reason] += 1
        if not selection.matches(entry) or shown >= limit:
            continue
        shown += 1
        print(_list_line(entry))
    summary = ", ".join(f"{code} {n}" for code, n in sorted(counts.items())) or "empty"
    print(f"dlq{selection.describe()}: {summary}")
    return 0


def _list_line(entry: DlqEntry) -> str:
    record = entry.record
    if record is None:
        return f"{entry.position}\t{entry.reason}\t-\t-\t(the DLQ record does not decode)"
    where = f"{record.source_topic}[{record.source_partition}]@{record.source_offset}"
    customer = entry.customer or "-"
    attempts = f"redriven {entry.attempts}x" if entry.attempts else "-"
    return f"{entry.position}\t{entry.reason}\t{customer}\t{attempts}\t{where}\t{record.message}"


# --- show -----------------------------------------------------------------------------------


def show_dlq(settings: Settings, target: str, selection: DlqFilter | None = None) -> int:
    """Print in full the DLQ record at ``target`` (``P:O``) or every one of event ``target``.

    Returns:
        0 when a record was found and printed, 1 when none matched.
    """
    selection = selection or DlqFilter()
    topic = settings.topic_prefix + DLQ.name
    found = 0
    for entry in dlq_entries(read_partitions_to_end(settings, topic), dlq_codec(settings)):
        if target not in (entry.position, entry.event_id) or not selection.matches(entry):
            continue
        if found:
            print()
        print(describe_entry(entry))
        found += 1
    if not found:
        print(
            f"revledger dlq show: no DLQ record at {target} or of event {target}"
            f"{selection.describe()}",
            file=sys.stderr,
        )
        return 1
    return 0


def describe_entry(entry: DlqEntry) -> str:
    """Every field of a DLQ record, its headers, and its original value (JSON, else hex)."""
    lines = [f"dlq record {entry.position}"]
    record = entry.record
    if record is None:
        lines.append("  the DLQ record itself does not decode; its Kafka headers and bytes:")
        lines.extend(_headers_block("dlq headers", entry.headers))
        lines.extend(_hex_block("value", entry.value))
        return "\n".join(lines)
    attempts = entry.attempts
    redrive_of = record.original_headers.get(REDRIVE_OF)
    lines += [
        f"  reason:           {record.reason} ({record.error_class})",
        f"  message:          {record.message}",
        f"  source:           {record.source_topic} partition {record.source_partition}"
        f" offset {record.source_offset}",
        f"  customer:         {entry.customer or '-'}",
        f"  event id:         {entry.event_id or '-'}",
        f"  failed at:        {record.failed_at.isoformat()} (service {record.service_version})",
        f"  redrive attempts: {attempts}"
        + (f" (last from DLQ {_text(redrive_of)})" if redrive_of else ""),
        f"  original key:     {_shown(record.original_key)}",
    ]
    lines.extend(_headers_block("original headers", tuple(record.original_headers.items())))
    lines.extend(_headers_block("dlq headers", entry.headers))
    if entry.original is not None:
        name = getattr(entry.original, "schema_name", type(entry.original).__name__)
        document = entry.original.model_dump(mode="json")  # type: ignore[attr-defined]
        lines.append(f"  original value ({name}, {len(record.original_value or b'')} bytes):")
        text = json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True)
        lines.extend(f"    {line}" for line in text.splitlines())
    else:
        lines.extend(_hex_block("original value (does not decode)", record.original_value))
    return "\n".join(lines)


def _headers_block(title: str, headers: tuple[tuple[str, bytes], ...]) -> list[str]:
    if not headers:
        return [f"  {title}: none"]
    return [f"  {title}:", *(f"    {name}: {_shown(value)}" for name, value in headers)]


def _hex_block(title: str, value: bytes | None) -> list[str]:
    if value is None:
        return [f"  {title}: null"]
    lines = [f"  {title}, {len(value)} bytes in hex:"]
    for start in range(0, len(value), _HEX_LINE_BYTES):
        lines.append(f"    {start:08x}  {value[start : start + _HEX_LINE_BYTES].hex(' ')}")
    return lines


def _text(value: bytes | None) -> str:
    return "" if value is None else value.decode("utf-8", errors="replace")


def _shown(value: bytes | None) -> str:
    """UTF-8 text as it is, other bytes as ``0x…`` hex; ``null`` for None."""
    if value is None:
        return "null"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + value.hex()
    return text if text.isprintable() else "0x" + value.hex()


# --- redrive --------------------------------------------------------------------------------


def redrive_group(selection: DlqFilter) -> str:
    """The consumer group whose committed offsets say what this filter has redriven."""
    group = f"revledger-dlq-redrive-{selection.reason or 'all'}"
    return f"{group}-{selection.customer}" if selection.customer else group


def redrive_producer(settings: Settings, group: str) -> Producer:
    """The transactional producer of a redrive (one transactional id per redrive group)."""
    return Producer(
        kafka_client_config(
            settings,
            {
                "transactional.id": f"{settings.app_id}-{group}",
                "partitioner": "murmur2_random",
                # Keep each partition's order on retries (idempotence does; said for why).
                "enable.idempotence": True,
            },
        )
    )


def redrive_headers(entry: DlqEntry) -> list[tuple[str, bytes]]:
    """The original headers, with ``redrive.of`` and ``redrive.attempt`` set for this redrive."""
    if entry.record is None:
        raise ValueError(f"DLQ record {entry.position} does not decode: nothing to redrive")
    headers = [
        (name, value)
        for name, value in entry.record.original_headers.items()
        if name not in (REDRIVE_OF, REDRIVE_ATTEMPT)
    ]
    headers.append((REDRIVE_OF, entry.position.encode()))
    headers.append((REDRIVE_ATTEMPT, str(entry.attempts + 1).encode()))
    return headers


def redrive(
    settings: Settings,
    selection: DlqFilter | str | None = None,
    *,
    dry_run: bool = False,
) -> int:
    """Re-produce the selected DLQ records to their source topics and partitions.

    ``selection`` may also be a bare reason code (or None for every record).
    With ``dry_run`` it prints what it would redrive and changes nothing.
    """
    if not isinstance(selection, DlqFilter):
        selection = DlqFilter(reason=selection)
    if dry_run:
        group = redrive_group(selection)
        consumer = committed_reader(settings, group)
        consumer.subscribe([settings.topic_prefix + DLQ.name])
        try:
            return _print_redrive_plan(consumer, settings, selection)
        finally:
            consumer.close()
    print(redrive_records(settings, selection).summary)
    return 0


@dataclass(frozen=True)
class RedriveResult:
    """What one redrive did: records re-produced, undecodable records left, and in words."""

    sent: int
    skipped: int
    summary: str


def redrive_records(settings: Settings, selection: DlqFilter) -> RedriveResult:
    """Re-produce the selected DLQ records in one transaction and say what was done.

    The function behind ``revledger dlq redrive`` and the console's redrive action.
    """
    group = redrive_group(selection)
    consumer = committed_reader(settings, group)
    consumer.subscribe([settings.topic_prefix + DLQ.name])
    try:
        sent, skipped = _redrive_in_transaction(consumer, settings, selection, group)
    finally:
        consumer.close()
    note = f" ({skipped} undecodable DLQ records left)" if skipped else ""
    return RedriveResult(sent, skipped, f"redrove {sent} records{selection.describe()}{note}")


def _redrive_in_transaction(
    consumer: Consumer, settings: Settings, selection: DlqFilter, group: str
) -> tuple[int, int]:
    producer = redrive_producer(settings, group)
    producer.init_transactions()
    producer.begin_transaction()
    sent = skipped = 0
    try:
        for entry in dlq_entries(read_to_end(consumer), dlq_codec(settings)):
            if not selection.matches(entry):
                continue
            if entry.record is None:
                skipped += 1
                continue
            _produce(producer, entry, entry.record)
            sent += 1
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata()
        )
        producer.commit_transaction()
    except BaseException:
        producer.abort_transaction()
        raise
    return sent, skipped


def _produce(producer: Producer, entry: DlqEntry, record: DlqRecord) -> None:
    while True:
        try:
            producer.produce(
                record.source_topic,
                key=record.original_key,
                value=record.original_value,
                partition=record.source_partition,
                headers=redrive_headers(entry),
            )
            return
        except BufferError:  # the local queue is full: let deliveries drain
            producer.poll(0.1)


def _print_redrive_plan(consumer: Consumer, settings: Settings, selection: DlqFilter) -> int:
    count = 0
    for entry in dlq_entries(read_to_end(consumer), dlq_codec(settings)):
        if selection.matches(entry) and entry.record is not None:
            record = entry.record
            print(
                f"would redrive {entry.position} ({entry.reason}, customer"
                f" {entry.customer or '-'}) to {record.source_topic}[{record.source_partition}]"
                f" as attempt {entry.attempts + 1}"
            )
            count += 1
    print(f"would redrive {count} records{selection.describe()} (dry run: nothing sent)")
    return 0


def _attempt(value: bytes | None) -> int:
    """The attempt number in a ``redrive.attempt`` header (0 when absent or unreadable)."""
    try:
        return max(int(_text(value) or 0), 0)
    except ValueError:
        return 0


# --- command line ---------------------------------------------------------------------------


def add_dlq_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger dlq list|show|redrive`` to the CLI's sub-commands."""
    parser = subparsers.add_parser("dlq", help="list, show or redrive dead-letter records")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--reason", default=None, help="only records with this reason code")
    filters.add_argument("--customer", default=None, help="only records of this customer id")
    listing = actions.add_parser("list", parents=[filters], help="one line per record")
    listing.add_argument("--limit", type=int, default=100, help="lines to print at most")
    show = actions.add_parser("show", parents=[filters], help="one record in full")
    show.add_argument(
        "target", metavar="DLQ_OFFSET_OR_EVENT_ID", help="P:O as list prints it, or an event id"
    )
    again = actions.add_parser(
        "redrive", parents=[filters], help="put records back on their source topics"
    )
    again.add_argument("--dry-run", action="store_true", help="print what would be redriven")


def main_dlq(args: argparse.Namespace) -> int:
    """Entry point of ``revledger dlq``."""
    settings = settings_from_devstack()
    selection = DlqFilter(reason=args.reason, customer=getattr(args, "customer", None))
    if args.action == "list":
        return list_dlq(settings, selection, args.limit)
    if args.action == "show":
        return show_dlq(settings, args.target, selection)
    return redrive(settings, selection, dry_run=getattr(args, "dry_run", False))
