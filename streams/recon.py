"""``revledger recon``: reconcile billing, payments, ERP acks and the projection, per day.

One run, per entity and business day (and currency), in ``ledger.reconciliation``'s words:

1. ``billing_vs_ar``: invoices issued (gross), voids, credit notes, write-offs vs the
   receivable movements of their entries;
2. ``payments_vs_cash_clearing``: settlements (net of fees), refunds, disputes, payouts vs
   the cash clearing movements of their entries;
3. ``erp_ack_missing`` / ``_rejected`` / ``_duplicated``: every journal batch has exactly
   one accepted ERP import (no answer is a break after ``--ack-max-age-days`` business days);
4. ``projection_vs_entries``: lines and net amounts per entity, posting day, currency and
   account in PostgreSQL vs ``ledger.entries.v1`` read at read_committed up to the offsets
   the projection stored (``--projection-name``), so a projection that is behind is not a
   break.

Checks 1-3 and the stored offsets are read in one repeatable-read snapshot
(:mod:`connectors.postgres.recon`); an event that posted nothing is explained (not a
break) when it is in the DLQ, not processed yet, or presumably held
(:func:`ledger.reconciliation.explanation_for`). The run and its breaks are written to
``recon_runs`` / ``recon_breaks`` (view ``recon_breaks_open``) in one transaction; with
``--publish`` each open break goes to ``recon.breaks.v1`` as a ``ReconBreak`` keyed by its
deterministic break id (a re-run re-sends the same key); the gauge
``revledger_recon_breaks{entity,kind}`` counts the open breaks of the latest run. With
``--follow`` (or ``--interval S``) it runs every S seconds and serves ``/metrics``,
``/healthz`` and ``/readyz`` (the last run succeeded recently) on ``--port`` with the probe
server the lag exporter uses (:func:`streams.health.serve_probes`).

``--entity E --date D`` explains each break down to its items: event ids and types, the
amount on each side, the entry ids, and the DLQ reason or presumed hold when that is why.

Exit codes: 0 no open break; 3 open breaks found; 1 database or Kafka unreachable or
failed; 2 a bad argument or an unknown entity. Wiring: ``streams.cli`` calls
:func:`add_recon_commands` and, for ``recon``, returns :func:`main_recon`.

Must not import faust.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric

from ledger.reconciliation import (
    Break,
    BreakKind,
    Check,
    Explanation,
    Movement,
    ReconKey,
    Status,
    check_acks,
    compare,
    differences,
    explain,
    explanation_for,
    reconcile,
    totals,
)
from streams.health import Heartbeat, Readiness, serve_probes, stale_after
from streams.settings import Settings, SettingsError, kafka_client_config

if TYPE_CHECKING:  # psycopg is imported when a run starts: the CLI builds every parser
    import psycopg

    from connectors.postgres.recon import Scope

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BREAKS = 3
DEFAULT_PORT = 9309
DEFAULT_INTERVAL_SECONDS = 300.0
# Batches are closed per business day (REVLEDGER_BATCH_MAX_AGE_DAYS, 1) and imported as
# they come; two business days without an answer is no longer a queue but a gap.
DEFAULT_ACK_MAX_AGE_DAYS = 2
DEFAULT_PROJECTION_NAME = "projection"
CONNECT_TIMEOUT_SECONDS = 10
# Reading the entries topic up to the stored offsets: a partition that sends nothing for
# this long while short of its offset means the broker is not serving it.
TOPIC_STALL_SECONDS = 30.0
ENTRIES_TOPIC = "ledger.entries.v1"
RECON_TOPIC = "recon.breaks.v1"


# --- check 4, the topic's side (pure) --------------------------------------------------------


def entry_movements(
    record: Any, scope_entity: str | None, scope_day: dt.date | None
) -> list[Movement]:
    """Per account and currency, the net amount and line count of one entry record.

    Args:
        record: a :class:`streams.messages.JournalEntryPosted`.
        scope_entity, scope_day: keep only the entity / posting day (None: any).

    Returns:
        :class:`ledger.reconciliation.Movement` items keyed (entity, posting date,
        currency, account), item = entry id, as the projection's side groups them.
    """
    if scope_entity is not None and record.entity != scope_entity:
        return []
    if scope_day is not None and record.posting_date != scope_day:
        return []
    sums: dict[tuple[str, str], list[int]] = {}
    for line in record.lines:
        amount = line.amount_minor if line.side == "debit" else -line.amount_minor
        total = sums.setdefault((line.account, line.currency), [0, 0])
        total[0] += amount
        total[1] += 1
    return [
        Movement(
            key=ReconKey(record.entity, record.posting_date, currency, account),
            item=record.entry_id,
            amount_minor=amount,
            count=count,
            event_type=record.source_event_type,
            customer_id=record.customer_id,
            event_ids=(record.source_event_id,),
            entry_ids=(record.entry_id,),
        )
        for (account, currency), (amount, count) in sorted(sums.items())
    ]


def read_entries_to(settings: Settings, topic: str, stops: dict[int, int]) -> Iterator[Any]:
    """Records of ``topic`` below ``stops[partition]``, at read_committed, decoded.

    Records that do not decode, and the ticks the ledger forwards, are skipped: the
    projection keeps the former in ``projection_rejects`` and writes no entry for either.

    Raises:
        RuntimeError: a partition stalled short of its offset, or Kafka failed.
    """
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streams.serde import Codec, DecodeError

    wanted = {partition: stop for partition, stop in stops.items() if stop > 0}
    if not wanted:
        return
    codec = Codec(
        max_message_bytes=settings.max_message_bytes,
        schema_registry_url=settings.schema_registry_url,
    )
    consumer = Consumer(
        kafka_client_config(
            settings,
            {
                "group.id": f"revledger-recon-{uuid.uuid4().hex}",  # assign() only: never joined
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            },
        )
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(wanted)])
        last_progress = time.monotonic()
        while wanted:
            if time.monotonic() - last_progress > TOPIC_STALL_SECONDS:
                raise RuntimeError(f"{topic}: partitions {sorted(wanted)} stalled")
            for message in consumer.consume(500, 0.5):
                partition = message.partition()
                if partition not in wanted:
                    continue
                last_progress = time.monotonic()
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(f"reading {topic}[{partition}]: {error}")
                    del wanted[partition]  # ended short of the offset: PG has more
                    continue
                if message.offset() + 1 >= wanted[partition]:
                    del wanted[partition]
                    consumer.pause([TopicPartition(topic, partition)])
                if message.offset() >= stops[partition]:
                    continue
                try:
                    record = codec.decode(message.value())
                except DecodeError:
                    continue
                if record.schema_name == "JournalEntryPosted":
                    yield record
    finally:
        consumer.close()


# --- one run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReconOptions:
    """What ``revledger recon`` was asked to do."""

    database_url: str
    entity: str | None = None
    day: dt.date | None = None
    checks: tuple[Check, ...] = tuple(Check)
    hold_timeout_days: int = 7
    ack_max_age_days: int = DEFAULT_ACK_MAX_AGE_DAYS
    projection_name: str = DEFAULT_PROJECTION_NAME
    publish: bool = False


@dataclass(frozen=True)
class RunResult:
    """A finished run: its id, the clock it used and every break it found."""

    run_id: int
    started_at: dt.datetime
    finished_at: dt.datetime
    clock: dt.date | None
    breaks: tuple[Break, ...]

    @property
    def open_breaks(self) -> tuple[Break, ...]:
        """The breaks someone must look at."""
        return tuple(found for found in self.breaks if found.status is Status.open)


class UnknownEntity(LookupError):
    """Raised when ``--entity`` names an entity of which the database has nothing."""


def run_once(settings: Settings, options: ReconOptions) -> RunResult:
    """Gather both sides of every check, compare, and record the run.

    Raises:
        UnknownEntity: ``options.entity`` is unknown.
        psycopg.Error: the database is unreachable or refused.
        RuntimeError: the entries topic could not be read.
    """
    import psycopg

    from connectors.postgres import recon as db

    scope = db.Scope(options.entity, options.day)
    started = dt.datetime.now(dt.UTC)
    topic = settings.topic_prefix + ENTRIES_TOPIC
    with psycopg.connect(
        options.database_url,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        application_name="revledger-recon",
    ) as conn:
        conn.read_only = True
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            if options.entity is not None and not db.entity_known(conn, options.entity):
                raise UnknownEntity(f"unknown entity {options.entity!r}: nothing of it recorded")
            clock = db.business_clock(conn)
            found = _database_checks(conn, scope, clock, options)
            stops: dict[int, int] = {}
            projected: list[Movement] = []
            if Check.projection in options.checks:
                stops = db.stored_offsets(conn, options.projection_name, topic)
                projected = db.projected_entry_side(conn, topic, scope)
        finally:
            conn.rollback()
        if Check.projection in options.checks:
            in_topic = [
                movement
                for record in read_entries_to(settings, topic, stops)
                for movement in entry_movements(record, options.entity, options.day)
            ]
            found += reconcile(BreakKind.projection_vs_entries, in_topic, projected, counts=True)
        conn.read_only = False
        finished = dt.datetime.now(dt.UTC)
        run = db.RunRecord(started, finished, scope, clock, options.checks)
        run_id = db.record_run(conn, run, found)
    return RunResult(run_id, started, finished, clock, tuple(found))


def _database_checks(
    conn: psycopg.Connection, scope: Scope, clock: dt.date | None, options: ReconOptions
) -> list[Break]:
    """Checks 1-3 in the caller's snapshot; explanations for the events that moved nothing."""
    from connectors.postgres import recon as db

    found: list[Break] = []
    sides = {
        Check.billing: (BreakKind.billing_vs_ar, db.billing_sides),
        Check.payments: (BreakKind.payments_vs_cash_clearing, db.payment_sides),
    }
    for check, (kind, gather) in sides.items():
        if check not in options.checks:
            continue
        expected, actual = gather(conn, scope)
        items = differences(expected, actual)
        silent = [i.item for i in items if i.moved_nothing and i.expected_minor]
        explanations = _explanations(db.event_facts(conn, silent), clock, options)
        found += compare(kind, totals(expected), totals(actual), explain(items, explanations))
    if Check.acks in options.checks:
        batches = db.batch_facts(conn, scope)
        acks = db.ack_facts(conn, [batch.batch_id for batch in batches])
        found += check_acks(batches, acks, clock, options.ack_max_age_days)
    return found


