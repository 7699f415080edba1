"""Settings come from the environment, every variable named, bad values refused clearly."""

from __future__ import annotations

import pytest

from streams.settings import ENVIRONMENT, Settings, SettingsError, load_settings


def test_every_field_has_an_environment_variable_when_listed():
    assert set(ENVIRONMENT) == set(Settings.model_fields)


def test_defaults_are_exactly_once_when_environment_is_empty():
    settings = load_settings({})
    assert settings.processing_guarantee == "exactly_once"
    assert settings.partitions == 8


def test_values_are_read_when_variables_are_set():
    settings = load_settings({"REVLEDGER_PARTITIONS": "4", "KAFKA_BOOTSTRAP_SERVERS": "h:1"})
    assert settings.partitions == 4
    assert settings.bootstrap_servers == "h:1"


def test_error_names_the_variable_when_value_is_bad():
    with pytest.raises(SettingsError, match="REVLEDGER_PARTITIONS"):
        load_settings({"REVLEDGER_PARTITIONS": "zero"})
    with pytest.raises(SettingsError, match="REVLEDGER_PROCESSING_GUARANTEE"):
        load_settings({"REVLEDGER_PROCESSING_GUARANTEE": "maybe_once"})
