"""Decisions of the ERP import job: write a batch's file, acknowledge it, hold it, or refuse it.

The pure core of ``revledger erp-import`` (:mod:`streams.erp_import` does the Kafka
and filesystem work around it). Batches arrive per *stream*, one (entity, source
partition), each with a gap-free ``sequence`` that starts at 0. The importer keeps one
:class:`StreamState` per stream: the ``next`` sequence it expects and, after a rejection,
the sequence the stream is ``blocked`` at. For each batch read, :func:`decide` says what
to do, checked in this order (the first that applies wins)::

    entity unusable as a file name        -> Reject   entity_not_a_file_name
    sequence < next (imported before)
        controls do not add up            -> Reject   control_totals_mismatch
        (or the layout refuses it)                    (layout_refused)
        file identical, or gone           -> AlreadyImported   (ack "imported" again)
        file differs                      -> Conflict          (never overwritten)
    controls do not add up                -> Reject   control_totals_mismatch, blocks
    the file layout refuses the batch     -> Reject   layout_refused, blocks
    sequence == next
        no file, or an identical one      -> Import            (then drain what pends)
        a different file is in the way    -> Conflict, blocks
    sequence > next                       -> Pending           (gap: ``next`` is missing)

Pending batches wait on disk; after every import :func:`drainable` names those that now
follow without a gap. A stream blocked at ``s`` drains nothing from ``s`` on until a
batch at ``s`` with good controls arrives (a re-send under the same id): it imports, or
pends in place of the refused one, and either way lifts the block.

Worked example, stream ``US1/p0``, ``next`` 0: batch 1 arrives -> Pending (gap: 0 is
missing); batch 0 -> Import, ``next`` 1; drainable -> [1]; batch 1 -> Import, ``next`` 2;
batch 0 again -> AlreadyImported.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
No clock, no environment, no filesystem: the same inputs give the same decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ledger.batching import Batch
from ledger.errors import InvariantViolation

StreamKey = tuple[str, int]  # (entity, source_partition)

# Bumped when the layout of state.json changes; an unknown version is refused, not guessed.
STATE_VERSION = 1

# Entities become directory and file names: letters, digits, '.', '_', '-', no leading dot
# (no '/', no '..', nothing hidden), so a batch can never write outside its directory.
_FILE_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

CONTROL_TOTALS_MISMATCH = "control_totals_mismatch"
# The file layout cannot express the batch (e.g. an Oracle GL code with an empty segment).
LAYOUT_REFUSED = "layout_refused"
CONFLICTS_WITH_IMPORTED = "conflicts_with_imported"
ENTITY_NOT_A_FILE_NAME = "entity_not_a_file_name"


def batch_name(entity: str, partition: int, sequence: int) -> str:
    """The batch id the batcher gives a stream's batch: ``<entity>/p<partition>/<sequence>``."""
    return f"{entity}/p{partition}/{sequence}"


def is_file_safe(entity: str) -> bool:
    """True when ``entity`` may be used as a directory and file name prefix."""
    return _FILE_SAFE.match(entity) is not None


def batch_file_name(entity: str, partition: int, sequence: int, extension: str) -> str:
    """Path of a batch's ERP file relative to the output directory.

    ``batch_file_name("US1", 3, 7, "csv") == "US1/US1-p3-000000007.csv"``: nine digits so
    that names sort in sequence order.

    Raises:
        InvariantViolation: ``entity`` is not file-safe (callers reject such batches first).
    """
    if not is_file_safe(entity):
        raise InvariantViolation(f"entity {entity!r} is not usable as a file name")
    return f"{entity}/{entity}-p{partition}-{sequence:09d}.{extension}"


def pending_file_name(entity: str, partition: int, sequence: int) -> str:
    """Path of a pending batch's original bytes relative to the importer's ``.revledger``."""
    if not is_file_safe(entity):
        raise InvariantViolation(f"entity {entity!r} is not usable as a file name")
    return f"pending/{entity}/p{partition}/{sequence:09d}.bin"


