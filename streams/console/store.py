"""The console's own tables (migration ``0009_console.sql``): users, sessions, audit.

Every function takes an open psycopg connection of the console's role
(``revledger_console``: it may write these three tables and nothing else) and binds every
value. The rules (hashing, tokens) live in :mod:`streams.console.auth`.

Must not import: aiohttp, faust, confluent_kafka.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from streams.console.auth import (
    AuthError,
    Role,
    burn_verification,
    check_role,
    check_username,
    hash_password,
    token_digest,
    verify_password,
)

# A working day: long enough not to annoy, short enough that a forgotten browser does not
# stay logged in for a week.
SESSION_LIFETIME = dt.timedelta(hours=8)


@dataclass(frozen=True, slots=True)
class User:
    """A console user as a session sees it."""

    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One row of the audit table."""

    audit_id: int
    at: dt.datetime
    username: str
    role: str
    action: str
    target: dict[str, Any]
    outcome: str
    detail: str
    remote_addr: str | None


def add_user(conn: psycopg.Connection, username: str, role: str, password: str) -> bool:
    """Create ``username`` with ``role``, or set its role and password if it exists.

    Returns:
        True when the user was created, False when an existing one was updated (its
        sessions are then ended: a new password must log everyone out).

    Raises:
        AuthError: a bad username, role or password.
    """
    check_username(username)
    checked = check_role(role)
    stored = hash_password(password)
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO revledger.console_users (username, role, password_hash)"
            " VALUES (%(u)s, %(r)s, %(h)s)"
            " ON CONFLICT (username) DO UPDATE SET role = excluded.role,"
            "   password_hash = excluded.password_hash, updated_at = now(), disabled = false"
            " RETURNING (xmax = 0)",
            {"u": username, "r": checked.value, "h": stored},
        ).fetchone()
        created = bool(row and row[0])
        if not created:
            conn.execute("DELETE FROM revledger.console_sessions WHERE username = %s", [username])
    return created


def authenticate(conn: psycopg.Connection, username: str, password: str) -> User | None:
    """The user if ``password`` is its password and it is not disabled, else None.

    An unknown username costs one verification too, so timing does not reveal it.
    """
    try:
        check_username(username)
    except AuthError:
        burn_verification(password)
        return None
    row = conn.execute(
        "SELECT role, password_hash FROM revledger.console_users"
        " WHERE username = %s AND NOT disabled",
        [username],
    ).fetchone()
    if row is None:
        burn_verification(password)
        return None
    role, stored = row
    if not verify_password(password, stored):
        return None
    return User(username, Role(role))


def open_session(
    conn: psycopg.Connection, user: User, token: str, now: dt.datetime | None = None
) -> dt.datetime:
    """Store the digest of ``token`` as a session of ``user``; returns its expiry.

    Expired sessions (of anyone) are deleted on the way: the table stays small.
    """
    now = now or dt.datetime.now(dt.UTC)
    expires = now + SESSION_LIFETIME
    with conn.transaction():
        conn.execute("DELETE FROM revledger.console_sessions WHERE expires_at <= %s", [now])
        conn.execute(
            "INSERT INTO revledger.console_sessions (token_sha256, username, created_at,"
            " expires_at) VALUES (%s, %s, %s, %s)",
            [token_digest(token), user.username, now, expires],
        )
    return expires


def session_user(
    conn: psycopg.Connection, token: str, now: dt.datetime | None = None
) -> User | None:
    """The user of the live session whose cookie holds ``token``, else None."""
    row = conn.execute(
        "SELECT u.username, u.role FROM revledger.console_sessions AS s"
        " JOIN revledger.console_users AS u ON u.username = s.username"
        " WHERE s.token_sha256 = %s AND s.expires_at > %s AND NOT u.disabled",
        [token_digest(token), now or dt.datetime.now(dt.UTC)],
    ).fetchone()
    return None if row is None else User(row[0], Role(row[1]))


def close_session(conn: psycopg.Connection, token: str) -> None:
    """End the session whose cookie holds ``token`` (nothing if there is none)."""
    conn.execute(
        "DELETE FROM revledger.console_sessions WHERE token_sha256 = %s", [token_digest(token)]
    )


def audit(
    conn: psycopg.Connection,
    user: User,
    action: str,
    target: dict[str, Any],
    outcome: str,
    detail: str = "",
    remote_addr: str | None = None,
) -> int:
    """Append one audit row (who, what, on what, outcome); returns its id."""
    row = conn.execute(
        "INSERT INTO revledger.console_audit (username, role, action, target, outcome,"
        " detail, remote_addr) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING audit_id",
        [user.username, user.role.value, action, Jsonb(target), outcome, detail, remote_addr],
    ).fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("audit insert returned nothing")
    return int(row[0])


def recent_audit(conn: psycopg.Connection, limit: int = 100) -> list[AuditRow]:
    """The latest ``limit`` audit rows, newest first."""
    rows = conn.execute(
        "SELECT audit_id, at, username, role, action, target, outcome, detail, remote_addr"
        " FROM revledger.console_audit ORDER BY audit_id DESC LIMIT %s",
        [limit],
    ).fetchall()
    return [AuditRow(*row) for row in rows]
