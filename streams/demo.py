"""``revledger demo``: the whole pipeline on a simulated SaaS company, and what people see first.

1. Starts the dev stack (or uses the running one), creates the run's topics under a new
   prefix (``demo-<random>.``) and a PostgreSQL database of the run's own.
2. Starts, detached, the services a deployment runs: the ledger worker (subledger and
   revenue), the batcher, the projector (``revledger project --follow``), the reference ERP
   import job (``revledger erp-import --follow``, which acknowledges each batch) and the lag
   exporter. They stay up after the demo so that people can look at them; ``make down``
   (``revledger dev down``) stops them with the stack.
3. Simulates the company (``revledger simulate``: two entities, monthly and annual plans,
   amendments, usage, services, failed and late payments, refunds, disputes, churn,
   write-offs, FX, payouts, a month-end clock and period closes) and produces it with a
   progress bar, plus four broken messages a buggy source might send.
4. Waits until every consumer's lag is 0 (ledger, batcher, ERP import: from the broker, as
   the lag exporter reads it; projector: its offsets in PostgreSQL against the topics).
5. Prints what an accountant and an SRE look at first: trial balance per entity, deferred
   revenue roll-forward, revenue waterfall, AR aging, batches sent and acknowledged, the DLQ,
   lag; whether the entries equal a pure replay of the ledger's input log; and how to go on.

Each run uses new topics and a new database, so runs do not see each other. (Re-running
under one prefix did not finish in time once; see docs/ARCHITECTURE.md, "Known defects".)
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from connectors.simulation import builders as b
from connectors.simulation.saas import simulate_company
from revenue.replay import replay_partitions
from streams.admin import ensure_topics
from streams.batcher import batcher_settings
from streams.entries import entry_record
from streams.lag_exporter import BrokerReader, GroupLag, group_lag, read_group_lag
from streams.messages import JournalEntryPosted
from streams.producer import RecordProducer
from streams.reading import committed_reader, read_to_end
from streams.serde import Codec
from streams.settings import Settings, worker_environment
from streams.simulate import LedgerWatch, produce_simulation
from streams.topics import (
    BILLING,
    CONTRACTS,
    CONTROL,
    ENTRIES,
    JOURNAL_BATCHES,
    LEDGER_INPUTS,
    PAYMENTS,
    TOPICS,
    USAGE,
)

_DEADLINE_SECONDS = 900.0
# Ports people type into a browser: fixed when free, else any free port.
_WORKER_PORT = 6066
_EXPORTER_PORT = 9308
_READER_LOGIN = "revledger_demo_reader"
_READER_PASSWORD = "demo-reader"  # a local throwaway database on loopback


@dataclass(frozen=True, slots=True)
class DemoRun:
    """What one demo run created, for the reports and the 'how to go on' lines."""

    settings: Settings
    prefix: str
    database_url: str
    reader_url: str
    erp_out: Path
    worker_port: int
    exporter_port: int
    erp_group: str


# Of the broken messages, these decode and reach the ledger (unknown entity, orphan).
_BROKEN_REACHING_LEDGER = 2


def _broken_messages() -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of input a buggy source might send: each must end in the DLQ."""
    codec = Codec()
    return [
        ("billing.events.v1", b"C9999", b"not avro at all"),
        (
            "billing.events.v1",
            b"C9998",
            codec.encode(b.invoice("INV-XX", entity_name="XX1", customer="C9998")),
        ),
        (
            "payments.events.v1",
            b"C9997",
            codec.encode(b.payment("PAY-ORPHAN", [("INV-NEVER", 10_00)], customer="C9997")),
        ),
        (
            "payments.events.v1",
            b"C9996",
            codec.encode(b.invoice("INV-WRONG-TOPIC", customer="C9996")),
        ),
    ]


