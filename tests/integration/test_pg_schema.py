"""The ``revledger`` PostgreSQL schema against the real server: migrations, checks, roles.

Each test gets a database of its own (``CREATE DATABASE t_<uuid>`` through the dev stack's
superuser URL, dropped at the end), so tests and engineers never share tables. Roles are
cluster-wide: the migration creates them only when missing.
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

from connectors.postgres import migrate as migrate_module
from connectors.postgres.migrate import (
    Migration,
    MigrationError,
    migrate,
    sha256_of,
    shipped_migrations,
    status,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

TABLES = {
    "schema_migrations",
    "source_events",
    "journal_entries",
    "journal_lines",
    "journal_entries_to_check",
    "journal_entry_checks_due",
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
    "projection_offsets",
    "projection_rejects",
    "projection_schedules",
    "recon_runs",
    "recon_breaks",
    "console_users",
    "console_sessions",
    "console_audit",
}
VIEWS = {
    "erp_batch_status",
    "trial_balance_lines",
    "account_activity",
    "ar_open_items",
    "deferred_revenue_movements",
    "revenue_waterfall",
    "customer_statement",
    "batch_lineage",
    "dlq_summary",
    "period_status",
    "recon_breaks_open",
    "event_outcomes",
    "input_positions",
    "dead_letters",
    "entry_batches",
    "contract_schedules",
    "source_system_activity",
}

# (account, side, amount_minor, currency, functional_amount_minor)
Line = tuple[str, str, int, str, int]
BALANCED_USD: list[Line] = [
    ("accounts_receivable", "debit", 100_00, "USD", 100_00),
    ("revenue", "credit", 100_00, "USD", 100_00),
]
_offsets = itertools.count()


def admin_connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@pytest.fixture
def fresh_database(devstack: Any) -> Iterator[str]:
    """Conninfo of an empty database of this test's own, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex}"
    with admin_connect(devstack.database_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_conninfo(devstack.database_url, dbname=name)
    finally:
        with admin_connect(devstack.database_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def migrated(fresh_database: str) -> str:
    migrate(fresh_database)
    return fresh_database


@pytest.fixture
def db(migrated: str) -> Iterator[psycopg.Connection]:
    """A superuser autocommit connection to a migrated database of this test's own."""
    with admin_connect(migrated) as conn:
        yield conn


def insert_entry(conn: psycopg.Connection, entry_id: str, functional: str = "USD") -> None:
    conn.execute(
        """
        INSERT INTO revledger.journal_entries (
            entry_id, entity, customer_id, source_event_id, source_event_type, rule, sequence,
            posting_date, original_date, period, functional_currency, description,
            topic, kafka_partition, kafka_offset)
        VALUES (%s, 'US1', 'cust-1', %s, 'invoice.issued', 'invoice_issued', 0,
                '2026-01-15', '2026-01-15', '2026-01', %s, 'test entry',
                'ledger.entries.v1', 0, %s)
        """,
        [entry_id, f"ev-{entry_id}", functional, next(_offsets)],
    )


def insert_line(
    conn: psycopg.Connection, entry_id: str, line_no: int, line: Line, **dims: str
) -> None:
    account, side, amount, currency, functional = line
    conn.execute(
        """
        INSERT INTO revledger.journal_lines (entry_id, line_no, account, side, amount_minor,
                                             currency, functional_amount_minor, dimensions)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
        """,
        [entry_id, line_no, account, side, amount, currency, functional, Jsonb(dims)],
    )


def post(conn: psycopg.Connection, entry_id: str, lines: Sequence[Line]) -> None:
    """Insert an entry and its lines in one transaction (the trigger runs at its COMMIT)."""
    with conn.transaction():
        insert_entry(conn, entry_id)
        for line_no, line in enumerate(lines, start=1):
            insert_line(conn, entry_id, line_no, line, invoice_id="inv-1")


def count(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> int:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return int(row[0])


# --- migrations --------------------------------------------------------------------------


def test_migrate_applies_every_migration_once_when_run_twice(fresh_database):
    shipped = shipped_migrations()

    assert migrate(fresh_database) == [m.label for m in shipped]
    assert migrate(fresh_database) == []

    with admin_connect(fresh_database) as conn:
        history = conn.execute(
            "SELECT version, name, sha256 FROM revledger.schema_migrations ORDER BY version"
        ).fetchall()
        relations = conn.execute(
            "SELECT table_name, table_type FROM information_schema.tables"
            " WHERE table_schema = 'revledger'"
        ).fetchall()
    assert history == [(m.version, m.name, m.sha256) for m in shipped]
    assert {name for name, kind in relations if kind == "BASE TABLE"} == TABLES
    assert {name for name, kind in relations if kind == "VIEW"} == VIEWS
    assert [row.state for row in status(fresh_database)] == ["applied"] * len(shipped)


def test_migrate_refuses_when_an_applied_file_changed(migrated):
    shipped = shipped_migrations()
    edited_sql = shipped[0].sql + "\n-- edited after it was applied\n"
    edited = replace(shipped[0], sql=edited_sql, sha256=sha256_of(edited_sql.encode()))
    extra_sql = "CREATE TABLE revledger.not_applied (id INTEGER);"
    extra = Migration(len(shipped) + 1, "extra", extra_sql, sha256_of(extra_sql.encode()))

    with pytest.raises(MigrationError, match=r"0001_subledger\.sql changed after it was applied"):
        migrate(migrated, [edited, *shipped[1:], extra])

    with admin_connect(migrated) as conn:
        assert count(conn, "SELECT count(*) FROM revledger.schema_migrations") == len(shipped)
        assert conn.execute("SELECT to_regclass('revledger.not_applied')").fetchone() == (None,)
    assert status(migrated, [edited, *shipped[1:]])[0].state == "changed"


def test_migration_is_rolled_back_whole_when_its_sql_fails(migrated):
    shipped = shipped_migrations()
    broken_sql = "CREATE TABLE revledger.half_done (id INTEGER);\nSELECT 1 / 0;\n"
    broken = Migration(len(shipped) + 1, "broken", broken_sql, sha256_of(broken_sql.encode()))

    with pytest.raises(MigrationError, match=r"_broken\.sql failed and was rolled back.*zero"):
        migrate(migrated, [*shipped, broken])

    with admin_connect(migrated) as conn:
        assert conn.execute("SELECT to_regclass('revledger.half_done')").fetchone() == (None,)
        assert count(conn, "SELECT max(version) FROM revledger.schema_migrations") == len(shipped)


def test_two_migrators_apply_each_migration_once_when_run_at_once(fresh_database):
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(migrate, [fresh_database, fresh_database]))

    labels = [m.label for m in shipped_migrations()]
    assert sorted(results, key=len) == [[], labels]
    with admin_connect(fresh_database) as conn:
        assert count(conn, "SELECT count(*) FROM revledger.schema_migrations") == len(labels)


def test_migrate_gives_up_when_another_migrator_holds_the_lock(fresh_database, monkeypatch):
    monkeypatch.setattr(migrate_module, "LOCK_TIMEOUT_SECONDS", 1)
    with admin_connect(fresh_database) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [migrate_module.ADVISORY_LOCK_KEY])
        with pytest.raises(MigrationError, match="another migrator has held the migration lock"):
            migrate(fresh_database)
    with admin_connect(fresh_database) as conn:
        assert conn.execute("SELECT to_regnamespace('revledger')").fetchone() == (None,)
    assert migrate(fresh_database) == [m.label for m in shipped_migrations()]


# --- journal lines: checks -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "functional", "constraint"),
    [
        (0, 0, "journal_lines_amount_must_be_positive"),
        (-1, 100, "journal_lines_amount_not_negative"),
        (100, -1, "journal_lines_functional_amount_not_negative"),
    ],
)
def test_line_check_refuses_when_amount_is_zero_or_negative(db, amount, functional, constraint):
    with pytest.raises(errors.CheckViolation) as refused, db.transaction():
        insert_entry(db, "e-1")
        insert_line(db, "e-1", 1, ("revenue", "credit", amount, "USD", functional))
    assert refused.value.diag.constraint_name == constraint
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 0


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("side", "both", "journal_lines_side"),
        ("currency", "usd", "journal_lines_currency_code"),
        ("currency", "US", "journal_lines_currency_code"),
        ("dimensions", Jsonb({"invoice_id": 7}), "journal_lines_dimensions_are_strings"),
        ("dimensions", Jsonb(["invoice_id"]), "journal_lines_dimensions_are_strings"),
    ],
)
def test_line_check_refuses_when_a_field_is_malformed(db, column, value, constraint):
    update_line = sql.SQL(
        "UPDATE revledger.journal_lines SET {} = %s WHERE entry_id = 'e-1' AND line_no = 1"
    ).format(sql.Identifier(column))
    post(db, "e-1", BALANCED_USD)
    with pytest.raises(errors.CheckViolation) as refused:
        db.execute(update_line, [value])
    assert refused.value.diag.constraint_name == constraint


