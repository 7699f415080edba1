"""``revledger erp-import`` / ``erp-resend`` against the real broker, run as subprocesses.

Batches are built as domain values, encoded as production encodes them, and produced in a
transaction to their source partition of a uuid-prefixed ``erp.journal-batches.v1``.

The tests without ``devstack`` drive :class:`streams.erp_import.Importer` on a
directory, with the transaction boundaries played by the test: the refused-controls path
(unreachable through the codec, whose validator refuses such a record first), and crashes
before a commit or between a commit and the cleanup after it.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from connectors.erp.formats import batch_json, netsuite_journal_csv, oracle_gl_interface_csv
from connectors.erp.importing import LedgerIds, batch_file_name, batch_name
from ledger.batching import Batch, SummaryLine
from streams.admin import ensure_topics
from streams.batches import batch_record
from streams.erp_import import FORMATS, ImportDirectory, Importer
from streams.messages import BatchTotal, ErpAck
from streams.reading import read_partitions_to_end
from streams.serde import Codec
from streams.settings import Settings, load_settings, worker_environment
from streams.topics import ERP_ACKS, JOURNAL_BATCHES

from worker_process import encode_unvalidated

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CODEC = Codec()
NOW = dt.datetime(2024, 3, 31, 12, tzinfo=dt.UTC)


def batch_factory(entity: str, partition: int, sequence: int) -> Batch:
    """A balanced batch; EU1 is EUR-functional with USD lines, every other entity USD."""
    amount = 100_00 + 7 * sequence + partition
    functional = "EUR" if entity.startswith("EU") else "USD"
    accounted = amount * 92 // 100 if functional == "EUR" else amount
    family = (("product_family", "saas"),)
    return Batch(
        batch_id=batch_name(entity, partition, sequence),
        entity=entity,
        source_partition=partition,
        sequence=sequence,
        period="2024-03",
        first_date=dt.date(2024, 3, 1),
        last_date=dt.date(2024, 3, 1 + sequence % 28),
        functional_currency=functional,
        lines=(
            SummaryLine("1100-000", "receivable", "USD", (), amount, 0, accounted, 0),
            SummaryLine("4000-100", "revenue", "USD", family, 0, amount, 0, accounted),
        ),
        entry_ids=tuple(f"{entity}-p{partition}-{sequence}-{k}" for k in range(2)),
        first_offset=10 * sequence,
        last_offset=10 * sequence + 1,
    )


def encode(settings: Settings, batch: Batch) -> bytes:
    return CODEC.encode(batch_record(batch), topic=topic_of(settings))


def topic_of(settings: Settings) -> str:
    return settings.topic_prefix + JOURNAL_BATCHES.name


def isolated_settings(devstack, unique_name) -> Settings:
    tag = unique_name("erp")
    settings = load_settings(
        {},
        bootstrap_servers=devstack.bootstrap_servers,
        topic_prefix=f"{tag}.",
        app_id=f"revledger-{tag}",
        partitions=4,
    )
    ensure_topics(settings, (JOURNAL_BATCHES, ERP_ACKS))
    return settings


def produce(settings: Settings, records: Iterable[tuple[str, int, bytes]]) -> None:
    """Produce (key, partition, value) records in one committed transaction."""
    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "transactional.id": f"test-batcher-{uuid.uuid4().hex}",
        }
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    for key, partition, value in records:
        producer.produce(topic_of(settings), key=key.encode(), value=value, partition=partition)
    producer.commit_transaction(30)


def produce_batches(settings: Settings, batches: Iterable[Batch]) -> None:
    produce(settings, [(b.entity, b.source_partition, encode(settings, b)) for b in batches])


def revledger(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    """Run ``revledger ARGS`` to completion with ``settings`` in its environment."""
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=worker_environment(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    print(f"$ revledger {' '.join(args)} -> {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def acks(settings: Settings) -> list[ErpAck]:
    """Every committed ack on the acks topic."""
    topic = settings.topic_prefix + ERP_ACKS.name
    return [CODEC.decode(m.value()) for m in read_partitions_to_end(settings, topic)]


def batch_files(out: Path) -> dict[str, Path]:
    """Imported batch files by path relative to ``out`` (nothing under .revledger)."""
    return {
        str(path.relative_to(out)): path
        for path in out.rglob("*")
        if path.is_file() and ".revledger" not in path.parts and not path.name.startswith(".")
    }


def importer_factory(out: Path, said: list[str]) -> Importer:
    return Importer(
        ImportDirectory(out), FORMATS["json"], LedgerIds(), CODEC, now=lambda: NOW, say=said.append
    )


# --- the importer on a directory (no broker) ----------------------------------------------


def test_stream_is_blocked_then_resumes_when_a_batch_with_bad_controls_is_resent_fixed(tmp_path):
    said: list[str] = []
    importer = importer_factory(tmp_path, said)
    good = [batch_record(batch_factory("US1", 0, n)) for n in range(3)]
    # Past the validator, as a buggy producer's bytes would be if nothing checked them.
    tampered = good[0].model_construct(
        **{**dict(good[0]), "totals": (BatchTotal(currency="USD", debit_minor=1, credit_minor=1),)}
    )

    (refused,) = importer.handle_batch(tampered, b"", (0, 0))
    assert refused.status == "rejected"
    assert refused.message.startswith("control_totals_mismatch: USD: stated totals (1, 1)")
    assert importer.handle_batch(good[1], CODEC.encode(good[1]), (0, 1)) == []  # pends
    assert importer.handle_batch(good[2], CODEC.encode(good[2]), (0, 2)) == []
    assert importer.state.stream(("US1", 0)).blocked.sequence == 0
    assert "gaps: US1/p0/0 (rejected)" in importer.summary()
    assert importer.exit_code() == 3

    resent = importer.handle_batch(good[0], CODEC.encode(good[0]), (0, 3))
    assert [(a.batch_id, a.status) for a in resent] == [
        (f"US1/p0/{n}", "imported") for n in range(3)
    ]
    importer.committed()
    assert sorted(batch_files(tmp_path)) == [batch_file_name("US1", 0, n, "json") for n in range(3)]
    assert ImportDirectory(tmp_path).pending() == {}
    assert importer.state.stream(("US1", 0)).next == 3
    assert any(
        line.startswith("gap: entity US1 partition 0: missing batch US1/p0/0") for line in said
    )


def test_drained_batches_are_acked_again_only_when_their_transaction_did_not_commit(tmp_path):
    records = [batch_record(batch_factory("US1", 1, n)) for n in range(3)]
    values = [CODEC.encode(r) for r in records]
    first = importer_factory(tmp_path, [])
    first.handle_batch(records[2], values[2], (1, 10))
    first.handle_batch(records[1], values[1], (1, 11))
    first.committed()  # offsets 10 and 11 committed: both batches pend
    drained = first.handle_batch(records[0], values[0], (1, 12))
    assert [a.batch_id for a in drained] == ["US1/p1/0", "US1/p1/1", "US1/p1/2"]
    # Killed before the commit: no committed(). The restart re-reads offset 12.
    second = importer_factory(tmp_path, [])
    second.confirm(lambda partition: 12)  # committed offset 12: offset 12 not committed
    again = second.handle_batch(records[0], values[0], (1, 12))
    assert [(a.batch_id, a.message) for a in again] == [
        ("US1/p1/0", "already imported"),
        ("US1/p1/1", "already imported"),
        ("US1/p1/2", "already imported"),
    ]
    # Killed after the commit, before the cleanup: the restart only cleans up.
    third = importer_factory(tmp_path, [])
    third.confirm(lambda partition: 13)
    assert third.state.unconfirmed == ()
    assert ImportDirectory(tmp_path).pending() == {}
    assert third.handle_batch(records[2], values[2], (1, 13))[0].message == "already imported"


# --- the command against the broker ---------------------------------------------------------


def kill_when_files_reach(
    settings: Settings, out: Path, count: int, transaction_size: int, log: Path
) -> dict[str, tuple[int, int]]:
    """Start ``erp-import --format json``, SIGKILL it once ``count`` files exist.

    Returns:
        (inode, mtime_ns) of every batch file present after the kill.
    """
    command = [sys.executable, "-m", "streams.cli", "erp-import", "--format", "json"]
    command += ["--out", str(out), "--transaction-size", str(transaction_size)]
    with log.open("ab") as sink:
        running = subprocess.Popen(
            command, env=worker_environment(settings), cwd=ROOT, stdout=sink, stderr=sink
        )
    deadline = time.monotonic() + 60
    while len(batch_files(out) if out.exists() else {}) < count and time.monotonic() < deadline:
        assert running.poll() is None, log.read_text()  # it must not finish before the kill
        time.sleep(0.005)
    running.send_signal(signal.SIGKILL)
    running.wait(10)
    return {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name, p in batch_files(out).items()}


def test_each_batch_is_imported_and_acked_once_when_the_importer_is_killed_and_restarted(
    devstack, unique_name, tmp_path
):
    settings = isolated_settings(devstack, unique_name)
    streams = [(entity, partition) for entity in ("US1", "EU1") for partition in range(4)]
    batches = [batch_factory(e, p, n) for n in range(25) for e, p in streams]
    produce_batches(settings, batches)
    out = tmp_path / "out"
    # One ack per transaction (as asked), then 25: more likely killed inside a transaction
    # whose files are written but whose acks never commit.
    before = kill_when_files_reach(settings, out, 40, 1, tmp_path / "killed.log")
    assert 40 <= len(before) < len(batches)
    later = kill_when_files_reach(settings, out, 100, 25, tmp_path / "killed.log")
    assert 100 <= len(later) < len(batches)
    assert {name: later[name] for name in before} == before
    print((tmp_path / "killed.log").read_text())

    done = revledger(settings, "erp-import", "--format", "json", "--out", str(out))

    assert done.returncode == 0
    files = batch_files(out)
    expected = {
        batch_file_name(b.entity, b.source_partition, b.sequence, "json"): b for b in batches
    }
    assert set(files) == set(expected)
    for name, path in files.items():
        assert path.read_bytes() == batch_json(expected[name]).encode()
    assert {n: (files[n].stat().st_ino, files[n].stat().st_mtime_ns) for n in later} == later
    answers = acks(settings)
    assert sorted(a.batch_id for a in answers) == sorted(b.batch_id for b in batches)
    assert {a.status for a in answers} == {"imported"}
    by_id = {b.batch_id: name for name, b in expected.items()}
    assert all(a.erp_document_id == by_id[a.batch_id] for a in answers)
    state = json.loads((out / ".revledger" / "state.json").read_text())
    assert {s["next"] for s in state["streams"]} == {25}
    assert state["unconfirmed"] == []
    assert "pending 0; gaps: none" in done.stdout


def test_gap_stops_a_stream_until_the_missing_batch_comes_then_it_imports_in_order(
    devstack, unique_name, tmp_path
):
    settings = isolated_settings(devstack, unique_name)
    batches = [batch_factory("GAP1", 2, n) for n in range(10)]
    produce_batches(settings, [b for b in batches if b.sequence != 5])
    out = str(tmp_path / "out")
    names = [batch_file_name("GAP1", 2, n, "json") for n in range(10)]

    stopped = revledger(settings, "erp-import", "--format", "json", "--out", out)
    assert stopped.returncode == 3
    assert "gap: entity GAP1 partition 2: missing batch GAP1/p2/5 (received GAP1/p2/6)" in (
        stopped.stdout
    )
    assert stopped.stdout.count("gap: ") == 1
    assert "imported 5, already imported 0, rejected 0, pending 4; gaps: GAP1/p2/5" in (
        stopped.stdout
    )
    assert sorted(batch_files(tmp_path / "out")) == names[:5]

    produce_batches(settings, [batches[5]])
    resumed = revledger(settings, "erp-import", "--format", "json", "--out", out)
    assert resumed.returncode == 0
    assert "imported 5, already imported 0, rejected 0, pending 0; gaps: none" in resumed.stdout
    assert sorted(batch_files(tmp_path / "out")) == names
    assert sorted(a.batch_id for a in acks(settings)) == sorted(b.batch_id for b in batches)

    resent = revledger(settings, "erp-resend", "GAP1/p2/7")
    assert resent.returncode == 0
    assert "erp-resend: GAP1/p2/7 last acked imported" in resent.stdout
    again = revledger(settings, "erp-import", "--format", "json", "--out", out)
    assert again.returncode == 0
    assert "imported 0, already imported 1, rejected 0" in again.stdout
    answers = [a for a in acks(settings) if a.batch_id == "GAP1/p2/7"]
    assert [(a.status, a.message) for a in answers] == [
        ("imported", None),
        ("imported", "already imported"),
    ]
    unknown = revledger(settings, "erp-resend", "GAP1/p2/99")
    assert unknown.returncode == 1
    assert "no batch GAP1/p2/99" in unknown.stderr


def test_undecodable_batch_is_kept_with_its_reason_and_its_stream_shows_the_gap(
    devstack, unique_name, tmp_path
):
    settings = isolated_settings(devstack, unique_name)
    good = batch_factory("BAD1", 1, 1)
    totals = [{"currency": "USD", "debit_minor": 1, "credit_minor": 1}]
    tampered = encode_unvalidated(batch_record(batch_factory("BAD1", 1, 0)), totals=totals)
    produce(settings, [("BAD1", 1, tampered), ("BAD1", 1, encode(settings, good))])
    out = tmp_path / "out"

    done = revledger(settings, "erp-import", "--format", "json", "--out", str(out))

    assert done.returncode == 3
    kept = out / ".revledger" / "rejected" / "p1-o0"
    assert kept.with_suffix(".bin").read_bytes() == tampered
    assert "validation_failed" in kept.with_suffix(".txt").read_text()
    assert "rejected: record p1@0: validation_failed" in done.stdout
    assert "missing batch BAD1/p1/0 (received BAD1/p1/1)" in done.stdout
    assert "rejected 1, pending 1; gaps: BAD1/p1/0" in done.stdout
    assert batch_files(out) == {}
    assert acks(settings) == []


def test_oracle_and_netsuite_files_are_the_documented_layouts_when_ledger_ids_are_given(
    devstack, unique_name, tmp_path
):
    settings = isolated_settings(devstack, unique_name)
    batches = [batch_factory("US1", 0, 0), batch_factory("US1", 0, 1), batch_factory("EU1", 3, 0)]
    produce_batches(settings, batches)
    oracle = ["erp-import", "--format", "oracle-gl-interface", "--out"]

    refused = revledger(settings, *oracle, str(tmp_path / "none"), "--group", unique_name("g"))
    assert refused.returncode == 2
    assert "needs --ledger-id" in refused.stderr
    assert not (tmp_path / "none").exists()  # stopped before reading anything
    partial = revledger(
        settings, *oracle, str(tmp_path / "partial"), "--ledger-id", "US1=300000001"
    )
    assert partial.returncode == 2
    assert "no --ledger-id for entity EU1" in partial.stderr

    ids = ["--ledger-id", "300000001", "--ledger-id", "EU1=300000002"]
    group = ["--group", unique_name("oracle")]
    done = revledger(settings, *oracle, str(tmp_path / "oracle"), *group, *ids)
    assert done.returncode == 0
    netsuite = revledger(
        settings,
        *("erp-import", "--format", "netsuite-csv", "--out", str(tmp_path / "ns")),
        *("--group", unique_name("netsuite")),
    )
    assert netsuite.returncode == 0
    for batch in batches:
        name = batch_file_name(batch.entity, batch.source_partition, batch.sequence, "csv")
        ledger_id = "300000002" if batch.entity == "EU1" else "300000001"
        oracle_file = (tmp_path / "oracle" / name).read_text()
        assert oracle_file == oracle_gl_interface_csv(batch, ledger_id=ledger_id)
        assert (tmp_path / "ns" / name).read_text() == netsuite_journal_csv(batch)


def test_each_batch_is_acked_once_when_a_whole_aborted_transaction_is_read_again(tmp_path):
    records = [batch_record(batch_factory("US1", 1, n)) for n in range(3)]
    values = [CODEC.encode(r) for r in records]
    arrivals = [(records[n], values[n], (1, 10 + k)) for k, n in enumerate((2, 1, 0))]
    first = importer_factory(tmp_path, [])
    for record, value, source in arrivals:
        first.handle_batch(record, value, source)
    # Killed before the one commit: every record is read again, the pending ones first.
    second = importer_factory(tmp_path, [])
    second.confirm(lambda partition: None)
    again = [a for arrival in arrivals for a in second.handle_batch(*arrival)]
    assert sorted(a.batch_id for a in again) == ["US1/p1/0", "US1/p1/1", "US1/p1/2"]
    second.committed()
    assert ImportDirectory(tmp_path).pending() == {}
    assert second.state.unconfirmed == ()


@hypothesis_settings(max_examples=60, deadline=None)
@given(
    order=st.integers(1, 8).flatmap(lambda n: st.permutations(range(n))),
    plan=st.lists(st.tuples(st.integers(1, 4), st.booleans(), st.booleans()), min_size=1),
)
def test_each_batch_gets_one_committed_ack_when_runs_crash_anywhere_between_records(order, plan):
    """A run handles transactions of 1-4 records; it may crash before a commit, or after a
    commit before its cleanup. The next run starts at the committed offset."""
    records = [batch_record(batch_factory("US1", 0, n)) for n in range(len(order))]
    log = [(records[n], CODEC.encode(records[n])) for n in order]
    committed_acks: list[ErpAck] = []
    committed_offset = 0
    with tempfile.TemporaryDirectory() as out:
        steps = iter([*plan, *[(4, False, False)] * len(log)])  # then runs that do not crash
        while committed_offset < len(log):
            importer = importer_factory(Path(out), [])
            importer.confirm(lambda partition, offset=committed_offset: offset or None)
            position = committed_offset
            while position < len(log):
                size, crash_before_commit, crash_before_cleanup = next(steps)
                pending_acks = []
                for record, value in log[position : position + size]:
                    pending_acks += importer.handle_batch(record, value, (0, position))
                    position += 1
                if crash_before_commit:
                    break
                committed_acks += pending_acks
                committed_offset = position
                if crash_before_cleanup:
                    break
                importer.committed()
        final = importer_factory(Path(out), [])
        final.confirm(lambda partition: committed_offset)
        assert sorted(a.batch_id for a in committed_acks) == sorted(r.batch_id for r in records)
        assert {a.status for a in committed_acks} == {"imported"}
        assert sorted(batch_files(Path(out))) == sorted(
            batch_file_name("US1", 0, n, "json") for n in range(len(order))
        )
        assert ImportDirectory(Path(out)).pending() == {}
        assert final.state.unconfirmed == ()
