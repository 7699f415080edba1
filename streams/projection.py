"""``revledger project``: the ledger's topics into PostgreSQL, exactly once.

A plain confluent-kafka consumer at read_committed (no Faust, no consumer group): it
assigns every partition of ``ledger.inputs.v1``, ``ledger.entries.v1``,
``revenue.schedules.v1``, ``erp.journal-batches.v1``, ``erp.acks.v1`` and ``dlq.v1``
(with the topic prefix) itself and seeks each to the next offset stored in
``revledger.projection_offsets`` under its consumer name (``--name``, default
``projection``), or to the earliest offset when none is stored.

Each poll batch (up to ``--batch-size`` records or about a second) is decoded
(:class:`streams.serde.Codec`), mapped to rows (:func:`connectors.postgres.projection.rows_for`)
and written with the next offset of every partition it read in ONE PostgreSQL transaction
(:func:`connectors.postgres.sink.write_batch`). A crash at any point leaves the database
at a batch boundary, and the restart reads from exactly there.

- Bytes that do not decode, or a record type that does not belong on its topic, become a
  ``projection_rejects`` row with the original bytes; the run goes on.
- A transient database error (connection lost, serialization failure) retries the batch
  with backoff (:data:`RETRY_DELAYS_SECONDS`), then exits 75 with nothing half written;
  a database unreachable at start is retried the same way, then exits 75 too.
- A constraint violation (an unbalanced entry ...) is a bug: the run writes the batch's
  records one by one in a transaction it rolls back, names the first one refused, and
  exits 70.
- Without ``--follow`` the run ends when every assigned partition reached its end, and
  prints the rows inserted per table and the offsets. With ``--follow`` it keeps going;
  SIGTERM or Ctrl-C ends it after the batch in hand is written.

Product mappings and entities (for implied contracts and obligation methods) are read
from the reference topics at start, and again when an invoice names a product not seen.

Must not import faust.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from connectors.postgres import projection
from connectors.postgres.migrate import (
    DatabaseUnreachable,
    MigrationError,
    describe_conninfo,
    migrate,
    status,
)
from connectors.postgres.projection import (
    PRODUCT_MAPPING_MISSING,
    Received,
    Rows,
    reject,
    rows_for,
)
from connectors.postgres.sink import (
    ConstraintViolation,
    OffsetsMoved,
    ProjectionError,
    TransientDatabaseError,
    database_errors,
    find_refused,
    prepare,
    stored_offsets,
    translated,
    write_batch,
)
from ledger.reference import ReferenceData
from streams.devstack_env import settings_from_devstack
from streams.health import ProjectionHealth
from streams.logs import configure_logging
from streams.reading import read_topics_to_end
from streams.serde import Codec, DecodeError
from streams.settings import Settings, SettingsError, kafka_client_config
from streams.topics import REF_ENTITIES, REF_PRODUCTS

DEFAULT_NAME = "projection"
# Records per transaction: COPY makes a row cost little, while each batch pays a commit (a
# round trip, an fsync), some thirty statements and the per-batch passes (schedules waiting,
# invoices touched), so bigger batches go faster: 5,000 took a tenth less database CPU than
# 2,000 (issue 7). A crash redoes at most one batch (idempotently); BATCH_MAX_SECONDS still
# bounds how long a batch waits to fill.
DEFAULT_BATCH_SIZE = 5000
# A batch is written after this long even when not full, so --follow stays about a second
# behind a trickle of records.
BATCH_MAX_SECONDS = 1.0
# consume() returns early only with a full chunk, so each call short of one (the end of
# the topics, a trickle under --follow) waits this long: 0.2 s made the end of every run
# that much later; 20 calls a second when idle cost nothing.
POLL_SECONDS = 0.05
# Records asked of librdkafka per consume() call (its queue is filled in the background).
CONSUME_CHUNK = 500
# Waits before each retry of a batch after a transient database error (~15 s in all),
# then the run gives up: long enough for a failover or restart, short enough to alert.
RETRY_DELAYS_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
KAFKA_TIMEOUT_SECONDS = 30.0
# Without --follow a run ends when every partition has reported its end (at read_committed,
# its last stable offset). A safety net only: after this long without a record while some
# partition has not, the run ends anyway and says which (everything read is committed).
END_WAIT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10
# How long the broker may hold a fetch that finds nothing (librdkafka's default: 500 ms).
# A partition's end is only known from such a fetch, so the default made the reference
# read at start and the end of every run half a second longer each. The run's consumer
# then fetches at most ten times a second from an idle topic (--follow); the reference
# read lasts a moment, and its consume() calls wait briefly (see POLL_SECONDS).
FETCH_WAIT_MS = 100
REFERENCE_FETCH_WAIT_MS = 10

EXIT_SETUP = 1
EXIT_BUG = 70  # EX_SOFTWARE, as the workers
EXIT_UNAVAILABLE = 75  # EX_TEMPFAIL: the database stayed unreachable


class SetupError(RuntimeError):
    """Raised when the run cannot start: no database, a migration failed, a topic missing."""


class ProjectionBug(RuntimeError):
    """Raised when the database refused a batch's rows (a bug), naming the record."""