class _Progress:
    """A one-line progress bar on a terminal; a line every 10 % otherwise (CI logs)."""

    def __init__(self, what: str, width: int = 30) -> None:
        self.what = what
        self.width = width
        self.tty = sys.stdout.isatty()
        self.shown = -1
        self.started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        tenth = int(share * 10)
        if not self.tty and tenth == self.shown:
            return
        self.shown = tenth
        filled = int(share * self.width)
        rate = done / max(time.monotonic() - self.started, 1e-6)
        line = (
            f"{self.what} [{'#' * filled}{'.' * (self.width - filled)}] {share:4.0%}"
            f" {done:,}/{total:,} ({rate:,.0f}/s)"
        )
        if self.tty:
            print("\r" + line, end="" if done < total else "\n", flush=True)
        else:
            print(line, flush=True)


def _create_database(admin_url: str, name: str) -> str:
    """Create database ``name``, migrate it, give it a reader login; return its URL."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    from connectors.postgres.migrate import migrate

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(admin_url, dbname=name)
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # A login for people: the reader role itself cannot log in (0005_roles.sql).
        exists = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (_READER_LOGIN,)
        ).fetchone()
        if not exists:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE revledger_reader").format(
                    sql.Identifier(_READER_LOGIN), sql.Literal(_READER_PASSWORD)
                )
            )
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(_READER_LOGIN)
            )
        )
    return url


def _reader_url(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(url)
    return make_conninfo(
        "",
        host=parts.get("host", "127.0.0.1"),
        port=parts.get("port", "5432"),
        dbname=parts["dbname"],
        user=_READER_LOGIN,
        password=_READER_PASSWORD,
    )


def _start_services(run: DemoRun, logs: Path) -> None:
    """The deployment's processes, detached and recorded for ``make down``."""
    from streams.devstack.services import start_service

    python = [sys.executable, "-m", "streams.cli"]
    environment = worker_environment(run.settings)
    environment["DATABASE_URL"] = run.database_url
    groups = [run.settings.app_id, batcher_settings(run.settings).app_id, run.erp_group]
    commands: dict[str, list[str]] = {
        "ledger-worker": [*python, "worker"],
        "batcher": [*python, "batcher"],
        # The URL (with its password) goes through the environment, never the command line.
        "projector": [*python, "project", "--follow"],
        "erp-import": [
            *python,
            "erp-import",
            "--format",
            "netsuite-csv",
            "--out",
            str(run.erp_out),
            "--group",
            run.erp_group,
            "--follow",
        ],
        "lag-exporter": [
            *python,
            "lag-exporter",
            *[arg for group in groups for arg in ("--group", group)],
            "--port",
            str(run.exporter_port),
        ],
    }
    for name, command in commands.items():
        pid = start_service(name, command, environment, logs / f"{name}.log")
        print(f"  started {name:13} pid {pid:>7}  log {logs / f'{name}.log'}")


def _consumer_groups(run: DemoRun) -> dict[str, list[str]]:
    """Each consumer group and the topics it must have read to the end."""
    prefix = run.settings.topic_prefix
    sources = [prefix + spec.name for spec in (BILLING, PAYMENTS, CONTRACTS, USAGE, CONTROL)]
    return {
        run.settings.app_id: [*sources, prefix + LEDGER_INPUTS.name],
        batcher_settings(run.settings).app_id: [prefix + ENTRIES.name],
        run.erp_group: [prefix + JOURNAL_BATCHES.name],
    }


def _projection_lag(reader: BrokerReader, run: DemoRun) -> GroupLag:
    """The projector's lag: its offsets stored in PostgreSQL against the topics' LSOs."""
    import psycopg

    from connectors.postgres import projection

    with psycopg.connect(run.database_url) as conn:
        stored = conn.execute(
            "SELECT topic, kafka_partition, next_offset FROM revledger.projection_offsets"
        ).fetchall()
    committed = {(topic, partition): offset for topic, partition, offset in stored}
    topics = [run.settings.topic_prefix + name for name in projection.TOPICS]
    offsets = reader.offsets(reader.partitions(topics), committed)
    starts = {}
    for o in offsets:
        start = max(o.committed or 0, o.log_start)
        if start < o.last_stable:
            starts[(o.topic, o.partition)] = start
    return group_lag("projector", 1, offsets, reader.next_records(starts), time.time())


