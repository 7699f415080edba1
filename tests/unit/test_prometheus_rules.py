"""The Prometheus config and alert rules: promtool checks them and runs the rule tests.

``promtool`` comes from ``deploy/prometheus/install-promtool.sh`` (``make fetch``). Without it
these tests skip, except under ``CI=true`` where that is a failure. The rest needs no
promtool: the rules name only metrics that the workers or the lag exporter define.
"""

from __future__ import annotations

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
    """Sample names the workers (streams.metrics) and the lag exporter can expose."""
    import prometheus_client

    import streams.metrics
    from streams.lag_exporter import LagMetrics

    families = [
        family
        for value in vars(streams.metrics).values()
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase)
        for family in value.collect()
    ]
    families.extend(LagMetrics().registry.collect())
    suffixes = {
        "counter": ("_total",),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("", "_sum", "_count"),
        "info": ("_info",),
    }
    return {family.name + s for family in families for s in suffixes.get(family.type, ("",))}


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
