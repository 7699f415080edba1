"""Live metrics and probes: the real ledger worker, the lag exporter and the projector.

One run on isolated topics (2 partitions, memory store) and a database of its own: a few
hundred events (invoices, payments, payments whose invoice never comes, invoices of an
unknown entity, undecodable bytes, a clock tick) go through the worker while the exporter
and ``revledger project --follow --metrics-port 0`` watch. Then:

- ``/healthz`` answers ``ok`` and ``/readyz`` 200 on all three once assigned and recovered;
- every metric named in ``deploy/prometheus/alerts.yml`` and in the Grafana dashboard is
  exposed by one of the live ``/metrics`` (``revledger recon --follow`` is the fourth; the
  families, with samples for those the run must have produced);
- the worker's own lag agrees with the exporter's on every partition they both report,
  once both settled (0), and the DLQ and hold metrics carry a materiality band;
- with the worker stopped, 50 more events show as lag 50 at the exporter.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.ledger_worker import SOURCES
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.topics import BILLING, LEDGER_INPUTS, TOPICS

from pg_data import fresh_database
from worker_process import WorkerProcess, isolated_settings, producer, running_worker, start_worker

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CODEC = Codec()
METRIC = re.compile(r"\b(revledger_[a-z0-9_]+)\b")
# Samples this run must have produced (not only the family's HELP line).
MUST_HAVE_SAMPLES = {
    "revledger_consumer_lag_messages",
    "revledger_consumer_lag_seconds",
    "revledger_consumer_commit_age_seconds",
    "revledger_consumer_group_lag_messages",
    "revledger_events_total",
    "revledger_entries_total",
    "revledger_dlq_records_total",
    "revledger_held_events",
    "revledger_held_events_oldest_age_seconds",
    "revledger_processing_latency_seconds_bucket",
    "revledger_recognition_run_seconds_bucket",
    "revledger_transaction_commits_total",
    "revledger_imbalanced_entries_total",
    "revledger_worker_ready",
    "revledger_projection_lag_messages",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _wait_for(what: str, check: Callable[[], object], timeout: float, *procs: WorkerProcess):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.process.poll() is not None:
                raise AssertionError(f"{what}: a process exited:\n{proc.log()[-3000:]}")
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def _served(proc: WorkerProcess, pattern: str) -> str:
    def found() -> str | None:
        match = re.search(pattern, proc.log())
        return match.group(1) if match else None

    return str(_wait_for(f"{pattern} in the log", found, 30, proc))


class Scrape:
    """Families (and samples) of one ``/metrics``."""

    def __init__(self, base: str) -> None:
        status, body = _get(f"{base}/metrics")
        assert status == 200, f"{base}/metrics answered {status}"
        self.families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        self.samples = [s for f in self.families.values() for s in f.samples]

    def names(self) -> set[str]:
        """Sample names this endpoint can expose: its samples and its families' suffixes."""
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names = {s.name for s in self.samples}
        for family in self.families.values():
            names.update(family.name + s for s in suffixes.get(family.type, [""]))
        return names

    def values(self, name: str, **labels: str) -> dict[tuple[str, int], float]:
        """``(topic, partition) -> value`` of ``name``'s samples matching ``labels``."""
        return {
            (s.labels.get("topic", ""), int(s.labels.get("partition", -1))): s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        }


def _named_metrics() -> set[str]:
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    named = {n for g in alerts["groups"] for r in g["rules"] for n in METRIC.findall(r["expr"])}
    for path in (ROOT / "deploy/grafana/dashboards").glob("*.json"):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                named.update(METRIC.findall(target["expr"]))
    return named