def _lag_snapshot(run: DemoRun) -> list[GroupLag]:
    reader = BrokerReader(run.settings)
    groups = [
        read_group_lag(reader, group, extra_topics=topics)
        for group, topics in _consumer_groups(run).items()
    ]
    return [*groups, _projection_lag(reader, run)]


def _behind(snapshot: Sequence[GroupLag]) -> dict[str, int]:
    return {g.group: sum(row.messages for row in g.rows) for g in snapshot}


def _wait_for_zero_lag(run: DemoRun, alive: Callable[[], list[str]]) -> list[GroupLag]:
    """Poll every consumer's lag until all are 0 twice in a row; the last snapshot."""
    started = time.monotonic()
    zero_seen = 0
    last_line = ""
    while time.monotonic() - started < _DEADLINE_SECONDS:
        dead = alive()
        if dead:
            raise RuntimeError(f"{', '.join(dead)} stopped: see its log under .devstack/demo/")
        snapshot = _lag_snapshot(run)
        behind = _behind(snapshot)
        line = "  lag (messages): " + ", ".join(
            f"{_short(run, group)} {count:,}" for group, count in behind.items()
        )
        if line != last_line:
            print(f"{line}  [{time.monotonic() - started:5.1f} s]", flush=True)
            last_line = line
        zero_seen = zero_seen + 1 if not any(behind.values()) else 0
        # Twice: a tick's entries reach the batcher only after the ledger committed them.
        if zero_seen >= 2:
            return snapshot
        time.sleep(2.0)
    raise TimeoutError("the pipeline did not catch up in time: see the logs under .devstack/demo/")


def _short(run: DemoRun, group: str) -> str:
    names = {
        run.settings.app_id: "ledger",
        batcher_settings(run.settings).app_id: "batcher",
        run.erp_group: "erp-import",
    }
    return names.get(group, group)


def _report_command(argv: list[str], database_url: str, only: str | None = None) -> int:
    """Run one ``revledger`` report in-process as the reader, printing the command and output.

    ``only``: print the report's title and, of its body, only the section starting with a
    line equal to ``only`` (the aging's per-invoice rows run to hundreds of lines).
    """
    import contextlib
    import io

    from streams.cli import main

    print(f"\n$ revledger {' '.join(argv)}" + (f"   (its {only})" if only else ""), flush=True)
    if only is None:
        return main([*argv, "--database-url", database_url])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--database-url", database_url])
    lines = out.getvalue().splitlines()
    start = lines.index(only) if only in lines else 0
    print("\n".join([*lines[:1], "", *lines[start:]]))
    return code