def test_line_check_accepts_zero_amount_when_it_carries_a_functional_amount(db):
    # A payment in EUR for a EUR invoice booked at another rate: the realized-FX line has
    # no transaction amount, only the functional difference (ledger/drafts.py).
    post(
        db,
        "e-fx",
        [
            ("cash_clearing", "debit", 100_00, "EUR", 110_00),
            ("accounts_receivable", "credit", 100_00, "EUR", 108_00),
            ("realized_fx", "credit", 0, "EUR", 2_00),
        ],
    )
    assert count(db, "SELECT count(*) FROM revledger.journal_lines WHERE entry_id = 'e-fx'") == 3


def test_line_is_refused_when_its_entry_id_and_line_no_repeat(db):
    post(db, "e-1", BALANCED_USD)
    with pytest.raises(errors.UniqueViolation) as refused:
        insert_line(db, "e-1", 2, ("revenue", "credit", 1, "USD", 1))
    assert refused.value.diag.constraint_name == "journal_lines_pkey"


def test_line_is_refused_when_its_entry_does_not_exist(db):
    with pytest.raises(errors.ForeignKeyViolation):
        insert_line(db, "no-such-entry", 1, BALANCED_USD[0])


def test_entry_check_refuses_when_period_is_not_yyyy_mm(db):
    post(db, "e-1", BALANCED_USD)
    with pytest.raises(errors.CheckViolation) as refused:
        db.execute("UPDATE revledger.journal_entries SET period = '2026-13'")
    assert refused.value.diag.constraint_name == "journal_entries_period_format"


