"""The console's login throttle against a real PostgreSQL, through HTTP.

One database of this module's own (migrated, two users); each test runs the console app
in aiohttp's test server with a small throttle (3 failures per username, 5 per address,
15 minutes) and the test client as a trusted proxy, so that each test speaks from an
address of its own (``X-Forwarded-For``).

Checks: after 3 failures a username is refused even with its right password, with the
wrong-password answer, and audited as refused; it logs in again once its failures are
older than the window; a success clears the username's count; the failures of several
usernames from one address refuse that address; the count lives in the database, so a
second console process refuses what the first counted; attempts in parallel cannot
overrun the limit.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.console import store
from streams.console.app import WRONG_LOGIN, ConsoleConfig, create_app
from streams.console.auth import LoginThrottle
from streams.settings import load_settings

import pg_data

pytestmark = pytest.mark.integration
PASSWORDS = {"lena": "lena-passphrase-1", "omar": "omar-passphrase-1"}
THROTTLE = LoginThrottle(per_username=3, per_address=5)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
Scenario = Callable[[TestClient], Awaitable[None]]


@pytest.fixture(scope="module")
def database(devstack: Any) -> Iterator[str]:
    """A migrated database with two users."""
    with pg_data.fresh_database(devstack.database_url) as url:
        with pg_data.connect(url) as conn:
            for name, password in PASSWORDS.items():
                store.add_user(conn, name, "viewer", password)
        yield url


def run(database: str, *scenarios: Scenario) -> None:
    """Run each scenario against its own app (as separate console processes would be)."""
    config = ConsoleConfig(
        database,
        database,
        load_settings({}),
        cookie_secure=False,
        login_throttle=THROTTLE,
        trusted_proxies=frozenset({"127.0.0.1"}),
    )

    async def session() -> None:
        for scenario in scenarios:
            async with TestClient(TestServer(create_app(config))) as client:
                await scenario(client)

    asyncio.run(session())


async def attempt(client: TestClient, address: str, username: str, password: str) -> Any:
    """One login through the form, from ``address``; returns the response."""
    form = await client.get("/login")
    token = CSRF.search(await form.text())
    assert token
    return await client.post(
        "/login",
        data={"csrf_token": token.group(1), "username": username, "password": password},
        headers={"X-Forwarded-For": address},
        allow_redirects=False,
    )


async def refused_like_a_wrong_password(response: Any) -> bool:
    return response.status == 401 and WRONG_LOGIN in await response.text()


def logins(database: str, address: str) -> list[tuple[str, str, str]]:
    """(username, outcome, detail) of the login audit rows from ``address``, in order."""
    with pg_data.connect(database) as conn:
        return conn.execute(
            "SELECT username, outcome, detail FROM revledger.console_audit"
            " WHERE action = 'login' AND remote_addr = %s ORDER BY audit_id",
            [address],
        ).fetchall()


def age_logins(database: str, address: str, minutes: int) -> None:
    """Move the login audit rows from ``address`` ``minutes`` into the past."""
    with pg_data.connect(database) as conn:
        conn.execute(
            "UPDATE revledger.console_audit SET at = at - make_interval(mins => %s)"
            " WHERE action = 'login' AND remote_addr = %s",
            [minutes, address],
        )


def test_username_is_refused_after_its_failures_then_let_in_after_the_window(database):
    address = "198.51.100.1"

    async def scenario(client: TestClient) -> None:
        for _ in range(3):
            assert await refused_like_a_wrong_password(
                await attempt(client, address, "lena", "wrong-passphrase")
            )
        right = await attempt(client, address, "lena", PASSWORDS["lena"])
        assert await refused_like_a_wrong_password(right)
        assert "revledger_session" not in {c.key for c in client.session.cookie_jar}

    run(database, scenario)
    rows = logins(database, address)
    assert [outcome for _, outcome, _ in rows] == ["failed"] * 3 + ["refused"]
    assert "3 failed logins for this username" in rows[-1][2]

    age_logins(database, address, 16)

    async def later(client: TestClient) -> None:
        response = await attempt(client, address, "lena", PASSWORDS["lena"])
        assert response.status == 303 and "revledger_session" in response.cookies

    run(database, later)
    assert logins(database, address)[-1][:2] == ("lena", "done")


def test_success_clears_the_count_of_its_username(database):
    address = "198.51.100.2"

    async def scenario(client: TestClient) -> None:
        for password in ("wrong-1-passphrase", "wrong-2-passphrase", PASSWORDS["omar"]):
            await attempt(client, address, "omar", password)
        for _ in range(2):
            await attempt(client, address, "omar", "wrong-3-passphrase")
        response = await attempt(client, address, "omar", PASSWORDS["omar"])
        assert response.status == 303

    run(database, scenario)
    outcomes = [outcome for _, outcome, _ in logins(database, address)]
    assert outcomes == ["failed", "failed", "done", "failed", "failed", "done"]
    age_logins(database, address, 60)  # out of the other tests' windows


def test_address_is_refused_after_failures_over_many_usernames(database):
    address = "198.51.100.3"

    async def scenario(client: TestClient) -> None:
        for n in range(5):  # a password sprayed over usernames, most of which do not exist
            await attempt(client, address, f"guess-{n}", "spring-2026-passphrase")
        right = await attempt(client, address, "lena", PASSWORDS["lena"])
        assert await refused_like_a_wrong_password(right)
        elsewhere = await attempt(client, "198.51.100.4", "lena", PASSWORDS["lena"])
        assert elsewhere.status == 303

    run(database, scenario)
    rows = logins(database, address)
    assert [outcome for _, outcome, _ in rows] == ["failed"] * 5 + ["refused"]
    assert "5 failed logins from this address" in rows[-1][2]


def test_a_second_console_process_refuses_what_the_first_counted(database):
    address = "198.51.100.5"

    async def first(client: TestClient) -> None:
        for _ in range(3):
            await attempt(client, address, "omar", "wrong-passphrase")

    async def second(client: TestClient) -> None:
        right = await attempt(client, address, "omar", PASSWORDS["omar"])
        assert await refused_like_a_wrong_password(right)

    run(database, first, second)
    assert [outcome for _, outcome, _ in logins(database, address)][-1] == "refused"
    age_logins(database, address, 60)


def test_parallel_attempts_cannot_overrun_the_limit(database):
    address = "198.51.100.6"

    async def scenario(client: TestClient) -> None:
        await asyncio.gather(
            *(attempt(client, address, "nobody", "wrong-passphrase") for _ in range(8))
        )

    run(database, scenario)
    outcomes = sorted(outcome for _, outcome, _ in logins(database, address))
    assert outcomes == ["failed"] * 3 + ["refused"] * 5


def test_console_role_cannot_erase_the_failures_it_counts(database):
    with pg_data.connect(database) as conn:
        role = f"t_login_{uuid.uuid4().hex[:10]}"
        conn.execute(f"CREATE ROLE {role} IN ROLE revledger_console")
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute("DELETE FROM revledger.console_audit WHERE action = 'login'")
        finally:
            conn.execute(f"DROP ROLE {role}")