def _print_batches(url: str) -> None:
    """Batches sent per entity, and what the ERP import job said about them."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """
            SELECT b.entity,
                   count(*) AS sent,
                   count(*) FILTER (WHERE s.status = 'imported') AS accepted,
                   count(*) FILTER (WHERE s.status = 'rejected') AS rejected,
                   count(*) FILTER (WHERE s.status IS NULL) AS waiting,
                   sum(b.line_count) AS lines,
                   sum(b.entry_count) AS entries
              FROM revledger.journal_batches AS b
              LEFT JOIN revledger.erp_batch_status AS s ON s.batch_id = b.batch_id
             GROUP BY b.entity
             ORDER BY b.entity
            """
        ).fetchall()
    print("\nERP journal batches (erp.journal-batches.v1) and the ERP's acknowledgements")
    print(
        f"  {'entity':6} {'sent':>6} {'accepted':>9} {'rejected':>9} {'waiting':>8}"
        f" {'lines':>7} {'entries':>8}"
    )
    for entity, sent, accepted, rejected, waiting, lines, entries in rows:
        print(
            f"  {entity:6} {sent:>6,} {accepted:>9,} {rejected:>9,} {waiting:>8,}"
            f" {lines:>7,} {entries:>8,}"
        )


def _print_dlq(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT reason, record_count FROM revledger.dlq_summary ORDER BY reason"
        ).fetchall()
    print("\ndead-letter queue (revledger.dlq_summary)")
    for reason, count in rows:
        print(f"  {reason:28} {count:>6,}")
    if not rows:
        print("  empty")


def _print_lag(run: DemoRun, snapshot: Sequence[GroupLag]) -> None:
    print("\nconsumer lag (what the lag exporter serves)")
    for group in snapshot:
        messages = sum(row.messages for row in group.rows)
        seconds = max((row.seconds or 0.0 for row in group.rows), default=0.0)
        print(
            f"  {_short(run, group.group):11} {len(group.rows):>3} partitions"
            f"  {messages:>6,} messages  {seconds:6.1f} s"
        )


def _read_logs(settings: Settings, topic: str, codec: Codec) -> list[list]:
    """Every committed record of ``topic`` (prefixed), decoded: one list per partition."""
    consumer = committed_reader(settings)
    consumer.subscribe([settings.topic_prefix + topic])
    try:
        messages = list(read_to_end(consumer))
    finally:
        consumer.close()
    logs: dict[int, list] = {}
    for message in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        logs.setdefault(message.partition(), []).append(codec.decode(message.value()))
    return [logs[partition] for partition in sorted(logs)]


def _check_against_replay(settings: Settings, reference: list) -> bool:
    """Do the entries on the topic equal a pure replay of the ledger's input log?"""
    codec = Codec()
    logs = _read_logs(settings, LEDGER_INPUTS.name, codec)
    written = [r for log in _read_logs(settings, ENTRIES.name, codec) for r in log]
    entries = [r for r in written if isinstance(r, JournalEntryPosted)]
    replayed = replay_partitions(reference, logs, hold_timeout_days=settings.hold_timeout_days)
    expected = [entry_record(e) for e in replayed]
    same = sorted(entries, key=lambda e: e.entry_id) == sorted(expected, key=lambda e: e.entry_id)
    distinct = len({e.entry_id for e in entries})
    print(
        f"\nentries on ledger.entries.v1 (read_committed): {len(entries):,} ({distinct:,} distinct"
        f" ids); equal to a pure replay of the input log: {'yes' if same else 'NO'}"
    )
    return same and distinct == len(entries)


def _services_alive(root: Path | None = None) -> Callable[[], list[str]]:
    from streams.devstack.services import running_services

    expected = {"ledger-worker", "batcher", "projector", "erp-import", "lag-exporter"}

    def dead() -> list[str]:
        alive = {s["name"] for s in running_services(root)}
        return sorted(expected - alive)

    return dead