def _explanations(
    facts: Iterable[Any], clock: dt.date | None, options: ReconOptions
) -> dict[str, Explanation]:
    found = {}
    for fact in facts:
        explanation = explanation_for(fact, clock, options.hold_timeout_days)
        if explanation is not None:
            found[fact.event_id] = explanation
    return found


# --- publishing and metrics --------------------------------------------------------------


def to_record(found: Break, detected_at: dt.datetime) -> Any:
    """The ``ReconBreak`` wire record of a break."""
    from streams.messages import ReconBreak

    return ReconBreak(
        break_id=found.break_id,
        kind=str(found.kind),
        entity=found.key.entity,
        customer_id=found.customer_id,
        reference=found.key.reference,
        expected_minor=found.expected_minor,
        actual_minor=found.actual_minor,
        currency=found.key.currency,
        detected_at=detected_at,
        details=found.details,
    )


def publish(settings: Settings, result: RunResult) -> int:
    """Produce every open break to ``recon.breaks.v1`` keyed by break id; returns how many.

    Raises:
        RuntimeError: a record was not delivered.
    """
    from confluent_kafka import Producer

    from streams.serde import Codec

    topic = settings.topic_prefix + RECON_TOPIC
    codec = Codec(schema_registry_url=settings.schema_registry_url)
    errors: list[str] = []
    producer = Producer(
        kafka_client_config(settings, {"partitioner": "murmur2_random", "enable.idempotence": True})
    )

    def delivered(error: object, _message: object) -> None:
        if error is not None:
            errors.append(str(error))

    for found in result.open_breaks:
        value = codec.encode(to_record(found, result.finished_at), topic=topic)
        producer.produce(topic, key=found.break_id.encode(), value=value, on_delivery=delivered)
        producer.poll(0)
    left = producer.flush(30.0)
    if left or errors:
        raise RuntimeError(f"{left} break(s) undelivered to {topic}; errors: {errors[:3]}")
    return len(result.open_breaks)