def _events() -> list:
    records: list = [*b.base_records()]
    records += [b.invoice(f"INV-{n}", customer=f"C{n % 40}") for n in range(200)]
    records += [
        b.payment(f"PAY-{n}", [(f"INV-{n}", 100_00)], customer=f"C{n % 40}") for n in range(60)
    ]
    # Held for good: their invoices never come (one low, one high materiality).
    records += [b.payment("PAY-H1", [("INV-NEVER-1", 50_00)], customer="C1")]
    records += [b.payment("PAY-H2", [("INV-NEVER-2", 25_000_00)], customer="C2")]
    # Rejected: an entity nobody configured.
    records += [b.invoice(f"INV-Z{n}", entity_name="ZZ9", customer="C3") for n in range(3)]
    records += [b.clock(b.DAY)]
    return records


def test_live_metrics_probes_and_lag_agree_when_worker_exporter_and_projector_run(
    devstack, tmp_path: Path
):
    started = time.monotonic()
    web_port = _free_port()
    settings = isolated_settings(
        devstack.bootstrap_servers, tmp_path, web_port=web_port, metrics_interval_seconds=1.0
    )
    ensure_topics(settings, TOPICS)
    prefix, group = settings.topic_prefix, settings.app_id
    sources = {prefix + spec.name for spec in SOURCES}
    inputs = prefix + LEDGER_INPUTS.name
    sent = RecordProducer(settings, CODEC).send_all(_events())
    raw = producer(settings.bootstrap_servers)
    raw.produce(prefix + BILLING.name, key=b"C5", value=b"not avro at all", partition=0)
    raw.flush(10)
    worker_url = f"http://127.0.0.1:{web_port}"

    command = [sys.executable, "-m", "streams.lag_exporter", "--group", group, "--port", "0"]
    command += ["--host", "127.0.0.1", "--interval", "1"]
    for topic in sorted(sources | {inputs}):  # reported even before the group commits on it
        command += ["--topic", topic]
    exporter = start_worker(settings, tmp_path / "exporter.log", argv=command)
    last: dict[str, object] = {}
    with (
        fresh_database(devstack.database_url) as database,
        running_worker(settings, tmp_path / "worker.log") as worker,
    ):
        project = [sys.executable, "-m", "streams.projection", "--database-url", database]
        project += ["--follow", "--metrics-port", "0"]
        projector = start_worker(settings, tmp_path / "projector.log", argv=project)
        recon_command = [sys.executable, "-m", "streams.recon", "--database-url", database]
        recon_command += ["--follow", "--interval", "2", "--port", "0"]
        recon = start_worker(settings, tmp_path / "recon.log", argv=recon_command)
        try:
            exporter_url = _served(exporter, r"serving (http://\S+)/metrics")
            projector_url = _served(projector, r"projection: serving (http://\S+)/metrics")
            recon_url = _served(recon, r"recon: serving (http://\S+)/metrics")
            for url in (worker_url, exporter_url, projector_url, recon_url):
                _wait_for(f"{url}/healthz", lambda u=url: _get(f"{u}/healthz")[0] == 200, 60)
            ready = _wait_for(
                "the worker ready",
                lambda: _get(f"{worker_url}/readyz")[0] == 200,
                60,
                worker,
            )
            print(f"\nworker ready after {time.monotonic() - started:.1f}s ({ready})")

            required = {(t, p) for t in sources | {inputs} for p in range(settings.partitions)}

            def settled() -> tuple[Scrape, Scrape] | None:
                mine, theirs = Scrape(worker_url), Scrape(exporter_url)
                worker_lag = mine.values("revledger_consumer_lag_messages", group=group)
                exporter_lag = theirs.values("revledger_consumer_group_lag_messages", group=group)
                last.update(worker=worker_lag, exporter=exporter_lag)
                # Every partition both report (sources, inputs, and the outputs the worker
                # subscribes to), the sources and ledger.inputs.v1 at least.
                shared = set(exporter_lag) & set(worker_lag)
                if {k for k in shared if k[0] in sources | {inputs}} != required:
                    return None
                if any(exporter_lag[k] or worker_lag[k] for k in shared):
                    return None
                return mine, theirs

            mine, theirs = _wait_for("both lags settled at 0", settled, 90, worker, exporter)
            print(f"{sent + 1} records applied, lags 0 after {time.monotonic() - started:.1f}s")
            worker_lag = mine.values("revledger_consumer_lag_messages", group=group)
            exporter_lag = theirs.values("revledger_consumer_group_lag_messages", group=group)
            shared = sorted(set(worker_lag) & set(exporter_lag))
            assert {t for t, _ in shared} >= sources | {inputs}
            assert {k: worker_lag[k] for k in shared} == {k: exporter_lag[k] for k in shared}

            for url, who in ((exporter_url, "exporter"), (projector_url, "projector")):
                _wait_for(f"{who} ready", lambda u=url: _get(f"{u}/readyz")[0] == 200, 30)

            def projected() -> bool:
                lag = Scrape(projector_url).values("revledger_projection_lag_messages")
                return bool(lag) and not any(lag.values())

            _wait_for("the projection caught up", projected, 60, projector)
            scrapes = [
                Scrape(worker_url),
                Scrape(exporter_url),
                Scrape(projector_url),
                Scrape(recon_url),
            ]
            exposed = set().union(*(s.names() for s in scrapes))
            with_samples = {s.name for scrape in scrapes for s in scrape.samples}
            named = _named_metrics()
            print(f"{len(named)} metrics named by rules and dashboard; {len(exposed)} exposed")
            assert sorted(named - exposed) == []
            assert sorted(MUST_HAVE_SAMPLES - with_samples) == []

            live = scrapes[0]
            bands = {
                s.labels["band"] for s in live.samples if s.name == "revledger_dlq_records_total"
            }
            assert {"unknown"} <= bands and bands <= {"unknown", "low", "medium", "high"}
            held = {
                s.labels["band"]: s.value for s in live.samples if s.name == "revledger_held_events"
            }
            assert held == {"low": 1, "high": 1}, held
            assert _value(live, "revledger_transaction_commits_total") > 0
            assert _value(live, "revledger_rebalances_total") >= 1
            assert _value(live, "revledger_table_recovery_seconds_count") >= 1
            assert _value(live, "revledger_recognition_run_seconds_count") >= 1
            assert live.values("revledger_consumer_commit_age_seconds", group=group)
            status, body = _get(f"{worker_url}/readyz")
            assert status == 200 and json.loads(body)["status"] == "ready"
        except BaseException:
            print(exporter.log()[-2000:], projector.log()[-3000:])
            print(f"last lags: {last}")
            raise
        finally:
            recon.stop()
            projector.stop()

    try:
        # Customers the first run never saw: the holds of C1 and C2 stay untouched.
        RecordProducer(settings, CODEC).send_all(
            [b.invoice(f"INV-S{n}", customer=f"S{n}") for n in range(50)]
        )

        def behind() -> bool:
            lag = Scrape(exporter_url).values("revledger_consumer_group_lag_messages", group=group)
            return sum(v for (t, _), v in lag.items() if t in sources) == 50

        _wait_for("exporter lag 50 with the worker stopped", behind, 15, exporter)
        print(f"worker stopped: exporter lag 50 after {time.monotonic() - started:.1f}s")

        with running_worker(settings, tmp_path / "worker-2.log") as worker:
            _wait_for("restarted", lambda: _get(f"{worker_url}/readyz")[0] == 200, 60, worker)

            def held_again() -> dict[str, float] | None:
                held = {
                    s.labels["band"]: s.value
                    for s in Scrape(worker_url).samples
                    if s.name == "revledger_held_events"
                }
                return held or None

            # Counted again from the recovered tables, not from new events.
            assert _wait_for("holds rescanned", held_again, 15, worker) == {"low": 1, "high": 1}
        print(f"done in {time.monotonic() - started:.1f}s")
    finally:
        exporter.stop()


def _value(scrape: Scrape, name: str) -> float:
    return sum(s.value for s in scrape.samples if s.name == name)