# --- state ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchRef:
    """What identifies a batch to the importer."""

    batch_id: str
    entity: str
    partition: int
    sequence: int

    @property
    def stream(self) -> StreamKey:
        """The (entity, source partition) whose sequence this batch continues."""
        return (self.entity, self.partition)


@dataclass(frozen=True, slots=True)
class Block:
    """A stream stopped at ``sequence`` because its batch there was refused."""

    sequence: int
    reason: str


@dataclass(frozen=True, slots=True)
class StreamState:
    """One stream's progress: the next sequence to import, and a block if any."""

    next: int = 0
    blocked: Block | None = None


@dataclass(frozen=True, slots=True)
class Unconfirmed:
    """A pending batch imported by a drain whose acknowledging transaction may not have committed.

    The drain ran while handling the record at ``offset`` of ``topic_partition``: the
    transaction committed exactly when the group's committed offset there is past it. Until
    then the pending file is kept, so a re-read of that record drains and acks it again
    (unless the batch's own record, read again first, already carried its ack).
    """

    entity: str
    partition: int
    sequence: int
    topic_partition: int
    offset: int

    @property
    def stream(self) -> StreamKey:
        """The stream of the drained batch."""
        return (self.entity, self.partition)


def _no_streams() -> Mapping[StreamKey, StreamState]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ImporterState:
    """Every stream's progress, and the drained batches awaiting their commit."""

    streams: Mapping[StreamKey, StreamState] = field(default_factory=_no_streams)
    unconfirmed: tuple[Unconfirmed, ...] = ()

    def stream(self, key: StreamKey) -> StreamState:
        """The state of stream ``key`` (a stream never seen expects sequence 0)."""
        return self.streams.get(key) or StreamState()


def with_stream(state: ImporterState, key: StreamKey, stream: StreamState) -> ImporterState:
    """``state`` with stream ``key`` replaced by ``stream``."""
    return replace(state, streams=MappingProxyType({**state.streams, key: stream}))


def with_unconfirmed(state: ImporterState, entry: Unconfirmed) -> ImporterState:
    """``state`` remembering ``entry`` (replacing an older entry for the same batch)."""
    kept = tuple(u for u in state.unconfirmed if _batch_of(u) != _batch_of(entry))
    return replace(state, unconfirmed=(*kept, entry))


def without_unconfirmed(state: ImporterState, done: Collection[Unconfirmed]) -> ImporterState:
    """``state`` forgetting the ``done`` entries (their transaction committed)."""
    gone = {_batch_of(u) for u in done}
    return replace(
        state, unconfirmed=tuple(u for u in state.unconfirmed if _batch_of(u) not in gone)
    )


def _batch_of(entry: Unconfirmed) -> tuple[str, int, int]:
    return (entry.entity, entry.partition, entry.sequence)


# --- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Import:
    """Write the batch's file (unless an identical one is there), advance ``next``, ack it."""

    write: bool = True


@dataclass(frozen=True, slots=True)
class AlreadyImported:
    """Imported before: ack ``imported`` again, write nothing.

    ``verified`` is False when the file has left the directory (an ERP that moves the files
    it loaded) and so could not be compared; the stream's state still says it was imported.
    """

    verified: bool = True


@dataclass(frozen=True, slots=True)
class Conflict:
    """Another file is where this batch's belongs: ack ``rejected``, never overwrite."""

    detail: str
    blocks: bool

    @property
    def code(self) -> str:
        """The reason code that starts the ack message."""
        return CONFLICTS_WITH_IMPORTED


@dataclass(frozen=True, slots=True)
class Pending:
    """A gap: keep the batch until ``missing`` (the stream's ``next``) and those after it come."""

    missing: int
    unblocks: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    """The batch is refused: ack ``rejected``; ``blocks`` stops its stream at its sequence."""

    code: str
    detail: str
    blocks: bool


Decision = Import | AlreadyImported | Conflict | Pending | Reject