@dataclass(eq=False)  # registered in its registry: hashed by identity
class ReconMetrics:
    """The recon's registry: open breaks per (entity, kind) of the latest run, errors, time.

    A pair seen once stays at 0 when its breaks are gone, so an alert resolves on a value
    rather than on a vanished series.
    """

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.registry.register(self)
        self.errors = Counter(
            "revledger_recon_run_errors", "Recon runs that failed", registry=self.registry
        )
        self.last_success = Gauge(
            "revledger_recon_last_success_timestamp_seconds",
            "End of the last recon run without error, seconds since the epoch",
            registry=self.registry,
        )
        # Readiness (/readyz): the last run (database and entries topic) succeeded recently.
        self.runs = Heartbeat("recon run", stale_after(DEFAULT_INTERVAL_SECONDS))

    def update(self, result: RunResult) -> None:
        """Counts of ``result``'s open breaks; earlier pairs drop to 0."""
        counts = dict.fromkeys(self.counts, 0)
        for found in result.open_breaks:
            pair = (found.key.entity, str(found.kind))
            counts[pair] = counts.get(pair, 0) + 1
        self.counts = counts
        self.last_success.set(result.finished_at.timestamp())
        self.runs.ok()

    def collect(self) -> list[Metric]:
        """Called by the registry at each scrape."""
        gauge = GaugeMetricFamily(
            "revledger_recon_breaks",
            "Open reconciliation breaks found by the latest recon run",
            labels=["entity", "kind"],
        )
        for (entity, kind), value in sorted(self.counts.items()):
            gauge.add_metric([entity, kind], value)
        return [gauge]


