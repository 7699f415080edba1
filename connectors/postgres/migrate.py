"""Schema migrations: apply ``migrations/NNNN_name.sql`` in order, each once, each atomically.

A migration is a file of the package's ``migrations/`` folder named ``NNNN_name.sql``:
``NNNN`` its version (0001, 0002 ... without gaps or repeats), ``name`` lower-case words
joined by ``_``. The files ship in the wheel (``pyproject.toml`` package-data) and are
read with :mod:`importlib.resources`, so an installed ``revledger`` migrates without the
source tree.

:func:`migrate` applies the files not yet applied, in version order, each in its own
transaction together with its row in ``revledger.schema_migrations`` (version, name,
SHA-256 of the file's bytes, applied_at): a failing migration leaves nothing of itself
behind. It refuses, before applying anything, when the files and the database's history
disagree:

* an applied migration's file changed (another SHA-256) or was renamed;
* the database has a version that no file has (it was migrated by a newer release);
* a file is pending below the highest applied version (added out of order).

Two migrators of one database do not race: each holds a session advisory lock (advisory
locks are per database) from before it reads the history until it is done, so the second
finds nothing left to do. A migration must not contain ``BEGIN``/``COMMIT`` or statements
that cannot run in a transaction (``CREATE INDEX CONCURRENTLY``).

The pure part (:func:`parse_migrations`, :func:`pending_migrations`, :func:`statuses`)
needs no database and is what the unit tests exercise.

Must not import: faust, aiokafka, confluent_kafka, anything under ``streams``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.resources
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

SCHEMA = "revledger"
MIGRATIONS_PACKAGE = "connectors.postgres"
MIGRATIONS_FOLDER = "migrations"
_FILE_NAME = re.compile(r"^(?P<version>[0-9]{4})_(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")

# Key of the advisory lock that serialises migrators of one database: any fixed 64-bit
# number that nothing else uses; this is the bytes b"revledgr" read as a big-endian int.
ADVISORY_LOCK_KEY = int.from_bytes(b"revledgr", "big")
# How long a second migrator waits for the first one's lock before giving up.
LOCK_TIMEOUT_SECONDS = 60
# An unreachable server must fail the command within seconds, not hang it.
CONNECT_TIMEOUT_SECONDS = 10

_BOOTSTRAP = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations (
    version    INTEGER PRIMARY KEY CONSTRAINT schema_migrations_version_positive
                   CHECK (version >= 1),
    name       TEXT NOT NULL,
    sha256     CHAR(64) NOT NULL CONSTRAINT schema_migrations_sha256_hex
                   CHECK (sha256 ~ '^[0-9a-f]{{64}}$'),
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
"""

State = Literal["applied", "pending", "changed", "unknown"]
STATES: tuple[State, ...] = ("applied", "pending", "changed", "unknown")


class MigrationError(RuntimeError):
    """Raised when migrations cannot be applied safely.

    Raised by :func:`parse_migrations` for a badly named, undecodable, repeated or missing
    version; by :func:`pending_migrations` when the history disagrees with the files
    (changed, renamed, unknown or out-of-order versions); by :func:`migrate` when a
    migration's SQL fails (its transaction is rolled back) or another migrator holds the
    lock too long; by :func:`migrate` and :func:`status` when the database is unreachable
    (:class:`DatabaseUnreachable`).
    """


