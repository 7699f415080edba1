"""Log lines: JSON or text, with the event being processed, never with a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import dataclass

import pytest

from connectors.simulation import builders as b
from streams.logs import (
    JsonFormatter,
    TextFormatter,
    bind_message,
    bind_record,
    clear_event,
    current_record_type,
    logging_config,
    redact,
)


@dataclass
class Message:
    topic: str = "billing.events.v1"
    partition: int = 3
    offset: int = 42


def _record(text: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("connect to postgresql://app:hunter2@db:5432/ledger failed")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("streams.test", logging.WARNING, __file__, 1, text, args, exc_info)


@pytest.fixture(autouse=True)
def _no_event():
    clear_event()
    yield
    clear_event()


def test_json_line_carries_event_and_correlation_ids_when_an_event_is_bound():
    bind_message(Message())
    bind_record(b.invoice(event_id="evt-77").model_copy(update={"correlation_id": "corr-9"}))

    line = json.loads(JsonFormatter().format(_record("posted %s entries", 2)))

    assert line["message"] == "posted 2 entries"
    assert line["level"] == "WARNING" and line["logger"] == "streams.test"
    assert line["event_id"] == "evt-77" and line["correlation_id"] == "corr-9"
    assert (line["topic"], line["partition"], line["offset"]) == ("billing.events.v1", "3", "42")
    assert line["record_type"] == "InvoiceIssued"
    assert line["ts"].endswith("+00:00")


def test_json_line_has_no_event_fields_when_no_event_is_bound():
    line = json.loads(JsonFormatter().format(_record("worker ready")))
    assert "event_id" not in line and "topic" not in line


def test_a_new_message_forgets_the_previous_event_when_bound():
    bind_message(Message())
    bind_record(b.invoice(event_id="evt-1"))
    bind_message(Message(offset=43))

    line = json.loads(JsonFormatter().format(_record("undecodable")))

    assert "event_id" not in line and line["offset"] == "43"
    assert current_record_type() == "undecodable"


def test_each_task_sees_its_own_event_when_agents_run_concurrently():
    seen: dict[str, str] = {}

    async def agent(name: str, event_id: str) -> None:
        bind_message(Message(topic=name))
        bind_record(b.invoice(event_id=event_id))
        await asyncio.sleep(0.01)  # the other agent binds its event meanwhile
        seen[name] = json.loads(JsonFormatter().format(_record("x")))["event_id"]

    async def both() -> None:
        await asyncio.gather(agent("sequencer", "evt-a"), agent("ledger", "evt-b"))

    asyncio.run(both())
    assert seen == {"sequencer": "evt-a", "ledger": "evt-b"}


def test_text_line_appends_the_event_fields_when_an_event_is_bound():
    bind_message(Message())
    bind_record(b.invoice(event_id="evt-77"))

    text = TextFormatter().format(_record("posted"))

    assert text.endswith(
        "streams.test: posted [event_id=evt-77 record_type=InvoiceIssued"
        " topic=billing.events.v1 partition=3 offset=42]"
    )


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()])
def test_passwords_are_blanked_when_a_line_or_traceback_holds_them(formatter):
    text = formatter.format(
        _record("database %s sasl.password=s3cret", "postgresql://app:hunter2@db/ledger", exc=True)
    )
    assert "hunter2" not in text and "s3cret" not in text
    assert "postgresql://app:***@db" in text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("postgresql://revledger:pw@postgres:5432/x", "postgresql://revledger:***@postgres:5432/x"),
        ("sasl.password=abc next", "sasl.password=*** next"),
        ('{"password": "p w"}', '{"password": "***"}'),
        ("host=x password=abc user=y", "host=x password=*** user=y"),
        ("http://schema-registry:8081/subjects", "http://schema-registry:8081/subjects"),
        ("kafka://broker:9092", "kafka://broker:9092"),
    ],
)
def test_redact_blanks_only_secrets_when_applied(raw, clean):
    assert redact(raw) == clean


def test_config_names_the_json_formatter_when_format_is_json():
    config = logging_config("json", "debug")
    assert config["formatters"]["revledger"]["()"] == "streams.logs.JsonFormatter"
    assert config["root"]["level"] == "DEBUG"
    assert logging_config("text")["formatters"]["revledger"]["()"] == "streams.logs.TextFormatter"