# --- rendering ----------------------------------------------------------------------------


def build_report(result: RunResult, options: ReconOptions, *, items: bool) -> Any:
    """The run as a :class:`streams.reports.Report`: breaks, and with ``items`` each item."""
    from streams.reports import Column, Report, Section

    amount = Column("expected", "amount", "currency")
    breaks = Section(
        "breaks",
        (
            Column("status"),
            Column("kind"),
            Column("entity"),
            Column("day", "date"),
            Column("currency"),
            Column("reference"),
            amount,
            Column("actual", "amount", "currency"),
            Column("unexplained", "amount", "currency"),
            Column("items", "int"),
            Column("break_id"),
        ),
        [_break_row(found) for found in result.breaks],
    )
    extra = ()
    if items:
        rows = [_item_row(found, item) for found in result.breaks for item in found.items]
        extra = (
            Section(
                "items",
                (
                    Column("kind"),
                    Column("reference"),
                    Column("item"),
                    Column("event_type"),
                    Column("currency"),
                    Column("expected", "amount", "currency"),
                    Column("actual", "amount", "currency"),
                    Column("events"),
                    Column("entries"),
                    Column("why"),
                ),
                rows,
            ),
        )
    scope = f"{options.entity or 'every entity'}, {options.day or 'every day'}"
    opened = len(result.open_breaks)
    title = (
        f"Reconciliation run {result.run_id} ({scope}; clock {result.clock or 'none'}):"
        f" {opened} open, {len(result.breaks) - opened} explained"
    )
    arguments = {
        "run_id": result.run_id,
        "entity": options.entity,
        "date": options.day,
        "clock": result.clock,
        "open_breaks": opened,
    }
    return Report("recon", title, arguments, breaks, extra)


