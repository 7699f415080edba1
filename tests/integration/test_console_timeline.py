"""The customer timeline paged by PostgreSQL (streams/console/timeline.py) on a real database.

One customer, ``C-T``, with an item in every state and both kinds of orphan items, in
input order (partition 0 of the inputs topic):

    offset  event        business day  what became of it
    0       ev-INV-1     01-16         posted (invoice)
    1       ev-FAIL      01-15         applied (a failed payment attempt posts nothing)
    2       ev-PAY-2     01-17         held (pays INV-9, which never came)
    3       ev-PAY-1     01-20         posted (pays INV-1): the last posted input
    4       ev-INV-X     01-17         dead lettered (gl_mapping_missing)
    5       ev-INV-LATE  01-16         not processed (after the last posted input)

plus a recognition entry sourced from a tick (``tick-1/C-T``, posted 01-31) and a dead
letter that never decoded (keyed ``C-T``, no event id, failed 01-17); another customer's
event and dead letter on the same days, which must not show; three contracts.

Checks: every page, of any size, holds the items in business order (day, then events in
input order, then entries, then dead letters) with the state the module docstring gives;
the default page is the latest; the counts per state (SQL) equal the states of the items
(Python); the contracts come a page at a time, latest booked first; the customer and
contracts pages render through HTTP with their pagers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import re
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.simulation import builders as b
from ledger.materiality import parse_thresholds
from streams.console import store, timeline
from streams.console.app import ConsoleConfig, create_app
from streams.settings import load_settings

import pg_data

pytestmark = pytest.mark.integration
CUSTOMER = "C-T"
OTHER = "C-OTHER"
THRESHOLDS = parse_thresholds("USD:100000,1000000")
FAILED_AT = dt.datetime(2024, 1, 17, 9, 0, tzinfo=dt.UTC)
PASSWORD = "timeline-viewer-passphrase"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
# (kind, event id or DLQ position, state) in the order the timeline must show them.
EXPECTED = [
    ("event", "ev-FAIL", "applied"),
    ("event", "ev-INV-1", "posted"),
    ("event", "ev-INV-LATE", "not_processed"),
    ("event", "ev-PAY-2", "held"),
    ("event", "ev-INV-X", "dead_lettered"),
    ("dead_letter", "0:1", "dead_lettered"),
    ("event", "ev-PAY-1", "posted"),
    ("recognition", "tick-1/C-T", "posted"),
]


def _recognition_entry() -> Any:
    """A recognition entry sourced from a tick, shaped as pg_data.insert_entries reads it."""
    lines = tuple(
        SimpleNamespace(
            line_no=n,
            account=account,
            side=side,
            amount_minor=10_00,
            currency="USD",
            functional_amount_minor=10_00,
            dimensions={"contract_id": "K-1"},
        )
        for n, account, side in ((1, "deferred_revenue", "debit"), (2, "revenue", "credit"))
    )
    return SimpleNamespace(
        entry_id="tick-1/C-T:revenue_recognition:0",
        entity=b.US,
        customer_id=CUSTOMER,
        source_event_id="tick-1/C-T",
        source_event_type="clock.tick",
        rule="revenue_recognition",
        sequence=0,
        posting_date=dt.date(2024, 1, 31),
        original_date=dt.date(2024, 1, 31),
        period="2024-01",
        functional_currency="USD",
        description="recognition",
        lines=lines,
    )


def load(conn: psycopg.Connection) -> None:
    """C-T's story (see the module docstring) and another customer's noise."""
    day = b.DAY  # 2024-01-15
    invoice = b.invoice("INV-1", customer=CUSTOMER, event_id="ev-INV-1", on=day + dt.timedelta(1))
    payment = b.payment(
        "PAY-1", [("INV-1", 100_00)], customer=CUSTOMER, on=day + dt.timedelta(5),
        event_id="ev-PAY-1",
    )  # fmt: skip
    _, outcomes = b.apply_all([invoice, payment], b.reference_data())
    pg_data.insert_source_events(
        conn,
        [
            invoice,
            b.payment_failed("PAY-F", customer=CUSTOMER, on=day, event_id="ev-FAIL"),
            b.payment(
                "PAY-2", [("INV-9", 50_00)], customer=CUSTOMER, on=day + dt.timedelta(2),
                event_id="ev-PAY-2",
            ),
            payment,
            b.invoice("INV-X", customer=CUSTOMER, event_id="ev-INV-X", on=day + dt.timedelta(2)),
            b.invoice(
                "INV-LATE", customer=CUSTOMER, event_id="ev-INV-LATE", on=day + dt.timedelta(1)
            ),
            b.invoice("INV-O", customer=OTHER, event_id="ev-OTHER", on=day + dt.timedelta(2)),
        ],
    )  # fmt: skip
    pg_data.insert_entries(
        conn, [e for outcome in outcomes for e in outcome.entries] + [_recognition_entry()]
    )
    pg_data.insert_dlq(
        conn, "gl_mapping_missing", event_id="ev-INV-X", failed_at=FAILED_AT,
        message="no GL mapping for revenue", original_key=CUSTOMER.encode(), offset=0,
    )  # fmt: skip
    pg_data.insert_dlq(
        conn, "avro_decode_failed", failed_at=FAILED_AT, message="bad bytes",
        original_key=CUSTOMER.encode(), original_value=b"\x00garbage", offset=1,
    )  # fmt: skip
    pg_data.insert_dlq(
        conn, "avro_decode_failed", failed_at=FAILED_AT, message="bad bytes",
        original_key=OTHER.encode(), original_value=b"\x00garbage", offset=2,
    )  # fmt: skip
    for n, booked in enumerate((dt.date(2024, 1, 1), dt.date(2024, 3, 1), dt.date(2024, 2, 1))):
        contract_id = f"K-{n + 1}"
        pg_data.insert_contract(
            conn, contract_id, customer_id=CUSTOMER, entity=b.US, currency="USD",
            total_price_minor=120_00, booking_date=booked, service_start=booked,
            obligations=[pg_data.obligation(
                "O1", allocated_minor=120_00, service_start=booked, service_end=None
            )],
        )  # fmt: skip
        pg_data.insert_schedule(conn, contract_id, "O1", "USD", [("2024-01", 10_00)])


@pytest.fixture(scope="module")
def database(devstack: Any) -> Iterator[str]:
    """A migrated database of this module's own with C-T loaded."""
    with pg_data.fresh_database(devstack.database_url) as url:
        with pg_data.connect(url) as conn:
            load(conn)
            store.add_user(conn, "tess", "viewer", PASSWORD)
        yield url


