"""The lag exporter against the real ledger worker: lag rises while it is down, then returns to 0.

The worker runs as a subprocess on isolated topics (2 partitions, memory store); the
exporter runs as ``python -m streams.lag_exporter`` and is scraped over HTTP.
"""

from __future__ import annotations

import re
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.simulation import builders as b
from streams.admin import ensure_topics
from streams.lag_exporter import BrokerReader, read_group_lag, topics_to_report
from streams.ledger_worker import SOURCES
from streams.producer import RecordProducer
from streams.serde import Codec
from streams.topics import BILLING, CONTROL, LEDGER_INPUTS, TOPICS

from worker_process import WorkerProcess, isolated_settings, running_worker, start_worker

pytestmark = pytest.mark.integration
CODEC = Codec()
BEHIND = 1_000
INTERVAL_SECONDS = 1.0
_LAST_SCRAPE: list = []  # the last scrape taken, shown when the test fails


def _wait_for(what: str, check: Callable[[], object], timeout: float) -> object:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    behind = {k: v for scrape in _LAST_SCRAPE for k, v in scrape.lag.items() if v}
    raise AssertionError(f"{what}: not within {timeout:.0f}s (last scrape, lag > 0: {behind})")


def _exporter_url(exporter: WorkerProcess) -> str:
    def served() -> str | None:
        found = re.search(r"serving (http://\S+/metrics)", exporter.log())
        if exporter.process.poll() is not None:
            raise AssertionError(f"the exporter exited:\n{exporter.log()}")
        return found.group(1) if found else None

    return str(_wait_for("the exporter serving", served, timeout=20))


class Scrape:
    """One scrape of the exporter: lag per (topic, partition) of the group, and members."""

    def __init__(self, url: str, group: str) -> None:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        self.lag: dict[tuple[str, int], float] = {}
        self.seconds: dict[tuple[str, int], float] = {}
        self.members = None
        self.last_success = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = sample.labels
                if labels.get("group", group) != group:
                    continue
                key = (labels.get("topic", ""), int(labels.get("partition", -1)))
                if sample.name == "revledger_consumer_group_lag_messages":
                    self.lag[key] = sample.value
                elif sample.name == "revledger_consumer_group_lag_seconds":
                    self.seconds[key] = sample.value
                elif sample.name == "revledger_consumer_group_members":
                    self.members = sample.value
                elif sample.name == "revledger_lag_exporter_last_success_timestamp_seconds":
                    self.last_success = sample.value

    def total(self, topics: set[str]) -> float:
        return sum(value for (topic, _), value in self.lag.items() if topic in topics)


