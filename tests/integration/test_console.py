"""The console against a real PostgreSQL (and Kafka for its two actions), through HTTP.

One database of this file's own, migrated, with a login role in ``revledger_console`` (the
console reads and writes through it, as deployed) and one customer written with
``pg_data``: C1's invoice and payment applied by the pure ledger (their entries in an ERP
batch the ERP imported), a payment held for an invoice that never came, and an invoice
dead-lettered. The application runs in aiohttp's test server; Kafka topics have a uuid
prefix.

Checks: anonymous requests get the login page; a bad password and a login without its
form token are refused; a POST without the CSRF token is refused; a viewer's redrive is
refused and audited; an operator's redrive re-produces the DLQ record and is audited; a
period close is confirmed first, refused when not the oldest open period, and produces a
``PeriodClosed``; the timeline shows the invoice, payment, entries, batch, ERP answer,
hold and dead letter; the console's role cannot rewrite the audit.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from confluent_kafka import Producer
from psycopg import sql
from psycopg.conninfo import make_conninfo

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.console import store
from streams.console.app import ConsoleConfig, create_app
from streams.dlq import Failure, SourceRecord, dlq_headers, dlq_record
from streams.reading import read_partitions_to_end
from streams.serde import Codec
from streams.settings import kafka_client_config
from streams.topics import BILLING, CONTROL, DLQ, TOPICS

import pg_data
from worker_process import isolated_settings

pytestmark = pytest.mark.integration
CODEC = Codec()
CUSTOMER = "C1"
PASSWORDS = {"vera": "viewer-passphrase-1", "otto": "operator-passphrase-1"}
FAILED_AT = dt.datetime(2024, 1, 20, 9, 0, tzinfo=dt.UTC)
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


# --- data ------------------------------------------------------------------------------------


def _events() -> dict[str, Any]:
    invoice = b.invoice("INV-1", customer=CUSTOMER, event_id="ev-INV-1")
    return {
        "invoice": invoice,
        "held": b.payment("PAY-2", [("INV-9", 50_00)], customer=CUSTOMER, event_id="ev-PAY-2"),
        "payment": b.payment(
            "PAY-1",
            [("INV-1", 100_00)],
            customer=CUSTOMER,
            on=b.DAY + dt.timedelta(5),
            event_id="ev-PAY-1",
        ),
        "dead": b.invoice("INV-X", customer=CUSTOMER, event_id="ev-INV-X"),
    }


def load_customer(conn: psycopg.Connection) -> list[str]:
    """C1's story (see the module docstring); returns the ids of its entries."""
    events = _events()
    _, outcomes = b.apply_all([events["invoice"], events["payment"]], b.reference_data())
    entries = [entry for outcome in outcomes for entry in outcome.entries]
    # Input order: the invoice, the held payment, the payment (posted after it: so the
    # held one was passed by the ledger), the dead-lettered invoice.
    pg_data.insert_source_events(
        conn, [events["invoice"], events["held"], events["payment"], events["dead"]]
    )
    pg_data.insert_entries(conn, entries)
    pg_data.insert_invoice(
        conn,
        "INV-1",
        customer_id=CUSTOMER,
        entity=b.US,
        currency="USD",
        issue_date=b.DAY,
        due_date=b.DAY + dt.timedelta(30),
        total_minor=100_00,
    )
    totals: dict[tuple[str, str], list[int]] = {}
    for entry in entries:
        for line in entry.lines:
            pair = totals.setdefault((str(line.account), line.currency), [0, 0])
            pair[0 if str(line.side) == "debit" else 1] += line.amount_minor
    pg_data.insert_batch(
        conn,
        "B-1",
        entity=b.US,
        period="2024-01",
        functional_currency="USD",
        lines=[
            pg_data.batch_line(f"GL-{account}", account, currency, debit_minor=d, credit_minor=c)
            for (account, currency), (d, c) in sorted(totals.items())
        ],
        entry_ids=[entry.entry_id for entry in entries],
    )
    pg_data.insert_ack(
        conn,
        "B-1",
        entity=b.US,
        status="imported",
        erp_document_id="ERP-77",
        acknowledged_at=FAILED_AT,
    )
    pg_data.insert_dlq(
        conn,
        "gl_mapping_missing",
        event_id="ev-INV-X",
        failed_at=FAILED_AT,
        message="no GL mapping for revenue",
        original_key=CUSTOMER.encode(),
        original_value=CODEC.encode(events["dead"]),
    )
    pg_data.insert_period(conn, b.US, "2023-12", status="open")
    return [entry.entry_id for entry in entries]


