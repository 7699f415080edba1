"""The console's HTTP rules that need no database: anonymous redirects, security headers,
the login form's CSRF check, ``next`` targets, and the timeline's states (pure)."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.postgres.queries import PeriodRow
from ledger.materiality import parse_thresholds
from streams.console import cli, timeline
from streams.console.app import (
    CONTENT_SECURITY_POLICY,
    ConsoleConfig,
    create_app,
    safe_next,
)
from streams.period_close import PeriodCloseRefused, check_close, period_close_record
from streams.settings import load_settings

# Nothing listens there: a test that reached the database would fail to connect.
NO_DATABASE = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=1"


def run(scenario) -> None:
    config = ConsoleConfig(NO_DATABASE, NO_DATABASE, load_settings({}), cookie_secure=True)

    async def session() -> None:
        async with TestClient(TestServer(create_app(config))) as client:
            await scenario(client)

    asyncio.run(session())


def test_anonymous_request_is_sent_to_login_when_it_has_no_session():
    async def scenario(client: TestClient) -> None:
        response = await client.get("/customers/C%201?x=1", allow_redirects=False)
        assert response.status == 303
        location = urlsplit(response.headers["Location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["next"] == ["/customers/C%201?x=1"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        forged = await client.get("/", cookies={"revledger_session": ""}, allow_redirects=False)
        assert forged.status == 303

    run(scenario)


def test_login_page_sets_a_strict_httponly_secure_form_cookie_and_no_script():
    async def scenario(client: TestClient) -> None:
        page = await client.get("/login")
        assert page.status == 200
        text = await page.text()
        assert "<script" not in text and "http://" not in text and "https://" not in text
        cookie = page.cookies["revledger_login"]
        assert cookie["httponly"] and cookie["secure"] and cookie["samesite"] == "Strict"
        hidden = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert hidden and hidden.group(1) == cookie.value
        assert page.headers["Cache-Control"] == "no-store"
        assert "script-src" not in CONTENT_SECURITY_POLICY and "'unsafe-inline'" not in (
            CONTENT_SECURITY_POLICY
        )

    run(scenario)


def test_login_post_is_refused_when_the_form_token_is_missing_or_foreign():
    async def scenario(client: TestClient) -> None:
        await client.get("/login")
        for data in (
            {"username": "vera", "password": "x" * 12},
            {"csrf_token": "made-up", "username": "vera", "password": "x" * 12},
        ):
            response = await client.post("/login", data=data, allow_redirects=False)
            assert response.status == 403
            assert response.headers["X-Frame-Options"] == "DENY"

    run(scenario)


def test_a_second_login_page_keeps_the_form_token_and_favicon_needs_no_login():
    """Chromium asks for /favicon.ico while the login form is on screen: that request
    must not hand out a new form token, or the form's POST is refused (found by the
    browser tests)."""

    async def scenario(client: TestClient) -> None:
        first = await client.get("/login")
        token = first.cookies["revledger_login"].value
        icon = await client.get("/favicon.ico", allow_redirects=False)
        assert icon.status == 204
        # The cookie is Secure and the test server plain HTTP: send it as a browser would.
        again = await client.get("/login?next=%2Fstuck", cookies={"revledger_login": token})
        text = await again.text()
        assert f'name="csrf_token" value="{token}"' in text
        forged = await client.get("/login", cookies={"revledger_login": "<x>"})
        assert forged.cookies["revledger_login"].value != "<x>"

    run(scenario)


def test_stylesheet_is_served_and_directory_listing_is_not():
    async def scenario(client: TestClient) -> None:
        css = await client.get("/static/console.css")
        assert css.status == 200 and "text/css" in css.headers["Content-Type"]
        assert (await client.get("/static/", allow_redirects=False)).status in (403, 404)

    run(scenario)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (None, "/"),
        ("", "/"),
        ("/customers/C1?x=1", "/customers/C1?x=1"),
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("javascript:alert(1)", "/"),
        ("customers/C1", "/"),
        ("/\\evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_next_is_kept_only_when_it_is_a_local_path(target, expected):
    assert safe_next(target) == expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("console.example", False),
    ],
)
def test_cookies_are_secure_by_default_when_the_host_is_not_loopback(host, loopback):
    assert cli.is_loopback(host) is loopback


def test_cli_parses_serve_and_user_add_as_documented():
    parser = cli.build_parser()
    serve = parser.parse_args(["serve", "--port", "8080", "--database-url", "postgresql://x"])
    assert (serve.console_action, serve.port, serve.host, serve.secure_cookies) == (
        "serve",
        8080,
        "127.0.0.1",
        None,
    )
    add = parser.parse_args(["user", "add", "vera", "--role", "viewer", "--password-stdin"])
    assert (add.user_action, add.name, add.role, add.password_stdin) == (
        "add",
        "vera",
        "viewer",
        True,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["user", "add", "vera", "--role", "admin"])
    proxied = parser.parse_args(
        ["serve", "--port", "1", "--trusted-proxy", "10.0.0.2", "--trusted-proxy", "::1"]
    )
    assert proxied.trusted_proxy == ["10.0.0.2", "::1"] and serve.trusted_proxy == []
    assert cli._addresses([" 10.0.0.2", "0:0::1"]) == ["10.0.0.2", "::1"]
    with pytest.raises(SystemExit, match="trusted-proxy"):
        cli._addresses(["proxy.internal"])


# --- timeline states (pure) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "state", "words"),
    [
        (("payment.settled", 2, [], None, None, False), "posted", "posted 2 entries"),
        (
            ("invoice.issued", 0, ["a", "gl_mapping_missing"], "no GL", None, False),
            "dead_lettered",
            "in the DLQ (gl_mapping_missing: no GL)",
        ),
        (("payment.settled", 0, [], None, "invoice:INV-9", True), "not_processed", "not processed"),
        (
            ("payment.settled", 0, [], None, "invoice:INV-9", False),
            "held",
            "waits for invoice INV-9",
        ),
        (("refund.issued", 0, [], None, None, False), "held", "presumably held"),
        (("contract.booked", 0, [], None, None, False), "applied", "posts nothing"),
        (("payment.failed", 0, [], None, None, True), "applied", "posts nothing"),
    ],
)
def test_event_state_follows_the_documented_order(args, state, words):
    found, detail = timeline.event_state(*args)
    assert found == state and words in detail


def test_assemble_keeps_the_page_order_and_attaches_entries_letters_and_bands():
    at = dt.datetime(2024, 1, 31, 12, tzinfo=dt.UTC)

    def event(event_id, offset, day, document, amount, entry_count, reasons=(), waiting=None):
        return (event_id, "invoice.issued", "US1", "in", 0, offset, at, day, "crm", document,
                Decimal(amount), "USD", entry_count, list(reasons), "no GL" if reasons else None,
                waiting)  # fmt: skip

    events = {
        "ev-1": event("ev-1", 4, dt.date(2024, 1, 10), "I1", 100, 1),
        "ev-2": event("ev-2", 5, dt.date(2024, 1, 20), "I2", 5_000_000, 0),
        "ev-3": event("ev-3", 3, dt.date(2024, 1, 12), "I3", 200_000, 0, ["gl_mapping_missing"]),
    }
    rec = timeline.Entry("e-rec", "revenue_recognition", dt.date(2024, 1, 31), "2024-01",
                         "rec", "tick-1/C1", None, None, None, None)  # fmt: skip
    posted = timeline.Entry("e-1", "invoice_issued", dt.date(2024, 1, 10), "2024-01", "inv",
                            "ev-1", "B", "rejected", None, "bad account")  # fmt: skip
    on_event = (0, 2, "gl_mapping_missing", "no GL", at, "billing", 0, 8, "ev-3")
    orphan = (0, 3, "avro_decode_failed", "bad bytes", at, "billing", 0, 9, None)
    rows = [
        timeline.PageRow("event", "ev-1", 0, 4, False),
        timeline.PageRow("event", "ev-3", 0, 3, False),
        timeline.PageRow("event", "ev-2", 0, 5, True),
        timeline.PageRow("recognition", "tick-1/C1", 1, 7, False),
        timeline.PageRow("dead_letter", None, 0, 3, False),
    ]
    items = timeline.assemble(
        rows, events, [posted, rec], [on_event, orphan], parse_thresholds("USD:100000,1000000")
    )
    assert [(i.kind, i.event_id, i.state) for i in items] == [
        ("event", "ev-1", "posted"),
        ("event", "ev-3", "dead_lettered"),
        ("event", "ev-2", "not_processed"),
        ("recognition", "tick-1/C1", "posted"),
        ("dead_letter", None, "dead_lettered"),
    ]
    assert items[0].entries[0].erp_state == "rejected" and items[3].entries == (rec,)
    assert items[0].document_id == "I1" and items[0].amount_minor == 100
    assert [d.position for d in items[1].dead_letters] == ["0:2"] and items[1].band == "medium"
    assert items[2].band is None  # only held and dead-lettered events are banded
    assert items[4].dead_letters[0].position == "0:3" and "avro_decode_failed" in items[4].detail
    assert items[3].detail == "revenue_recognition from tick-1/C1"
    assert timeline.money_of(Decimal(5), "EUR") == (5, "EUR")
    assert timeline.money_of(Decimal("5.5"), "EUR") is None
    assert timeline.money_of(Decimal(5), None) is None


def test_page_window_gives_the_last_page_unless_asked_and_clamps_the_number():
    assert timeline.page_window(25, None, 10) == (3, 3)
    assert timeline.page_window(25, 1, 10) == (1, 3)
    assert timeline.page_window(25, 0, 10) == (1, 3)
    assert timeline.page_window(25, -4, 10) == (1, 3)
    assert timeline.page_window(25, 99, 10) == (3, 3)
    assert timeline.page_window(20, None, 10) == (2, 2)
    assert timeline.page_window(0, None, 10) == (1, 1)


def test_page_links_keep_first_last_and_neighbours_with_gaps_marked():
    assert timeline.page_links(1, 1) == [1]
    assert timeline.page_links(3, 5) == [1, 2, 3, 4, 5]
    assert timeline.page_links(50, 50) == [1, None, 48, 49, 50]
    assert timeline.page_links(10, 50) == [1, None, 8, 9, 10, 11, 12, None, 50]
    assert timeline.page_links(4, 50) == [1, 2, 3, 4, 5, 6, None, 50]


# --- period close rules (pure) ---------------------------------------------------------------


def _rows(*statuses: tuple[str, str]) -> list[PeriodRow]:
    return [
        PeriodRow(
            "US1",
            period,
            status,
            dt.date(2024, 2, 5) if status == "closed" else None,
            3,
            None,
            None,
        )
        for period, status in statuses
    ]


def test_close_is_allowed_only_for_the_oldest_open_period():
    rows = _rows(("2024-01", "closed"), ("2024-02", "open"), ("2024-03", "open"))
    check_close(rows, "US1", "2024-02")  # the oldest open one: no refusal
    with pytest.raises(PeriodCloseRefused, match="already closed on 2024-02-05"):
        check_close(rows, "US1", "2024-01")
    with pytest.raises(PeriodCloseRefused, match="not the oldest open period: close 2024-02"):
        check_close(rows, "US1", "2024-03")
    with pytest.raises(PeriodCloseRefused, match="has no period 2024-07"):
        check_close(rows, "US1", "2024-07")
    with pytest.raises(ValueError, match="YYYY-MM"):
        check_close(rows, "US1", "2024-13")


def test_close_record_is_named_by_entity_and_period():
    record = period_close_record("US1", "2024-02", dt.date(2024, 3, 3))
    again = period_close_record("US1", "2024-02", dt.date(2024, 3, 4))
    assert record.event_id == again.event_id == "period-close/US1/2024-02"
    assert (record.entity, record.period, record.closed_on) == (
        "US1",
        "2024-02",
        dt.date(2024, 3, 3),
    )


# --- the client's address behind a proxy -----------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.5", "198.51.100.7", "203.0.113.5"),  # not a proxy: its header is a lie
        ("10.0.0.2", "198.51.100.7", "198.51.100.7"),
        ("10.0.0.2", "1.2.3.4, 198.51.100.7", "198.51.100.7"),  # the client wrote 1.2.3.4
        ("10.0.0.2", "198.51.100.7, 10.0.0.3", "198.51.100.7"),  # two trusted hops
        ("10.0.0.2", "not-an-address", "10.0.0.2"),
        ("10.0.0.2", None, "10.0.0.2"),
    ],
)
def test_client_address_reads_x_forwarded_for_only_from_a_trusted_proxy(peer, forwarded, expected):
    from aiohttp.test_utils import make_mocked_request

    from streams.console.context import client_address

    config = ConsoleConfig(
        NO_DATABASE,
        NO_DATABASE,
        load_settings({}),
        trusted_proxies=frozenset({"10.0.0.2", "10.0.0.3"}),
    )
    app = create_app(config)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    transport = type("T", (), {"get_extra_info": lambda self, name, default=None: (peer, 0)})()
    request = make_mocked_request("POST", "/login", headers=headers, app=app, transport=transport)
    assert client_address(request) == expected
