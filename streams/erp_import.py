"""``revledger erp-import`` and ``revledger erp-resend``: journal batches to ERP files, and back.

The reference ERP import job. It reads ``erp.journal-batches.v1`` at read_committed,
writes each batch as a file in the chosen layout (:mod:`connectors.erp.formats`) under
``DIR/<entity>/``, and answers each batch on ``erp.acks.v1``. What to do with a batch is
decided by the pure :mod:`connectors.erp.importing`; this module does the Kafka and the
filesystem work around it:

- Acks and the group's consumer offsets go in one Kafka transaction of up to
  ``--transaction-size`` records, so a killed run re-reads exactly the records whose acks
  never committed. A restart with the same group fences the old producer.
- Files are written to a temporary name in their directory, fsynced and renamed, so a
  crash never leaves half a file visible; ``DIR/.revledger/state.json`` (each stream's
  next sequence and block) is rewritten the same way after every file.
- A batch that arrives after a gap waits under ``DIR/.revledger/pending/``; its file is
  deleted only after the transaction that acked its import committed. Records that do not
  decode to a ``JournalBatch`` are kept under ``DIR/.revledger/rejected/``.

Layout of ``DIR``::

    <entity>/<entity>-p<partition>-<sequence:09d>.<csv|json>      imported batches
    .revledger/state.json                                        importer state
    .revledger/pending/<entity>/p<partition>/<sequence:09d>.bin   batches behind a gap
    .revledger/rejected/p<partition>-o<offset>.bin + .txt         undecodable records
    .revledger/lock                                              one importer per DIR

Must not import faust.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from connectors.erp.formats import (
    LayoutError,
    batch_json,
    netsuite_journal_csv,
    oracle_gl_interface_csv,
)
from connectors.erp.importing import (
    CONTROL_TOTALS_MISMATCH,
    LAYOUT_REFUSED,
    AlreadyImported,
    BatchRef,
    Decision,
    Import,
    ImporterState,
    LedgerIds,
    Pending,
    StreamKey,
    Unconfirmed,
    ack_of,
    apply,
    batch_file_name,
    batch_name,
    control_errors,
    decide,
    drainable,
    is_file_safe,
    parse_ledger_ids,
    pending_file_name,
    state_from_json,
    state_to_json,
    stops,
    with_unconfirmed,
    without_unconfirmed,
)
from ledger.batching import Batch
from ledger.errors import InvariantViolation
from streams.batches import batch_from_record
from streams.devstack_env import settings_from_devstack
from streams.messages import ErpAck, JournalBatch
from streams.serde import Codec, DecodeError, truncate
from streams.settings import Settings, kafka_client_config
from streams.topics import ERP_ACKS, JOURNAL_BATCHES

# Records per transaction by default: a commit costs a few broker round trips, and a
# crash re-reads at most this many records.
DEFAULT_TRANSACTION_SIZE = 50
# A transaction is committed after this long even when not full, so acks of a slow
# trickle of batches are not held back (--follow).
TRANSACTION_MAX_SECONDS = 1.0
POLL_SECONDS = 0.5
# Without --follow a run ends when every assigned partition has reported its end
# (enable.partition.eof; at read_committed, its last stable offset). Quiet polls alone do not
# mean the end: a partition without a committed offset starts a second or more after the
# others (offset reset). They end a run only after this many (30 s), in case a partition
# never reports its end.
QUIET_POLLS_LIMIT = 60
# A group join takes a few seconds (group.initial.rebalance.delay.ms is 3 s by default).
ASSIGNMENT_TIMEOUT_SECONDS = 60.0
KAFKA_TIMEOUT_SECONDS = 30.0

EXIT_CONFIG_ERROR = 2
EXIT_STOPPED = 3
EXIT_INTERRUPTED = 130


class ConfigError(ValueError):
    """Raised when the command line cannot work: no Oracle ledger id for an entity, DIR busy."""


@dataclass(frozen=True, slots=True)
class FileFormat:
    """An ERP file layout the job can write."""

    name: str
    extension: str
    needs_ledger_id: bool

    def render(self, batch: Batch, ledger_ids: LedgerIds) -> bytes:
        """The file's bytes for ``batch`` (UTF-8).

        Raises:
            ConfigError: Oracle layout and no ledger id for the batch's entity.
        """
        if self.name == "netsuite-csv":
            return netsuite_journal_csv(batch).encode()
        if self.name == "oracle-gl-interface":
            ledger_id = ledger_ids.for_entity(batch.entity)
            if ledger_id is None:
                raise ConfigError(
                    f"no --ledger-id for entity {batch.entity} (give ENTITY=ID or a default)"
                )
            return oracle_gl_interface_csv(batch, ledger_id=ledger_id).encode()
        return batch_json(batch).encode()


FORMATS: dict[str, FileFormat] = {
    "netsuite-csv": FileFormat("netsuite-csv", "csv", needs_ledger_id=False),
    "oracle-gl-interface": FileFormat("oracle-gl-interface", "csv", needs_ledger_id=True),
    "json": FileFormat("json", "json", needs_ledger_id=False),
}


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """What ``revledger erp-import`` was asked to do."""

    out: Path
    file_format: FileFormat
    group: str
    ledger_ids: LedgerIds = field(default_factory=LedgerIds)
    follow: bool = False
    transaction_size: int = DEFAULT_TRANSACTION_SIZE


def digest(data: bytes) -> str:
    """SHA-256 hex of ``data``: how two files are told apart."""
    return hashlib.sha256(data).hexdigest()


def utc_now() -> dt.datetime:
    """The wall clock, for ``acknowledged_at``; the only clock the job reads."""
    return dt.datetime.now(dt.UTC)


# --- the directory -------------------------------------------------------------------------


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    A temporary file in the same directory (hidden, ``.tmp``: an ERP poller matching
    ``*.csv`` skips it) is fsynced and renamed over ``path``, then the directory is
    fsynced so the rename survives a power cut.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        # mkstemp makes 0600; give the file the permissions open() would have given it.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(descriptor, 0o666 & ~umask)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class ImportDirectory:
    """The output directory: batch files, and the importer's own files under ``.revledger``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = root / ".revledger"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``.revledger/lock`` for the block: two importers on one DIR would race.

        Raises:
            ConfigError: another process holds the lock.
        """
        self.meta.mkdir(parents=True, exist_ok=True)
        with open(self.meta / "lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise ConfigError(f"{self.root} is in use by another erp-import") from exc
            yield

    def load_state(self) -> ImporterState:
        """The saved state, or an empty one for a new directory."""
        path = self.meta / "state.json"
        if not path.exists():
            return ImporterState()
        return state_from_json(path.read_text(encoding="utf-8"))

    def save_state(self, state: ImporterState) -> None:
        """Replace state.json atomically."""
        write_atomic(self.meta / "state.json", state_to_json(state).encode())

    def read(self, relative: str) -> bytes | None:
        """Bytes of the file at ``relative``, None when there is none."""
        try:
            return (self.root / relative).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, relative: str, data: bytes) -> None:
        """Write a batch file atomically."""
        write_atomic(self.root / relative, data)

    def pending(self) -> dict[StreamKey, list[int]]:
        """Sequences waiting on disk, per stream."""
        found: dict[StreamKey, list[int]] = {}
        for path in sorted((self.meta / "pending").glob("*/p*/*.bin")):
            key = (path.parent.parent.name, int(path.parent.name[1:]))
            found.setdefault(key, []).append(int(path.stem))
        return found

    def pending_sequences(self, stream: StreamKey) -> list[int]:
        """Sequences of ``stream`` waiting on disk."""
        entity, partition = stream
        folder = self.meta / "pending" / entity / f"p{partition}"
        return sorted(int(path.stem) for path in folder.glob("*.bin"))

    def read_pending(self, stream: StreamKey, sequence: int) -> bytes | None:
        """The original record bytes of a pending batch, None if its file is gone."""
        try:
            return (self.meta / pending_file_name(*stream, sequence)).read_bytes()
        except FileNotFoundError:
            return None

    def write_pending(self, stream: StreamKey, sequence: int, value: bytes) -> None:
        """Keep a batch that arrived after a gap (a newer copy replaces an older one)."""
        write_atomic(self.meta / pending_file_name(*stream, sequence), value)

    def remove_pending(self, stream: StreamKey, sequence: int) -> None:
        """Forget a pending batch (imported and acked, or superseded)."""
        (self.meta / pending_file_name(*stream, sequence)).unlink(missing_ok=True)

    def keep_rejected(self, partition: int, offset: int, value: bytes | None, why: str) -> str:
        """Keep an undecodable record's bytes and the reason; returns the .bin path."""
        stem = self.meta / "rejected" / f"p{partition}-o{offset}"
        write_atomic(stem.with_suffix(".bin"), value or b"")
        write_atomic(stem.with_suffix(".txt"), (why + "\n").encode())
        return str(stem.with_suffix(".bin").relative_to(self.root))


