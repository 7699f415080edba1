"""docker-compose.yml cannot run here (no Docker engine): check it agrees with the code."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.settings import ENVIRONMENT, load_settings

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
WORKERS = ("worker-1", "worker-2")


def test_compose_has_every_service_when_loaded():
    for name in ("kafka", "schema-registry", "postgres", "prometheus", "grafana", *WORKERS):
        assert name in SERVICES, name


def test_worker_environment_names_are_settings_when_compared():
    known = set(ENVIRONMENT.values())
    for name in WORKERS:
        env = SERVICES[name]["environment"]
        unknown = set(env) - known
        assert not unknown, f"{name} sets variables the code does not read: {unknown}"
        assert {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REVLEDGER_PARTITIONS"} <= set(env)


def test_worker_environment_validates_when_loaded_as_settings():
    for name in WORKERS:
        settings = load_settings({k: str(v) for k, v in SERVICES[name]["environment"].items()})
        assert settings.processing_guarantee == "exactly_once"
        published = [p.split(":")[-1] for p in SERVICES[name]["ports"]]
        assert str(settings.web_port) in published


def test_endpoints_point_at_compose_services_when_resolved():
    env = SERVICES["worker-1"]["environment"]
    kafka_host, kafka_port = env["KAFKA_BOOTSTRAP_SERVERS"].split(":")
    assert kafka_host == "kafka"
    assert (
        f"PLAINTEXT://kafka:{kafka_port}"
        in SERVICES["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )
    assert "@postgres:5432/" in env["DATABASE_URL"]
    assert env["SCHEMA_REGISTRY_URL"].startswith("http://schema-registry:8081")
    pg = SERVICES["postgres"]["environment"]
    assert f"{pg['POSTGRES_USER']}:{pg['POSTGRES_PASSWORD']}@" in env["DATABASE_URL"]


def test_prometheus_scrapes_every_worker_when_configured():
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == sorted(WORKERS)
    assert (ROOT / "Dockerfile").exists()


def test_batcher_runs_the_batcher_command_and_prometheus_scrapes_and_alerts_on_it():
    batcher = SERVICES["batcher-1"]
    assert batcher["command"] == ["batcher"]
    settings = load_settings({k: str(v) for k, v in batcher["environment"].items()})
    published = [p.split(":")[-1] for p in batcher["ports"]]
    assert str(settings.web_port + 1) in published, "the batcher serves on web port + 1"
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = [
        t
        for job in prometheus["scrape_configs"]
        for c in job["static_configs"]
        for t in c["targets"]
    ]
    assert f"batcher-1:{settings.web_port + 1}" in targets
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    rules = {r["alert"]: r for g in alerts["groups"] for r in g["rules"]}
    assert "revledger_journal_batches_held" in rules["RevledgerJournalBatchesHeld"]["expr"]