class DatabaseUnavailable(RuntimeError):
    """Raised when a batch could not be written after every retry."""


@dataclass(frozen=True, slots=True)
class ProjectOptions:
    """What ``revledger project`` was asked to do."""

    database_url: str
    name: str = DEFAULT_NAME
    batch_size: int = DEFAULT_BATCH_SIZE
    follow: bool = False


@dataclass(slots=True)
class Totals:
    """What a run did, for its summary."""

    inserted: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    records: int = 0
    batches: int = 0
    skipped: int = 0
    retries: int = 0

    def add(self, counts: tuple[Counter[str], Counter[str]], parts: Sequence[Rows]) -> None:
        """Count one written batch."""
        self.inserted.update(counts[0])
        self.updated.update(counts[1])
        self.records += len(parts)
        self.batches += 1
        self.skipped += sum(rows.skipped for rows in parts)


def read_reference(settings: Settings, codec: Codec) -> ReferenceData:
    """Entities and product mappings, read to the end of their topics.

    Records are folded entities first, then products, each topic in the order read (as
    the workers' reference readers fold them).
    """
    topics = [settings.topic_prefix + spec.name for spec in (REF_ENTITIES, REF_PRODUCTS)]
    records = []
    for messages in read_topics_to_end(settings, topics, REFERENCE_FETCH_WAIT_MS).values():
        for message in messages:
            try:
                records.append(codec.decode(message.value()))
            except DecodeError:
                continue  # the workers refuse it too (reference_reader logs it)
    return ReferenceData.from_records(records)


