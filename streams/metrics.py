"""Prometheus metrics of a worker, served at ``/metrics`` by the Faust web server.

Names use base units (seconds, messages) and ``_total`` for counters; no account or
customer id is ever a label (labels are topics, partitions, record types, outcomes,
reasons, materiality bands, entities). Everything here is in the default registry, which
the ledger worker and the batcher serve; the projector and the lag exporter have
registries of their own (:mod:`streams.health`, :mod:`streams.lag_exporter`).

Two families are computed at scrape time from state other modules keep up to date:

- :data:`CONSUMER_LAG` (:class:`PartitionLag`): consumer lag in messages and seconds and
  the time since the last commit, per group, topic and partition, refreshed by the
  worker's lag timer (:mod:`streams.health`);
- :data:`HELD_EVENTS` (:class:`HeldEvents`): events waiting in the customers' hold lists,
  by reason and materiality band, and the age of the oldest, kept by the ledger agent as
  it saves each customer.

Must not import faust (the projector and the lag exporter import this module).
"""

from __future__ import annotations

import platform
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from ledger.errors import InvariantViolation
from ledger.materiality import Thresholds, event_band
from ledger.reference import ReferenceData

# Event time to entry produced: a healthy worker answers in tens of milliseconds, a
# commit interval adds up to a second, a backlog minutes, and the close SLA is an hour.
LATENCY_BUCKETS_SECONDS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    900.0, 3600.0,
)  # fmt: skip
# A recognition run visits every customer of a partition with revenue to recognise.
RUN_BUCKETS_SECONDS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
# Table recovery: seconds with a small changelog, ~10-15 s more under exactly-once (Faust
# waits for two empty polls to see a changelog ending on a commit marker), minutes at scale.
RECOVERY_BUCKETS_SECONDS = (1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0)

EVENTS = Counter(
    "revledger_events_total",
    "Messages processed by topic, record type and outcome (sequenced, posted, duplicate,"
    " held, rejected, dlq, clock, period_closed, batched)",
    ["topic", "type", "outcome"],
)
ENTRIES_POSTED = Counter("revledger_entries_total", "Journal entries produced", ["entity"])
DLQ_RECORDS = Counter(
    "revledger_dlq_records_total",
    "Records sent to the DLQ, by reason and materiality band",
    ["reason", "band"],
)
IMBALANCE = Counter(
    "revledger_imbalanced_entries_total",
    "Entries refused before produce because they did not balance (must stay 0)",
)
HANDLE_SECONDS = Histogram(
    "revledger_event_handle_seconds", "Time to apply one event, in seconds", ["topic"]
)
PROCESSING_LATENCY = Histogram(
    "revledger_processing_latency_seconds",
    "Record timestamp to output produced: stage=sequenced (source record to its copy on"
    " ledger.inputs.v1), stage=posted (ledger.inputs.v1 record to its entries)",
    ["stage"],
    buckets=LATENCY_BUCKETS_SECONDS,
)
RECOGNITION_RUN_SECONDS = Histogram(
    "revledger_recognition_run_seconds",
    "Time to run one clock tick over a partition's customers (holds, recognition)",
    buckets=RUN_BUCKETS_SECONDS,
)
BATCHES_EMITTED = Counter(
    "revledger_journal_batches_total", "Journal batches sent to the ERP topic", ["entity"]
)
BATCH_LINES = Counter(
    "revledger_journal_batch_lines_total", "Lines of the journal batches sent", ["entity"]
)
BATCHES_HELD = Gauge(
    "revledger_journal_batches_held",
    "Closed batch windows waiting (e.g. gl_mapping_missing), on this worker's partitions",
    ["entity", "reason"],
)
TRANSACTION_COMMITS = Counter(
    "revledger_transaction_commits_total", "Kafka transactions committed (one per partition)"
)
TRANSACTION_ABORTS = Counter(
    "revledger_transaction_aborts_total",
    "Kafka transactions that ended without a commit seen by this process (aborted, or a"
    " commit that failed); a killed process's open transaction is aborted by the broker",
)
PRODUCER_FENCINGS = Counter(
    "revledger_producer_fencings_total",
    "Transactional producers fenced by a newer owner of their partition (ProducerFenced)",
)
REBALANCES = Counter("revledger_rebalances_total", "Consumer group rebalances this worker saw")
TABLE_RECOVERY_SECONDS = Histogram(
    "revledger_table_recovery_seconds",
    "Assignment received to tables recovered and streams resumed, per rebalance",
    buckets=RECOVERY_BUCKETS_SECONDS,
)
WORKER_READY = Gauge(
    "revledger_worker_ready", "1 when /readyz answers 200 (assigned, recovered, broker seen)"
)