def test_exporter_lag_rises_by_the_events_produced_when_the_worker_is_down_and_returns_to_zero(
    devstack, tmp_path: Path
):
    settings = isolated_settings(devstack.bootstrap_servers, tmp_path)
    ensure_topics(settings, TOPICS)
    prefix = settings.topic_prefix
    sources = {prefix + spec.name for spec in SOURCES}
    inputs = prefix + LEDGER_INPUTS.name
    group = settings.app_id
    producer = RecordProducer(settings, CODEC)
    producer.send_all(b.base_records())
    producer.send_all([b.invoice(f"INV-A{n}", customer=f"C{n}") for n in range(20)])
    producer.send_all([b.clock(b.DAY)])
    reader = BrokerReader(settings.bootstrap_servers)
    watched = [prefix + BILLING.name, prefix + CONTROL.name, inputs]

    def applied() -> bool:
        lag = read_group_lag(reader, group, watched)
        return bool(lag.rows) and all(row.messages == 0 for row in lag.rows)

    started = time.monotonic()
    with running_worker(settings, tmp_path / "worker-1.log"):
        _wait_for("the first events applied and committed", applied, timeout=60)
    print(f"\nfirst 21 events applied in {time.monotonic() - started:.1f}s; worker stopped")

    command = [sys.executable, "-m", "streams.lag_exporter", "--group", group, "--port", "0"]
    command += ["--host", "127.0.0.1", "--interval", str(INTERVAL_SECONDS)]
    exporter = start_worker(settings, tmp_path / "exporter.log", argv=command)
    try:
        url = _exporter_url(exporter)
        with urllib.request.urlopen(url.replace("/metrics", "/healthz"), timeout=5) as health:
            assert health.read() == b"ok\n"
        before = _wait_for("a first read", lambda: _scrape_after(url, group, 0.0), 20)
        print(f"stopped: lag on the sources {before.total(sources):.0f}, members {before.members}")
        assert before.total(sources) == 0 and before.lag[(inputs, 0)] == 0
        assert before.members == 0

        producer.send_all([b.invoice(f"INV-B{n}", customer=f"C{n % 50}") for n in range(BEHIND)])
        produced_at = time.time()
        behind = _wait_for(
            f"lag rising by {BEHIND}",
            lambda: _scrape_after(url, group, produced_at, lambda s: s.total(sources) >= BEHIND),
            timeout=10,
        )
        rose_in = behind.last_success - produced_at
        print(
            f"{BEHIND} events produced: lag on the sources {behind.total(sources):.0f}"
            f" (by partition {_by_partition(behind, sources)}), oldest"
            f" {max(behind.seconds.values()):.1f}s, seen {rose_in:.1f}s after the produce"
            f" (interval {INTERVAL_SECONDS:g}s), members {behind.members}"
        )
        assert behind.total(sources) == BEHIND
        assert behind.members == 0
        assert min(behind.seconds[key] for key in behind.lag if behind.lag[key]) > 0
        assert rose_in <= 2 * INTERVAL_SECONDS + 5

        restarted, restarted_at = time.monotonic(), time.time()
        with running_worker(settings, tmp_path / "worker-2.log"):
            caught_up = _wait_for(
                "lag back to 0 on the sources and ledger.inputs.v1",
                lambda: _scrape_after(url, group, restarted_at, _caught_up(sources | {inputs})),
                timeout=60,
            )
            print(
                f"worker restarted: lag {caught_up.total(sources | {inputs}):.0f} on the sources"
                f" and {LEDGER_INPUTS.name} after {time.monotonic() - restarted:.1f}s,"
                f" members {caught_up.members}"
            )
            assert caught_up.members >= 1
            assert not any(v for (t, _), v in caught_up.seconds.items() if t in sources | {inputs})
        naive = _naive_inputs_lag(reader, group, inputs)
        print(f"{LEDGER_INPUTS.name}: LSO - committed by partition {naive}; exporter: 0")
        assert any(gap > 0 for gap in naive.values()), "no commit marker after the last record"
    except BaseException:
        print(exporter.log()[-4000:])
        for scrape in _LAST_SCRAPE:
            print(
                f"last scrape: lag {scrape.lag}, seconds {scrape.seconds},"
                f" members {scrape.members}, read at {scrape.last_success}"
            )
        raise
    finally:
        exporter.stop()


def _scrape_after(
    url: str, group: str, since: float, accept: Callable[[Scrape], bool] = lambda s: True
) -> Scrape | None:
    """A scrape whose figures were read after ``since`` (epoch seconds) and that ``accept``s."""
    scrape = Scrape(url, group)
    _LAST_SCRAPE[:] = [scrape]
    return scrape if scrape.last_success > since and accept(scrape) else None


def _caught_up(topics: set[str]) -> Callable[[Scrape], bool]:
    def check(scrape: Scrape) -> bool:
        rows = [v for (topic, _), v in scrape.lag.items() if topic in topics]
        return bool(rows) and not any(rows) and bool(scrape.members)

    return check


def _by_partition(scrape: Scrape, topics: set[str]) -> dict[str, float]:
    return {
        f"{topic.split('.', 1)[1]}/{p}": v
        for (topic, p), v in sorted(scrape.lag.items())
        if topic in topics and v
    }


def _naive_inputs_lag(reader: BrokerReader, group: str, inputs: str) -> dict[int, int]:
    """Last stable offset minus committed offset on ``ledger.inputs.v1``: the naive lag."""
    committed = reader.committed(group)
    partitions = reader.partitions(topics_to_report(committed, [inputs]))
    return {
        o.partition: o.last_stable - (o.committed or 0)
        for o in reader.offsets(partitions, committed)
        if o.topic == inputs
    }