# --- journal lines: the deferred zero-sum trigger ----------------------------------------------


def test_unbalanced_entry_is_refused_at_commit_when_lines_were_inserted_one_by_one(db):
    with pytest.raises(errors.CheckViolation) as refused, db.transaction():
        insert_entry(db, "e-unbalanced")
        insert_line(db, "e-unbalanced", 1, ("accounts_receivable", "debit", 100_00, "USD", 100_00))
        # Inside the transaction one line alone is fine: the check waits for COMMIT.
        assert count(db, "SELECT count(*) FROM revledger.journal_lines") == 1
        insert_line(db, "e-unbalanced", 2, ("revenue", "credit", 90_00, "USD", 100_00))
        assert count(db, "SELECT count(*) FROM revledger.journal_lines") == 2

    message = str(refused.value)
    assert "journal entry e-unbalanced does not balance in USD" in message
    assert "debits 10000, credits 9000" in message
    assert refused.value.diag.constraint_name == "journal_entry_balanced"
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 0


def test_balanced_two_currency_entry_is_accepted(db):
    lines = [
        ("accounts_receivable", "debit", 100_00, "EUR", 108_00),
        ("deferred_revenue", "credit", 100_00, "EUR", 108_00),
        ("cash_clearing", "debit", 50_00, "USD", 50_00),
        ("customer_credit", "credit", 50_00, "USD", 50_00),
    ]
    post(db, "e-two", lines)
    per_currency = db.execute(
        "SELECT currency, sum(amount_minor) FROM revledger.journal_lines"
        " WHERE entry_id = 'e-two' GROUP BY currency ORDER BY currency"
    ).fetchall()
    assert per_currency == [("EUR", 200_00), ("USD", 100_00)]