class Projector:
    """One run of ``revledger project``: assign, poll batches, write each in a transaction."""

    def __init__(
        self,
        settings: Settings,
        options: ProjectOptions,
        codec: Codec | None = None,
        say: Callable[[str], None] = print,
    ) -> None:
        self.settings = settings
        self.options = options
        self.codec = codec or Codec(
            max_message_bytes=settings.max_message_bytes,
            schema_registry_url=settings.schema_registry_url,
        )
        self.say = say
        self.canonical = {settings.topic_prefix + name: name for name in projection.TOPICS}
        self.reference = ReferenceData()
        self.totals = Totals()
        self.expected: dict[tuple[str, int], int] = {}
        self.assigned: set[tuple[str, int]] = set()
        self.at_end: set[tuple[str, int]] = set()
        self.stopping = False
        self._last_record = time.monotonic()
        self._conn: psycopg.Connection | None = None
        self._consumer: Consumer | None = None

    # --- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        """Project until the end (or, with ``follow``, until stopped); returns the exit code."""
        started = time.monotonic()
        try:
            self.reference = read_reference(self.settings, self.codec)
            consumer = self._assign()
            while not self.stopping:
                parts, offsets = self._poll_batch(consumer)
                if parts:
                    self._write(parts, offsets)
                if not self.options.follow and (self._finished() or self._gave_up()):
                    break
        except SetupError as exc:
            self.say_error(f"cannot start: {exc}")
            return EXIT_SETUP
        except (ProjectionBug, OffsetsMoved) as exc:
            self.say_error(f"stopped: {exc}")
            return EXIT_BUG
        except (DatabaseUnavailable, TransientDatabaseError) as exc:
            self.say_error(f"stopped, nothing of the last batch committed: {exc}")
            return EXIT_UNAVAILABLE
        except ProjectionError as exc:
            self.say_error(f"stopped: database error: {exc}")
            return EXIT_BUG
        except KafkaException as exc:
            self.say_error(f"Kafka failed: {exc}")
            return EXIT_SETUP
        finally:
            self.close()
        self.summary(time.monotonic() - started)
        return 0

    def stop(self) -> None:
        """End the run after the batch in hand (a signal handler calls this)."""
        self.stopping = True

    def close(self) -> None:
        """Close the consumer and the database connection."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        self._drop_connection()

    def say_error(self, text: str) -> None:
        """One line on stderr."""
        print(f"revledger project: {text}", file=sys.stderr, flush=True)

    # --- Kafka ------------------------------------------------------------------------------

    def _assign(self) -> Consumer:
        """Assign every partition of the topics, each at its stored offset or the earliest."""
        consumer = Consumer(
            kafka_client_config(
                self.settings,
                {
                    # Required by librdkafka; never joined nor committed (assign() only).
                    "group.id": f"revledger-projection-{self.options.name}",
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                    "fetch.wait.max.ms": FETCH_WAIT_MS,
                },
            )
        )
        self._consumer = consumer
        metadata = consumer.list_topics(timeout=KAFKA_TIMEOUT_SECONDS).topics
        self.expected = self._with_database(lambda conn: stored_offsets(conn, self.options.name))
        assignment = []
        for topic in self.canonical:
            found = metadata.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise SetupError(f"topic {topic} does not exist (revledger topics create)")
            for partition in sorted(found.partitions):
                start = self.expected.get((topic, partition), OFFSET_BEGINNING)
                assignment.append(TopicPartition(topic, partition, start))
                self.assigned.add((topic, partition))
        consumer.assign(assignment)
        return consumer

    def _poll_batch(
        self, consumer: Consumer
    ) -> tuple[list[tuple[Received, Rows]], dict[tuple[str, int], int]]:
        """Up to ``batch_size`` records or :data:`BATCH_MAX_SECONDS`, mapped to rows."""
        parts: list[tuple[Received, Rows]] = []
        offsets: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + BATCH_MAX_SECONDS
        refreshed = False
        while len(parts) < self.options.batch_size and not self.stopping:
            left = deadline - time.monotonic()
            if left <= 0 or (not self.options.follow and self._finished()):
                break
            wanted = min(CONSUME_CHUNK, self.options.batch_size - len(parts))
            for message in consumer.consume(wanted, min(left, POLL_SECONDS)):
                if self._at_end(message):
                    continue
                received, rows, refreshed = self._rows(message, refreshed)
                parts.append((received, rows))
                self._last_record = time.monotonic()
                offsets[(received.topic, received.partition)] = received.offset + 1
        return parts, offsets

    def _at_end(self, message: Message) -> bool:
        """True for an event that is not a record: an end of partition, or an error.

        A fatal error raises; others (a broker away for a while) are said, and librdkafka
        retries them itself.
        """
        key = (message.topic(), message.partition())
        error = message.error()
        if error is None:
            self.at_end.discard(key)
            return False
        if error.code() == KafkaError._PARTITION_EOF:
            self.at_end.add(key)
        elif error.fatal():
            raise KafkaException(error)
        else:
            self.say_error(f"Kafka: {error.str()}")
        return True

    def _finished(self) -> bool:
        return bool(self.assigned) and self.assigned <= self.at_end

    def _gave_up(self) -> bool:
        """True (and said) when no record came for END_WAIT_SECONDS short of every end."""
        if time.monotonic() - self._last_record < END_WAIT_SECONDS:
            return False
        waiting = sorted(self.assigned - self.at_end)
        self.say_error(
            f"no end reported in {END_WAIT_SECONDS:g} s by {len(waiting)} partition(s)"
            f" (first: {waiting[0][0]}[{waiting[0][1]}]); stopping with everything read committed"
        )
        return True

    def _rows(self, message: Message, refreshed: bool) -> tuple[Received, Rows, bool]:
        """Decode and map one record; a product not seen yet re-reads the reference once."""
        topic = message.topic()
        received = Received(
            topic,
            self.canonical[topic],
            message.partition(),
            message.offset(),
            message.key(),
            message.value(),
        )
        try:
            record = self.codec.decode(message.value())
        except DecodeError as exc:
            return received, reject(received, exc.reason.value, exc.message), refreshed
        rows = rows_for(record, received, self.reference)
        if not refreshed and _rejected_for(rows, PRODUCT_MAPPING_MISSING):
            self.reference = read_reference(self.settings, self.codec)
            rows, refreshed = rows_for(record, received, self.reference), True
        return received, rows, refreshed

    # --- PostgreSQL -------------------------------------------------------------------------

    def _write(
        self, parts: list[tuple[Received, Rows]], offsets: dict[tuple[str, int], int]
    ) -> None:
        """Write one batch with its offsets; retry transient errors; name a refused record.

        Raises:
            DatabaseUnavailable: still failing after :data:`RETRY_DELAYS_SECONDS`.
            ProjectionBug: a constraint refused the batch.
        """
        rows = [part for _, part in parts]
        for attempt, delay in enumerate((*RETRY_DELAYS_SECONDS, None), start=1):
            try:
                counts = self._with_database(
                    lambda conn: write_batch(
                        conn, rows, offsets, self.options.name, self.expected, self.reference
                    )
                )
                break
            except TransientDatabaseError as exc:
                self._drop_connection()
                if delay is None:
                    raise DatabaseUnavailable(f"{attempt} attempts: {exc}") from exc
                self.totals.retries += 1
                self.say_error(f"database error, retrying in {delay:g} s: {exc}")
                time.sleep(delay)
            except ConstraintViolation as exc:
                raise ProjectionBug(self._refused(parts, exc)) from exc
        self.expected.update(offsets)
        self.totals.add(counts, rows)

    def _refused(self, parts: list[tuple[Received, Rows]], violation: ConstraintViolation) -> str:
        """Say which record the database refuses (written alone), and why."""
        found = self._with_database(lambda conn: find_refused(conn, parts, self.reference))
        if found is None:
            return f"the database refused the batch ({violation}); no record alone is refused"
        received, alone = found
        return (
            f"the database refused {self._describe(received)} read at {received.describe()}:"
            f" {alone} (constraint {alone.constraint})"
        )

    def _describe(self, received: Received) -> str:
        """``JournalEntryPosted e-1:invoice_issued:0``: the record's type and id."""
        try:
            record = self.codec.decode(received.value)
        except DecodeError:
            return "an undecodable record"
        for name in ("entry_id", "batch_id", "event_id", "contract_id"):
            value = getattr(record, name, None)
            if value:
                return f"{record.schema_name} {value}"
        return record.schema_name

    def _with_database(self, work: Callable[[psycopg.Connection], object]) -> object:
        """Run ``work`` on the (re)opened connection; psycopg errors come out translated."""
        if self._conn is None or self._conn.closed or self._conn.broken:
            with database_errors():
                conn = psycopg.connect(
                    self.options.database_url,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    application_name=f"revledger-projection-{self.options.name}",
                )
                prepare(conn)
            self._conn = conn
        try:
            return work(self._conn)
        except psycopg.Error as exc:  # outside write_batch (e.g. reading offsets)
            raise translated(exc) from exc

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # --- output -----------------------------------------------------------------------------

    def summary(self, seconds: float) -> None:
        """Rows inserted (and updated) per table, then the offsets reached per topic."""
        totals = self.totals
        self.say(
            f"projection {self.options.name!r}: {totals.records} records in {totals.batches}"
            f" batches, {seconds:.1f} s; {totals.skipped} control records skipped,"
            f" {totals.retries} retries"
        )
        tables = [*projection.COLUMNS, "projection_schedules", "revenue_schedule"]
        for table in tables:
            line = f"  {table:<24} {totals.inserted[table]:>8} inserted"
            if totals.updated[table]:
                line += f", {totals.updated[table]} updated"
            self.say(line)
        for topic in self.canonical:
            reached = sorted((p, o) for (t, p), o in self.expected.items() if t == topic)
            text = " ".join(f"[{p}]={o}" for p, o in reached) or "(nothing read)"
            self.say(f"  offsets {topic} {text}")