def run_demo(customers: int = 500, months: int = 12, seed: int = 7) -> int:
    """Run the demo end to end; 0 when everything caught up and the entries equal the replay."""
    from streams.devstack import stack
    from streams.devstack.procs import free_port
    from streams.devstack.services import stop_services
    from streams.devstack_env import settings_from_devstack

    began = time.monotonic()
    stack.up(echo=print)
    if stop_services(echo=lambda line: print(f"  previous demo: {line}")) is False:
        print("a previous demo's service would not stop", file=sys.stderr)
        return 1
    prefix = f"demo-{uuid.uuid4().hex[:6]}."
    worker_port = free_port(_WORKER_PORT)
    settings = settings_from_devstack(
        topic_prefix=prefix,
        app_id=f"revledger-{prefix.rstrip('.')}",
        partitions=4,
        web_port=worker_port,
        data_dir=Path(".devstack") / "demo" / prefix.rstrip("."),
        commit_interval_seconds=0.5,
    )
    if not settings.database_url:
        print("the demo needs PostgreSQL: set DATABASE_URL or let the dev stack start one")
        return 1
    ensure_topics(settings, TOPICS)
    name = "demo_" + prefix.rstrip(".").replace("-", "_")
    url = _create_database(settings.database_url, name)
    run = DemoRun(
        settings=settings,
        prefix=prefix,
        database_url=url,
        reader_url=_reader_url(url),
        erp_out=Path(".devstack") / "demo-erp" / prefix.rstrip("."),
        worker_port=worker_port,
        exporter_port=free_port(_EXPORTER_PORT),
        erp_group=f"{settings.app_id}-erp-import",
    )
    print(f"\ntopics {prefix}*, database {name}; starting the services")
    _start_services(run, Path(".devstack") / "demo" / "logs")

    simulation = simulate_company(customers=customers, months=months, seed=seed)
    print(f"\nsimulating {customers} customers over {months} months (seed {seed})")
    # Reference data, then the broken messages: the orphan payment's hold then expires at
    # a month-end tick, and the others meet the entities and products they name.
    watch = LedgerWatch(settings)
    try:
        producer = RecordProducer(settings)
        producer.send_all(simulation.reference)
        for topic, key, value in _broken_messages():
            producer.send_raw(topic, key, value)
        producer.flush()
        watch(_BROKEN_REACHING_LEDGER, 0)
    finally:
        watch.close()
    # Paced: before each tick, wait until the worker has sequenced what came before it, so
    # a month-end tick never overtakes that month's events on other topics (it would
    # expire their holds); before each close, until the earlier ticks are applied.
    watch = LedgerWatch(settings)
    try:
        counts = produce_simulation(settings, simulation, _Progress("producing"), wait=watch)
    finally:
        watch.close()
    total = sum(counts.values())
    print(f"produced {total:,} records and {len(_broken_messages())} broken messages")
    print("\nwaiting until every consumer has caught up")
    snapshot = _wait_for_zero_lag(run, _services_alive())
    print(f"caught up {time.monotonic() - began:.0f} s after the start")

    ok = True
    for entity in ("US1", "EU1"):
        ok &= _report_command(["tb", "--entity", entity], run.reader_url) == 0
    for entity in ("US1", "EU1"):
        ok &= _report_command(["rollforward", "--entity", entity], run.reader_url) == 0
    ok &= _report_command(["waterfall", "--entity", "US1"], run.reader_url) == 0
    for entity in ("US1", "EU1"):
        ok &= _report_command(["aging", "--entity", entity], run.reader_url, only="totals") == 0
    _print_batches(url)
    _print_dlq(url)
    _print_lag(run, snapshot)
    ok &= _check_against_replay(settings, list(simulation.reference))
    files = len(list(run.erp_out.rglob("*.csv")))
    _how_to_go_on(run, files)
    print(
        f"\ndemo finished in {time.monotonic() - began:.0f} s; the stack and the services"
        " keep running until `make down`"
    )
    return 0 if ok else 1


def _how_to_go_on(run: DemoRun, erp_files: int) -> None:
    print("\nwhere to go from here")
    print(f"  accountants: psql '{run.reader_url}'")
    print("               then e.g. SELECT * FROM revledger.trial_balance_lines LIMIT 20;")
    print(
        f"  reports:     DATABASE_URL='{run.reader_url}' .venv/bin/revledger"
        " statement --entity US1 --customer <id>  (or tb, activity, aging, periods)"
    )
    print(
        f"  trace:       DATABASE_URL='{run.reader_url}' .venv/bin/revledger trace <batch id,"
        " entry id or event id>  (ERP line -> entries -> source events)"
    )
    print(f"  ERP files:   {erp_files:,} NetSuite journal CSV files under {run.erp_out}")
    print(
        f"  metrics:     http://127.0.0.1:{run.worker_port}/metrics (ledger worker),"
        f" http://127.0.0.1:{run.worker_port + 1}/metrics (batcher),"
        f" http://127.0.0.1:{run.exporter_port}/metrics (lag exporter)"
    )
    print("  logs:        .devstack/demo/logs/")
    print("  stop:        make down")