def decide(
    state: ImporterState,
    batch: BatchRef,
    content_digest: str,
    imported_digest: str | None,
    errors: Sequence[str],
    refusal_code: str = CONTROL_TOTALS_MISMATCH,
) -> Decision:
    """What to do with ``batch`` (the order of checks is in the module docstring).

    Args:
        state: the importer's state before this batch.
        batch: the batch read.
        content_digest: digest of the file this batch renders to (not looked at when
            ``errors`` is non-empty: a batch that does not add up has no file).
        imported_digest: digest of the file already at this batch's path, None if none.
        errors: :func:`control_errors` of the batch, or why the file layout refuses it;
            empty when it can be written.
        refusal_code: the ack reason code of ``errors`` (:data:`CONTROL_TOTALS_MISMATCH`
            or :data:`LAYOUT_REFUSED`).

    Returns:
        The decision; :func:`apply` gives the state after it.
    """
    if not is_file_safe(batch.entity):
        detail = f"entity {batch.entity!r} must match {_FILE_SAFE.pattern}"
        return Reject(ENTITY_NOT_A_FILE_NAME, detail, blocks=False)
    stream = state.stream(batch.stream)
    if batch.sequence < stream.next:
        return _decide_imported(batch, content_digest, imported_digest, errors, refusal_code)
    if errors:
        return Reject(refusal_code, "; ".join(errors), blocks=True)
    if batch.sequence == stream.next:
        if imported_digest is None or imported_digest == content_digest:
            # An identical file is one written just before a crash that kept the state from
            # recording it: it is this import, and rewriting it would only touch its mtime.
            return Import(write=imported_digest is None)
        return Conflict(_differs(batch, imported_digest, content_digest), blocks=True)
    blocked = stream.blocked
    return Pending(stream.next, unblocks=blocked is not None and blocked.sequence == batch.sequence)


def _decide_imported(
    batch: BatchRef,
    content_digest: str,
    imported_digest: str | None,
    errors: Sequence[str],
    refusal_code: str,
) -> Decision:
    """Decide for a batch whose sequence the stream has passed."""
    if errors:
        # The sequence was imported with good controls; this copy is bad, the stream is not.
        return Reject(refusal_code, "; ".join(errors), blocks=False)
    if imported_digest is None:
        return AlreadyImported(verified=False)
    if imported_digest == content_digest:
        return AlreadyImported(verified=True)
    return Conflict(_differs(batch, imported_digest, content_digest), blocks=False)


def _differs(batch: BatchRef, imported_digest: str, content_digest: str) -> str:
    return (
        f"{batch.batch_id} renders to sha256 {content_digest[:16]}..., but the file imported"
        f" at sequence {batch.sequence} has sha256 {imported_digest[:16]}..."
    )


def apply(state: ImporterState, batch: BatchRef, decision: Decision) -> ImporterState:
    """The importer's state after ``decision`` on ``batch`` was carried out.

    Raises:
        InvariantViolation: an Import of a sequence other than the stream's ``next``, or a
            block behind ``next`` (both would be bugs in :func:`decide` or its caller).
    """
    stream = state.stream(batch.stream)
    if isinstance(decision, Import):
        if batch.sequence != stream.next:
            raise InvariantViolation(f"import of {batch.batch_id} while expecting {stream.next}")
        blocked = stream.blocked
        if blocked is not None and blocked.sequence == batch.sequence:
            blocked = None
        return with_stream(state, batch.stream, StreamState(batch.sequence + 1, blocked))
    if isinstance(decision, Pending) and decision.unblocks:
        return with_stream(state, batch.stream, StreamState(stream.next, None))
    if isinstance(decision, Reject | Conflict) and decision.blocks:
        if batch.sequence < stream.next:
            raise InvariantViolation(f"block of {batch.batch_id} behind {stream.next}")
        reason = f"{decision.code}: {decision.detail}"
        current = stream.blocked
        # One block per stream, the lowest: nothing after it imports before it anyway.
        if current is None or batch.sequence <= current.sequence:
            return with_stream(
                state, batch.stream, StreamState(stream.next, Block(batch.sequence, reason))
            )
    return state