def _break_row(found: Break) -> dict[str, Any]:
    return {
        "status": str(found.status),
        "kind": str(found.kind),
        "entity": found.key.entity,
        "day": found.key.day,
        "currency": found.key.currency,
        "reference": found.key.reference,
        "expected": found.expected_minor,
        "actual": found.actual_minor,
        "unexplained": found.unexplained_minor,
        "items": len(found.items),
        "break_id": found.break_id,
    }


def _unexplained(kind: BreakKind, item: Any) -> str:
    """What an item without explanation means, in words."""
    if kind is BreakKind.projection_vs_entries:
        if item.actual_count == 0:
            return "in ledger.entries.v1, missing in PostgreSQL"
        if item.expected_count == 0:
            return "in PostgreSQL, not in ledger.entries.v1 below the stored offsets"
        return "differs between ledger.entries.v1 and PostgreSQL"
    if item.moved_nothing:
        return "nothing posted; no DLQ record; not held"
    return "posted another amount"


def _item_row(found: Break, item: Any) -> dict[str, Any]:
    why = item.explanation.detail if item.explanation is not None else ""
    if item.note:
        why = f"{item.note}; {why}" if why else item.note
    if not why:
        why = _unexplained(found.kind, item)
    return {
        "kind": str(found.kind),
        "reference": found.key.reference,
        "item": item.item,
        "event_type": item.event_type,
        "currency": found.key.currency,
        "expected": item.expected_minor,
        "actual": item.actual_minor,
        "events": " ".join(item.event_ids),
        "entries": " ".join(item.entry_ids),
        "why": why,
    }


# --- command line ---------------------------------------------------------------------------