# --- the importer (decisions carried out on the directory; no Kafka) -----------------------


@dataclass
class Counts:
    """What one run did, for the summary line."""

    imported: int = 0
    already_imported: int = 0
    rejected: int = 0


class Importer:
    """Carries out :func:`~connectors.erp.importing.decide` on a directory, one record at a time.

    :meth:`handle` returns the acks a record produced; the caller sends them and commits
    them with the record's offset, then calls :meth:`committed` (or nothing, and exits,
    after an abort).

    Args:
        directory: the output directory.
        file_format: the layout to write.
        ledger_ids: Oracle ledger ids (ignored by the other layouts).
        codec: decodes records (and pending files, which hold record bytes).
        now: the clock for ``acknowledged_at``.
        say: where progress lines go (gaps, rejections).
    """

    def __init__(
        self,
        directory: ImportDirectory,
        file_format: FileFormat,
        ledger_ids: LedgerIds,
        codec: Codec,
        now: Callable[[], dt.datetime] = utc_now,
        say: Callable[[str], None] = print,
    ) -> None:
        self.directory = directory
        self.file_format = file_format
        self.ledger_ids = ledger_ids
        self.codec = codec
        self.now = now
        self.say = say
        self.state = directory.load_state()
        self.counts = Counts()
        self.refused = False  # a record was rejected or undecodable in this run
        self._drained: list[Unconfirmed] = []  # in the open transaction
        self._gaps_said: set[StreamKey] = set()

    def confirm(self, committed_offset: Callable[[int], int | None]) -> None:
        """At start: forget drained batches whose acks committed before a crash.

        Args:
            committed_offset: the group's committed offset of a topic partition, or None.
        """
        done = []
        for entry in self.state.unconfirmed:
            offset = committed_offset(entry.topic_partition)
            if offset is not None and offset > entry.offset:
                self.directory.remove_pending(entry.stream, entry.sequence)
                done.append(entry)
        if done:
            self._set_state(without_unconfirmed(self.state, done))

    def handle(self, partition: int, offset: int, key: bytes | None, value: bytes | None) -> list:
        """Decide and carry out one record of the batches topic; return its acks (ErpAck)."""
        record, problem = self._decode(key, value)
        if record is None:
            kept = self.directory.keep_rejected(
                partition, offset, value, f"{problem}\npartition {partition} offset {offset}"
            )
            self.counts.rejected += 1
            self.refused = True
            self.say(f"rejected: record p{partition}@{offset}: {problem} (bytes kept in {kept})")
            return []
        return self.handle_batch(record, value or b"", (partition, offset))

    def handle_batch(self, record: JournalBatch, value: bytes, source: tuple[int, int]) -> list:
        """Decide and carry out one decoded batch, then drain its stream; return the acks.

        Args:
            record: the batch as read (its key already checked).
            value: its original bytes, kept if it has to wait behind a gap.
            source: (partition, offset) of the record in the batches topic.
        """
        decision, acks = self._take(record, value, source, from_pending=False)
        if isinstance(decision, Import | AlreadyImported):
            acks.extend(self._drain((record.entity, record.source_partition), source))
        return acks

    def committed(self) -> None:
        """After the transaction committed: delete the pending files it acked."""
        for entry in self._drained:
            self.directory.remove_pending(entry.stream, entry.sequence)
        if self._drained:
            self._set_state(without_unconfirmed(self.state, self._drained))
        self._drained = []

    def summary(self) -> str:
        """The run's summary line (counts, pending files, what each stopped stream misses)."""
        pending = self.directory.pending()
        waiting = sum(
            1
            for key, sequences in pending.items()
            for sequence in sequences
            if sequence >= self.state.stream(key).next
        )
        found = stops(self.state, pending)
        gaps = ", ".join(s.missing + (" (rejected)" if s.rejected else "") for s in found)
        c = self.counts
        return (
            f"erp-import: imported {c.imported}, already imported {c.already_imported}, "
            f"rejected {c.rejected}, pending {waiting}; gaps: {gaps or 'none'}"
        )

    def exit_code(self) -> int:
        """0, or 3 when a stream is stopped (gap or block) or something was refused this run."""
        if self.refused or stops(self.state, self.directory.pending()):
            return EXIT_STOPPED
        return 0

    def _decode(self, key: bytes | None, value: bytes | None) -> tuple[JournalBatch | None, str]:
        try:
            record = self.codec.decode(value)
        except DecodeError as exc:
            return None, str(exc)
        if not isinstance(record, JournalBatch):
            return None, f"not a JournalBatch but a {record.schema_name}"
        if key != record.entity.encode():
            return None, f"key {key!r} is not the batch's entity {record.entity!r}"
        return record, ""

    def _take(
        self, record: JournalBatch, value: bytes, source: tuple[int, int], *, from_pending: bool
    ) -> tuple[Decision, list]:
        """Decide on one batch and carry the decision out; no draining.

        ``source`` is the (partition, offset) of the record being handled: this batch's own
        record, or the one whose import drains this batch from its pending file.
        """
        batch = batch_from_record(record)
        ref = BatchRef(record.batch_id, record.entity, record.source_partition, record.sequence)
        stated = {t.currency: (t.debit_minor, t.credit_minor) for t in record.totals}
        errors = control_errors(batch, stated)
        code = CONTROL_TOTALS_MISMATCH
        relative, content, imported = None, b"", None
        if is_file_safe(ref.entity):
            relative = batch_file_name(*ref.stream, ref.sequence, self.file_format.extension)
            if not errors:  # an unbalanced batch has no layout (formats refuse it)
                try:
                    content = self.file_format.render(batch, self.ledger_ids)
                except LayoutError as exc:
                    errors, code = [str(exc)], LAYOUT_REFUSED
            existing = self.directory.read(relative)
            imported = None if existing is None else digest(existing)
        decision = decide(self.state, ref, digest(content), imported, errors, code)
        self._carry_out(ref, decision, relative, content, value, source, from_pending)
        return decision, self._ack(ref, decision, relative)

    def _carry_out(
        self,
        ref: BatchRef,
        decision: Decision,
        relative: str | None,
        content: bytes,
        value: bytes,
        source: tuple[int, int],
        from_pending: bool,
    ) -> None:
        if isinstance(decision, Import):
            if decision.write and relative is not None:
                self.directory.write(relative, content)
            if not from_pending:
                # A copy kept behind a gap or a block is superseded by this import.
                self.directory.remove_pending(ref.stream, ref.sequence)
            self.counts.imported += 1
        elif isinstance(decision, AlreadyImported):
            self.counts.already_imported += 1
        elif isinstance(decision, Pending):
            self.directory.write_pending(ref.stream, ref.sequence, value)
            if ref.stream not in self._gaps_said:
                self._gaps_said.add(ref.stream)
                self.say(
                    f"gap: entity {ref.entity} partition {ref.partition}: missing batch "
                    f"{batch_name(*ref.stream, decision.missing)} "
                    f"(received {batch_name(*ref.stream, ref.sequence)})"
                )
        else:
            self.counts.rejected += 1
            self.refused = True
            self.say(f"rejected: {ref.batch_id}: {decision.code}: {decision.detail}")
        after = apply(self.state, ref, decision)
        if isinstance(decision, Import | AlreadyImported) and (
            from_pending or self._unconfirmed(ref) is not None
        ):
            # Saved with the import itself: a crash between the two would leave a pending
            # file behind ``next`` that no restart knows to ack again. A re-read record
            # whose batch an aborted drain had imported takes that drain's entry over (its
            # ack is this one), so the drain of leftovers does not ack the batch twice.
            entry = Unconfirmed(*ref.stream, ref.sequence, *source)
            after = with_unconfirmed(after, entry)
            self._drained.append(entry)
        if after != self.state:
            self._set_state(after)

    def _ack(self, ref: BatchRef, decision: Decision, relative: str | None) -> list:
        answer = ack_of(decision)
        if answer is None:
            return []
        status, message = answer
        return [
            ErpAck(
                batch_id=ref.batch_id,
                entity=ref.entity,
                sequence=ref.sequence,
                status=status,
                erp_document_id=relative if status == "imported" else None,
                message=None if message is None else truncate(message),
                acknowledged_at=self.now(),
            )
        ]

    def _drain(self, stream: StreamKey, source: tuple[int, int]) -> list:
        """Import (and ack) pending batches of ``stream`` that now follow without a gap.

        First the batches that this same record drained before a crash, whose acks did not
        commit (unless their own record, read again earlier, was acked in this transaction),
        then the new contiguous run.
        """
        acks: list = []
        in_transaction = {(u.entity, u.partition, u.sequence) for u in self._drained}
        for entry in self.state.unconfirmed:
            again = entry.stream == stream and (entry.topic_partition, entry.offset) == source
            if again and (*stream, entry.sequence) not in in_transaction:
                acks.extend(self._take_pending(stream, entry.sequence, source))
        waiting = self.directory.pending_sequences(stream)
        for sequence in drainable(self.state.stream(stream), waiting):
            acks.extend(self._take_pending(stream, sequence, source))
            if self.state.stream(stream).next != sequence + 1:
                break  # not imported (a conflicting file in the way): the stream is blocked
        return acks

    def _take_pending(self, stream: StreamKey, sequence: int, source: tuple[int, int]) -> list:
        value = self.directory.read_pending(stream, sequence)
        if value is None:
            self._set_state(
                without_unconfirmed(self.state, [Unconfirmed(*stream, sequence, *source)])
            )
            return []
        try:
            record = self.codec.decode(value)
        except DecodeError as exc:
            raise InvariantViolation(
                f"pending batch {stream}/{sequence} no longer decodes"
            ) from exc
        if not isinstance(record, JournalBatch):
            raise InvariantViolation(f"pending batch {stream}/{sequence} is not a JournalBatch")
        _, acks = self._take(record, value, source, from_pending=True)
        return acks

    def _unconfirmed(self, ref: BatchRef) -> Unconfirmed | None:
        """The entry of a batch drained in an earlier run whose ack may not have committed."""
        for entry in self.state.unconfirmed:
            if (entry.entity, entry.partition, entry.sequence) == (*ref.stream, ref.sequence):
                return entry
        return None

    def _set_state(self, state: ImporterState) -> None:
        self.directory.save_state(state)
        self.state = state


