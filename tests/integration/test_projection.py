"""``revledger project`` on the real broker and PostgreSQL: the projection equals the topics.

One real ledger worker run (10,000 simulated events, 5 % redelivered, 5 % of payments
before their invoices) feeds the first three tests; each projection writes to a database of
its own (``t_<uuid>``, dropped at the end), migrated by the command itself:

1. a full run: entries, lines and sums per (entity, account, currency, side) in
   transaction and functional amounts equal those of ``ledger.entries.v1``;
2. a run killed with SIGKILL in the middle: what it committed is exactly the records below
   its stored offsets; restarted, it ends equal, no row twice;
3. a replay after ``DELETE FROM projection_offsets``: no row added, none changed;
4. random bytes on the entries topic end up in ``projection_rejects`` with those bytes.

The command runs as ``python -m streams.projection`` (what ``revledger project`` calls).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from connectors.postgres import sink
from connectors.postgres.migrate import migrate
from connectors.postgres.projection import (
    ACKS,
    BATCHES,
    INPUTS,
    SCHEDULES,
    Received,
    Rows,
    rows_for,
)
from connectors.postgres.projection import ENTRIES as ENTRIES_TOPIC
from connectors.postgres.sink import (
    ConstraintViolation,
    find_refused,
    prepare,
    stored_offsets,
    write_batch,
)
from connectors.simulation import builders as b
from connectors.simulation.company import generate_company
from connectors.simulation.contracts import generate_contracts
from ledger.batching import BatchPolicy
from ledger.reference import ReferenceData
from revenue.recognition import schedule_by_period
from revenue.replay import replay, replay_all
from streams.admin import ensure_topics
from streams.batcher import replay_batches
from streams.batches import batch_record
from streams.entries import entry_record
from streams.messages import ErpAck, RevenueScheduled
from streams.producer import RecordProducer
from streams.reading import read_partitions_to_end
from streams.schedules import schedule_record
from streams.serde import Codec
from streams.settings import Settings, worker_environment
from streams.topics import ENTRIES, TOPICS

from worker_process import ROOT, is_entry, isolated_settings, read_committed, running_worker

pytestmark = pytest.mark.integration
CODEC = Codec()
AT = dt.datetime(2026, 1, 5, 9, 0, tzinfo=dt.UTC)
PROJECT_TIMEOUT_SECONDS = 120
# Tables whose whole content a replay must leave as it was.
TABLES = (
    "source_events",
    "journal_entries",
    "journal_lines",
    "periods",
    "invoices",
    "payments",
    "contracts",
    "performance_obligations",
    "revenue_schedule",
    "journal_batches",
    "journal_batch_lines",
    "journal_batch_entries",
    "erp_acks",
    "dlq_records",
    "projection_rejects",
    "projection_schedules",
)


@dataclass(frozen=True)
class EntriesTopic:
    """What ``ledger.entries.v1`` holds, read back from the broker."""

    positions: dict[str, tuple[int, int]]  # entry id -> (partition, offset)
    lines: int
    sums: dict[tuple[str, str, str, str], tuple[int, int]]


@dataclass(frozen=True)
class Pipeline:
    settings: Settings
    events: int
    topic: EntriesTopic
    admin_url: str


def _read_entries_topic(settings: Settings) -> EntriesTopic:
    positions: dict[str, tuple[int, int]] = {}
    lines = 0
    sums: Counter = Counter()
    functional: Counter = Counter()
    for message in read_partitions_to_end(settings, settings.topic_prefix + ENTRIES.name):
        record = CODEC.decode(message.value())
        if record.schema_name != "JournalEntryPosted":
            continue
        assert record.entry_id not in positions, f"{record.entry_id} twice on the topic"
        positions[record.entry_id] = (message.partition(), message.offset())
        for line in record.lines:
            key = (record.entity, line.account, line.currency, line.side)
            sums[key] += line.amount_minor
            functional[key] += line.functional_amount_minor
            lines += 1
    return EntriesTopic(positions, lines, {k: (sums[k], functional[k]) for k in sums})


@pytest.fixture(scope="module")
def pipeline(devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """10,000 events through the real ledger worker; its entries topic read back."""
    tmp_path = tmp_path_factory.mktemp("projection")
    stream = generate_company(
        seed=23, customers=250, events=10_000, duplicate_rate=0.05, out_of_order_rate=0.05
    )
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, partitions=4, store="rocksdb://"
    )
    ensure_topics(settings, TOPICS)
    expected = len(replay(stream.reference, stream.events))
    producer = RecordProducer(settings, CODEC)
    producer.send_all(stream.reference)
    sent = producer.send_all(stream.events)
    started = time.monotonic()
    with running_worker(settings, tmp_path / "worker.log"):
        topic = settings.topic_prefix + ENTRIES.name
        got = read_committed(
            settings.bootstrap_servers, topic, expected, timeout=600, only=is_entry
        )
    assert len(got) == expected, f"{len(got)} of {expected} entries after 600 s"
    entries = _read_entries_topic(settings)
    print(
        f"\nworker: {sent} events -> {len(entries.positions)} entries,"
        f" {entries.lines} lines in {time.monotonic() - started:.1f} s"
    )
    return Pipeline(settings, sent, entries, devstack.database_url)


@pytest.fixture(scope="module")
def databases(devstack: Any) -> Iterator[Any]:
    """A factory of fresh databases (``t_<uuid>``), all dropped at the end of the module."""
    created: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex}"
        with psycopg.connect(devstack.database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return make_conninfo(devstack.database_url, dbname=name)

    yield make
    with psycopg.connect(devstack.database_url, autocommit=True) as admin:
        for name in created:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _command(database: str, *options: str) -> list[str]:
    return [sys.executable, "-m", "streams.projection", "--database-url", database, *options]


def _start(settings: Settings, database: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(
        _command(database, *options),
        env=worker_environment(settings),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _project(settings: Settings, database: str, *options: str) -> tuple[str, float]:
    """Run the projection to the end; its output and how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        _command(database, *options),
        env=worker_environment(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=PROJECT_TIMEOUT_SECONDS,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, seconds


def _inserted(output: str) -> dict[str, int]:
    """``table -> rows inserted`` from the run's summary lines (``  table  N inserted``)."""
    found = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 3 and words[2].rstrip(",") == "inserted":
            found[words[0]] = int(words[1])
    return found


def _one(conn: psycopg.Connection, query: Any, params: tuple = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def assert_equals_topic(database: str, topic: EntriesTopic) -> None:
    """Entries, their positions, line count and sums per (entity, account, currency, side)."""
    with psycopg.connect(database) as conn:
        positions = {
            entry_id: (partition, offset)
            for entry_id, partition, offset in conn.execute(
                "SELECT entry_id, kafka_partition, kafka_offset FROM revledger.journal_entries"
            )
        }
        lines = _one(conn, "SELECT count(*) FROM revledger.journal_lines")
        distinct = _one(
            conn, "SELECT count(DISTINCT (entry_id, line_no)) FROM revledger.journal_lines"
        )
        sums = {
            (entity, account, currency, side): (int(amount), int(functional))
            for entity, account, currency, side, amount, functional in conn.execute(
                "SELECT e.entity, l.account, l.currency, l.side, sum(l.amount_minor),"
                "       sum(l.functional_amount_minor)"
                "  FROM revledger.journal_lines AS l JOIN revledger.journal_entries AS e"
                " USING (entry_id) GROUP BY 1, 2, 3, 4"
            )
        }
    assert len(positions) == len(topic.positions)
    assert positions == topic.positions
    assert lines == distinct == topic.lines
    assert sums == topic.sums


def _digests(database: str) -> dict[str, tuple[int, str]]:
    """Row count and an md5 of the whole content of each table."""
    found = {}
    with psycopg.connect(database) as conn:
        for table in TABLES:
            found[table] = conn.execute(
                sql.SQL(
                    "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '')"
                    " FROM {} AS t"
                ).format(sql.Identifier("revledger", table))
            ).fetchone()
    return found


@pytest.fixture(scope="module")
def projected(pipeline: Pipeline, databases: Any) -> tuple[str, str]:
    """A database projected to the end in one run, and the run's output."""
    database = databases()
    output, seconds = _project(pipeline.settings, database)
    print(
        f"\nprojection: {pipeline.events} events, {len(pipeline.topic.positions)} entries,"
        f" {pipeline.topic.lines} lines into PostgreSQL in {seconds:.1f} s\n{output}"
    )
    return database, output


def test_projection_equals_entries_topic_when_run_to_the_end(pipeline, projected):
    database, output = projected

    assert_equals_topic(database, pipeline.topic)
    with psycopg.connect(database) as conn:
        assert _one(conn, "SELECT count(*) FROM revledger.projection_rejects") == 0
        assert (
            _one(conn, "SELECT count(*) FROM revledger.projection_schedules WHERE NOT applied") == 0
        )
        assert _one(conn, "SELECT count(*) FROM revledger.revenue_schedule") > 0
        assert _one(conn, "SELECT count(DISTINCT event_id) FROM revledger.source_events") > 9_000
        statuses = dict(conn.execute("SELECT status, count(*) FROM revledger.invoices GROUP BY 1"))
    assert {"open", "paid"} <= set(statuses), statuses
    inserted = _inserted(output)
    assert inserted["journal_entries"] == len(pipeline.topic.positions)
    assert inserted["journal_lines"] == pipeline.topic.lines


def test_projection_equals_topic_without_duplicates_when_killed_and_restarted(
    pipeline, databases, projected
):
    database = databases()
    total = len(pipeline.topic.positions)
    process = _start(pipeline.settings, database, "--batch-size", "100")
    seen = 0
    deadline = time.monotonic() + PROJECT_TIMEOUT_SECONDS
    try:
        while seen < total // 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
            seen = _entries_in(database)
        assert process.poll() is None, "the projection ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
    at_kill = _entries_in(database)
    _assert_rows_match_offsets(database, pipeline)
    _, seconds = _project(pipeline.settings, database)

    print(f"\nkilled with {at_kill} of {total} entries committed; restart took {seconds:.1f} s")
    assert 0 < at_kill < total
    assert_equals_topic(database, pipeline.topic)
    with psycopg.connect(database) as conn:
        for table, key in (("journal_entries", "entry_id"), ("source_events", "event_id")):
            count = _one(
                conn, sql.SQL("SELECT count(*) FROM revledger.{}").format(sql.Identifier(table))
            )
            distinct = _one(
                conn,
                sql.SQL("SELECT count(DISTINCT {}) FROM revledger.{}").format(
                    sql.Identifier(key), sql.Identifier(table)
                ),
            )
            assert count == distinct, table
    # Every table as in the database projected in one run (before test 4 adds to it).
    assert _digests(database) == _digests(projected[0])


def _entries_in(database: str) -> int:
    try:
        with psycopg.connect(database, connect_timeout=5) as conn:
            return _one(conn, "SELECT count(*) FROM revledger.journal_entries")
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return 0  # not migrated yet


def _assert_rows_match_offsets(database: str, pipeline: Pipeline) -> None:
    """The entries committed are exactly those the stored offsets say were read."""
    topic = pipeline.settings.topic_prefix + ENTRIES.name
    with psycopg.connect(database) as conn:
        stored = dict(
            conn.execute(
                "SELECT kafka_partition, next_offset FROM revledger.projection_offsets"
                " WHERE consumer = 'projection' AND topic = %s",
                (topic,),
            ).fetchall()
        )
        found = {row[0] for row in conn.execute("SELECT entry_id FROM revledger.journal_entries")}
    below = {
        entry_id
        for entry_id, (partition, offset) in pipeline.topic.positions.items()
        if offset < stored.get(partition, 0)
    }
    assert found == below


def test_replay_changes_nothing_when_the_stored_offsets_are_deleted(pipeline, projected):
    database, _ = projected
    before = _digests(database)
    with psycopg.connect(database) as conn:
        conn.execute("DELETE FROM revledger.projection_offsets")

    output, seconds = _project(pipeline.settings, database)

    print(f"\nreplay of every record took {seconds:.1f} s\n{output}")
    assert _digests(database) == before
    assert_equals_topic(database, pipeline.topic)
    inserted = _inserted(output)
    assert set(inserted) >= {"source_events", "journal_entries", "journal_lines"}
    assert set(inserted.values()) == {0}, output


def test_projection_retries_and_ends_equal_when_its_database_connection_is_killed(
    pipeline, databases
):
    database = databases()
    name = conninfo_to_dict(database)["dbname"]
    process = _start(pipeline.settings, database, "--batch-size", "250")
    deadline = time.monotonic() + PROJECT_TIMEOUT_SECONDS
    try:
        while _entries_in(database) < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        with psycopg.connect(pipeline.admin_url, autocommit=True) as admin:
            killed = _one(
                admin,
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = %s AND application_name = 'revledger-projection-projection'",
                (name,),
            )
        output, _ = process.communicate(timeout=PROJECT_TIMEOUT_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()

    summary = next(line for line in output.splitlines() if line.startswith("projection '"))
    print(f"\nconnection killed {killed} time(s): {summary}")
    assert killed == 1
    assert process.returncode == 0, output
    assert "database error, retrying" in output
    assert_equals_topic(database, pipeline.topic)


def test_broken_record_is_kept_with_its_bytes_and_sigterm_ends_cleanly_when_following(
    pipeline, projected
):
    database, _ = projected
    garbage = b"\xde\xad" + os.urandom(62)  # no framing: unknown_encoding
    process = _start(pipeline.settings, database, "--follow")
    try:
        time.sleep(2)  # caught up: it had projected everything before
        producer = RecordProducer(pipeline.settings, CODEC)
        producer.send_raw(ENTRIES.name, b"C-broken", garbage)
        producer.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _rejects(database):
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, output
    assert _rejects(database) == [
        (pipeline.settings.topic_prefix + ENTRIES.name, "unknown_encoding", b"C-broken", garbage)
    ]
    assert _inserted(output)["projection_rejects"] == 1
    assert _inserted(output)["journal_entries"] == 0
    assert_equals_topic(database, pipeline.topic)


def _rejects(database: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return [
            (topic, reason, bytes(key), bytes(value))
            for topic, reason, key, value in conn.execute(
                "SELECT topic, reason, original_key, original_value"
                "  FROM revledger.projection_rejects"
            )
        ]


# --- without Kafka: what the engine decided, written by the sink ------------------------------


def _rows_of(topic: str, records: list, reference: ReferenceData) -> list[Rows]:
    return [
        rows_for(record, Received(f"p.{topic}", topic, 0, offset), reference)
        for offset, record in records
    ]


def _write(database: str, parts: list[Rows], reference: ReferenceData, size: int) -> Counter:
    """Write ``parts`` in batches of ``size`` with the sink; returns every count."""
    totals: Counter = Counter()
    with psycopg.connect(database, autocommit=True) as conn:
        prepare(conn)
        expected = stored_offsets(conn, "direct")
        for start in range(0, len(parts), size):
            offsets = {("p.all", 0): start + size}
            inserted, updated = write_batch(
                conn, parts[start : start + size], offsets, "direct", expected, reference
            )
            totals.update({f"{k} inserted": v for k, v in inserted.items()})
            totals.update({f"{k} updated": v for k, v in updated.items()})
            expected = {**expected, **offsets}
    return totals


def test_contracts_schedules_invoices_and_batches_equal_the_engine_when_written_by_the_sink(
    databases,
):
    stream = generate_contracts(seed=5, customers=40, months=24)
    engine = replay_all(stream.reference, stream.events)
    halfway = replay_all(stream.reference, stream.events[: len(stream.events) // 2])
    reference = ReferenceData.from_records(stream.reference)
    entries = [entry_record(entry) for entry in engine.entries]
    batches, _ = replay_batches(0, list(enumerate(entries)), reference, BatchPolicy(max_entries=40))
    acks = [
        ErpAck(
            batch_id=x.batch_id,
            entity=x.entity,
            sequence=x.sequence,
            status="imported",
            erp_document_id=f"doc-{n}",
            acknowledged_at=AT,
        )
        for n, x in enumerate(batches)
    ]
    stale = [
        _schedule(books, contract)
        for books in halfway.books.values()
        for contract in books.revenue.contracts.values()
    ]
    final = [
        _schedule(books, contract)
        for books in engine.books.values()
        for contract in books.revenue.contracts.values()
    ]
    # Schedules first (their contracts come later), the halfway ones at lower offsets.
    parts = [
        *_rows_of(SCHEDULES, list(enumerate([*stale, *final])), reference),
        *_rows_of(INPUTS, list(enumerate(stream.events)), reference),
        *_rows_of(ENTRIES_TOPIC, list(enumerate(entries)), reference),
        *_rows_of(BATCHES, list(enumerate(batch_record(x) for x in batches)), reference),
        *_rows_of(ACKS, list(enumerate(acks)), reference),
    ]
    database = databases()
    migrate(database)

    started = time.monotonic()
    written = _write(database, parts, reference, size=300)
    seconds = time.monotonic() - started
    before = _digests(database)
    # A stale schedule read again, then everything again in one batch: nothing changes.
    again = _write(
        database,
        [*_rows_of(SCHEDULES, list(enumerate(stale)), reference), *parts],
        reference,
        size=len(parts) * 2,
    )

    print(
        f"\nsink without Kafka: {len(stream.events)} events, {len(entries)} entries,"
        f" {len(batches)} batches, {len(final)} schedules in {seconds:.1f} s"
    )
    assert _digests(database) == before
    assert set(again.values()) <= {0}, again
    assert written["journal_entries inserted"] == len(entries)
    with psycopg.connect(database) as conn:
        _assert_contracts_equal_books(conn, engine)
        _assert_invoice_status_follows_amount_due(conn, engine)
        assert _one(conn, "SELECT count(*) FROM revledger.journal_batches") == len(batches)
        assert _one(conn, "SELECT count(*) FROM revledger.journal_batch_entries") == sum(
            len(x.entry_ids) for x in batches
        )
        assert _one(conn, "SELECT count(*) FROM revledger.erp_batch_status") == len(batches)
        assert _one(conn, "SELECT count(*) FROM revledger.projection_rejects") == 0
        unbalanced = conn.execute(
            "SELECT currency FROM revledger.journal_lines GROUP BY currency"
            " HAVING sum(amount_minor) FILTER (WHERE side = 'debit')"
            "   <> sum(amount_minor) FILTER (WHERE side = 'credit')"
        ).fetchall()
        assert unbalanced == []


def test_tables_are_the_same_whether_new_keys_are_copied_straight_in_or_staged(
    databases, monkeypatch
):
    # The sink COPYs rows of keys not in the table yet straight into source_events,
    # journal_entries and journal_lines (sink._take_new); staged, every row goes through
    # INSERT ... SELECT DISTINCT ON ... ON CONFLICT. Copies of one record are in the stream:
    # redeliveries (same partition, later offset) in and across batches, and copies on a
    # lower partition read later (a control record's copies).
    stream = generate_contracts(seed=7, customers=15, months=12)
    engine = replay_all(stream.reference, stream.events)
    reference = ReferenceData.from_records(stream.reference)
    entries = [entry_record(entry) for entry in engine.entries]

    def rows(topic: str, partition: int, offset: int, record: Any) -> Rows:
        return rows_for(record, Received(f"p.{topic}", topic, partition, offset), reference)

    parts = []
    for offset, event in enumerate(stream.events):
        parts.append(rows(INPUTS, 1, offset, event))
        if offset % 5 == 0:
            parts.append(rows(INPUTS, 1, offset + 100_000, event))
    for offset, event in enumerate(stream.events[::7]):
        parts.append(rows(INPUTS, 0, offset, event))
    for offset, entry in enumerate(entries):
        parts.append(rows(ENTRIES_TOPIC, 0, offset, entry))
        if offset % 6 == 0:
            parts.append(rows(ENTRIES_TOPIC, 0, offset + 100_000, entry))
    copied, staged = databases(), databases()
    migrate(copied)
    migrate(staged)

    written = _write(copied, parts, reference, size=97)
    with monkeypatch.context() as patched:
        patched.setattr(sink, "_take_new", lambda conn, rows: {})
        written_staged = _write(staged, parts, reference, size=97)
    before = _digests(copied)
    # Every key there already, but looked up as absent (as when another writer inserts
    # them between the look-up and the COPY): the COPY fails, the batch is written again
    # staged, and nothing changes.
    with monkeypatch.context() as patched:
        patched.setattr(sink, "_existing", lambda conn, table, groups: set())
        again = _write(copied, parts, reference, size=len(parts))

    assert before == _digests(staged)
    assert written == written_staged
    assert written["journal_entries inserted"] == len(entries)
    assert written["source_events inserted"] == len({event.event_id for event in stream.events})
    assert _digests(copied) == before
    assert set(again.values()) <= {0}, again


def _schedule(books: Any, contract: Any) -> RevenueScheduled:
    rows = schedule_by_period(contract)
    return schedule_record(books.revenue.customer_id, contract, rows, "engine")


def _assert_contracts_equal_books(conn: psycopg.Connection, engine: Any) -> None:
    contracts = {
        row[0]: row
        for row in conn.execute(
            "SELECT contract_id, total_price_minor, cancelled_on, implied FROM revledger.contracts"
        )
    }
    obligations = {
        (row[0], row[1]): row[2:]
        for row in conn.execute(
            "SELECT contract_id, obligation_id, method, allocated_minor, service_start"
            "  FROM revledger.performance_obligations"
        )
    }
    schedule: dict[str, set] = {}
    for contract_id, obligation_id, period, amount in conn.execute(
        "SELECT contract_id, obligation_id, period, amount_minor FROM revledger.revenue_schedule"
    ):
        schedule.setdefault(contract_id, set()).add((obligation_id, period, amount))
    expected = {}
    for books in engine.books.values():
        for contract in books.revenue.contracts.values():
            expected[contract.contract_id] = contract
            found = contracts[contract.contract_id]
            assert found[1:] == (
                contract.total_price_minor,
                contract.cancelled_on,
                contract.implied,
            )
            for oid, obligation in contract.obligations.items():
                method, allocated, start = obligations[(contract.contract_id, oid)]
                assert method == obligation.method
                assert start == obligation.service_start
                if not obligation.is_usage:
                    assert allocated == obligation.allocated_minor, (contract.contract_id, oid)
            assert schedule.get(contract.contract_id, set()) == set(schedule_by_period(contract))
    assert set(contracts) == set(expected)
    assert {key[0] for key in obligations} <= set(expected)


def _assert_invoice_status_follows_amount_due(conn: psycopg.Connection, engine: Any) -> None:
    status = dict(conn.execute("SELECT invoice_id, status FROM revledger.invoices"))
    items = [item for books in engine.books.values() for item in books.ledger.invoices.values()]
    assert len(status) == len(items)
    for item in items:
        if item.voided:
            assert status[item.invoice_id] == "voided"
        elif item.amount_due_minor > 0:
            assert status[item.invoice_id] == "open", item.invoice_id
        else:
            assert status[item.invoice_id] in {"paid", "credited", "written_off"}


def test_unbalanced_entry_is_named_and_nothing_committed_when_the_database_refuses_it(databases):
    database = databases()
    migrate(database)
    reference = ReferenceData.from_records(b.base_records())
    good = entry_record(replay_all(b.base_records(), [b.invoice("INV-1")]).entries[0])
    first, second = good.lines
    # Built without validation, as a buggy writer would: debits 100.00, credits 90.00.
    bad = good.model_construct(
        **{
            **dict(good),
            "entry_id": "bad-entry",
            "lines": (first, second.model_copy(update={"amount_minor": 90_00})),
        }
    )
    parts = [
        (
            Received("p.ledger.entries.v1", ENTRIES_TOPIC, 0, offset),
            rows_for(record, Received("p.ledger.entries.v1", ENTRIES_TOPIC, 0, offset), reference),
        )
        for offset, record in enumerate([good, bad])
    ]

    with psycopg.connect(database, autocommit=True) as conn:
        prepare(conn)
        with pytest.raises(ConstraintViolation) as refused:
            write_batch(conn, [rows for _, rows in parts], {("p", 0): 2}, "c", {}, reference)
        found = find_refused(conn, parts, reference)
        committed = _one(conn, "SELECT count(*) FROM revledger.journal_entries")
        offsets = _one(conn, "SELECT count(*) FROM revledger.projection_offsets")

    assert refused.value.constraint == "journal_entry_balanced"
    assert found is not None
    where, violation = found
    assert (where.partition, where.offset) == (0, 1)
    assert violation.constraint == "journal_entry_balanced"
    assert "bad-entry" in str(violation)
    assert (committed, offsets) == (0, 0)
