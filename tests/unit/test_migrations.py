"""Migration files: discovery, ordering, checksums and the history check, without a database."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.resources
import tomllib
from pathlib import Path

import pytest

from connectors.postgres.migrate import (
    AppliedMigration,
    Migration,
    MigrationError,
    parse_migrations,
    pending_migrations,
    sha256_of,
    shipped_migrations,
    statuses,
)

ROOT = Path(__file__).resolve().parents[2]
WHEN = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def files(*names: str) -> list[tuple[str, bytes]]:
    return [(name, f"-- {name}\nSELECT 1;\n".encode()) for name in names]


def applied_as(migration: Migration, **changes: str) -> AppliedMigration:
    values = {"name": migration.name, "sha256": migration.sha256, **changes}
    return AppliedMigration(migration.version, values["name"], values["sha256"], WHEN)


# --- discovery and ordering ------------------------------------------------------------------


def test_parse_orders_by_version_when_files_come_in_any_order():
    found = parse_migrations(files("0003_c.sql", "0001_a.sql", "0002_b_two.sql"))
    assert [m.label for m in found] == ["0001_a", "0002_b_two", "0003_c"]
    assert [m.version for m in found] == [1, 2, 3]
    assert found[1].file_name == "0002_b_two.sql"
    assert found[1].sql == "-- 0002_b_two.sql\nSELECT 1;\n"


def test_parse_returns_nothing_when_there_are_no_files():
    assert parse_migrations([]) == []


def test_sha256_is_of_the_file_bytes_when_parsed():
    content = "CREATE TABLE x (id int);\r\n-- é\n".encode()
    (migration,) = parse_migrations([("0001_x.sql", content)])
    assert migration.sha256 == hashlib.sha256(content).hexdigest() == sha256_of(content)


def test_sha256_differs_when_only_whitespace_changed():
    (before,) = parse_migrations([("0001_x.sql", b"SELECT 1;\n")])
    (after,) = parse_migrations([("0001_x.sql", b"SELECT 1; \n")])
    assert before.sha256 != after.sha256


@pytest.mark.parametrize(
    "name",
    [
        "1_a.sql",
        "0001-a.sql",
        "0001_A.sql",
        "0001_.sql",
        "0001_a.SQL",
        "00001_a.sql",
        "0001_a_.sql",
    ],
)
def test_parse_refuses_when_a_file_name_is_not_nnnn_name(name):
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        parse_migrations(files(name))


def test_parse_refuses_when_a_version_appears_twice():
    with pytest.raises(MigrationError, match=r"0002 appears twice: 0002_b.sql and 0002_c.sql"):
        parse_migrations(files("0001_a.sql", "0002_b.sql", "0002_c.sql"))


def test_parse_refuses_when_a_version_is_missing():
    with pytest.raises(MigrationError, match=r"0002, 0004 missing"):
        parse_migrations(files("0001_a.sql", "0003_c.sql", "0005_e.sql"))


def test_parse_refuses_when_versions_do_not_start_at_0001():
    with pytest.raises(MigrationError, match=r"0001 missing"):
        parse_migrations(files("0002_b.sql"))


def test_parse_refuses_when_a_file_is_not_utf8():
    with pytest.raises(MigrationError, match="not UTF-8"):
        parse_migrations([("0001_a.sql", b"SELECT '\xff';")])


# --- history against files -----------------------------------------------------------------


def test_everything_is_pending_when_nothing_was_applied():
    migrations = parse_migrations(files("0001_a.sql", "0002_b.sql"))
    assert pending_migrations(migrations, {}) == migrations
    assert [s.state for s in statuses(migrations, {})] == ["pending", "pending"]


def test_only_new_files_are_pending_when_the_history_agrees():
    migrations = parse_migrations(files("0001_a.sql", "0002_b.sql", "0003_c.sql"))
    applied = {m.version: applied_as(m) for m in migrations[:2]}
    assert [m.label for m in pending_migrations(migrations, applied)] == ["0003_c"]
    rows = statuses(migrations, applied)
    assert [(r.label, r.state) for r in rows] == [
        ("0001_a", "applied"),
        ("0002_b", "applied"),
        ("0003_c", "pending"),
    ]
    assert rows[0].applied_at == WHEN


def test_nothing_is_pending_when_every_file_was_applied():
    migrations = parse_migrations(files("0001_a.sql", "0002_b.sql"))
    applied = {m.version: applied_as(m) for m in migrations}
    assert pending_migrations(migrations, applied) == []


def test_refuses_when_an_applied_file_changed():
    migrations = parse_migrations(files("0001_a.sql", "0002_b.sql"))
    applied = {1: applied_as(migrations[0]), 2: applied_as(migrations[1], sha256="0" * 64)}
    assert [s.state for s in statuses(migrations, applied)] == ["applied", "changed"]
    with pytest.raises(MigrationError, match=r"0002_b.sql changed after it was applied"):
        pending_migrations(migrations, applied)


def test_refuses_when_an_applied_file_was_renamed():
    migrations = parse_migrations(files("0001_a.sql"))
    applied = {1: applied_as(migrations[0], name="old_name")}
    with pytest.raises(MigrationError, match=r"applied as old_name"):
        pending_migrations(migrations, applied)


def test_refuses_when_the_database_has_a_version_no_file_has():
    migrations = parse_migrations(files("0001_a.sql"))
    applied = {
        1: applied_as(migrations[0]),
        2: AppliedMigration(2, "from_the_future", "f" * 64, WHEN),
    }
    rows = statuses(migrations, applied)
    assert [(r.label, r.state) for r in rows] == [
        ("0001_a", "applied"),
        ("0002_from_the_future", "unknown"),
    ]
    with pytest.raises(MigrationError, match=r"0002_from_the_future, which no file here has"):
        pending_migrations(migrations, applied)


def test_refuses_when_a_file_is_pending_below_an_applied_version():
    migrations = parse_migrations(files("0001_a.sql", "0002_b.sql", "0003_c.sql"))
    applied = {1: applied_as(migrations[0]), 3: applied_as(migrations[2])}
    with pytest.raises(MigrationError, match=r"0002_b pending below applied version 0003"):
        pending_migrations(migrations, applied)


# --- what ships --------------------------------------------------------------------------


def test_shipped_migrations_are_found_through_importlib_resources():
    migrations = shipped_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].label == "0001_subledger"
    folder = importlib.resources.files("connectors.postgres").joinpath("migrations")
    for migration in migrations:
        content = folder.joinpath(migration.file_name).read_bytes()
        assert migration.sha256 == hashlib.sha256(content).hexdigest()


def test_shipped_migrations_do_not_manage_their_own_transactions():
    for migration in shipped_migrations():
        statements = [line.strip().upper() for line in migration.sql.splitlines()]
        for word in ("BEGIN;", "COMMIT;", "ROLLBACK;"):
            assert word not in statements, f"{migration.file_name} has {word}"
        assert "CONCURRENTLY" not in migration.sql.upper(), migration.file_name


def test_wheel_ships_the_migrations_when_built_from_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {"connectors.postgres", "connectors.postgres.migrations"} <= set(config["packages"])
    globs = config["package-data"]["connectors.postgres.migrations"]
    folder = ROOT / "connectors" / "postgres" / "migrations"
    shipped = {path for pattern in globs for path in folder.glob(pattern)}
    on_disk = set(folder.glob("*.sql"))
    assert on_disk and shipped == on_disk