def _rejected_for(rows: Rows, reason: str) -> bool:
    # .get: indexing the defaultdict would give every record an empty reject list.
    return any(row[3] == reason for row in rows.tables.get("projection_rejects", ()))


# --- command line ---------------------------------------------------------------------------


def add_project_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger project`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "project",
        help="project the ledger's topics into PostgreSQL, exactly once (offsets in the database)",
    )
    parser.add_argument("--follow", action="store_true", help="keep going at the end")
    parser.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="default: DATABASE_URL, else the dev stack's database",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"records per transaction (default {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--name",
        default=DEFAULT_NAME,
        help=f"consumer name the offsets are stored under (default {DEFAULT_NAME})",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve /metrics (lag in rows and seconds), /healthz and /readyz on PORT"
        " (0: any free port; host REVLEDGER_WEB_HOST)",
    )


def main_project(args: argparse.Namespace) -> int:
    """Entry point of ``revledger project``: apply pending migrations, then project."""
    try:
        settings = settings_from_devstack()
    except SettingsError as exc:
        print(f"revledger project: {exc}", file=sys.stderr)
        return EXIT_SETUP
    url = args.database_url or settings.database_url
    if not url:
        print(
            "revledger project: no database: pass --database-url, set DATABASE_URL"
            " or start the dev stack (revledger dev up)",
            file=sys.stderr,
        )
        return EXIT_SETUP
    if args.batch_size < 1 or not args.name:
        print("revledger project: --batch-size must be >= 1 and --name not empty", file=sys.stderr)
        return EXIT_SETUP
    try:
        applied = _migrate_when_reachable(url)
    except DatabaseUnreachable as exc:
        # Down at start is the same transient fault as down mid-run: the same backoff,
        # then EX_TEMPFAIL for the process manager (not a set-up error).
        print(f"revledger project: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except MigrationError as exc:
        print(f"revledger project: {describe_conninfo(url)}: {exc}", file=sys.stderr)
        return EXIT_SETUP
    for label in applied:
        print(f"applied migration {label}", flush=True)
    options = ProjectOptions(url, args.name, args.batch_size, args.follow)
    projector = Projector(settings, options, say=lambda line: print(line, flush=True))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: projector.stop())
    configure_logging(settings.log_format, settings.log_level)
    if getattr(args, "metrics_port", None) is None:
        return projector.run()
    health = ProjectionHealth(
        settings, options.name, url, lambda: projector.expected, lambda: projector.assigned
    )
    server = health.serve(settings.web_host, args.metrics_port)
    host, port = server.server_address[:2]
    print(f"projection: serving http://{host}:{port}/metrics", flush=True)
    try:
        return projector.run()
    finally:
        health.stop()
        server.shutdown()


def _migrate_when_reachable(
    url: str, delays: Sequence[float] = RETRY_DELAYS_SECONDS, sleep: Callable = time.sleep
) -> list[str]:
    """Apply pending migrations; while the database is unreachable, retry with backoff.

    Migrating needs DDL rights; the projection's own role (revledger_writer) has none, so
    it only migrates when something is pending. Raises the last ``DatabaseUnreachable``
    once every retry failed.
    """
    for attempt, delay in enumerate((*delays, None), start=1):
        try:
            pending = any(row.state != "applied" for row in status(url))
            return migrate(url) if pending else []
        except DatabaseUnreachable as exc:
            if delay is None:
                raise DatabaseUnreachable(f"{attempt} attempts: {exc}") from exc
            print(f"revledger project: {exc}; retrying in {delay:g} s", file=sys.stderr)
            sleep(delay)
    raise AssertionError("unreachable")  # the loop returns or raises


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.projection [options]``: the command without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.projection")
    commands = parser.add_subparsers(dest="command")
    add_project_commands(commands)
    args = parser.parse_args(["project", *(sys.argv[1:] if argv is None else argv)])
    return main_project(args)


if __name__ == "__main__":
    sys.exit(main())