def test_entry_is_refused_when_a_currency_balances_only_against_another(db):
    with pytest.raises(errors.CheckViolation, match="e-mixed does not balance in EUR"):
        post(
            db,
            "e-mixed",
            [
                ("accounts_receivable", "debit", 100_00, "EUR", 108_00),
                ("revenue", "credit", 100_00, "USD", 108_00),
            ],
        )


def test_entry_is_refused_when_only_functional_amounts_differ(db):
    with pytest.raises(errors.CheckViolation) as refused:
        post(
            db,
            "e-functional",
            [
                ("accounts_receivable", "debit", 100_00, "EUR", 108_00),
                ("revenue", "credit", 100_00, "EUR", 107_99),
            ],
        )
    assert "journal entry e-functional does not balance in functional amounts" in str(refused.value)
    assert "debits 10800, credits 10799" in str(refused.value)


@pytest.mark.parametrize("lines", [[], [BALANCED_USD[0]]], ids=["no line", "one line"])
def test_entry_is_refused_when_it_has_fewer_than_two_lines(db, lines):
    with pytest.raises(errors.CheckViolation, match=r"e-short has [01] line\(s\)"):
        post(db, "e-short", lines)


def test_removing_a_line_of_a_posted_entry_is_refused_at_commit(db):
    post(db, "e-1", BALANCED_USD)
    with pytest.raises(errors.CheckViolation, match="e-1 has 1 line"):
        db.execute("DELETE FROM revledger.journal_lines WHERE entry_id = 'e-1' AND line_no = 2")
    with pytest.raises(errors.CheckViolation, match="e-1 does not balance in USD"):
        db.execute("UPDATE revledger.journal_lines SET amount_minor = 1 WHERE line_no = 2")
    assert count(db, "SELECT count(*) FROM revledger.journal_lines") == 2


def test_deleting_an_entry_with_all_its_lines_is_accepted(db):
    post(db, "e-1", BALANCED_USD)
    with db.transaction():
        db.execute("DELETE FROM revledger.journal_lines WHERE entry_id = 'e-1'")
        db.execute("DELETE FROM revledger.journal_entries WHERE entry_id = 'e-1'")
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 0


def test_entry_changed_after_an_immediate_check_is_checked_again_at_commit(db):
    # 0010 checks each entry once per transaction; touching it after the check queues it again.
    refused = pytest.raises(errors.CheckViolation, match="e-1 does not balance in USD")
    with refused, db.transaction():
        insert_entry(db, "e-1")
        for line_no, line in enumerate(BALANCED_USD, start=1):
            insert_line(db, "e-1", line_no, line)
        db.execute("SET CONSTRAINTS ALL IMMEDIATE")
        db.execute("SET CONSTRAINTS ALL DEFERRED")
        db.execute("UPDATE revledger.journal_lines SET amount_minor = 1 WHERE line_no = 2")
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 0
    assert count(db, "SELECT count(*) FROM revledger.journal_entries_to_check") == 0