# --- Kafka ---------------------------------------------------------------------------------


def transactional_producer(settings: Settings, transactional_id: str) -> Producer:
    return Producer(
        kafka_client_config(
            settings, {"transactional.id": transactional_id, "partitioner": "murmur2_random"}
        )
    )


def _import_consumer(settings: Settings, group: str) -> Consumer:
    return Consumer(
        kafka_client_config(
            settings,
            {
                "group.id": group,
                # Static membership: one importer per group (its transactional id is fixed too),
                # so a restarted run takes over at once instead of waiting out the session of
                # the member it replaces, and a zombie that is still polling is fenced.
                "group.instance.id": f"{group}-importer",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
            },
        )
    )


def _committed_lookup(consumer: Consumer, topic: str) -> Callable[[int], int | None]:
    """The group's committed offset per partition of ``topic``, fetched on first use."""
    cache: dict[int, int | None] = {}

    def committed(partition: int) -> int | None:
        if partition not in cache:
            (found,) = consumer.committed(
                [TopicPartition(topic, partition)], timeout=KAFKA_TIMEOUT_SECONDS
            )
            cache[partition] = found.offset if found.offset >= 0 else None
        return cache[partition]

    return committed


class ImportSession:
    """The consume -> decide -> produce acks -> commit loop of one run."""

    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        importer: Importer,
        codec: Codec,
        acks_topic: str,
        transaction_size: int,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.importer = importer
        self.codec = codec
        self.acks_topic = acks_topic
        self.transaction_size = transaction_size
        self.assigned: set[tuple[str, int]] = set()
        self.at_end: set[tuple[str, int]] = set()
        self._offsets: dict[tuple[str, int], int] = {}
        self._open = False
        self._opened_at = 0.0
        self._records = 0

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rebalance callback: remember what is ours (not at its end until it says so)."""
        owned = {(p.topic, p.partition) for p in partitions}
        self.assigned.update(owned)
        self.at_end.difference_update(owned)

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rebalance callback: commit what was done before the partitions go to another member."""
        self.commit()
        lost = {(p.topic, p.partition) for p in partitions}
        self.assigned.difference_update(lost)
        self.at_end.difference_update(lost)

    def run(self, follow: bool) -> None:
        """Poll and import until every partition is at its end (or forever with ``follow``)."""
        quiet = 0
        started = time.monotonic()
        while follow or not self._finished(quiet):
            waited = time.monotonic() - started
            if not follow and not self.assigned and waited > ASSIGNMENT_TIMEOUT_SECONDS:
                raise RuntimeError("no partition assigned: does the batches topic exist?")
            message = self.consumer.poll(POLL_SECONDS)
            if message is None:
                quiet += 1 if self.assigned else 0
                self.commit()
            elif self._at_end(message):
                self.commit()
            else:
                quiet = 0
                self.take(message)
        self.commit()

    def take(self, message: Message) -> None:
        """Handle one record inside the open transaction; commit when it is full or old."""
        if not self._open:
            self.producer.begin_transaction()
            self._open, self._opened_at = True, time.monotonic()
        acks = self.importer.handle(
            message.partition(), message.offset(), message.key(), message.value()
        )
        for ack in acks:
            self.producer.produce(
                self.acks_topic,
                key=ack.batch_id.encode(),
                value=self.codec.encode(ack, topic=self.acks_topic),
            )
        self._offsets[(message.topic(), message.partition())] = message.offset() + 1
        self._records += 1
        full = self._records >= self.transaction_size
        if full or time.monotonic() - self._opened_at >= TRANSACTION_MAX_SECONDS:
            self.commit()

    def commit(self) -> None:
        """Commit the acks with the consumer offsets, then let the importer clean up."""
        if not self._open:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._offsets.items())]
        self.producer.send_offsets_to_transaction(
            offsets, self.consumer.consumer_group_metadata(), KAFKA_TIMEOUT_SECONDS
        )
        self.producer.commit_transaction(KAFKA_TIMEOUT_SECONDS)
        self._open, self._offsets, self._records = False, {}, 0
        self.importer.committed()

    def abort(self) -> None:
        """Abort the open transaction: its acks and offsets vanish, its files stay (harmless)."""
        if self._open:
            self._open = False
            self.producer.abort_transaction(KAFKA_TIMEOUT_SECONDS)

    def _at_end(self, message: Message) -> bool:
        """True for an end-of-partition event; raise on a real error."""
        error = message.error()
        if error is None:
            self.at_end.discard((message.topic(), message.partition()))
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add((message.topic(), message.partition()))
            return True
        if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return True  # a topic created a moment ago may not be in the metadata yet
        raise KafkaException(error)

    def _finished(self, quiet: int) -> bool:
        if not self.assigned:
            return False
        return self.assigned <= self.at_end or quiet >= QUIET_POLLS_LIMIT


