"""Reference data (entities, FX rates, products, GL mappings) read by every worker, whole.

Why a plain consumer and not a Faust GlobalTable: postings need the reference data to be
complete before the first event is applied (an entity configured at offset 10 must be
known to the invoice at offset 0 of another topic), so the worker reads every reference
topic from the beginning up to its end offsets before its agents start, then follows
new records. Each worker holds all of it; nothing here is partitioned by customer.

The view is an immutable :class:`ledger.reference.ReferenceData`; updates swap the whole
object, so an agent reading ``current`` sees one consistent version.

Must not import faust.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from ledger.reference import ReferenceData
from streams.serde import Codec, DecodeError
from streams.settings import Settings, kafka_client_config

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


class ReferenceNotReady(RuntimeError):
    """Raised when the reference topics could not be read to their end in time."""


class ReferenceReader:
    """Follows the reference topics in a background thread; ``current`` is the latest view."""

    def __init__(
        self,
        settings: Settings,
        topics: Iterable[str],
        codec: Codec,
        *,
        on_change: Callable[[ReferenceData], None] | None = None,
        ignore: tuple[type, ...] = (),
    ) -> None:
        self._topics = list(topics)
        # Record types the caller applies itself, in its own input order.
        self._ignore = ignore
        self._codec = codec
        self._on_change = on_change
        self._current = ReferenceData()
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._version = 0
        self._rejected: list[tuple[str, str]] = []
        self._consumer = Consumer(
            kafka_client_config(
                settings,
                {
                    "group.id": "revledger-reference-reader",  # never commits: assign() only
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                },
            )
        )
        self._thread = threading.Thread(target=self._run, name="reference-reader", daemon=True)

    @property
    def current(self) -> ReferenceData:
        """The latest complete view of the reference data."""
        with self._lock:
            return self._current

    @property
    def version(self) -> int:
        """Counts the updates applied since start: callers re-try holds when it moves."""
        return self._version

    @property
    def rejected(self) -> list[tuple[str, str]]:
        """(reason, message) of reference records that could not be decoded."""
        return list(self._rejected)

    def apply(self, record: object) -> None:
        """Fold one record (reference or control) into the view."""
        if isinstance(record, self._ignore):
            return
        with self._lock:
            self._current = self._current.with_record(record)
            self._version += 1
        if self._on_change is not None:
            self._on_change(self._current)

    def start(self, timeout: float = 60.0) -> None:
        """Start following and block until every topic was read to its end offset."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ReferenceNotReady(f"reference topics not read to their end in {timeout} s")

    def stop(self) -> None:
        """Stop the thread and close the consumer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _assign_all(self) -> set[tuple[str, int]]:
        metadata = self._consumer.list_topics(timeout=30)
        partitions = [
            TopicPartition(topic, p, OFFSET_BEGINNING)
            for topic in self._topics
            for p in metadata.topics[topic].partitions
        ]
        self._consumer.assign(partitions)
        return {(tp.topic, tp.partition) for tp in partitions}

    def _run(self) -> None:
        try:
            pending = self._assign_all()
            while not self._stop.is_set():
                message = self._consumer.poll(_POLL_SECONDS)
                if message is None:
                    continue
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        pending.discard((message.topic(), message.partition()))
                        if not pending:
                            self._ready.set()
                        continue
                    log.warning("reference reader: %s", message.error())
                    continue
                self._fold(message)
        finally:
            self._consumer.close()

    def _fold(self, message: object) -> None:
        try:
            record = self._codec.decode(message.value())  # type: ignore[attr-defined]
        except DecodeError as exc:
            # A bad reference record cannot be dead-lettered from here (no transaction);
            # it is logged and counted, and the view keeps the last good value.
            self._rejected.append((exc.reason, str(exc)))
            log.error("reference record rejected: %s: %s", exc.reason, exc)
            return
        self.apply(record)
