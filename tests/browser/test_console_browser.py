"""Acceptance of the console (issue 11) in a real headless Chromium.

One console server (``python -m streams.console serve``) runs for the module against a
database of its own holding:

* a simulated company written by the projection's sink (:mod:`console_data`): its
  richest customer has invoices, payments, entries and acknowledged ERP batches;
* what a real ledger worker and a real projection (``--follow``) make of an invoice of an
  entity nobody configured: a dead letter (``unknown_entity``) on isolated topics.

Then, as people would, logging in through the form: an anonymous visitor gets the login
page; a viewer opens the customer's timeline and sees its invoice, payment, entries and
batch, and is refused a redrive (audited, nothing re-produced); the test configures the
entity (the dead letter stays where it is), then an operator redrives the dead letter
from the stuck-work page and watches the invoice post on the customer's timeline (and on
the entries topic, as ``tests/integration/test_dlq_redrive.py`` checks it).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from browser_harness import PASSWORDS, ROOT, ConsoleServer, add_user, console_server, serve_command
from console_data import LoadedCustomer, load_company, richest_customer
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.settings import Settings, worker_environment
from streams.topics import DLQ, ENTRIES, TOPICS

from pg_data import fresh_database
from worker_process import is_entry, read_committed, running_worker
from worker_process import isolated_settings as worker_settings

pytestmark = pytest.mark.integration
CODEC = Codec()
STRANDED_CUSTOMER = "C7"
STRANDED_ENTITY = "NEW1"
STRANDED_INVOICE = "INV-STRANDED-1"
WAIT_SECONDS = 90


@dataclass(frozen=True)
class Console:
    """The running console and what the database behind it holds."""

    server: ConsoleServer
    database_url: str
    customer: LoadedCustomer  # the simulated customer with the most events
    settings: Settings
    stranded_event_id: str
    entity_configured_at: float  # time.monotonic() when the stranded entity was produced


def _wait_for_row(database_url: str, query: str, params: list[Any], timeout: float) -> tuple:
    """Poll ``query`` until it returns a row (the projection follows the topics)."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()
        if row is not None:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"no row after {timeout:.0f}s for {query} {params}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def console(devstack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """The console server on a database with a simulated company and a real dead letter."""
    tmp_path = tmp_path_factory.mktemp("console")
    settings = worker_settings(devstack.bootstrap_servers, tmp_path, partitions=1)
    ensure_topics(settings, TOPICS)
    producer = RecordProducer(settings, CODEC)
    producer.send_all(b.base_records())
    stranded = b.invoice(STRANDED_INVOICE, entity_name=STRANDED_ENTITY, customer=STRANDED_CUSTOMER)
    producer.send_all([stranded])
    env = worker_environment(settings)
    with (
        fresh_database(devstack.database_url) as database_url,
        running_worker(settings, tmp_path / "worker.log"),
        following_projection(database_url, env, tmp_path / "projection.log"),
    ):
        # The worker starts meanwhile: load the company with the sink (no Kafka).
        load_company(database_url)
        with psycopg.connect(database_url) as conn:
            customer = richest_customer(conn)
        for role, password in PASSWORDS.items():
            add_user(database_url, role, role, password)
        _wait_for_row(
            database_url,
            "SELECT reason FROM revledger.dead_letters WHERE event_id = %s",
            [stranded.event_id],
            timeout=120,
        )
        # Configured now, redriven in the last test: the worker's reference reader has
        # followed it long before (the dead letter stays dead until redriven).
        producer.send_all([b.entity(STRANDED_ENTITY, "USD")])
        configured_at = time.monotonic()
        with console_server(
            serve_command(database_url), tmp_path / "console.log", env=env
        ) as server:
            yield Console(
                server, database_url, customer, settings, stranded.event_id, configured_at
            )


@contextlib.contextmanager
def following_projection(
    database_url: str, env: dict[str, str], log_path: Path
) -> Iterator[subprocess.Popen]:
    """``python -m streams.projection --follow`` into ``database_url`` for the block."""
    command = [sys.executable, "-m", "streams.projection", "--follow"]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*command, "--database-url", database_url],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    except BaseException:
        print(f"--- projection log ---\n{log_path.read_text(errors='replace')[-4000:]}")
        raise
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


# --- browsing --------------------------------------------------------------------------------


def wait(driver: Any, timeout: float = 15) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.2)


def path_of(driver: Any) -> str:
    return urlsplit(driver.current_url).path


def log_in(driver: Any, console: Console, role: str, then: str = "/") -> None:
    """Log in as ``role`` through the login form and land on ``then``."""
    driver.delete_all_cookies()
    driver.get(f"{console.server.url}/login?next={then}")
    driver.find_element(By.ID, "username").send_keys(role)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[role])
    driver.find_element(By.ID, "login-submit").click()
    try:
        wait(driver).until(lambda d: path_of(d) == then)
    except TimeoutException:
        body = driver.find_element(By.TAG_NAME, "body").text
        raise AssertionError(
            f"login as {role} did not reach {then}: at {driver.current_url}, saying {body!r}"
        ) from None


def audit_rows(console: Console, username: str) -> list[tuple[str, str, str]]:
    """The user's audited actions (its logins are audit rows too; they are left out)."""
    with psycopg.connect(console.database_url) as conn:
        return conn.execute(
            "SELECT action, outcome, detail FROM revledger.console_audit"
            " WHERE username = %s AND action <> 'login' ORDER BY audit_id",
            [username],
        ).fetchall()


