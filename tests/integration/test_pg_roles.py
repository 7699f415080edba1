"""PostgreSQL roles: the writer (the projection) changes rows, never the schema.

``0005_roles.sql`` gives ``revledger_writer`` row rights on the tables and nothing else.
``test_pg_schema.py`` checks the reader cannot write and a few writer refusals through
``SET ROLE``; here the writer is a real login role (a member of ``revledger_writer``, as a
deployment creates it) and every way to drop, alter or bypass a table, view, trigger,
function or the schema is tried and must be refused, with the database checked unchanged
afterwards. The reader login is tried on the views too (the only objects it can see).

One database for this file (``CREATE DATABASE t_roles_<uuid>``), dropped at the end; the
login roles are cluster-wide and dropped too.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from connectors.postgres.migrate import migrate

pytestmark = pytest.mark.integration


def admin_connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="module")
def database(devstack: Any) -> Iterator[dict[str, str]]:
    """A migrated database of this file's own and login roles for the writer and reader.

    Yields conninfo strings: ``admin`` (the migrating superuser), ``writer``, ``reader``.
    """
    suffix = uuid.uuid4().hex[:12]
    name, writer, reader = f"t_roles_{suffix}", f"t_writer_{suffix}", f"t_reader_{suffix}"
    with admin_connect(devstack.database_url) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin_url = make_conninfo(devstack.database_url, dbname=name)
    try:
        migrate(admin_url)
        with admin_connect(admin_url) as admin:
            for login, group in ((writer, "revledger_writer"), (reader, "revledger_reader")):
                admin.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                        sql.Identifier(login), sql.Literal(uuid.uuid4().hex), sql.Identifier(group)
                    )
                )
        yield {
            "admin": admin_url,
            "writer": make_conninfo(admin_url, user=writer),
            "reader": make_conninfo(admin_url, user=reader),
        }
    finally:
        with admin_connect(devstack.database_url) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            for login in (writer, reader):
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


@pytest.fixture(scope="module")
def writer(database: dict[str, str]) -> Iterator[psycopg.Connection]:
    with admin_connect(database["writer"]) as conn:
        yield conn


@pytest.fixture(scope="module")
def reader(database: dict[str, str]) -> Iterator[psycopg.Connection]:
    with admin_connect(database["reader"]) as conn:
        yield conn


def schema_fingerprint(url: str) -> list[tuple[Any, ...]]:
    """Everything a DDL statement could change: relations, columns, triggers, views, grants."""
    with admin_connect(url) as conn:
        return conn.execute(
            """
            SELECT c.relname, c.relkind, c.relowner::regrole::text,
                   (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod),
                                      ',' ORDER BY a.attnum)
                      FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0
                                            AND NOT a.attisdropped),
                   (SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ',' ORDER BY t.tgname)
                      FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal),
                   (SELECT string_agg(con.conname, ',' ORDER BY con.conname)
                      FROM pg_constraint con WHERE con.conrelid = c.oid),
                   CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END,
                   c.reloptions::text, c.relacl::text,
                   obj_description(c.oid, 'pg_class')
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'revledger'
             ORDER BY c.relname
            """
        ).fetchall()


def test_writer_login_writes_rows_when_it_is_a_member_of_revledger_writer(writer):
    # The refusals below mean something only if this login is the writer at all.
    assert writer.execute("SELECT count(*) FROM revledger.journal_entries").fetchone() == (0,)
    writer.execute(
        "INSERT INTO revledger.projection_offsets VALUES ('roles-test', 'ledger.entries.v1', 0, 1)"
    )
    writer.execute("DELETE FROM revledger.projection_offsets WHERE consumer = 'roles-test'")


# Each statement would drop, alter or bypass a piece of the schema the writer must not touch.
WRITER_REFUSED = {
    # tables
    "drop a table": "DROP TABLE revledger.journal_lines",
    "drop a table cascading": "DROP TABLE revledger.journal_entries CASCADE",
    "add a column": "ALTER TABLE revledger.journal_lines ADD COLUMN note TEXT",
    "drop a column": "ALTER TABLE revledger.journal_lines DROP COLUMN dimensions",
    "change a column type": "ALTER TABLE revledger.journal_lines ALTER amount_minor TYPE NUMERIC",
    "rename a table": "ALTER TABLE revledger.journal_entries RENAME TO old_entries",
    "drop a check": "ALTER TABLE revledger.journal_lines DROP CONSTRAINT journal_lines_side",
    "take over a table": "ALTER TABLE revledger.journal_entries OWNER TO CURRENT_USER",
    "truncate": "TRUNCATE revledger.journal_entries CASCADE",
    "add an index": "CREATE INDEX ON revledger.journal_lines (account)",
    "drop an index": "DROP INDEX revledger.source_events_customer_idx",
    "comment on a table": "COMMENT ON TABLE revledger.journal_entries IS 'mine'",
    # the zero-sum triggers and their functions
    "disable a trigger": (
        "ALTER TABLE revledger.journal_lines DISABLE TRIGGER journal_lines_balanced"
    ),
    "disable all triggers": "ALTER TABLE revledger.journal_entries DISABLE TRIGGER ALL",
    "drop a trigger": "DROP TRIGGER journal_lines_balanced ON revledger.journal_lines",
    "drop a trigger function": "DROP FUNCTION revledger.journal_entry_balanced() CASCADE",
    "replace a trigger function": (
        "CREATE OR REPLACE FUNCTION revledger.journal_entry_balanced() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
    ),
    "skip triggers by replication role": "SET session_replication_role = replica",
    # views
    "drop a view": "DROP VIEW revledger.trial_balance_lines",
    "replace a view": (
        "CREATE OR REPLACE VIEW revledger.trial_balance_lines AS"
        " SELECT * FROM revledger.trial_balance_lines WHERE false"
    ),
    "rename a view": "ALTER VIEW revledger.trial_balance_lines RENAME TO tb",
    "make a view run as its reader": (
        "ALTER VIEW revledger.trial_balance_lines SET (security_invoker = true)"
    ),
    "take over a view": "ALTER VIEW revledger.trial_balance_lines OWNER TO CURRENT_USER",
    "create a view": "CREATE VIEW revledger.all_lines AS SELECT * FROM revledger.journal_lines",
    # the schema, and objects elsewhere
    "drop the schema": "DROP SCHEMA revledger CASCADE",
    "rename the schema": "ALTER SCHEMA revledger RENAME TO ledger_old",
    "create a table": "CREATE TABLE revledger.scratch (id INTEGER)",
    "create a function": ("CREATE FUNCTION revledger.f() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    "create in public": "CREATE TABLE public.scratch (id INTEGER)",
    "change the migrations": "DELETE FROM revledger.schema_migrations",
    # roles
    "become the superuser": "SET ROLE postgres",
    "grant itself more": "ALTER ROLE revledger_writer CREATEROLE",
}


@pytest.mark.parametrize("what", list(WRITER_REFUSED))
def test_writer_is_refused_when_it_tries_to(what, writer):
    with pytest.raises(errors.InsufficientPrivilege):
        writer.execute(WRITER_REFUSED[what])


def test_writer_cannot_hand_the_reader_a_table_when_it_grants(database, writer):
    # Without GRANT OPTION, GRANT only warns ("no privileges were granted"): check the effect.
    writer.execute("GRANT SELECT ON revledger.journal_lines TO revledger_reader")
    with admin_connect(database["admin"]) as admin:
        granted = admin.execute(
            "SELECT has_table_privilege('revledger_reader', 'revledger.journal_lines', 'SELECT')"
        ).fetchone()
    assert granted == (False,)


READER_REFUSED = {
    "drop a view": "DROP VIEW revledger.trial_balance_lines",
    "replace a view": (
        "CREATE OR REPLACE VIEW revledger.trial_balance_lines AS"
        " SELECT * FROM revledger.trial_balance_lines WHERE false"
    ),
    "alter a view": "ALTER VIEW revledger.trial_balance_lines SET (security_invoker = true)",
    "drop the schema": "DROP SCHEMA revledger CASCADE",
}


@pytest.mark.parametrize("what", list(READER_REFUSED))
def test_reader_is_refused_when_it_tries_to(what, reader):
    with pytest.raises(errors.InsufficientPrivilege):
        reader.execute(READER_REFUSED[what])


def test_schema_is_unchanged_when_every_refused_statement_was_tried(database, writer, reader):
    before = schema_fingerprint(database["admin"])
    for statement in (*WRITER_REFUSED.values(), *READER_REFUSED.values()):
        for conn in (writer, reader):
            with contextlib.suppress(psycopg.Error):
                conn.execute(statement)
    assert schema_fingerprint(database["admin"]) == before
    assert writer.execute("SHOW session_replication_role").fetchone() == ("origin",)