def build_info(registry: CollectorRegistry | None = None, service_version: str = "") -> Gauge:
    """``revledger_build_info{version,service_version,python} 1`` in ``registry``."""
    gauge = Gauge(
        "revledger_build_info",
        "Always 1: the revledger package version, REVLEDGER_SERVICE_VERSION and Python",
        ["version", "service_version", "python"],
        registry=REGISTRY if registry is None else registry,
    )
    try:
        version = metadata.version("revledger")
    except metadata.PackageNotFoundError:
        version = "unknown"
    gauge.labels(version, service_version, platform.python_version()).set(1)
    return gauge


def observe_latency(stage: str, timestamp: float | None) -> None:
    """Observe now minus a record's timestamp (seconds since the epoch; None: not known)."""
    if timestamp:
        child = _LATENCY_BY_STAGE.get(stage)
        if child is None:  # labels() locks and checks the value: once per stage, not per event
            child = _LATENCY_BY_STAGE[stage] = PROCESSING_LATENCY.labels(stage=stage)
        child.observe(max(0.0, time.time() - timestamp))


_LATENCY_BY_STAGE: dict[str, Any] = {}


_BUILD_INFO: list[Gauge] = []


def set_build_info(service_version: str) -> None:
    """Publish the build info in the default registry (once per process)."""
    if not _BUILD_INFO:
        _BUILD_INFO.append(build_info(service_version=service_version))


# --- consumer lag, computed at scrape time ------------------------------------------------

LagKey = tuple[str, str, int]  # group, topic, partition


@dataclass(frozen=True, slots=True)
class LagFigure:
    """Lag of one partition of a group as the worker sees it."""

    messages: int
    seconds: float | None  # None: the next record's age is not known


class PartitionLag:
    """Lag and commit age per group/topic/partition (a collector: computed per scrape)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self.figures: dict[LagKey, LagFigure] = {}
        self.committed_at: dict[LagKey, float] = {}

    def replace(self, figures: dict[LagKey, LagFigure]) -> None:
        """Swap in a new set of figures (partitions not in it are no longer reported)."""
        self.figures = figures
        kept = set(figures)
        self.committed_at = {k: v for k, v in self.committed_at.items() if k in kept}

    def committed(self, key: LagKey, at: float) -> None:
        """Note a commit of ``key`` at ``at`` (seconds since the epoch)."""
        self.committed_at[key] = at

    def describe(self) -> list[Metric]:
        """The families, without samples (names for the registry)."""
        return self._families()

    def collect(self) -> list[Metric]:
        """The families with the current figures."""
        messages, seconds, age = families = self._families()
        now = self._now()
        for (group, topic, partition), figure in sorted(self.figures.items()):
            labels = [group, topic, str(partition)]
            messages.add_metric(labels, figure.messages)
            if figure.seconds is not None:
                seconds.add_metric(labels, figure.seconds)
            since = self.committed_at.get((group, topic, partition))
            if since is not None:
                age.add_metric(labels, max(0.0, now - since))
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        labels = ["group", "topic", "partition"]
        return [
            GaugeMetricFamily(
                "revledger_consumer_lag_messages",
                "Records of an assigned partition not yet processed and committed, up to the"
                " last stable offset (0 when only commit markers remain)",
                labels=labels,
            ),
            GaugeMetricFamily(
                "revledger_consumer_lag_seconds",
                "Now minus the timestamp of the next unprocessed record (0 when caught up)",
                labels=labels,
            ),
            GaugeMetricFamily(
                "revledger_consumer_commit_age_seconds",
                "Seconds since this worker last committed the partition (or was assigned it)",
                labels=labels,
            ),
        ]


# --- held events, computed at scrape time -------------------------------------------------

HeldRow = tuple[str, str, float]  # reason, band, held since (epoch seconds)


def held_rows(ledger: Any, reference: ReferenceData, thresholds: Thresholds) -> tuple[HeldRow, ...]:
    """Reason, band and since-when of each held event of a customer's ledger state.

    The age counts from the event's ``occurred_at``: how long the money it carries has
    been missing from the subledger, across restarts (a backfill of old events shows old
    ages while it holds them).
    """
    return tuple(
        (
            str(held.status),
            str(event_band(held.event, reference, thresholds)),
            held.event.occurred_at.timestamp(),
        )
        for held in ledger.held
    )


class HeldEvents:
    """Held events of the customers on this worker's partitions (a collector)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._rows: dict[int, dict[str, tuple[HeldRow, ...]]] = defaultdict(dict)

    def track(self, partition: int, customer_id: str, rows: tuple[HeldRow, ...]) -> None:
        """The customer's holds now (after its state was saved)."""
        if rows:
            self._rows[partition][customer_id] = rows
        else:
            self._rows[partition].pop(customer_id, None)

    def retain(self, partitions: Iterable[int]) -> None:
        """Forget the partitions this worker no longer owns."""
        kept = set(partitions)
        for partition in [p for p in self._rows if p not in kept]:
            del self._rows[partition]

    def describe(self) -> list[Metric]:
        """The families, without samples."""
        return self._families()

    def collect(self) -> list[Metric]:
        """Count and oldest age per (reason, band)."""
        counts: dict[tuple[str, str], int] = defaultdict(int)
        oldest: dict[tuple[str, str], float] = {}
        for customers in list(self._rows.values()):
            for rows in list(customers.values()):
                for reason, band, since in rows:
                    counts[(reason, band)] += 1
                    oldest[(reason, band)] = min(since, oldest.get((reason, band), since))
        number, age = families = self._families()
        now = self._now()
        for key in sorted(counts):
            number.add_metric(list(key), counts[key])
            age.add_metric(list(key), max(0.0, now - oldest[key]))
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "revledger_held_events",
                "Events waiting in hold lists (payment before its invoice, missing FX rate"
                " ...), by reason and materiality band",
                labels=["reason", "band"],
            ),
            GaugeMetricFamily(
                "revledger_held_events_oldest_age_seconds",
                "Now minus the occurred_at of the oldest held event, by reason and band",
                labels=["reason", "band"],
            ),
        ]


