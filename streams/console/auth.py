"""The console's security rules, pure: password hashes, session tokens, CSRF tokens, roles.

- Passwords are hashed with scrypt (``hashlib.scrypt``, RFC 7914) under a random 16-byte
  salt per user; the cost parameters are stored with the hash
  (``scrypt$<n>$<r>$<p>$<salt b64>$<key b64>``) so they can be raised for new hashes while
  old ones still verify. Verification compares in constant time.
- A session is a random 32-byte token (``secrets.token_urlsafe``) held only by the browser,
  in an HttpOnly, SameSite=Strict cookie; the server stores its SHA-256, so a copy of the
  sessions table logs nobody in.
- The CSRF token of a session is HMAC-SHA256 of a fixed label under the session token: the
  server recomputes it from the cookie at each POST and stores nothing; a page of another
  origin can neither read the cookie nor the token. Before login there is no session: the
  login form carries a random token that must equal the one in a short-lived
  SameSite=Strict cookie (double submit).
- Roles: ``viewer`` reads every page; ``operator`` may also act (redrive, close a period).
- Login throttling (:class:`LoginThrottle`): after too many failed logins for a username,
  or from a client address, within a window, further attempts are refused without
  checking the password, with the same answer as a wrong password. The failures are
  counted in the database (:func:`streams.console.store.login`), so every console
  process sees them.

Must not import: aiohttp, psycopg, faust, confluent_kafka (it is unit-tested alone).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

# scrypt cost: n=2**14, r=8, p=1 is the minimum OWASP lists for scrypt (16 MiB, ~50 ms here);
# it is stored with each hash, so raising it later only affects new hashes.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_BYTES = 32
_SALT_BYTES = 16
# Above 128 * n * r bytes scrypt refuses; leave room so stored parameters up to n=2**16 work.
_SCRYPT_MAXMEM = 256 * 1024 * 1024
_HASH_PREFIX = "scrypt"
# Short passwords fall to offline guessing whatever the KDF: ask for a passphrase.
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TOKEN_BYTES = 32
_CSRF_LABEL = b"revledger-console-csrf-v1"


class Role(StrEnum):
    """What a user may do: ``viewer`` reads; ``operator`` reads and acts."""

    viewer = "viewer"
    operator = "operator"

    @property
    def may_act(self) -> bool:
        """True when the role may run actions (redrive, period close)."""
        return self is Role.operator


class AuthError(ValueError):
    """A username, password or stored hash that cannot be used (the message says why)."""


@dataclass(frozen=True, slots=True)
class ScryptParameters:
    """Cost parameters of one stored hash."""

    n: int
    r: int
    p: int


def check_username(username: str) -> str:
    """``username`` if it is 1-64 lower-case letters, digits, ``.``, ``_`` or ``-``.

    Raises:
        AuthError: it is not.
    """
    if not isinstance(username, str) or USERNAME.match(username) is None:
        raise AuthError(
            "a username is 1-64 characters of a-z, 0-9, '.', '_' or '-', starting with a"
            f" letter or digit; got {username!r}"
        )
    return username


def check_role(role: str) -> Role:
    """The :class:`Role` named ``role``.

    Raises:
        AuthError: no such role.
    """
    try:
        return Role(role)
    except ValueError as exc:
        names = ", ".join(r.value for r in Role)
        raise AuthError(f"unknown role {role!r} (roles: {names})") from exc


def check_new_password(password: str) -> str:
    """``password`` if it may be set: 12 to 1024 characters, not only blanks.

    Raises:
        AuthError: too short, too long or blank.
    """
    if not password.strip():
        raise AuthError("the password is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise AuthError(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, params: ScryptParameters) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=params.n,
        r=params.r,
        p=params.p,
        maxmem=_SCRYPT_MAXMEM,
        dklen=_KEY_BYTES,
    )


def hash_password(password: str, params: ScryptParameters | None = None) -> str:
    """The stored form of ``password``: scrypt under a fresh random salt, with its parameters.

    Raises:
        AuthError: see :func:`check_new_password`.
    """
    check_new_password(password)
    params = params or ScryptParameters(SCRYPT_N, SCRYPT_R, SCRYPT_P)
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _scrypt(password, salt, params)
    return f"{_HASH_PREFIX}${params.n}${params.r}${params.p}${_b64(salt)}${_b64(key)}"


def parse_hash(stored: str) -> tuple[ScryptParameters, bytes, bytes]:
    """Parameters, salt and key of a stored hash.

    Raises:
        AuthError: not a hash :func:`hash_password` writes.
    """
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != _HASH_PREFIX:
        raise AuthError("the stored password hash is not an scrypt hash")
    try:
        n, r, p = (int(value) for value in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except ValueError as exc:
        raise AuthError("the stored password hash is malformed") from exc
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or len(key) != _KEY_BYTES:
        raise AuthError("the stored password hash has unusable parameters")
    return ScryptParameters(n, r, p), salt, key


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` hashes to ``stored`` (constant-time comparison).

    A malformed stored hash verifies nothing (False), so a damaged row locks its user out
    rather than letting anyone in.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return False
    try:
        params, salt, key = parse_hash(stored)
    except AuthError:
        return False
    return hmac.compare_digest(_scrypt(password, salt, params), key)


# A hash to verify against when the user does not exist, so that "no such user" takes as
# long as "wrong password" and the login page does not tell which usernames exist.
_DUMMY_HASH = (
    f"{_HASH_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(b'0' * _SALT_BYTES)}"
    f"${_b64(b'0' * _KEY_BYTES)}"
)


def burn_verification(password: str) -> None:
    """Spend the time of one verification (for an unknown username); always fails."""
    verify_password(password, _DUMMY_HASH)


def new_token() -> str:
    """A fresh random session (or login-form) token, URL-safe text of 32 random bytes."""
    return secrets.token_urlsafe(_TOKEN_BYTES)


def looks_like_token(text: str) -> bool:
    """Whether ``text`` has the shape :func:`new_token` gives (length and alphabet)."""
    return len(text) == len(new_token()) and all(c in _TOKEN_ALPHABET for c in text)


_TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def token_digest(token: str) -> bytes:
    """SHA-256 of a session token: what the sessions table stores and looks up."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 of a fixed label under the session token."""
    return hmac.new(session_token.encode("utf-8"), _CSRF_LABEL, hashlib.sha256).hexdigest()