def test_unbalanced_entry_among_many_written_by_one_statement_is_named_at_commit(db):
    with pytest.raises(errors.CheckViolation) as refused, db.transaction():
        for n in range(50):
            insert_entry(db, f"e-{n:02}")
        db.execute(
            "INSERT INTO revledger.journal_lines (entry_id, line_no, account, side, amount_minor,"
            " currency, functional_amount_minor)"
            " SELECT entry_id, n, CASE n WHEN 1 THEN 'accounts_receivable' ELSE 'revenue' END,"
            " CASE n WHEN 1 THEN 'debit' ELSE 'credit' END,"
            " CASE WHEN entry_id = 'e-37' AND n = 2 THEN 99 ELSE 100 END, 'USD', 100"
            " FROM revledger.journal_entries CROSS JOIN generate_series(1, 2) AS n"
        )
    assert "journal entry e-37 does not balance in USD: debits 100, credits 99" in str(
        refused.value
    )
    assert refused.value.diag.constraint_name == "journal_entry_balanced"
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 0


def test_balanced_entries_leave_nothing_queued_when_committed(db):
    for n in range(3):
        post(db, f"e-{n}", BALANCED_USD)
    assert count(db, "SELECT count(*) FROM revledger.journal_lines") == 6
    assert count(db, "SELECT count(*) FROM revledger.journal_entries_to_check") == 0
    assert count(db, "SELECT count(*) FROM revledger.journal_entry_checks_due") == 0


def test_transaction_is_queued_for_its_check_once_whatever_its_statements(db):
    # 0012: one deferred check per transaction, not one per entry or statement.
    with db.transaction():
        for n in range(3):
            insert_entry(db, f"e-{n}")
            for line_no, line in enumerate(BALANCED_USD, start=1):
                insert_line(db, f"e-{n}", line_no, line)
        assert count(db, "SELECT count(*) FROM revledger.journal_entries_to_check") == 3
        assert count(db, "SELECT count(*) FROM revledger.journal_entry_checks_due") == 1
    assert count(db, "SELECT count(*) FROM revledger.journal_entry_checks_due") == 0


def test_check_undone_with_its_savepoint_runs_again_at_commit(db):
    # The check that refused inside the savepoint is rolled back with it (the entry queued
    # again, the transaction's row back): COMMIT must still refuse the entry.
    refused = pytest.raises(errors.CheckViolation, match="e-1 does not balance")
    with refused as at_commit, db.transaction():
        insert_entry(db, "e-1")
        insert_line(db, "e-1", 1, BALANCED_USD[0])
        insert_line(db, "e-1", 2, ("revenue", "credit", 1, "USD", 100_00))
        with pytest.raises(errors.CheckViolation), db.transaction():
            db.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert at_commit.value.diag.constraint_name == "journal_entry_balanced"
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 0


# --- journal batches ------------------------------------------------------------------------


def insert_batch(conn: psycopg.Connection, batch_id: str, lines: Sequence[tuple]) -> None:
    """A batch with ``lines`` of (gl_code, currency, debit, credit, f_debit, f_credit)."""
    conn.execute(
        """
        INSERT INTO revledger.journal_batches (
            batch_id, entity, source_partition, sequence, period, window_start, window_end,
            functional_currency, entry_count, line_count, entry_ids_digest,
            first_source_offset, last_source_offset)
        VALUES (%s, 'US1', 0, %s, '2026-01', '2026-01-01T00:00Z', '2026-01-02T00:00Z',
                'USD', 1, %s, %s, 10, 12)
        """,
        [batch_id, next(_offsets), len(lines), "0" * 64],
    )
    for line_no, (gl_code, currency, debit, credit, f_debit, f_credit) in enumerate(lines, 1):
        conn.execute(
            """
            INSERT INTO revledger.journal_batch_lines (
                batch_id, line_no, gl_code, account, currency, debit_minor, credit_minor,
                functional_debit_minor, functional_credit_minor, dimensions)
            VALUES (%s, %s, %s, 'revenue', %s, %s, %s, %s, %s, '{"product_family": "saas"}')
            """,
            [batch_id, line_no, gl_code, currency, debit, credit, f_debit, f_credit],
        )
    conn.execute(
        "INSERT INTO revledger.journal_batch_entries (batch_id, entry_id) VALUES (%s, 'e-1')",
        [batch_id],
    )