def batched_entry(console: Console, event_type: str) -> tuple[str, str, str, str]:
    """(document, event id, entry id, batch id) of the customer's first batched entry of
    an event of ``event_type``."""
    with psycopg.connect(console.database_url) as conn:
        row = conn.execute(
            "SELECT coalesce(s.payload ->> 'invoice_id', s.payload ->> 'payment_id'),"
            "       s.event_id, e.entry_id, e.batch_id"
            "  FROM revledger.entry_batches AS e"
            "  JOIN revledger.source_events AS s ON s.event_id = e.source_event_id"
            " WHERE e.customer_id = %s AND s.event_type = %s AND e.batch_id IS NOT NULL"
            " ORDER BY e.posting_date, e.entry_id LIMIT 1",
            [console.customer.customer_id, event_type],
        ).fetchone()
    assert row is not None, f"no batched {event_type} entry for the customer"
    return row


# --- tests -----------------------------------------------------------------------------------


def test_anonymous_visitor_gets_the_login_page_when_opening_any_page(fresh_browser, console):
    customer = console.customer.customer_id
    for page in (f"/customers/{customer}", "/stuck", "/"):
        fresh_browser.get(console.server.url + page)
        assert path_of(fresh_browser) == "/login"
        assert fresh_browser.find_element(By.ID, "login-form").is_displayed()
        assert fresh_browser.find_elements(By.CSS_SELECTOR, "[data-event-id]") == []


def test_viewer_sees_invoice_payment_entries_and_batch_when_opening_a_customer(
    fresh_browser, console
):
    customer = console.customer
    invoice_id, invoice_event, invoice_entry, invoice_batch = batched_entry(
        console, "invoice.issued"
    )
    payment_id, payment_event, payment_entry, payment_batch = batched_entry(
        console, "payment.settled"
    )
    log_in(fresh_browser, console, "viewer", then=f"/customers/{customer.customer_id}")
    page = fresh_browser
    heading = page.find_element(By.ID, "customer")
    assert heading.get_attribute("data-customer-id") == customer.customer_id

    for document, event_id, entry_id, batch_id, event_type in (
        (invoice_id, invoice_event, invoice_entry, invoice_batch, "invoice.issued"),
        (payment_id, payment_event, payment_entry, payment_batch, "payment.settled"),
    ):
        item = page.find_element(By.CSS_SELECTOR, f'li[data-event-id="{event_id}"]')
        assert item.get_attribute("data-event-type") == event_type
        assert item.get_attribute("data-state") == "posted"
        assert document in item.text
        entry = item.find_element(By.CSS_SELECTOR, f'.entry[data-entry-id="{entry_id}"]')
        assert entry.get_attribute("data-batch-id") == batch_id
        assert entry.find_element(By.CSS_SELECTOR, "code.batch-id").text == batch_id
        assert "imported" in entry.find_element(By.CSS_SELECTOR, ".batch").text
        assert entry.find_elements(By.CSS_SELECTOR, "table.lines tr[data-account]")

    shown = {
        e.get_attribute("data-entry-id")
        for e in page.find_elements(By.CSS_SELECTOR, ".entry[data-entry-id]")
    }
    assert shown == set(customer.entry_ids)  # every entry of the customer, none of another
    batches = {
        e.get_attribute("data-batch-id")
        for e in page.find_elements(By.CSS_SELECTOR, ".entry[data-batch-id]")
    }
    assert batches == set(customer.batch_ids)
    assert page.find_elements(By.CSS_SELECTOR, "#balances tr[data-currency]")
    # A viewer reads everything: no error, no refusal on the page.
    assert page.find_elements(By.CSS_SELECTOR, ".flash.error") == []


