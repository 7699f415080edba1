"""No secret reaches a log line, a repr, an error message or a metric.

Settings are built from an environment holding recognisable secrets (the Kafka SASL
password, the TLS key password, and the password in DATABASE_URL); then the code paths
that print, log or export anything about the configuration run for real (settings and
their errors, the Kafka client config, Faust's credentials, the database commands when the
database is unreachable, the log formatters, the metrics registries), and everything they
wrote is searched for the secrets. Nothing here needs a broker or a database.
"""

from __future__ import annotations

import argparse
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from streams import metrics
from streams.app import broker_credentials, build_app
from streams.lag_exporter import LagMetrics
from streams.logs import configure_logging
from streams.settings import Settings, SettingsError, kafka_client_config, load_settings
from tests.unit.test_kafka_security import KEY_PASSWORD, make_tls_files

SASL_PASSWORD = "SASL-s3cret-4f9a1c"
DB_PASSWORD = "PG-s3cret-77b1e2"
SECRETS = (SASL_PASSWORD, KEY_PASSWORD, DB_PASSWORD)
# Port 1 on loopback: nothing listens, a connection is refused at once.
DATABASE_URL = f"postgresql://revledger:{DB_PASSWORD}@127.0.0.1:1/revledger?connect_timeout=2"


def environment(tmp_path: Path) -> dict[str, str]:
    """Every secret the workers take, with no TLS files (see :func:`settings`)."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_USERNAME": "revledger-worker",
        "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
        "DATABASE_URL": DATABASE_URL,
        "REVLEDGER_DATA_DIR": str(tmp_path / "worker"),
    }


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret: ...{_around(text, secret)}..."


def _around(text: str, secret: str) -> str:
    at = text.index(secret)
    return text[max(0, at - 60) : at + len(secret) + 20]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """SASL_SSL with a client certificate whose key is encrypted (real files: Faust loads them)."""
    tls_files = make_tls_files(tmp_path)
    env = environment(tmp_path)
    env["KAFKA_SSL_CA_LOCATION"] = str(tls_files["ca"])
    env["KAFKA_SSL_CERTIFICATE_LOCATION"] = str(tls_files["cert"])
    env["KAFKA_SSL_KEY_LOCATION"] = str(tls_files["key"])
    env["KAFKA_SSL_KEY_PASSWORD"] = KEY_PASSWORD
    return load_settings(env)


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the root logger back as it was after a test reconfigured it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_are_kept_when_settings_are_read(settings: Settings):
    # The secrets are really there (the test would prove nothing otherwise)...
    assert settings.kafka_sasl_password.get_secret_value() == SASL_PASSWORD
    assert settings.database_url == DATABASE_URL
    assert kafka_client_config(settings)["sasl.password"] == SASL_PASSWORD
    # ...and none of the ways an object is shown shows them.
    assert_no_secret(repr(settings), "repr(settings)")
    assert_no_secret(str(settings), "str(settings)")
    assert_no_secret(repr(kafka_client_config(settings)), "repr(kafka_client_config)")
    assert_no_secret(str(kafka_client_config(settings)), "str(kafka_client_config)")
    assert_no_secret(repr(broker_credentials(settings)), "repr(broker_credentials)")


def test_settings_error_and_its_traceback_hide_secrets_when_the_settings_are_wrong(
    tmp_path: Path,
):
    env = environment(tmp_path)
    env["KAFKA_SECURITY_PROTOCOL"] = "PLAINTEXT"  # inconsistent with the SASL password
    env["KAFKA_SSL_KEY_PASSWORD"] = KEY_PASSWORD  # and a key password without a key
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    # A worker that fails at start prints the whole chain (SettingsError from pydantic's
    # ValidationError, which shows the input values unless told not to).
    text = "".join(traceback.format_exception(caught.value))
    assert "KAFKA_SECURITY_PROTOCOL" in text
    assert_no_secret(text, "the SettingsError traceback")


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_log_lines_hide_secrets_when_configuration_is_logged(
    settings: Settings, log_format: str, capsys: pytest.CaptureFixture[str], restored_logging: None
):
    configure_logging(log_format, "DEBUG")
    log = logging.getLogger("revledger.test_secrets")
    log.info("settings: %r", settings)
    # A plain dict (the redacting KafkaClientConfig type lost): the formatter redacts.
    log.info("kafka client config: %s", dict(kafka_client_config(settings)))
    log.info("connecting to %s", settings.database_url)
    try:
        raise ConnectionError(f"could not connect to {settings.database_url}")
    except ConnectionError:
        log.exception("database unreachable")
    build_app(settings)  # Faust and mode log at DEBUG while the app is made
    out = capsys.readouterr()
    assert "database unreachable" in out.out
    assert_no_secret(out.out + out.err, f"{log_format} log output")


def test_database_commands_hide_the_url_password_when_the_database_is_unreachable(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    from connectors.postgres.migrate import main_db
    from streams.projection import main_project

    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    assert main_db("status", DATABASE_URL) == 1
    args = argparse.Namespace(
        database_url=None, name="projection", batch_size=100, follow=False, metrics_port=None
    )
    assert main_project(args) != 0
    out = capsys.readouterr()
    assert "revledger@127.0.0.1:1/revledger" in out.err  # the place is named...
    assert_no_secret(out.out + out.err, "revledger db status / revledger project")


def test_metrics_hide_secrets_when_the_registries_are_dumped(settings: Settings):
    build_app(settings)
    metrics.set_build_info(settings.service_version)
    lag = LagMetrics()
    dumped = generate_latest(REGISTRY).decode() + generate_latest(lag.registry).decode()
    assert "revledger_build_info" in dumped
    assert_no_secret(dumped, "the metrics")
