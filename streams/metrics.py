"""Prometheus metrics of a worker, served at ``/metrics`` by the Faust web server.

Names use base units and ``_total`` for counters; no account or customer id is a label.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

EVENTS = Counter(
    "revledger_events_total",
    "Input events by outcome (posted, duplicate, held, rejected, dlq, released, expired)",
    ["topic", "outcome"],
)
ENTRIES_POSTED = Counter("revledger_entries_total", "Journal entries produced", ["entity"])
DLQ_RECORDS = Counter("revledger_dlq_records_total", "Records sent to the DLQ", ["reason"])
IMBALANCE = Counter(
    "revledger_imbalanced_entries_total",
    "Entries refused because they did not balance (must stay 0)",
)
HANDLE_SECONDS = Histogram(
    "revledger_event_handle_seconds", "Time to apply one event, in seconds", ["topic"]
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


def metrics_payload() -> tuple[bytes, str]:
    """The exposition text and its content type."""
    return generate_latest(), CONTENT_TYPE_LATEST
