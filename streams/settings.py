"""Worker settings: one object, every knob explicit, read from the environment.

The environment variable names here are the contract shared with ``docker-compose.yml``,
the README's configuration table and ``.devstack/env`` (a test checks they agree).
Nothing relies on a library default that matters for correctness: the Faust settings
that shape exactly-once behaviour are spelled out in :func:`streams.app.build_app`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from ledger.materiality import DEFAULT_THRESHOLDS, Thresholds, parse_thresholds


class SettingsError(ValueError):
    """Raised when an environment variable holds a value the worker cannot use."""


class Settings(BaseModel):
    """Everything a worker needs to know, with the environment variable that sets it."""

    # hide_input_in_errors: a ValidationError (the cause of SettingsError, printed in a
    # traceback) would otherwise show the input values: DATABASE_URL, KAFKA_SASL_PASSWORD.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    app_id: str = Field("revledger", description="REVLEDGER_APP_ID: Faust app id = group id")
    topic_prefix: str = Field(
        "", description="REVLEDGER_TOPIC_PREFIX: prepended to every topic name (isolation)"
    )
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="KAFKA_BOOTSTRAP_SERVERS: host:port[,host:port]"
    )
    # repr=False: the URL may carry a password (repr(settings) ends up in logs and tracebacks).
    database_url: str | None = Field(
        None, repr=False, description="DATABASE_URL: PostgreSQL for projection"
    )
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
    # An event's entries become visible after two commits (the sequencer's, then the
    # ledger's): latency is about two intervals plus queueing. 0.1 s (Kafka Streams' own
    # exactly-once default) is what keeps p99 under 1 s at half the maximum throughput
    # (issue 7: 1 s gives ~2.4 s). Its price is per commit, so it weighs most at low
    # rates: at ~200 events/s the ledger spent 4.2 instead of 2.5 ms CPU per event, burst
    # throughput fell to 0.55x of 1 s's (0.25 s: 0.83x, p99 ~1.1-1.35 s), and ~20 % more
    # records were written per event (transaction markers).
    commit_interval_seconds: float = Field(
        0.1, gt=0, description="REVLEDGER_COMMIT_INTERVAL_SECONDS: transaction length"
    )
    max_message_bytes: int = Field(
        1_048_576, ge=1024, description="REVLEDGER_MAX_MESSAGE_BYTES: larger input goes to DLQ"
    )
    # A customer's state is one record of a Faust-created changelog topic, whose limit is
    # the broker's message.max.bytes (1 MiB by default): a larger state could never be
    # committed and would stall its partition, so the event that would make it so goes to
    # the DLQ (customer_state_too_large). Raise it only with the changelog topics' limit.
    max_state_bytes: int = Field(
        1_048_576 - 16 * 1024,
        ge=1024,
        description="REVLEDGER_MAX_STATE_BYTES: largest customer state (JSON) the ledger stores",
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
    log_format: Literal["text", "json"] = Field(
        "text",
        description="REVLEDGER_LOG_FORMAT: text (for people) or json (one object per line,"
        " with the event id and correlation id of the event a line is about)",
    )
    materiality_thresholds: str = Field(
        DEFAULT_THRESHOLDS,
        description="REVLEDGER_MATERIALITY_THRESHOLDS: CUR:medium_from,high_from[;...] in"
        " minor units of the entity's functional currency; bands DLQ records and held events",
    )
    metrics_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="REVLEDGER_METRICS_INTERVAL_SECONDS: how often a worker reads the last"
        " stable offsets for its lag metrics (one broker request)",
    )

    # Kafka security (docs/SECURITY.md): passed to every confluent-kafka client by
    # kafka_client_config() and to Faust/aiokafka by streams.app.broker_credentials().
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="KAFKA_SECURITY_PROTOCOL: SASL_SSL in production"
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="KAFKA_SASL_MECHANISM: SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(None, description="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="KAFKA_SASL_PASSWORD: never printed (SecretStr)"
    )
    kafka_ssl_ca_location: Path | None = Field(
        None,
        description="KAFKA_SSL_CA_LOCATION: PEM file of the CA(s) of the brokers' certificates"
        " (unset: the system's trust store)",
    )
    kafka_ssl_certificate_location: Path | None = Field(
        None, description="KAFKA_SSL_CERTIFICATE_LOCATION: client certificate (PEM), mutual TLS"
    )
    kafka_ssl_key_location: Path | None = Field(
        None, description="KAFKA_SSL_KEY_LOCATION: private key (PEM) of the client certificate"
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        None, description="KAFKA_SSL_KEY_PASSWORD: of an encrypted client key; never printed"
    )
    kafka_ssl_endpoint_identification_algorithm: Literal["https", "none"] = Field(
        "https",
        description="KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM: https checks the broker's host"
        " name against its certificate; none checks the chain only (tests, IP-only brokers)",
    )

    @model_validator(mode="after")
    def _kafka_security_is_consistent(self) -> Settings:
        problems = kafka_security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @field_validator("materiality_thresholds")
    @classmethod
    def _thresholds_parse(cls, value: str) -> str:
        parse_thresholds(value)  # MaterialityError is a ValueError: reported with the name
        return value

    @property
    def thresholds(self) -> Thresholds:
        """The parsed materiality thresholds."""
        return _parsed_thresholds(self.materiality_thresholds)


@functools.cache
def _parsed_thresholds(text: str) -> Thresholds:
    return parse_thresholds(text)


def kafka_security_problems(settings: Settings) -> list[str]:
    """What is inconsistent in the Kafka security settings (empty when nothing).

    Credentials or TLS files set for a protocol that would ignore them are refused rather
    than ignored: an operator who set a CA file believes the traffic is encrypted.
    """
    sasl = settings.kafka_security_protocol.startswith("SASL_")
    tls = settings.kafka_security_protocol in ("SSL", "SASL_SSL")
    has_credentials = settings.kafka_sasl_username or settings.kafka_sasl_password
    tls_files = (
        settings.kafka_ssl_ca_location,
        settings.kafka_ssl_certificate_location,
        settings.kafka_ssl_key_location,
        settings.kafka_ssl_key_password,
    )
    problems = []
    if sasl and not (settings.kafka_sasl_username and settings.kafka_sasl_password):
        problems.append(
            f"KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol} needs"
            " KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if has_credentials and not sasl:
        problems.append(
            "KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL is"
            f" {settings.kafka_security_protocol}: use SASL_SSL"
        )
    if any(tls_files) and not tls:
        problems.append(
            "KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL is"
            f" {settings.kafka_security_protocol}: use SSL or SASL_SSL"
        )
    if bool(settings.kafka_ssl_certificate_location) != bool(settings.kafka_ssl_key_location):
        problems.append("KAFKA_SSL_CERTIFICATE_LOCATION and KAFKA_SSL_KEY_LOCATION go together")
    if settings.kafka_ssl_key_password and not settings.kafka_ssl_key_location:
        problems.append("KAFKA_SSL_KEY_PASSWORD is set without KAFKA_SSL_KEY_LOCATION")
    return problems


def kafka_client_config(
    settings: Settings, extra: Mapping[str, object] | None = None
) -> dict[str, object]:
    """The confluent-kafka (librdkafka) settings that reach the brokers, plus ``extra``.

    Every Consumer, Producer and AdminClient is built from this, so the security settings
    reach all of them. The result holds the password in clear, as librdkafka needs it; it
    is a :class:`KafkaClientConfig`, whose repr hides the secrets: keep it that type (pass
    more keys as ``extra`` rather than ``{**config, ...}``).
    """
    config = KafkaClientConfig(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "security.protocol": settings.kafka_security_protocol,
        }
    )
    if settings.kafka_security_protocol.startswith("SASL_"):
        config["sasl.mechanism"] = settings.kafka_sasl_mechanism
        config["sasl.username"] = settings.kafka_sasl_username
        config["sasl.password"] = _secret(settings.kafka_sasl_password)
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        config["ssl.endpoint.identification.algorithm"] = (
            settings.kafka_ssl_endpoint_identification_algorithm
        )
        optional = {
            "ssl.ca.location": settings.kafka_ssl_ca_location,
            "ssl.certificate.location": settings.kafka_ssl_certificate_location,
            "ssl.key.location": settings.kafka_ssl_key_location,
        }
        config.update({key: str(path) for key, path in optional.items() if path is not None})
        if settings.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = _secret(settings.kafka_ssl_key_password)
    config.update(extra or {})
    return config


class KafkaClientConfig(dict):  # type: ignore[type-arg]
    """A librdkafka config dict whose ``repr`` masks the secrets (it may end up in a log)."""

    SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password"})

    def __repr__(self) -> str:
        shown = {k: "**********" if k in self.SECRET_KEYS else v for k, v in self.items()}
        return f"KafkaClientConfig({shown!r})"

    __str__ = __repr__


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


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
    "max_state_bytes": "REVLEDGER_MAX_STATE_BYTES",
    "hold_timeout_days": "REVLEDGER_HOLD_TIMEOUT_DAYS",
    "batch_max_entries": "REVLEDGER_BATCH_MAX_ENTRIES",
    "batch_max_age_days": "REVLEDGER_BATCH_MAX_AGE_DAYS",
    "batch_dimensions": "REVLEDGER_BATCH_DIMENSIONS",
    "service_version": "REVLEDGER_SERVICE_VERSION",
    "log_level": "REVLEDGER_LOG_LEVEL",
    "log_format": "REVLEDGER_LOG_FORMAT",
    "materiality_thresholds": "REVLEDGER_MATERIALITY_THRESHOLDS",
    "metrics_interval_seconds": "REVLEDGER_METRICS_INTERVAL_SECONDS",
    "kafka_security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "kafka_sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "kafka_sasl_username": "KAFKA_SASL_USERNAME",
    "kafka_sasl_password": "KAFKA_SASL_PASSWORD",
    "kafka_ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "kafka_ssl_certificate_location": "KAFKA_SSL_CERTIFICATE_LOCATION",
    "kafka_ssl_key_location": "KAFKA_SSL_KEY_LOCATION",
    "kafka_ssl_key_password": "KAFKA_SSL_KEY_PASSWORD",
    "kafka_ssl_endpoint_identification_algorithm": "KAFKA_SSL_ENDPOINT_IDENTIFICATION_ALGORITHM",
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
            # A check across fields (no loc) names its variables in its message.
            f"{ENVIRONMENT.get(str(err['loc'][0]), err['loc'][0])}: {err['msg']}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")
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
        if isinstance(value, SecretStr):  # str() of a SecretStr is its mask
            value = value.get_secret_value()
        if value is not None:
            env[name] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env
