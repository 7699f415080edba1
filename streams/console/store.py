"""The console's own tables (migration ``0009_console.sql``): users, sessions, audit.

Every function takes an open psycopg connection of the console's role
(``revledger_console``: it may write these three tables and nothing else) and binds every
value. The rules (hashing, tokens, the login throttle) live in :mod:`streams.console.auth`.

Login attempts are audit rows (action ``login``: ``done``, ``failed`` or ``refused``), and
the throttle counts them (:func:`login`): the state is in the database, shared by every
console process, and the console's role cannot erase it (the audit is append-only).

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
    LoginThrottle,
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
LOGIN_ACTION = "login"
# The role on the audit row of a login attempt that did not authenticate anyone.
ANONYMOUS = "anonymous"
# Advisory lock classes (the two-integer key space, apart from the projection's and the
# migrator's single-bigint keys): one lock per username and per address serialises the
# attempts on each, so parallel attempts in several processes cannot all pass the count.
_USERNAME_LOCK = 1_129_270_001
_ADDRESS_LOCK = 1_129_270_002
# Failed attempts in the window: of the username since its last successful login, and of
# the address (a success does not clear it: a sprayer with one valid account would reset
# its own count).
_FAILURES = """
SELECT (SELECT count(*) FROM revledger.console_audit
         WHERE action = 'login' AND outcome = 'failed' AND username = %(username)s
           AND at > now() - %(window)s
           AND at > coalesce((SELECT max(at) FROM revledger.console_audit
                               WHERE action = 'login' AND outcome = 'done'
                                 AND username = %(username)s), '-infinity')),
       (SELECT count(*) FROM revledger.console_audit
         WHERE action = 'login' AND outcome = 'failed' AND remote_addr = %(address)s
           AND at > now() - %(window)s)
"""


@dataclass(frozen=True, slots=True)
class User:
    """A console user as a session sees it."""

    username: str
    role: Role


@dataclass(frozen=True, slots=True)
class LoginAttempt:
    """What became of a login attempt: the user when it succeeded; when it was refused by
    the throttle (the password unchecked), why."""

    user: User | None
    refused: str | None = None


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


def login(
    conn: psycopg.Connection,
    username: str,
    password: str,
    remote_addr: str | None,
    throttle: LoginThrottle,
) -> LoginAttempt:
    """One login attempt: the throttle first, then the password; audited whatever happens.

    In one transaction holding the advisory locks of the username and the address: count
    their failures in the window; over a limit, refuse without checking the password
    (audit ``refused`` with the reason); else :func:`authenticate` and audit ``failed`` or
    ``done``. ``username`` is audited as typed (cut to 64 characters): an unknown name is
    counted like a known one, so the throttle does not tell which names exist.
    """
    name = username[:64]
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", [_USERNAME_LOCK, name]
        )
        if remote_addr is not None:
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))",
                [_ADDRESS_LOCK, remote_addr],
            )
        row = conn.execute(
            _FAILURES, {"username": name, "address": remote_addr, "window": throttle.window}
        ).fetchone()
        by_username, by_address = (int(row[0]), int(row[1])) if row else (0, 0)
        refused = throttle.refusal(by_username, by_address)
        if refused is not None:
            _audit_login(conn, name, ANONYMOUS, "refused", refused, remote_addr)
            return LoginAttempt(None, refused)
        user = authenticate(conn, username, password)
        if user is None:
            _audit_login(conn, name, ANONYMOUS, "failed", "wrong username or password", remote_addr)
            return LoginAttempt(None)
        _audit_login(conn, user.username, user.role.value, "done", "", remote_addr)
        return LoginAttempt(user)


def _audit_login(
    conn: psycopg.Connection,
    username: str,
    role: str,
    outcome: str,
    detail: str,
    remote_addr: str | None,
) -> None:
    conn.execute(
        "INSERT INTO revledger.console_audit (username, role, action, target, outcome,"
        " detail, remote_addr) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        [username, role, LOGIN_ACTION, Jsonb({"username": username}), outcome, detail,
         remote_addr],
    )  # fmt: skip


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
