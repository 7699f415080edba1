"""The Prometheus config and alert rules: promtool checks them and runs the rule tests.

``promtool`` comes from ``deploy/prometheus/install-promtool.sh`` (``make fetch``). Without it
these tests skip, except under ``CI=true`` where that is a failure. The rest needs no
promtool: the rules and the Grafana dashboard name only metrics that the workers, the
projector or the lag exporter register.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


@pytest.fixture(scope="module")
def promtool() -> str:
    """The path of ``promtool``; skip (fail under CI) when it is not installed."""
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool not on PATH: run deploy/prometheus/install-promtool.sh (make fetch)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return found


def _run(*command: str | Path) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=60, check=False
    )
    print(done.stdout, done.stderr)
    return done


def _alerts() -> dict[str, dict]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_config_is_valid_when_checked_by_promtool(promtool, tmp_path):
    # prometheus.yml names its rule files where docker-compose mounts them
    # (/etc/prometheus/...): check a copy that names copies of them in tmp_path.
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    copies = []
    for rule_file in config["rule_files"]:
        name = Path(rule_file).name
        shutil.copy(PROMETHEUS / name, tmp_path / name)
        copies.append(str(tmp_path / name))
    config["rule_files"] = copies
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))

    done = _run(promtool, "check", "config", tmp_path / "prometheus.yml")

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(_alerts())} rules found" in done.stdout


def test_rules_are_valid_when_checked_by_promtool(promtool):
    done = _run(promtool, "check", "rules", PROMETHEUS / "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_rule_tests_pass_when_run_by_promtool(promtool):
    assert RULE_TESTS, "no promtool rule tests under deploy/prometheus/tests"
    done = _run(promtool, "test", "rules", *RULE_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_every_alert_fires_in_a_rule_test_when_tests_are_read():
    fired: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert sorted(set(_alerts()) - fired) == []


def test_existing_alerts_are_kept_when_rules_are_extended():
    alerts = _alerts()
    assert (
        "increase(revledger_imbalanced_entries_total[5m]) > 0"
        in (alerts["RevledgerUnbalancedEntries"]["expr"])
    )
    assert alerts["RevledgerJournalBatchesHeld"]["for"] == "15m"
    assert {
        "RevledgerConsumerLagHigh",
        "RevledgerConsumerLagBeyondCloseSla",
        "RevledgerDlqGrowing",
        "RevledgerWorkerDown",
        "RevledgerLagExporterDown",
        "RevledgerLagExporterStale",
    } <= set(alerts)


def _exported_sample_names() -> set[str]:
    """Sample names the workers, the projector and the lag exporter can expose."""
    from prometheus_client import REGISTRY

    from streams import metrics
    from streams.health import ProjectionHealth
    from streams.lag_exporter import LagMetrics
    from streams.recon import ReconMetrics
    from streams.settings import load_settings

    metrics.set_build_info("test")
    projection = ProjectionHealth(load_settings({}), "projection", "postgresql://x@h/x", dict, list)
    registries = (REGISTRY, LagMetrics().registry, projection.registry, ReconMetrics().registry)
    return set().union(*(metrics.sample_names(registry) for registry in registries))


def test_rules_name_only_exported_metrics_when_compared():
    named = {
        name
        for rule in _alerts().values()
        for name in re.findall(r"\b(revledger_[a-z0-9_]+)\b", rule["expr"])
    }
    assert named, "no revledger metric in the rules"
    assert sorted(named - _exported_sample_names()) == []


def test_prometheus_scrapes_the_lag_exporter_when_configured():
    from streams.lag_exporter import DEFAULT_PORT

    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["revledger-lag-exporter"]
    assert job["static_configs"][0]["targets"] == [f"lag-exporter:{DEFAULT_PORT}"]
    rules = _alerts()
    assert 'up{job="revledger-lag-exporter"}' in rules["RevledgerLagExporterDown"]["expr"]
    for name in ("revledger-workers", "revledger-batchers"):
        assert name in rules["RevledgerWorkerDown"]["expr"] and name in jobs


# --- the Grafana dashboard ----------------------------------------------------------------

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
METRIC_NAME = re.compile(r"\b(revledger_[a-z0-9_]+)\b")


def _panel_expressions() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every dashboard."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                found.append((panel["title"], target["expr"]))
    return found


def test_dashboard_names_only_exported_metrics_when_compared():
    named = {name for _, expr in _panel_expressions() for name in METRIC_NAME.findall(expr)}
    assert len(named) >= 20, sorted(named)
    assert sorted(named - _exported_sample_names()) == []


def test_dashboard_shows_what_the_sre_watches_when_read():
    text = " ".join(expr for _, expr in _panel_expressions())
    for name in (
        "revledger_consumer_group_lag_messages",  # lag by partition, workers down or not
        "revledger_consumer_group_lag_seconds",
        "revledger_events_total",  # throughput
        "revledger_processing_latency_seconds_bucket",  # latency p50/p99
        "revledger_dlq_records_total",  # DLQ by reason and band
        "revledger_held_events",
        "revledger_journal_batches_total",
        "revledger_imbalanced_entries_total",
    ):
        assert name in text, name
    assert "histogram_quantile(0.99" in text and "histogram_quantile(0.5" in text


def test_dashboard_queries_parse_when_checked_by_promtool(promtool, tmp_path):
    # promtool has no query checker: each query becomes a recording rule, which it parses.
    rules = [
        {"record": f"revledger:dashboard_panel_{n}", "expr": expr}
        for n, (_, expr) in enumerate(_panel_expressions())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    done = _run(promtool, "check", "rules", path)

    assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_is_provisioned_from_the_repository_when_compose_runs():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in compose["volumes"])
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/revledger.yml").read_text())
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    datasource = source["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