def shown(item: timeline.TimelineItem) -> tuple[str, str | None, str]:
    key = item.position if item.kind == "dead_letter" else item.event_id
    return item.kind, key, item.state


@pytest.mark.parametrize("size", [1, 3, 8, 200])
def test_pages_hold_every_item_in_business_order_with_its_state(database, size):
    with pg_data.connect(database) as conn:
        first = timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS, 1, size)
        pages = [first] + [
            timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS, n, size)
            for n in range(2, first.pages + 1)
        ]
        latest = timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS, None, size)
        beyond = timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS, first.pages + 5, size)
        below = timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS, -1, size)
    items = [item for page in pages for item in page.items]
    assert [shown(item) for item in items] == EXPECTED
    assert first.pages == -(-len(EXPECTED) // size)
    assert [page.page for page in pages] == list(range(1, first.pages + 1))
    assert latest.page == beyond.page == first.pages and latest.items == pages[-1].items
    assert below.page == 1 and below.items == first.items
    # The counts (SQL, every page) are the states of the items (Python, page by page).
    assert first.counts == dict(Counter(item.state for item in items))
    assert first.counts == {
        "posted": 3, "applied": 1, "not_processed": 1, "held": 1, "dead_lettered": 2,
    }  # fmt: skip
    assert first.total == len(EXPECTED)


def test_items_carry_their_entries_dead_letters_and_what_a_hold_waits_for(database):
    with pg_data.connect(database) as conn:
        found = timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS)
    by_key = {shown(item)[1]: item for item in found.items}
    assert "waits for invoice INV-9" in by_key["ev-PAY-2"].detail
    assert by_key["ev-PAY-2"].band is not None  # held: banded
    assert [d.reason for d in by_key["ev-INV-X"].dead_letters] == ["gl_mapping_missing"]
    orphan = by_key["0:1"]
    assert orphan.day == FAILED_AT.date() and "avro_decode_failed" in orphan.detail
    (entry,) = by_key["tick-1/C-T"].entries
    assert entry.rule == "revenue_recognition" and len(entry.lines) == 2
    assert by_key["ev-INV-1"].entries and by_key["ev-INV-1"].entries[0].lines
    assert by_key["ev-INV-1"].entries[0].erp_state == "not batched"
    assert "ev-OTHER" not in by_key and "0:2" not in by_key
    assert {b.currency for b in found.balances} == {"USD"}