class DatabaseUnreachable(MigrationError):
    """Raised when no connection to the database can be made (down, wrong URL, refused)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version, name, SQL text and the SHA-256 of its bytes."""

    version: int
    name: str
    sql: str
    sha256: str

    @property
    def label(self) -> str:
        """``0001_subledger``: the file name without ``.sql``."""
        return f"{self.version:04d}_{self.name}"

    @property
    def file_name(self) -> str:
        """``0001_subledger.sql``."""
        return f"{self.label}.sql"


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of ``revledger.schema_migrations``."""

    version: int
    name: str
    sha256: str
    applied_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """Where one version stands.

    ``state``: ``applied``; ``pending`` (a file not applied yet); ``changed`` (applied, but
    the file's SHA-256 or name now differs); ``unknown`` (applied, but no file has it).
    """

    version: int
    name: str
    state: State
    applied_at: dt.datetime | None = None

    @property
    def label(self) -> str:
        """``0001_subledger``."""
        return f"{self.version:04d}_{self.name}"


def sha256_of(content: bytes) -> str:
    """SHA-256 hex of a migration file's bytes: what "the file changed" means."""
    return hashlib.sha256(content).hexdigest()


def parse_migrations(files: Iterable[tuple[str, bytes]]) -> list[Migration]:
    """Turn ``(file name, bytes)`` pairs into migrations in version order.

    Args:
        files: the ``.sql`` files of the migrations folder, in any order.

    Returns:
        The migrations sorted by version: 1, 2, ... n.

    Raises:
        MigrationError: a name is not ``NNNN_name.sql``, a file is not UTF-8, a version
            appears twice, or a version between 1 and the highest is missing.
    """
    by_version: dict[int, Migration] = {}
    for file_name, content in files:
        match = _FILE_NAME.match(file_name)
        if match is None:
            raise MigrationError(
                f"migration file {file_name!r} is not named NNNN_name.sql"
                " (four digits, lower-case words joined by '_')"
            )
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MigrationError(f"migration file {file_name} is not UTF-8: {exc}") from exc
        migration = Migration(int(match["version"]), match["name"], text, sha256_of(content))
        if migration.version in by_version:
            other = by_version[migration.version].file_name
            raise MigrationError(
                f"version {migration.version:04d} appears twice: {other} and {file_name}"
            )
        by_version[migration.version] = migration
    highest = max(by_version, default=0)
    missing = [version for version in range(1, highest + 1) if version not in by_version]
    if missing:
        names = ", ".join(f"{version:04d}" for version in missing)
        raise MigrationError(f"migration version(s) {names} missing: versions run 0001 upward")
    return [by_version[version] for version in sorted(by_version)]


def shipped_migrations() -> list[Migration]:
    """The migrations of this package, read through :mod:`importlib.resources`.

    Raises:
        MigrationError: as :func:`parse_migrations`, or the folder holds no migration.
    """
    folder = importlib.resources.files(MIGRATIONS_PACKAGE).joinpath(MIGRATIONS_FOLDER)
    files = [
        (entry.name, entry.read_bytes())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql") and entry.is_file()
    ]
    migrations = parse_migrations(files)
    if not migrations:
        raise MigrationError(f"no migration found in {MIGRATIONS_PACKAGE}/{MIGRATIONS_FOLDER}")
    return migrations


def statuses(
    migrations: Sequence[Migration], applied: Mapping[int, AppliedMigration]
) -> list[MigrationStatus]:
    """Where each version stands, files and history together, by version.

    Args:
        migrations: the files, from :func:`parse_migrations`.
        applied: the history, by version.
    """
    rows: dict[int, MigrationStatus] = {}
    for migration in migrations:
        done = applied.get(migration.version)
        if done is None:
            rows[migration.version] = MigrationStatus(migration.version, migration.name, "pending")
            continue
        same = (done.sha256, done.name) == (migration.sha256, migration.name)
        rows[migration.version] = MigrationStatus(
            migration.version, migration.name, "applied" if same else "changed", done.applied_at
        )
    for version, done in applied.items():
        if version not in rows:
            rows[version] = MigrationStatus(version, done.name, "unknown", done.applied_at)
    return [rows[version] for version in sorted(rows)]


def pending_migrations(
    migrations: Sequence[Migration], applied: Mapping[int, AppliedMigration]
) -> list[Migration]:
    """The migrations still to apply, in order, if the history agrees with the files.

    Raises:
        MigrationError: naming every applied version whose file changed or was renamed,
            that no file has, or a pending version below the highest applied one.
    """
    rows = statuses(migrations, applied)
    problems = []
    for row in rows:
        if row.state == "changed":
            done = applied[row.version]
            problems.append(
                f"{row.label}.sql changed after it was applied (applied as {done.name},"
                f" sha256 {done.sha256[:12]}…; never edit an applied migration, add one)"
            )
        elif row.state == "unknown":
            problems.append(
                f"the database has migration {row.label}, which no file here has"
                " (migrated by a newer release?)"
            )
    highest = max((row.version for row in rows if row.state != "pending"), default=0)
    late = [row.label for row in rows if row.state == "pending" and row.version < highest]
    if late:
        problems.append(
            f"{', '.join(late)} pending below applied version {highest:04d} (added out of order)"
        )
    if problems:
        raise MigrationError("refusing to migrate: " + "; ".join(problems))
    return [m for m in migrations if m.version not in applied]


# --- database ---------------------------------------------------------------------------


def describe_conninfo(conninfo: str) -> str:
    """``user@host:port/dbname`` of a URL or ``key=value`` string, without its password."""
    try:
        parts = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<malformed database URL>"
    user = parts.get("user") or "?"
    host = parts.get("host") or parts.get("hostaddr") or "localhost"
    port = parts.get("port") or "5432"
    return f"{user}@{host}:{port}/{parts.get('dbname') or '?'}"


def _one_line(exc: BaseException) -> str:
    """The error's text on one line (libpq's messages span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


@contextlib.contextmanager
def _connect(conninfo: str) -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(
            conninfo,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            application_name="revledger-migrate",
        )
    except (psycopg.OperationalError, psycopg.ProgrammingError) as exc:
        where = describe_conninfo(conninfo)
        raise DatabaseUnreachable(f"cannot connect to {where}: {_one_line(exc)}") from exc
    with conn:
        yield conn


@contextlib.contextmanager
def _advisory_lock(conn: psycopg.Connection) -> Iterator[None]:
    """Hold this database's migration lock; give up after LOCK_TIMEOUT_SECONDS."""
    conn.execute("SELECT set_config('lock_timeout', %s, false)", [f"{LOCK_TIMEOUT_SECONDS}s"])
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
    except psycopg.errors.LockNotAvailable as exc:
        raise MigrationError(
            f"another migrator has held the migration lock for over {LOCK_TIMEOUT_SECONDS} s"
        ) from exc
    finally:
        conn.execute("RESET lock_timeout")
    try:
        yield
    finally:
        if not (conn.closed or conn.broken):
            conn.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])