def test_viewer_is_refused_and_audited_when_submitting_a_redrive(fresh_browser, console):
    log_in(fresh_browser, console, "viewer", then="/stuck")
    page = fresh_browser
    letter = page.find_element(
        By.CSS_SELECTOR, f'tr.dead-letter[data-event-id="{console.stranded_event_id}"]'
    )
    assert letter.get_attribute("data-reason") == "unknown_entity"
    Select(page.find_element(By.ID, "redrive-reason")).select_by_value("unknown_entity")
    page.find_element(By.ID, "redrive-customer").send_keys(STRANDED_CUSTOMER)
    page.find_element(By.ID, "redrive-submit").click()

    refusal = wait(page).until(lambda d: d.find_element(By.CSS_SELECTOR, ".flash.error"))
    assert "operators" in refusal.text and "viewer" in refusal.text
    assert audit_rows(console, "viewer") == [("dlq.redrive", "refused", "role viewer may not act")]
    # Nothing went back to the topics: the dead letter is still the only record there.
    dlq_topic = console.settings.topic_prefix + DLQ.name
    assert len(read_committed(console.settings.bootstrap_servers, dlq_topic, 2, timeout=3)) == 1


def test_operator_redrives_a_dead_letter_and_sees_it_post_when_its_entity_exists(
    fresh_browser, console
):
    # The worker's reference reader follows a new entity within a second or two (as in
    # test_dlq_redrive); when this test runs alone, wait for the rest of that time.
    time.sleep(max(0.0, console.entity_configured_at + 2 - time.monotonic()))
    log_in(fresh_browser, console, "operator", then="/stuck")
    page = fresh_browser
    page.find_element(
        By.CSS_SELECTOR, f'tr.dead-letter[data-event-id="{console.stranded_event_id}"]'
    )
    Select(page.find_element(By.ID, "redrive-reason")).select_by_value("unknown_entity")
    page.find_element(By.ID, "redrive-customer").send_keys(STRANDED_CUSTOMER)
    page.find_element(By.ID, "redrive-submit").click()
    flash = wait(page).until(lambda d: d.find_element(By.CSS_SELECTOR, ".flash"))
    assert "error" not in (flash.get_attribute("class") or "")
    assert "redrove 1 records with reason unknown_entity for customer C7" in flash.text

    # Watch it post: the customer's timeline, reloaded, until the invoice has its entry.
    timeline = f"{console.server.url}/customers/{STRANDED_CUSTOMER}"
    selector = f'li[data-event-id="{console.stranded_event_id}"][data-state="posted"] .entry'

    def posted(driver: Any) -> Any:
        driver.get(timeline)
        return driver.find_elements(By.CSS_SELECTOR, selector)

    entries = wait(page, WAIT_SECONDS).until(posted)
    assert len(entries) == 1
    assert (
        STRANDED_INVOICE
        in page.find_element(
            By.CSS_SELECTOR, f'li[data-event-id="{console.stranded_event_id}"]'
        ).text
    )
    # Posted once, on the entries topic too.
    topic = console.settings.topic_prefix + ENTRIES.name
    posted_records = read_committed(
        console.settings.bootstrap_servers, topic, 2, timeout=5, only=is_entry
    )
    assert [CODEC.decode(r.value()).source_event_id for r in posted_records] == [
        console.stranded_event_id
    ]
    audited = audit_rows(console, "operator")
    assert [(action, outcome) for action, outcome, _ in audited] == [("dlq.redrive", "done")]
    assert "redrove 1 records" in audited[0][2]
    # The stuck page no longer lists it: it posted since.
    page.get(f"{console.server.url}/stuck")
    assert (
        page.find_elements(
            By.CSS_SELECTOR, f'tr.dead-letter[data-event-id="{console.stranded_event_id}"]'
        )
        == []
    )