def drainable(stream: StreamState, pending: Iterable[int]) -> tuple[int, ...]:
    """Pending sequences that now follow ``next`` without a gap, in order.

    A block at ``s`` stops the run before ``s``: a pending copy kept there is older than the
    refused one, and only a new batch at ``s`` (which lifts the block) may take its place.
    """
    waiting = set(pending)
    run: list[int] = []
    sequence = stream.next
    while sequence in waiting:
        if stream.blocked is not None and sequence >= stream.blocked.sequence:
            break
        run.append(sequence)
        sequence += 1
    return tuple(run)


def ack_of(decision: Decision) -> tuple[str, str | None] | None:
    """(ErpAck status, message) for ``decision``; None when no ack is due yet (Pending)."""
    if isinstance(decision, Import):
        return ("imported", None)
    if isinstance(decision, AlreadyImported):
        if decision.verified:
            return ("imported", "already imported")
        return ("imported", "already imported (file no longer in the directory, not compared)")
    if isinstance(decision, Conflict | Reject):
        return ("rejected", f"{decision.code}: {decision.detail}")
    return None


@dataclass(frozen=True, slots=True)
class Stop:
    """A stream that cannot go on: ``missing`` is the batch it waits for."""

    stream: StreamKey
    missing: str
    rejected: str | None


def stops(state: ImporterState, pending: Mapping[StreamKey, Collection[int]]) -> list[Stop]:
    """Streams stopped by a gap (batches pend) or a rejection (blocked), in stream order."""
    keys = set(state.streams) | {key for key, sequences in pending.items() if sequences}
    found = []
    for key in sorted(keys):
        stream = state.stream(key)
        waiting = [s for s in pending.get(key, ()) if s >= stream.next]
        if not waiting and stream.blocked is None:
            continue
        rejected = None
        if stream.blocked is not None and stream.blocked.sequence == stream.next:
            rejected = stream.blocked.reason
        found.append(Stop(key, batch_name(key[0], key[1], stream.next), rejected))
    return found


# --- control totals ------------------------------------------------------------------------


def control_errors(
    batch: Batch, stated_totals: Mapping[str, tuple[int, int]] | None = None
) -> list[str]:
    """Every way ``batch``'s control totals fail to add up; empty when they do.

    Re-checks on the domain batch what the wire validator checked on the record (a pair
    assertion: the files are written from this value, not from the record).

    Args:
        batch: the domain batch.
        stated_totals: currency -> (debits, credits) the record states, compared with the
            lines' sums when given.

    Returns:
        One message per failure, e.g. ``"USD: debits 100 != credits 90"``.
    """
    errors: list[str] = []
    for check in (_has_lines, _amounts_not_negative, _currencies_balance, _functional_balances):
        errors.extend(check(batch))
    if stated_totals is not None:
        errors.extend(_stated_totals_agree(batch, stated_totals))
    return errors


def _has_lines(batch: Batch) -> list[str]:
    return [] if batch.lines else ["batch has no lines"]


def _amounts_not_negative(batch: Batch) -> list[str]:
    errors = []
    for number, line in enumerate(batch.lines, start=1):
        amounts = (
            line.debit_minor,
            line.credit_minor,
            line.functional_debit_minor,
            line.functional_credit_minor,
        )
        if any(type(amount) is not int or amount < 0 for amount in amounts):
            errors.append(f"line {number}: amounts must be non-negative integers")
    return errors


def _currencies_balance(batch: Batch) -> list[str]:
    return [
        f"{currency}: debits {debits} != credits {credits}"
        for currency, (debits, credits) in sorted(batch.totals().items())
        if debits != credits
    ]


def _functional_balances(batch: Batch) -> list[str]:
    debits = sum(line.functional_debit_minor for line in batch.lines)
    credits = sum(line.functional_credit_minor for line in batch.lines)
    if debits == credits:
        return []
    return [f"functional {batch.functional_currency}: debits {debits} != credits {credits}"]