@contextlib.contextmanager
def _translated(conninfo: str) -> Iterator[None]:
    """Turn a psycopg error outside a migration's own SQL into a MigrationError."""
    try:
        yield
    except psycopg.Error as exc:
        where = describe_conninfo(conninfo)
        raise MigrationError(f"{where}: {_one_line(exc)}") from exc


def _applied(conn: psycopg.Connection) -> dict[int, AppliedMigration]:
    """The history, or nothing when ``schema_migrations`` does not exist yet."""
    table = f"{SCHEMA}.schema_migrations"
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [table]).fetchone()
    if not (exists and exists[0]):
        return {}
    rows = conn.execute(
        sql.SQL("SELECT version, name, sha256, applied_at FROM {} ORDER BY version").format(
            sql.Identifier(SCHEMA, "schema_migrations")
        )
    ).fetchall()
    return {row[0]: AppliedMigration(row[0], row[1], row[2].strip(), row[3]) for row in rows}


def _apply(conn: psycopg.Connection, migration: Migration) -> None:
    """Run one migration and record it, in one transaction."""
    record = sql.SQL("INSERT INTO {} (version, name, sha256) VALUES (%s, %s, %s)").format(
        sql.Identifier(SCHEMA, "schema_migrations")
    )
    try:
        with conn.transaction():
            # No parameters: psycopg sends the file as is, several statements at once.
            conn.execute(migration.sql.encode())
            conn.execute(record, [migration.version, migration.name, migration.sha256])
    except psycopg.Error as exc:
        raise MigrationError(
            f"migration {migration.file_name} failed and was rolled back: {_one_line(exc)}"
        ) from exc


def migrate(conninfo: str, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply the migrations the database lacks, in order; return their labels.

    Args:
        conninfo: a PostgreSQL URL or ``key=value`` string of a role that may create
            schemas, tables and roles.
        migrations: default :func:`shipped_migrations` (tests pass others).

    Returns:
        ``["0001_subledger", ...]`` applied now; ``[]`` when the database is up to date.

    Raises:
        MigrationError: see the class; nothing is applied when the history disagrees
            with the files, and a failing migration is rolled back whole.
    """
    wanted = list(shipped_migrations() if migrations is None else migrations)
    with _connect(conninfo) as conn, _translated(conninfo), _advisory_lock(conn):
        with conn.transaction():
            conn.execute(_BOOTSTRAP.encode())
        todo = pending_migrations(wanted, _applied(conn))
        for migration in todo:
            _apply(conn, migration)
    return [migration.label for migration in todo]


def status(conninfo: str, migrations: Sequence[Migration] | None = None) -> list[MigrationStatus]:
    """Each version's state (applied, pending, changed, unknown) without changing anything.

    Raises:
        DatabaseUnreachable: no connection could be made.
    """
    wanted = list(shipped_migrations() if migrations is None else migrations)
    with _connect(conninfo) as conn, _translated(conninfo):
        return statuses(wanted, _applied(conn))


# --- command ------------------------------------------------------------------------------


def main_db(
    action: Literal["migrate", "status"],
    conninfo: str,
    out: Callable[[str], None] = print,
) -> int:
    """``revledger db migrate|status``: print the outcome; 0 on success, 1 otherwise.

    ``status`` exits 1 when a version is changed or unknown (``migrate`` would refuse),
    0 with pending versions. Errors are one line on stderr.
    """
    where = describe_conninfo(conninfo)
    try:
        if action == "migrate":
            applied = migrate(conninfo)
            for label in applied:
                out(f"applied {label}")
            out(f"{where}: {len(applied)} migration(s) applied, schema {SCHEMA} up to date")
            return 0
        rows = status(conninfo)
    except MigrationError as exc:
        print(f"revledger db {action}: {exc}", file=sys.stderr)
        return 1
    for row in rows:
        when = f"  {row.applied_at.isoformat(timespec='seconds')}" if row.applied_at else ""
        out(f"{row.label:<32} {row.state}{when}")
    counts = {state: sum(row.state == state for row in rows) for state in STATES}
    out(f"{where}: " + ", ".join(f"{count} {state}" for state, count in counts.items()))
    return 1 if counts["changed"] or counts["unknown"] else 0