def csrf_valid(session_token: str, submitted: str | None) -> bool:
    """True when ``submitted`` is the session's CSRF token (constant-time comparison)."""
    if not submitted:
        return False
    return hmac.compare_digest(csrf_token(session_token).encode(), submitted.encode())


def same_token(expected: str | None, submitted: str | None) -> bool:
    """True when both tokens are present and equal (the login form's double submit)."""
    if not expected or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode())


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """How many failed logins are tolerated before further attempts are refused.

    A username with ``per_username`` failures within ``window`` (since its last successful
    login), or an address with ``per_address`` failures within ``window``, is refused until
    its oldest counted failure leaves the window. Refused attempts are not failures (the
    password is not even checked), so a lock ends ``window`` after the failures that caused
    it, however often the attacker keeps knocking. The address limit is higher: people
    behind one NAT share it, and a password sprayed over many usernames is caught by it.
    """

    per_username: int = 5
    per_address: int = 30
    window: dt.timedelta = dt.timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.per_username < 1 or self.per_address < 1:
            raise ValueError("login throttle limits must be at least 1")
        if self.window <= dt.timedelta(0):
            raise ValueError("the login throttle window must be positive")

    def refusal(self, username_failures: int, address_failures: int) -> str | None:
        """Why an attempt is refused given the failures counted in the window, or None.

        The reason is for the audit and the log only; the user is told nothing more than
        for a wrong password.
        """
        minutes = int(self.window.total_seconds() // 60)
        if username_failures >= self.per_username:
            return (
                f"{username_failures} failed logins for this username within {minutes} min"
                f" (limit {self.per_username})"
            )
        if address_failures >= self.per_address:
            return (
                f"{address_failures} failed logins from this address within {minutes} min"
                f" (limit {self.per_address})"
            )
        return None
