"""Worker settings: one object, every knob explicit, read from the environment.

The environment variable names here are the contract shared with ``docker-compose.yml``,
the README's configuration table and ``.devstack/env`` (a test checks they agree).
Nothing relies on a library default that matters for correctness: the Faust settings
that shape exactly-once behaviour are spelled out in :func:`streams.app.build_app`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SettingsError(ValueError):
    """Raised when an environment variable holds a value the worker cannot use."""


class Settings(BaseModel):
    """Everything a worker needs to know, with the environment variable that sets it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_id: str = Field("revledger", description="REVLEDGER_APP_ID: Faust app id = group id")
    topic_prefix: str = Field(
        "", description="REVLEDGER_TOPIC_PREFIX: prepended to every topic name (isolation)"
    )
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port]"
    )
    database_url: str | None = Field(None, description="DATABASE_URL: PostgreSQL for projection")
    schema_registry_url: str | None = Field(
        None, description="SCHEMA_REGISTRY_URL: Confluent framing instead of single-object"
    )
    partitions: int = Field(
        8, ge=1, description="REVLEDGER_PARTITIONS: partitions of every customer-keyed topic"
    )
    replication_factor: int = Field(1, ge=1, description="REVLEDGER_REPLICATION_FACTOR")
    processing_guarantee: Literal["exactly_once", "at_least_once"] = Field(
        "exactly_once", description="REVLEDGER_PROCESSING_GUARANTEE"
    )
    store: str = Field(
        "rocksdb://", description="REVLEDGER_STORE: rocksdb:// (rocksdict) or memory://"
    )
    data_dir: Path = Field(Path(".devstack/worker"), description="REVLEDGER_DATA_DIR")
    web_host: str = Field("127.0.0.1", description="REVLEDGER_WEB_HOST")
    web_port: int = Field(6066, ge=0, le=65535, description="REVLEDGER_WEB_PORT (0: disabled)")
    commit_interval_seconds: float = Field(
        1.0, gt=0, description="REVLEDGER_COMMIT_INTERVAL_SECONDS: transaction length"
    )
    max_message_bytes: int = Field(
        1_048_576, ge=1024, description="REVLEDGER_MAX_MESSAGE_BYTES: larger input goes to DLQ"
    )
    hold_timeout_days: int = Field(
        7, ge=1, description="REVLEDGER_HOLD_TIMEOUT_DAYS: business days before orphan_event"
    )
    batch_max_entries: int = Field(
        500, ge=1, description="REVLEDGER_BATCH_MAX_ENTRIES: entries that close an ERP batch"
    )
    batch_max_age_days: int = Field(
        1,
        ge=0,
        description="REVLEDGER_BATCH_MAX_AGE_DAYS: business days a batch window stays open",
    )
    batch_dimensions: str = Field(
        "product_family",
        pattern=r"^([a-z][a-z0-9_]*(,[a-z][a-z0-9_]*)*)?$",
        description="REVLEDGER_BATCH_DIMENSIONS: comma-separated entry dimensions kept on"
        " ERP batch lines",
    )
    service_version: str = Field("0.1.0", description="REVLEDGER_SERVICE_VERSION")
    log_level: str = Field("INFO", description="REVLEDGER_LOG_LEVEL")


# Environment variable for each field: the one place the names are spelled out.
ENVIRONMENT: Mapping[str, str] = {
    "app_id": "REVLEDGER_APP_ID",
    "topic_prefix": "REVLEDGER_TOPIC_PREFIX",
    "bootstrap_servers": "KAFKA_BOOTSTRAP_SERVERS",
    "database_url": "DATABASE_URL",
    "schema_registry_url": "SCHEMA_REGISTRY_URL",
    "partitions": "REVLEDGER_PARTITIONS",
    "replication_factor": "REVLEDGER_REPLICATION_FACTOR",
    "processing_guarantee": "REVLEDGER_PROCESSING_GUARANTEE",
    "store": "REVLEDGER_STORE",
    "data_dir": "REVLEDGER_DATA_DIR",
    "web_host": "REVLEDGER_WEB_HOST",
    "web_port": "REVLEDGER_WEB_PORT",
    "commit_interval_seconds": "REVLEDGER_COMMIT_INTERVAL_SECONDS",
    "max_message_bytes": "REVLEDGER_MAX_MESSAGE_BYTES",
    "hold_timeout_days": "REVLEDGER_HOLD_TIMEOUT_DAYS",
    "batch_max_entries": "REVLEDGER_BATCH_MAX_ENTRIES",
    "batch_max_age_days": "REVLEDGER_BATCH_MAX_AGE_DAYS",
    "batch_dimensions": "REVLEDGER_BATCH_DIMENSIONS",
    "service_version": "REVLEDGER_SERVICE_VERSION",
    "log_level": "REVLEDGER_LOG_LEVEL",
}


def load_settings(environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
    """Build settings from the environment (``os.environ`` by default), then ``overrides``.

    Raises:
        SettingsError: a variable is set to a value of the wrong type or out of range;
            the message names the variable.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {
        field: environ[name] for field, name in ENVIRONMENT.items() if environ.get(name)
    }
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENVIRONMENT.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid settings: {problems}") from exc


def worker_environment(settings: Settings, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment that reproduces ``settings`` in a worker process.

    ``base`` (default ``os.environ``) is kept except its ``REVLEDGER_*`` variables, which
    ``settings`` replaces.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items() if not k.startswith("REVLEDGER_")}
    for field, name in ENVIRONMENT.items():
        value = getattr(settings, field)
        if value is not None:
            env[name] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env
