"""Log lines for people (text) or for machines (JSON), with the event each line is about.

``REVLEDGER_LOG_FORMAT=json`` writes one JSON object per line: ``ts`` (UTC, ISO 8601),
``level``, ``logger``, ``message``, then the fields of the event being processed, e.g.
``event_id``, ``correlation_id``, ``topic``, ``partition``, ``offset``, and ``exc`` for a
traceback. The default ``text`` keeps the usual line and appends the same fields as
``[event_id=... correlation_id=...]``.

The event fields come from a context variable that the agents set at the start of each
event (:func:`bind_message`, :func:`bind_record`). asyncio gives each task its own copy of
the context, so an agent's lines carry its own event and never another agent's.

Secrets never reach a log line: :func:`redact` blanks the password of a URL
(``postgresql://user:***@host``) and the value of ``password=``/``sasl.password=``-like
pairs, in the message and in tracebacks, in both formats.

Must not import faust (the projector and the lag exporter log through here too).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.config
import re
from collections.abc import Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

_NO_EVENT: Mapping[str, str] = MappingProxyType({})
# Fields of the event a line is about; empty between events.
_EVENT: ContextVar[Mapping[str, str]] = ContextVar("revledger_event", default=_NO_EVENT)

# Order of the event fields in a line (the ones a person looks for first).
_FIELD_ORDER = ("event_id", "correlation_id", "record_type", "topic", "partition", "offset")

_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(?=@)")
_KEY_PASSWORD = re.compile(
    r"(?P<head>\b[\w.]*(?:password|passwd|pwd|secret|sasl\.jaas\.config)\b['\"]?\s*[=:]\s*)"
    r"(?:(?P<quote>['\"]).*?(?P=quote)|[^\s'\",;&]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with URL passwords and ``password=...``-like values replaced by ``***``."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _KEY_PASSWORD.sub(_blank_value, text)


def _blank_value(match: re.Match) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('head')}{quote}***{quote}"


def bind_message(message: Any) -> None:
    """Start a new event context for a Kafka message (a Faust ``event.message``)."""
    _EVENT.set(
        {
            "topic": str(getattr(message, "topic", "")),
            "partition": str(getattr(message, "partition", "")),
            "offset": str(getattr(message, "offset", "")),
        }
    )


def bind_record(record: Any) -> None:
    """Add a decoded record's type, event id and correlation id to the current context."""
    fields = dict(_EVENT.get())
    fields["record_type"] = str(getattr(record, "schema_name", type(record).__name__))
    for name in ("event_id", "correlation_id"):
        value = getattr(record, name, None)
        if value:
            fields[name] = str(value)
    _EVENT.set(fields)


def clear_event() -> None:
    """Leave the event context (lines logged next are about no event)."""
    _EVENT.set(_NO_EVENT)


def current_record_type(default: str = "undecodable") -> str:
    """Record type of the event being processed (``default`` before it decoded)."""
    return _EVENT.get().get("record_type", default)


def event_fields() -> Mapping[str, str]:
    """The fields of the event being processed by the current task (empty: none)."""
    return _EVENT.get()


def _ordered(fields: Mapping[str, str]) -> list[tuple[str, str]]:
    known = [(name, fields[name]) for name in _FIELD_ORDER if name in fields]
    return known + sorted((k, v) for k, v in fields.items() if k not in _FIELD_ORDER)


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring for the keys)."""

    def format(self, record: logging.LogRecord) -> str:
        """The line for ``record``."""
        line: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(_ordered(event_fields()))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [event_id=...]``, secrets redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The line for ``record``."""
        text = super().format(record)
        fields = event_fields()
        if fields:
            pairs = " ".join(f"{key}={value}" for key, value in _ordered(fields))
            head, newline, rest = text.partition("\n")
            text = f"{head} [{pairs}]{newline}{rest}"
        return redact(text)


def logging_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dict: one stdout handler in ``log_format``.

    Faust's worker (mode) applies it itself (``faust.Worker(logging_config=...)``): it
    replaces the root handlers when it starts.
    """
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"revledger": {"()": f"{formatter.__module__}.{formatter.__name__}"}},
        "handlers": {
            "revledger": {
                "class": "logging.StreamHandler",
                "formatter": "revledger",
                "stream": "ext://sys.stdout",
            }
        },
        "root": {"level": level.upper(), "handlers": ["revledger"]},
    }


def configure_logging(log_format: str, level: str = "INFO") -> None:
    """Log to stdout in ``log_format`` (``text`` or ``json``) from ``level`` up."""
    logging.config.dictConfig(logging_config(log_format, level))


__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "bind_message",
    "bind_record",
    "clear_event",
    "configure_logging",
    "current_record_type",
    "event_fields",
    "logging_config",
    "redact",
]
