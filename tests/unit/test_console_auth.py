"""The console's security rules (streams/console/auth.py): pure, no database, no server."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from streams.console import auth
from streams.console.auth import AuthError, Role, ScryptParameters

# Cheap parameters keep the tests fast; one test uses the defaults.
FAST = ScryptParameters(n=2**4, r=8, p=1)
PASSWORD = "correct horse battery"


def test_hash_verifies_its_password_and_nothing_else_when_made_with_defaults():
    stored = auth.hash_password(PASSWORD)
    assert stored.startswith(f"scrypt${auth.SCRYPT_N}${auth.SCRYPT_R}${auth.SCRYPT_P}$")
    assert auth.verify_password(PASSWORD, stored)
    assert not auth.verify_password(PASSWORD + " ", stored)
    assert not auth.verify_password("", stored)


def test_hash_uses_a_fresh_salt_when_the_same_password_is_hashed_twice():
    first, second = (auth.hash_password(PASSWORD, FAST) for _ in range(2))
    assert first != second
    salts = {auth.parse_hash(h)[1] for h in (first, second)}
    assert len(salts) == 2 and all(len(s) == 16 for s in salts)
    assert auth.verify_password(PASSWORD, first) and auth.verify_password(PASSWORD, second)


def test_hash_keeps_its_parameters_when_the_defaults_change():
    stored = auth.hash_password(PASSWORD, FAST)
    params, _, key = auth.parse_hash(stored)
    assert params == FAST and len(key) == 32
    assert auth.verify_password(PASSWORD, stored)  # verified with n=16, not the default


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "plain-text-password",
        "bcrypt$2b$12$abc",
        "scrypt$16$8$1$!!notbase64!!$AAAA",
        "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + base64.b64encode(b"k" * 32).decode(),
        "scrypt$16$8$1$$" + base64.b64encode(b"k" * 32).decode(),
        "scrypt$16$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + base64.b64encode(b"short").decode(),
    ],
)
def test_verify_refuses_when_the_stored_hash_is_malformed(stored):
    assert not auth.verify_password(PASSWORD, stored)
    with pytest.raises(AuthError):
        auth.parse_hash(stored)


@pytest.mark.parametrize("password", ["", "            ", "short pass", "x" * 1025])
def test_new_password_is_refused_when_blank_short_or_huge(password):
    with pytest.raises(AuthError):
        auth.hash_password(password, FAST)


@pytest.mark.parametrize("name", ["", "Vera", "-vera", "ve ra", "vera;drop", "v" * 65, "é"])
def test_username_is_refused_when_outside_the_allowed_characters(name):
    with pytest.raises(AuthError):
        auth.check_username(name)


def test_username_and_role_are_accepted_when_well_formed():
    assert auth.check_username("ops.vera_2-x") == "ops.vera_2-x"
    assert auth.check_role("operator") is Role.operator and Role.operator.may_act
    assert not Role.viewer.may_act
    with pytest.raises(AuthError, match="unknown role 'admin'"):
        auth.check_role("admin")


def test_session_tokens_are_random_and_stored_only_as_their_digest():
    tokens = {auth.new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 43 for t in tokens)
    token = tokens.pop()
    digest = auth.token_digest(token)
    assert len(digest) == 32 and token.encode() not in digest
    assert auth.token_digest(token) == digest


def test_csrf_token_belongs_to_its_session_when_checked():
    session, other = auth.new_token(), auth.new_token()
    token = auth.csrf_token(session)
    assert auth.csrf_valid(session, token)
    assert not auth.csrf_valid(other, token)
    assert not auth.csrf_valid(session, None) and not auth.csrf_valid(session, "")
    assert not auth.csrf_valid(session, token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert token != session and session not in token


def test_login_form_token_must_match_its_cookie():
    token = auth.new_token()
    assert auth.same_token(token, token)
    assert not auth.same_token(token, auth.new_token())
    assert not auth.same_token(None, token) and not auth.same_token(token, None)
    assert not auth.same_token("", "")


def test_unknown_user_check_spends_a_verification_and_fails():
    auth.burn_verification(PASSWORD)  # must not raise, whatever the password
    assert not auth.verify_password(PASSWORD, auth._DUMMY_HASH)


def test_throttle_refuses_a_username_when_its_failures_reach_the_limit():
    throttle = auth.LoginThrottle(per_username=3, per_address=10)
    assert throttle.refusal(2, 9) is None
    reason = throttle.refusal(3, 0)
    assert reason is not None and "username" in reason and "limit 3" in reason


def test_throttle_refuses_an_address_when_its_failures_reach_the_limit():
    throttle = auth.LoginThrottle(per_username=3, per_address=10, window=dt.timedelta(minutes=5))
    reason = throttle.refusal(0, 10)
    assert reason is not None and "address" in reason and "5 min" in reason


@pytest.mark.parametrize(
    "kwargs",
    [{"per_username": 0}, {"per_address": 0}, {"window": dt.timedelta(0)}],
)
def test_throttle_is_refused_when_a_limit_or_the_window_is_not_positive(kwargs):
    with pytest.raises(ValueError):
        auth.LoginThrottle(**kwargs)