def add_recon_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger recon`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "recon",
        help="reconcile billing, payments, ERP acks and the projection per entity and day",
    )
    parser.add_argument("--entity", default=None, help="one legal entity (default: all)")
    parser.add_argument("--date", default=None, metavar="YYYY-MM-DD", help="one business day")
    parser.add_argument("--database-url", default=None, metavar="URL")
    parser.add_argument("--publish", action="store_true", help="produce open breaks to Kafka")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument(
        "--check",
        action="append",
        choices=[str(check) for check in Check],
        default=None,
        help="run only this check (repeatable; default: all four)",
    )
    parser.add_argument(
        "--hold-timeout-days",
        type=int,
        default=None,
        metavar="N",
        help="business days a hold may last (default: REVLEDGER_HOLD_TIMEOUT_DAYS)",
    )
    parser.add_argument(
        "--ack-max-age-days", type=int, default=DEFAULT_ACK_MAX_AGE_DAYS, metavar="N"
    )
    parser.add_argument("--projection-name", default=DEFAULT_PROJECTION_NAME, metavar="NAME")
    parser.add_argument("--follow", action="store_true", help="run every --interval seconds")
    parser.add_argument("--interval", type=float, default=None, metavar="SECONDS")
    parser.add_argument("--host", default=None, help="metrics address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="metrics port (0: any)")


def _options(args: argparse.Namespace, settings: Settings) -> ReconOptions:
    """Validated options; raises ValueError naming the bad argument."""
    from streams.reports import parse_date

    url = args.database_url or settings.database_url
    if not url:
        raise LookupError(
            "no database: pass --database-url, set DATABASE_URL or start the dev stack"
        )
    hold = settings.hold_timeout_days if args.hold_timeout_days is None else args.hold_timeout_days
    if hold < 0 or args.ack_max_age_days < 0:
        raise ValueError("--hold-timeout-days and --ack-max-age-days must be >= 0")
    if args.interval is not None and args.interval <= 0:
        raise ValueError("--interval must be > 0")
    if not 0 <= args.port <= 65535 or not args.projection_name:
        raise ValueError("--port must be 0-65535 and --projection-name not empty")
    checks = tuple(Check(name) for name in dict.fromkeys(args.check or [str(c) for c in Check]))
    return ReconOptions(
        database_url=url,
        entity=args.entity,
        day=parse_date(args.date, "--date"),
        checks=checks,
        hold_timeout_days=hold,
        ack_max_age_days=args.ack_max_age_days,
        projection_name=args.projection_name,
        publish=args.publish,
    )


def main_recon(args: argparse.Namespace, out: Callable[[str], Any] | None = None) -> int:
    """Entry point of ``revledger recon``; see the module docstring for exit codes."""
    from streams.devstack_env import settings_from_devstack

    try:
        settings = settings_from_devstack()
        options = _options(args, settings)
    except (SettingsError, LookupError) as exc:
        print(f"revledger recon: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as exc:
        print(f"revledger recon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.follow or args.interval is not None:
        from streams.logs import configure_logging

        configure_logging(settings.log_format, settings.log_level)
        return _follow(settings, options, args)
    return _once(settings, options, args.format, out or sys.stdout.write)


def _once(settings: Settings, options: ReconOptions, form: str, out: Callable[[str], Any]) -> int:
    from streams.reports import RENDERERS

    try:
        result = _run_and_publish(settings, options, ReconMetrics())
    except UnknownEntity as exc:
        print(f"revledger recon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except _failures() as exc:
        print(f"revledger recon: {_failure(exc, options)}", file=sys.stderr)
        return EXIT_FAILED
    explain_items = options.entity is not None and options.day is not None
    out(RENDERERS[form](build_report(result, options, items=explain_items or form == "json")))
    return EXIT_BREAKS if result.open_breaks else EXIT_OK


def _run_and_publish(settings: Settings, options: ReconOptions, metrics: ReconMetrics) -> RunResult:
    _migrate_if_pending(options.database_url)
    result = run_once(settings, options)
    if options.publish:
        publish(settings, result)
    metrics.update(result)
    return result


def _migrate_if_pending(url: str) -> None:
    """Apply pending migrations (0008 adds the recon tables); only then DDL rights matter."""
    from connectors.postgres.migrate import migrate, status

    if any(row.state != "applied" for row in status(url)):
        migrate(url)


def _failures() -> tuple[type[BaseException], ...]:
    """What a run may fail with that is not a bug: the database, a migration, Kafka."""
    import psycopg
    from confluent_kafka import KafkaException

    from connectors.postgres.migrate import MigrationError

    return (psycopg.Error, MigrationError, KafkaException, RuntimeError)


def _failure(exc: BaseException, options: ReconOptions) -> str:
    from connectors.postgres.migrate import describe_conninfo

    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{describe_conninfo(options.database_url)}: {text}"


def _follow(settings: Settings, options: ReconOptions, args: argparse.Namespace) -> int:
    interval = args.interval or DEFAULT_INTERVAL_SECONDS
    metrics = ReconMetrics()
    metrics.runs.max_age_seconds = stale_after(interval)
    readiness = Readiness()
    readiness.add("recon", metrics.runs.check)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    # The probe server every process without Faust uses (the lag exporter's too).
    host_name = args.host or settings.web_host
    server = serve_probes(metrics.registry, readiness, host_name, args.port, "recon")
    host, port = server.server_address[:2]
    print(f"recon: serving http://{host}:{port}/metrics every {interval:g}s", flush=True)
    try:
        while not stop.is_set():
            try:
                result = _run_and_publish(settings, options, metrics)
                print(
                    f"recon: run {result.run_id}: {len(result.open_breaks)} open,"
                    f" {len(result.breaks) - len(result.open_breaks)} explained",
                    flush=True,
                )
            except (UnknownEntity, *_failures()) as exc:  # keep serving; counted
                metrics.errors.inc()
                metrics.runs.failed(exc)
                log.warning("recon: run failed: %s", _failure(exc, options))
            stop.wait(interval)
    finally:
        server.shutdown()
        server.server_close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.recon [options]``: the command without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.recon")
    commands = parser.add_subparsers(dest="command")
    add_recon_commands(commands)
    args = parser.parse_args(["recon", *(sys.argv[1:] if argv is None else argv)])
    return main_recon(args)


if __name__ == "__main__":
    sys.exit(main())