def run_import(settings: Settings, options: ImportOptions) -> int:
    """Run ``revledger erp-import``; returns the exit code (0, 2 or 3).

    Raises:
        KafkaException: the broker failed (after the open transaction was aborted).
    """
    topic = settings.topic_prefix + JOURNAL_BATCHES.name
    acks_topic = settings.topic_prefix + ERP_ACKS.name
    codec = Codec(
        max_message_bytes=settings.max_message_bytes,
        schema_registry_url=settings.schema_registry_url,
    )
    directory = ImportDirectory(options.out)
    with directory.locked():
        importer = Importer(directory, options.file_format, options.ledger_ids, codec)
        producer = transactional_producer(settings, f"{options.group}-producer")
        # Fences a previous run with this group that is still alive (a zombie) and aborts
        # its open transaction, so the committed offsets read next are final.
        producer.init_transactions(KAFKA_TIMEOUT_SECONDS)
        consumer = _import_consumer(settings, options.group)
        session = ImportSession(
            consumer, producer, importer, codec, acks_topic, options.transaction_size
        )
        try:
            importer.confirm(_committed_lookup(consumer, topic))
            consumer.subscribe([topic], on_assign=session.on_assign, on_revoke=session.on_revoke)
            session.run(options.follow)
        except ConfigError as exc:
            session.abort()
            print(f"erp-import: {exc}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        except KeyboardInterrupt:
            session.abort()
            print("erp-import: interrupted; any open transaction was aborted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BaseException:
            session.abort()
            raise
        finally:
            consumer.close()
    print(importer.summary(), flush=True)
    return importer.exit_code()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main_erp_import(args: argparse.Namespace) -> int:
    """Entry point of ``revledger erp-import``."""
    settings = settings_from_devstack()
    file_format = FORMATS[args.format]
    try:
        ledger_ids = parse_ledger_ids(args.ledger_id or [])
    except ValueError as exc:
        print(f"erp-import: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if file_format.needs_ledger_id and ledger_ids.empty:
        print(
            "erp-import: --format oracle-gl-interface needs --ledger-id ID or ENTITY=ID",
            file=sys.stderr,
        )
        return EXIT_CONFIG_ERROR
    if args.transaction_size < 1:
        print("erp-import: --transaction-size must be at least 1", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    options = ImportOptions(
        out=Path(args.out),
        file_format=file_format,
        group=args.group or f"{settings.app_id}-erp-import",
        ledger_ids=ledger_ids,
        follow=args.follow,
        transaction_size=args.transaction_size,
    )
    # SIGTERM aborts the open transaction like Ctrl-C (a SIGKILL leaves it to the fencing).
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run_import(settings, options)
    except ConfigError as exc:
        print(f"erp-import: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