def test_balanced_batch_is_accepted_and_an_unbalanced_one_refused_at_commit(db):
    debit = ("1200", "USD", 500, 0, 500, 0)
    with db.transaction():
        insert_batch(db, "US1/p0/0", [debit, ("4000", "USD", 0, 500, 0, 500)])
    short = pytest.raises(errors.CheckViolation, match="journal batch US1/p0/1 does not balance")
    with short, db.transaction():
        insert_batch(db, "US1/p0/1", [debit, ("4000", "USD", 0, 499, 0, 500)])
    assert db.execute("SELECT batch_id FROM revledger.journal_batches").fetchall() == [
        ("US1/p0/0",)
    ]


def test_batch_is_refused_when_its_lines_differ_from_line_count(db):
    refused = pytest.raises(errors.CheckViolation, match=r"US1/p0/0 has 2 line.* says 3")
    with refused, db.transaction():
        insert_batch(db, "US1/p0/0", [("1200", "USD", 5, 0, 5, 0), ("4000", "USD", 0, 5, 0, 5)])
        db.execute("UPDATE revledger.journal_batches SET line_count = 3")


def test_erp_batch_status_gives_the_latest_ack_of_each_batch(db):
    acks = [
        (0, 3, "US1/p0/0", "rejected", None, "control_totals_mismatch", "2026-01-02T10:00Z"),
        (0, 7, "US1/p0/0", "imported", "JE-1", None, "2026-01-02T09:00Z"),  # clock behind
        (1, 4, "US1/p1/0", "imported", "JE-2", None, "2026-01-02T11:00Z"),
    ]
    for partition, offset, batch_id, state, document, message, at in acks:
        db.execute(
            """
            INSERT INTO revledger.erp_acks (kafka_partition, kafka_offset, batch_id, entity,
                sequence, status, erp_document_id, message, acknowledged_at)
            VALUES (%s, %s, %s, 'US1', 0, %s, %s, %s, %s)
            """,
            [partition, offset, batch_id, state, document, message, at],
        )
    rows = db.execute(
        "SELECT batch_id, status, erp_document_id, ack_count, kafka_offset"
        " FROM revledger.erp_batch_status ORDER BY batch_id"
    ).fetchall()
    assert rows == [("US1/p0/0", "imported", "JE-1", 2, 7), ("US1/p1/0", "imported", "JE-2", 1, 4)]


def test_period_check_refuses_when_closed_without_a_date(db):
    with pytest.raises(errors.CheckViolation) as refused:
        db.execute("INSERT INTO revledger.periods VALUES ('US1', '2026-01', 'closed', NULL)")
    assert refused.value.diag.constraint_name == "periods_closed_on_iff_closed"
    db.execute("INSERT INTO revledger.periods VALUES ('US1', '2026-01', 'closed', '2026-02-03')")


# --- roles ----------------------------------------------------------------------------------


def test_reader_cannot_touch_a_table_but_reads_erp_batch_status(db):
    post(db, "e-1", BALANCED_USD)
    db.execute("SET ROLE revledger_reader")
    for table in sorted(TABLES):
        with pytest.raises(errors.InsufficientPrivilege):
            db.execute(
                sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier("revledger", table))
            )
    writes = [
        "INSERT INTO revledger.periods VALUES ('US1', '2026-02', 'open', NULL)",
        "UPDATE revledger.journal_lines SET amount_minor = 1",
        "DELETE FROM revledger.journal_entries",
    ]
    for statement in writes:
        with pytest.raises(errors.InsufficientPrivilege):
            db.execute(statement)
    assert db.execute("SELECT count(*) FROM revledger.erp_batch_status").fetchone() == (0,)
    db.execute("RESET ROLE")
    assert count(db, "SELECT count(*) FROM revledger.journal_lines WHERE amount_minor = 1") == 0