def _stated_totals_agree(batch: Batch, stated: Mapping[str, tuple[int, int]]) -> list[str]:
    sums = batch.totals()
    return [
        f"{currency}: stated totals {stated.get(currency)} != line sums {sums.get(currency)}"
        for currency in sorted(set(sums) | set(stated))
        if tuple(stated.get(currency, ())) != sums.get(currency, ())
    ]


# --- Oracle ledger ids ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerIds:
    """Oracle ledger (LEDGER_ID) per entity, with an optional default for the others."""

    default: str | None = None
    by_entity: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def for_entity(self, entity: str) -> str | None:
        """The ledger id of ``entity``, or None when neither it nor a default is given."""
        return self.by_entity.get(entity, self.default)

    @property
    def empty(self) -> bool:
        """True when no ledger id at all was given."""
        return self.default is None and not self.by_entity


def parse_ledger_ids(values: Iterable[str]) -> LedgerIds:
    """Parse ``--ledger-id`` values: ``ID`` (the default) or ``ENTITY=ID``, each at most once.

    Raises:
        ValueError: an empty id or entity, two defaults, or an entity named twice.
    """
    default: str | None = None
    by_entity: dict[str, str] = {}
    for value in values:
        entity, sep, ledger_id = value.rpartition("=")
        if not ledger_id or (sep and not entity):
            raise ValueError(f"--ledger-id {value!r}: expected ID or ENTITY=ID")
        if not sep:
            if default is not None:
                raise ValueError(f"--ledger-id {value!r}: a default was already given")
            default = ledger_id
        elif entity in by_entity:
            raise ValueError(f"--ledger-id {value!r}: entity {entity} was already given")
        else:
            by_entity[entity] = ledger_id
    return LedgerIds(default, MappingProxyType(by_entity))


# --- state.json ----------------------------------------------------------------------------


def state_to_json(state: ImporterState) -> str:
    """state.json text of ``state``: streams and unconfirmed drains in a stable order."""
    streams = [
        {
            "entity": entity,
            "partition": partition,
            "next": stream.next,
            "blocked": None
            if stream.blocked is None
            else {"sequence": stream.blocked.sequence, "reason": stream.blocked.reason},
        }
        for (entity, partition), stream in sorted(state.streams.items())
    ]
    unconfirmed = [
        {
            "entity": u.entity,
            "partition": u.partition,
            "sequence": u.sequence,
            "topic_partition": u.topic_partition,
            "offset": u.offset,
        }
        for u in sorted(state.unconfirmed, key=_batch_of)
    ]
    document = {"version": STATE_VERSION, "streams": streams, "unconfirmed": unconfirmed}
    return json.dumps(document, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def state_from_json(text: str) -> ImporterState:
    """The state written by :func:`state_to_json`.

    Raises:
        ValueError: not JSON, another version, or a field missing or of the wrong type.
    """
    document = json.loads(text)
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise ValueError(f"state.json: expected version {STATE_VERSION}")
    try:
        streams = {
            (_text(item["entity"]), _count(item["partition"])): StreamState(
                _count(item["next"]), _block(item["blocked"])
            )
            for item in document["streams"]
        }
        unconfirmed = tuple(
            Unconfirmed(
                _text(item["entity"]),
                _count(item["partition"]),
                _count(item["sequence"]),
                _count(item["topic_partition"]),
                _count(item["offset"]),
            )
            for item in document["unconfirmed"]
        )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"state.json: {exc!r}") from exc
    return ImporterState(MappingProxyType(streams), unconfirmed)


def _block(value: object) -> Block | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise TypeError(f"blocked must be an object or null, got {value!r}")
    return Block(_count(value["sequence"]), _text(value["reason"]))


def _count(value: object) -> int:
    if type(value) is not int or value < 0:
        raise TypeError(f"expected a non-negative integer, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value