CONSUMER_LAG = PartitionLag()
HELD_EVENTS = HeldEvents()
REGISTRY.register(CONSUMER_LAG)  # type: ignore[arg-type]
REGISTRY.register(HELD_EVENTS)  # type: ignore[arg-type]


# --- the last check before an entry is produced -------------------------------------------


def unbalanced_currencies(entry: Any) -> list[str]:
    """Currencies in which ``entry`` does not balance, in transaction or functional amounts.

    Recomputed from the lines alone, so it also catches an entry that bypassed its
    constructor's checks (``object.__new__``, pydantic ``model_construct``): the domain
    :class:`ledger.entries.JournalEntry` and the wire ``JournalEntryPosted`` both work.
    """
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in entry.lines:
        sign = 1 if str(line.side) == "debit" else -1
        totals[line.currency][0] += sign * line.amount_minor
        totals[line.currency][1] += sign * line.functional_amount_minor
    return sorted(currency for currency, (net, functional) in totals.items() if net or functional)


def check_balanced(entries: Sequence[Any]) -> None:
    """Count and refuse the first entry of ``entries`` that does not balance.

    Raises:
        InvariantViolation: an entry does not balance (a bug: the process must stop
            before the transaction commits); :data:`IMBALANCE` was incremented.
    """
    for entry in entries:
        currencies = unbalanced_currencies(entry)
        if currencies:
            IMBALANCE.inc()
            raise InvariantViolation(
                f"entry {entry.entry_id} refused before produce: it does not balance in"
                f" {', '.join(currencies)} (transaction or functional amounts)"
            )


# --- exposition ---------------------------------------------------------------------------


def metrics_payload() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}


def sample_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name ``registry`` can expose (from its collectors' descriptions).

    prometheus-client's ``_created`` samples are not listed: no rule or panel uses them.
    """
    names: set[str] = set()
    # The registry has no public listing of its collectors.
    for collector in list(registry._collector_to_names):
        describe = getattr(collector, "describe", None)
        families = describe() if describe is not None else collector.collect()
        for family in families:
            names.update(family.name + s for s in _SUFFIXES.get(family.type, ("",)))
    return names


__all__ = [
    "CONSUMER_LAG",
    "HELD_EVENTS",
    "HeldEvents",
    "LagFigure",
    "PartitionLag",
    "build_info",
    "check_balanced",
    "held_rows",
    "metrics_payload",
    "observe_latency",
    "sample_names",
    "set_build_info",
    "unbalanced_currencies",
]