def test_every_view_is_granted_to_the_reader_and_no_table_is(db):
    # Pins the rule of 0005_roles.sql for every later migration: a view without the grant,
    # or a default privilege that hands the reader tables, fails here.
    relations = db.execute(
        """
        SELECT c.relname, c.relkind,
               has_table_privilege('revledger_reader', c.oid, 'SELECT'),
               has_table_privilege('revledger_reader', c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'revledger' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        """
    ).fetchall()
    views = {name: (select, write) for name, kind, select, write in relations if kind in "vm"}
    tables = {name: (select, write) for name, kind, select, write in relations if kind not in "vm"}
    assert views and all(select and not write for select, write in views.values()), views
    assert tables and not any(select or write for select, write in tables.values()), tables


def test_writer_writes_rows_but_cannot_change_the_schema(db):
    db.execute("SET ROLE revledger_writer")
    post(db, "e-writer", BALANCED_USD)
    db.execute(
        "UPDATE revledger.journal_entries SET description = 'fixed' WHERE entry_id = 'e-writer'"
    )
    db.execute(
        "INSERT INTO revledger.projection_offsets VALUES ('projection', 'ledger.entries.v1', 0, 1)"
    )
    db.execute("DELETE FROM revledger.projection_offsets")
    assert count(db, "SELECT count(*) FROM revledger.schema_migrations") == len(
        shipped_migrations()
    )
    refused = [
        "CREATE TABLE revledger.scratch (id INTEGER)",
        "CREATE VIEW revledger.scratch AS SELECT 1 AS one",
        "ALTER TABLE revledger.journal_lines DROP CONSTRAINT journal_lines_side",
        "DROP TABLE revledger.dlq_records",
        "TRUNCATE revledger.journal_batch_entries",
        "DROP TRIGGER journal_lines_balanced ON revledger.journal_lines",
        # Emptying the queue of entries to check would skip their balance check (0010).
        "DELETE FROM revledger.journal_entries_to_check",
        # ... or the transactions queued for it (0012).
        "DELETE FROM revledger.journal_entry_checks_due",
        "DELETE FROM revledger.schema_migrations",
        "INSERT INTO revledger.schema_migrations (version, name, sha256) VALUES (99, 'x', %s)",
    ]
    for statement in refused:
        with pytest.raises(errors.InsufficientPrivilege):
            db.execute(statement, ["0" * 64] if "%s" in statement else None)
    db.execute("RESET ROLE")
    assert count(db, "SELECT count(*) FROM revledger.journal_entries") == 1


# --- command line ---------------------------------------------------------------------------


def revledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_db_migrate_applies_then_reports_up_to_date_when_run_as_a_subprocess(fresh_database):
    labels = [m.label for m in shipped_migrations()]

    first = revledger("db", "migrate", "--database-url", fresh_database)
    assert first.returncode == 0, first.stderr
    assert [line.split()[1] for line in first.stdout.splitlines()[:-1]] == labels
    assert f"{len(labels)} migration(s) applied" in first.stdout

    again = revledger("db", "migrate", "--database-url", fresh_database)
    assert again.returncode == 0, again.stderr
    assert "0 migration(s) applied" in again.stdout

    listed = revledger("db", "status", "--database-url", fresh_database)
    assert listed.returncode == 0, listed.stderr
    assert f"{len(labels)} applied, 0 pending" in listed.stdout


def test_cli_db_exits_1_with_one_line_when_the_database_is_unreachable():
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/revledger"
    for action in ("migrate", "status"):
        done = revledger("db", action, "--database-url", url)
        assert done.returncode == 1
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"revledger db {action}: cannot connect to postgres@127.0.0.1")
        assert "hunter2" not in done.stderr