@pytest.fixture(scope="module")
def database(devstack: Any) -> Iterator[dict[str, Any]]:
    """The migrated database with C1, a console login role, and two users."""
    role = f"t_console_{uuid.uuid4().hex[:10]}"
    with pg_data.fresh_database(devstack.database_url) as admin_url:
        with pg_data.connect(admin_url) as admin:
            admin.execute(
                sql.SQL("CREATE ROLE {} LOGIN IN ROLE revledger_console").format(
                    sql.Identifier(role)
                )
            )
            entry_ids = load_customer(admin)
        console_url = make_conninfo(admin_url, user=role)
        with pg_data.connect(console_url) as conn:
            store.add_user(conn, "vera", "viewer", PASSWORDS["vera"])
            store.add_user(conn, "otto", "operator", PASSWORDS["otto"])
        try:
            yield {"admin": admin_url, "console": console_url, "entry_ids": entry_ids}
        finally:
            with pg_data.connect(devstack.database_url) as admin:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def settings(devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Kafka settings with a uuid topic prefix, every topic created."""
    found = isolated_settings(devstack.bootstrap_servers, tmp_path_factory.mktemp("console"))
    ensure_topics(found, TOPICS)
    return found


@pytest.fixture
def console(database: dict[str, Any], settings: Any) -> Callable[..., None]:
    """``console(scenario)`` runs ``await scenario(client)`` against a fresh app."""
    config = ConsoleConfig(database["console"], database["console"], settings, cookie_secure=False)

    async def session(scenario: Callable[[TestClient], Awaitable[None]]) -> None:
        async with TestClient(TestServer(create_app(config))) as client:
            await scenario(client)

    return lambda scenario: asyncio.run(session(scenario))


def audit_rows(database: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The audit rows of actions (login attempts are audited too: test_console_login.py)."""
    with pg_data.connect(database["admin"]) as conn:
        return conn.execute(
            "SELECT username, role, action, target, outcome, detail"
            " FROM revledger.console_audit WHERE action <> 'login' ORDER BY audit_id"
        ).fetchall()


# --- helpers ---------------------------------------------------------------------------------


async def login(client: TestClient, username: str, password: str | None = None) -> Any:
    form = await client.get("/login")
    token = CSRF.search(await form.text())
    assert token, "the login form carries a CSRF token"
    return await client.post(
        "/login",
        data={
            "csrf_token": token.group(1),
            "username": username,
            "password": PASSWORDS[username] if password is None else password,
            "next": "/",
        },
        allow_redirects=False,
    )


async def csrf_of(client: TestClient, path: str = "/") -> str:
    page = await client.get(path)
    found = CSRF.search(await page.text())
    assert found, f"{path} carries the session's CSRF token"
    return found.group(1)


# --- tests -----------------------------------------------------------------------------------


def test_anonymous_requests_get_the_login_page_when_no_session(console):
    async def scenario(client: TestClient) -> None:
        for path in ("/", "/customers/C1", "/stuck", "/periods", "/audit"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/login?next="), path
        posted = await client.post("/stuck/redrive", data={}, allow_redirects=False)
        assert posted.status == 303
        page = await client.get("/customers/C1")
        assert page.url.path == "/login"
        text = await page.text()
        assert 'id="login-form"' in text
        assert "INV-1" not in text
        assert "script-src" not in page.headers["Content-Security-Policy"]
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"

    console(scenario)


def test_login_is_refused_when_the_password_is_wrong_or_the_form_token_missing(console):
    async def scenario(client: TestClient) -> None:
        wrong = await login(client, "vera", "not-the-passphrase")
        assert wrong.status == 401
        assert "Wrong username or password." in await wrong.text()
        unknown = await login(client, "nobody", "whatever-passphrase")
        assert unknown.status == 401
        assert "revledger_session" not in {c.key for c in client.session.cookie_jar}
        no_token = await client.post(
            "/login",
            data={"username": "vera", "password": PASSWORDS["vera"]},
            allow_redirects=False,
        )
        assert no_token.status == 403
        still_out = await client.get("/", allow_redirects=False)
        assert still_out.status == 303

    console(scenario)


def test_session_cookie_is_httponly_strict_and_ends_when_logged_out(console, database):
    async def scenario(client: TestClient) -> None:
        response = await login(client, "vera")
        assert response.status == 303 and response.headers["Location"] == "/"
        cookie = response.cookies["revledger_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["max-age"]
        token = cookie.value
        with pg_data.connect(database["admin"]) as conn:
            stored = conn.execute(
                "SELECT token_sha256 FROM revledger.console_sessions WHERE username = 'vera'"
            ).fetchall()
        assert stored and all(bytes(row[0]) != token.encode() for row in stored)
        assert (await client.get("/", allow_redirects=False)).status == 200
        out = await client.post(
            "/logout", data={"csrf_token": await csrf_of(client)}, allow_redirects=False
        )
        assert out.status == 303
        client.session.cookie_jar.update_cookies({"revledger_session": token})
        assert (await client.get("/", allow_redirects=False)).status == 303

    console(scenario)


def test_timeline_shows_invoice_payment_entries_batch_hold_and_dead_letter(console, database):
    async def scenario(client: TestClient) -> None:
        await login(client, "vera")
        page = await client.get("/customers/C1")
        assert page.status == 200
        text = await page.text()
        for event_id in ("ev-INV-1", "ev-PAY-1", "ev-PAY-2", "ev-INV-X"):
            assert f'data-event-id="{event_id}"' in text
        for entry_id in database["entry_ids"]:
            assert f'data-entry-id="{entry_id}"' in text
        assert 'data-batch-id="B-1"' in text and "ERP-77" in text
        assert re.search(r'data-event-id="ev-INV-1"[^>]*data-document-id="INV-1"', text)
        held = text[text.index('data-event-id="ev-PAY-2"') :]
        assert "held: waits for invoice INV-9" in held[:2000]
        dead = text[text.index('data-event-id="ev-INV-X"') :]
        assert "gl_mapping_missing" in dead[:2000] and 'data-state="dead_lettered"' in text
        assert 'data-invoice-id="INV-1"' not in text  # paid in full: not open
        missing = await client.get("/customers/NOBODY")
        assert missing.status == 404

    console(scenario)


def test_every_page_renders_for_a_viewer(console):
    async def scenario(client: TestClient) -> None:
        await login(client, "vera")
        for path in ("/", "/stuck", "/recon", "/recon/US1/2024-01-15", "/periods", "/health",
                     "/charts", "/audit"):  # fmt: skip
            response = await client.get(path)
            assert response.status == 200, (path, await response.text())
        stuck = await (await client.get("/stuck")).text()
        assert 'id="redrive-form"' in stuck and 'data-reason="gl_mapping_missing"' in stuck
        found = await client.get("/?customer=C1", allow_redirects=False)
        assert found.headers["Location"] == "/customers/C1"

    console(scenario)


def test_post_is_refused_when_the_csrf_token_is_missing_or_wrong(console, database):
    before = len(audit_rows(database))

    async def scenario(client: TestClient) -> None:
        await login(client, "otto")
        for data in ({"reason": "gl_mapping_missing"}, {"csrf_token": "forged"}):
            response = await client.post("/stuck/redrive", data=data, allow_redirects=False)
            assert response.status == 403
            assert 'class="flash error"' in await response.text()
        close = await client.post("/periods/close", data={"entity": "US1", "period": "2023-12"})
        assert close.status == 403

    console(scenario)
    assert len(audit_rows(database)) == before  # nothing ran, nothing to audit


def test_viewer_redrive_is_refused_and_audited(console, database):
    async def scenario(client: TestClient) -> None:
        await login(client, "vera")
        token = await csrf_of(client, "/stuck")
        response = await client.post(
            "/stuck/redrive", data={"csrf_token": token, "reason": "gl_mapping_missing"}
        )
        assert response.status == 403
        assert "for operators" in await response.text()

    console(scenario)
    last = audit_rows(database)[-1]
    assert last[:3] == ("vera", "viewer", "dlq.redrive")
    assert last[3] == {"reason": "gl_mapping_missing", "customer": None}
    assert last[4] == "refused"


def _dead_letter_on_kafka(settings: Any) -> None:
    """One DLQ record of C1 on the prefixed DLQ topic, as the worker writes it."""
    billing = settings.topic_prefix + BILLING.name
    original = CODEC.encode(_events()["dead"])
    source = SourceRecord(billing, 0, 7, CUSTOMER.encode(), original, ())
    failure = Failure("gl_mapping_missing", "no GL mapping", event_id="ev-INV-X")
    record = dlq_record(failure, source, service_version="test", failed_at=FAILED_AT)
    out = Producer(kafka_client_config(settings, {"enable.idempotence": True}))
    out.produce(
        settings.topic_prefix + DLQ.name,
        key=CUSTOMER.encode(),
        value=CODEC.encode(record),
        partition=0,
        headers=list(dlq_headers(record)),
    )
    assert out.flush(30) == 0


def test_operator_redrive_puts_the_record_back_and_is_audited(console, database, settings):
    _dead_letter_on_kafka(settings)

    async def scenario(client: TestClient) -> None:
        await login(client, "otto")
        token = await csrf_of(client, "/stuck")
        response = await client.post(
            "/stuck/redrive",
            data={"csrf_token": token, "reason": "gl_mapping_missing", "customer": "C1"},
        )
        text = await response.text()
        assert response.status == 200, text
        assert 'class="flash ok"' in text and "redrove 1 records" in text

    console(scenario)
    redriven = list(read_partitions_to_end(settings, settings.topic_prefix + BILLING.name))
    assert len(redriven) == 1
    assert redriven[0].key() == CUSTOMER.encode()
    assert dict(redriven[0].headers())["redrive.attempt"] == b"1"
    last = audit_rows(database)[-1]
    assert last[:3] == ("otto", "operator", "dlq.redrive")
    assert last[4] == "done" and "redrove 1 records" in last[5]


def test_period_close_asks_first_refuses_out_of_order_and_sends_the_close(
    console, database, settings
):
    async def scenario(client: TestClient) -> None:
        await login(client, "otto")
        token = await csrf_of(client, "/periods")
        ask = await client.post(
            "/periods/close", data={"csrf_token": token, "entity": "US1", "period": "2023-12"}
        )
        assert ask.status == 200 and 'id="close-confirm-form"' in await ask.text()
        early = await client.post(
            "/periods/close",
            data={"csrf_token": token, "entity": "US1", "period": "2024-01", "confirm": "yes"},
        )
        assert early.status == 409
        assert "not the oldest open period: close 2023-12 first" in await early.text()
        done = await client.post(
            "/periods/close",
            data={"csrf_token": token, "entity": "US1", "period": "2023-12", "confirm": "yes"},
        )
        assert done.status == 200 and 'class="flash ok"' in await done.text()

    console(scenario)
    control = list(read_partitions_to_end(settings, settings.topic_prefix + CONTROL.name))
    closes = [CODEC.decode(message.value()) for message in control]
    assert {(c.entity, c.period) for c in closes} == {("US1", "2023-12")}
    assert len(closes) == CONTROL.partitions(settings.partitions)  # one copy per partition
    outcomes = [(row[2], row[3], row[4]) for row in audit_rows(database)[-2:]]
    assert outcomes == [
        ("period.close", {"entity": "US1", "period": "2024-01"}, "refused"),
        ("period.close", {"entity": "US1", "period": "2023-12"}, "done"),
    ]


def test_console_role_cannot_rewrite_the_audit_or_touch_the_ledger(database):
    with pg_data.connect(database["console"]) as conn:
        assert conn.execute("SELECT count(*) FROM revledger.event_outcomes").fetchone()[0] == 4
        for statement in (
            "UPDATE revledger.console_audit SET outcome = 'done'",
            "DELETE FROM revledger.console_audit",
            "SELECT count(*) FROM revledger.journal_entries",
            "DELETE FROM revledger.dlq_records",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with pg_data.connect(database["admin"]) as conn:
        granted = conn.execute(
            "SELECT has_table_privilege('revledger_writer', 'revledger.console_users', 'SELECT'),"
            " has_table_privilege('revledger_reader', 'revledger.console_sessions', 'SELECT')"
        ).fetchone()
    assert granted == (False, False)