def test_contracts_come_a_page_at_a_time_latest_booked_first(database):
    with pg_data.connect(database) as conn:
        found = timeline.customer_timeline(conn, CUSTOMER, THRESHOLDS)
        first = timeline.customer_contracts(conn, CUSTOMER, 1, 2)
        second = timeline.customer_contracts(conn, CUSTOMER, 2, 2)
        beyond = timeline.customer_contracts(conn, CUSTOMER, 9, 2)
        nobody = timeline.customer_contracts(conn, "NOBODY", 1, 2)
    assert found.contracts.total == 3
    assert [c.contract_id for c in found.contracts.contracts] == ["K-2", "K-3", "K-1"]
    assert [c.contract_id for c in first.contracts] == ["K-2", "K-3"] and first.pages == 2
    assert [c.contract_id for c in second.contracts] == ["K-1"] and beyond.page == 2
    k1 = second.contracts[0]
    assert [(p.period, p.scheduled_minor) for p in k1.periods] == [("2024-01", 10_00)]
    assert nobody.total == 0 and nobody.contracts == ()


def test_customer_and_contracts_pages_render_with_their_pagers(database, monkeypatch):
    # Pages of 3 items: the handler reads the module's function at each request.
    monkeypatch.setattr(
        timeline, "customer_timeline", functools.partial(timeline.customer_timeline, size=3)
    )
    monkeypatch.setattr(timeline, "CONTRACTS_SHOWN", 2)
    config = ConsoleConfig(database, database, load_settings({}), cookie_secure=False)

    async def scenario(client: TestClient) -> None:
        form = await client.get("/login")
        token = CSRF.search(await form.text())
        assert token
        await client.post(
            "/login",
            data={"csrf_token": token.group(1), "username": "tess", "password": PASSWORD},
        )
        page = await client.get(f"/customers/{CUSTOMER}")
        text = await page.text()
        assert page.status == 200
        assert 'data-page="3" data-pages="3" data-total="8"' in text
        assert text.count('<li class="item ') == 2  # the latest page: 8 = 3 + 3 + 2
        assert 'href="?page=2"' in text and 'data-state="not_processed"' in text
        assert 'data-count="2"' in text  # two dead letters over all pages
        assert text.count('class="contract"') == 2 and 'id="all-contracts"' in text
        first = await (await client.get(f"/customers/{CUSTOMER}?page=1")).text()
        assert 'data-event-id="ev-FAIL"' in first and 'data-event-id="ev-PAY-1"' not in first
        assert (await client.get(f"/customers/{CUSTOMER}?page=x")).status == 400
        huge = await client.get(f"/customers/{CUSTOMER}?page={10**30}")
        assert huge.status == 200 and 'data-page="3"' in await huge.text()
        contracts = await client.get(f"/contracts?customer={CUSTOMER}")
        listed = await contracts.text()
        assert contracts.status == 200 and listed.count('class="contract"') == 3
        assert 'data-period="2024-01"' in listed
        assert (await client.get("/contracts")).status == 400
        assert (await client.get("/contracts?customer=NOBODY")).status == 404

    async def session() -> None:
        async with TestClient(TestServer(create_app(config))) as client:
            await scenario(client)

    asyncio.run(session())
