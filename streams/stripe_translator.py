"""``revledger stripe-translate``: ``raw.stripe.v1`` -> canonical topics, exactly once.

A plain confluent-kafka consume-transform-produce loop (no Faust: no state, no tables).
For each raw Stripe event it calls the pure :func:`connectors.stripe.translate` and, in
one Kafka transaction with the group's consumer offsets:

- produces the canonical events to their topics (``billing.events.v1``,
  ``payments.events.v1``, ``contracts.events.v1``), Avro-encoded, keyed by customer id
  with the murmur2 partitioner, so they land on the customer's partition of every topic;
- or, for a payload it cannot translate, a ``DlqRecord`` with the ``stripe_*`` reason and
  the original key, value and headers on the same partition of ``dlq.v1`` (redrive
  re-produces the raw event to ``raw.stripe.v1``);
- or, for an event type it does not translate (or one with no accounting effect),
  nothing: it is counted (``revledger_stripe_events_total{type,outcome}``) and skipped.

Exactly once: outputs and offsets commit together (``send_offsets_to_transaction`` with
the consumer's group metadata, KIP-447, so a member that lost its partitions in a
rebalance cannot commit over the new owner). A crash re-reads from the last commit;
an aborted transaction's outputs are invisible to the ledger, which reads committed.
Even when a copy gets through twice (Stripe's own retries put the same event on the
topic again), the canonical event ids are those of the Stripe event and the ledger
takes the copy for a duplicate.

The transactional id is ``<group>-<instance>``: a restarted instance fences its dead
predecessor and aborts its open transaction at once. Run several instances with
different ``--instance`` names to share the partitions.

Must not import faust.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, start_http_server

from connectors.stripe import (
    HANDLERS,
    Malformed,
    Skipped,
    StripeConfig,
    StripeConfigError,
    Translated,
    Translation,
    config_from_environ,
    load_config,
    translate,
)
from ledger.events import Event
from streams.dlq import Failure, SourceRecord, dlq_headers, dlq_record
from streams.producer import topic_for
from streams.serde import Codec
from streams.settings import Settings, SettingsError, kafka_client_config
from streams.topics import BILLING, CONTRACTS, DLQ, PAYMENTS, RAW_STRIPE

log = logging.getLogger(__name__)

# Records per transaction at most: each commit costs a few broker round trips; a crash
# re-reads at most this many.
DEFAULT_TRANSACTION_SIZE = 200
# An open transaction commits after this long even when not full, so a trickle of
# webhooks reaches the ledger within about a second.
TRANSACTION_MAX_SECONDS = 0.5
POLL_SECONDS = 0.2
KAFKA_TIMEOUT_SECONDS = 30.0
EXIT_CONFIG_ERROR = 2


def outcome_of(value: bytes | None, config: StripeConfig) -> Translation:
    """The translation of one raw record's bytes (pure: what the loop does per record)."""
    if not value:
        return Malformed("stripe_not_json", "empty record")
    try:
        event = json.loads(value)
    except (ValueError, RecursionError) as exc:
        # ValueError: also an integer of more than 4,300 digits, which json.loads refuses
        # with a plain ValueError (found by the fuzz); JSONDecodeError and
        # UnicodeDecodeError are ValueErrors too.
        return Malformed("stripe_not_json", f"the record is not JSON: {str(exc)[:200]}")
    if not isinstance(event, dict):
        return Malformed("stripe_not_an_event", "the record is not a JSON object")
    return translate(event, config)


class TranslatorMetrics:
    """Counters of one translator process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "revledger_stripe_events_total",
            "Raw Stripe events by type (other: not translated) and outcome"
            " (translated, skipped reason, dlq)",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.produced = Counter(
            "revledger_stripe_canonical_events_total",
            "Canonical events produced from Stripe events",
            ["topic"],
            registry=self.registry,
        )

    def count(self, event_type: str, outcome: str) -> None:
        """Count one event; types the connector does not know share one label."""
        self.events.labels(event_type if event_type in HANDLERS else "other", outcome).inc()


def _event_type(headers: Sequence[tuple[str, bytes]] | None) -> str:
    for key, value in headers or ():
        if key == "stripe.event.type":
            return value.decode(errors="replace")
    return "unknown"


@dataclass(frozen=True, slots=True)
class TranslatorOptions:
    """What ``revledger stripe-translate`` was asked to do."""

    group: str
    instance: str = "0"
    transaction_size: int = DEFAULT_TRANSACTION_SIZE


class TranslatorSession:
    """The consume -> translate -> produce -> commit loop of one process.

    ``name`` is the command the session runs as (``stripe-translate``, ``crm-translate``):
    its log lines start with it, so an operator reading a DLQ warning knows which
    translator dead-lettered the record.
    """

    def __init__(
        self,
        settings: Settings,
        config: StripeConfig,
        consumer: Consumer,
        producer: Producer,
        codec: Codec,
        metrics: TranslatorMetrics,
        transaction_size: int,
        *,
        name: str = "stripe-translate",
    ) -> None:
        self.name = name
        self.settings = settings
        self.config = config
        self.consumer = consumer
        self.producer = producer
        self.codec = codec
        self.metrics = metrics
        self.transaction_size = transaction_size
        self.dlq_topic = settings.topic_prefix + DLQ.name
        self._offsets: dict[tuple[str, int], int] = {}
        self._open = False
        self._opened_at = 0.0
        self._records = 0

    def on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Rebalance callback: commit what was done before the partitions move."""
        self.commit()

    def run(self, stop: threading.Event) -> None:
        """Poll, translate and commit until ``stop`` is set."""
        while not stop.is_set():
            message = self.consumer.poll(POLL_SECONDS)
            if message is None or self._is_event(message):
                self.commit()
                continue
            self.take(message)
        self.commit()

    def _is_event(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
            return True
        raise KafkaException(error)

    def take(self, message: Message) -> None:
        """Translate one raw record inside the open transaction."""
        if not self._open:
            self.producer.begin_transaction()
            self._open, self._opened_at = True, time.monotonic()
        event_type = _event_type(message.headers())
        outcome = outcome_of(message.value(), self.config)
        if isinstance(outcome, Translated):
            for event in outcome.events:
                self._produce_event(event, message)
            self.metrics.count(event_type, "translated")
        elif isinstance(outcome, Skipped):
            self.metrics.count(event_type, f"skipped_{outcome.reason}")
        else:
            self._dead_letter(outcome, message)
            self.metrics.count(event_type, "dlq")
        self._offsets[(message.topic(), message.partition())] = message.offset() + 1
        self._records += 1
        full = self._records >= self.transaction_size
        if full or time.monotonic() - self._opened_at >= TRANSACTION_MAX_SECONDS:
            self.commit()

    def _produce_event(self, event: Event, message: Message) -> None:
        spec = topic_for(event)
        topic = self.settings.topic_prefix + spec.name
        value = self.codec.encode(event, topic=topic)
        headers = [("stripe.event.id", _header(message, "stripe.event.id"))]
        self._produce(topic, event.customer_id.encode(), value, headers, None)
        self.metrics.produced.labels(spec.name).inc()

    def _dead_letter(self, outcome: Malformed, message: Message) -> None:
        log.warning("%s: %s: %s", self.name, outcome.reason, outcome.message)
        source = SourceRecord(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            headers=tuple((k, bytes(v or b"")) for k, v in message.headers() or ()),
        )
        record = dlq_record(
            Failure(outcome.reason, outcome.message),
            source,
            service_version=self.settings.service_version,
            failed_at=dt.datetime.now(dt.UTC),
        )
        value = self.codec.encode(record, topic=self.dlq_topic)
        # The DLQ is co-partitioned with the raw topic: same partition number.
        self._produce(
            self.dlq_topic, message.key(), value, list(dlq_headers(record)), message.partition()
        )

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None,
    ) -> None:
        kwargs = {} if partition is None else {"partition": partition}
        while True:
            try:
                self.producer.produce(topic, key=key, value=value, headers=headers, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.1)

    def commit(self) -> None:
        """Commit the outputs with the consumer offsets of the records they came from."""
        if not self._open:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._offsets.items())]
        self.producer.send_offsets_to_transaction(
            offsets, self.consumer.consumer_group_metadata(), KAFKA_TIMEOUT_SECONDS
        )
        self.producer.commit_transaction(KAFKA_TIMEOUT_SECONDS)
        self._open, self._offsets, self._records = False, {}, 0

    def abort(self) -> None:
        """Abort the open transaction: its outputs vanish, its records are read again."""
        if self._open:
            self._open = False
            self.producer.abort_transaction(KAFKA_TIMEOUT_SECONDS)


def _header(message: Message, name: str) -> bytes:
    for key, value in message.headers() or ():
        if key == name:
            return bytes(value or b"")
    return b""


def run_translator(
    settings: Settings,
    config: StripeConfig,
    options: TranslatorOptions,
    stop: threading.Event,
    metrics: TranslatorMetrics | None = None,
) -> int:
    """Translate until ``stop`` is set; returns the exit code.

    Raises:
        KafkaException: the broker failed (the open transaction is aborted first; a
            restart reads again from the last commit).
    """
    from streams.admin import ensure_topics

    ensure_topics(settings, (RAW_STRIPE, BILLING, PAYMENTS, CONTRACTS, DLQ))
    producer = Producer(
        kafka_client_config(
            settings,
            {
                "transactional.id": f"{options.group}-{options.instance}",
                "partitioner": "murmur2_random",
            },
        )
    )
    # Fences a previous process with this transactional id and aborts its open transaction.
    producer.init_transactions(KAFKA_TIMEOUT_SECONDS)
    consumer = Consumer(
        kafka_client_config(
            settings,
            {
                "group.id": options.group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    session = TranslatorSession(
        settings,
        config,
        consumer,
        producer,
        Codec(schema_registry_url=settings.schema_registry_url),
        metrics or TranslatorMetrics(),
        options.transaction_size,
    )
    consumer.subscribe([settings.topic_prefix + RAW_STRIPE.name], on_revoke=session.on_revoke)
    try:
        session.run(stop)
    except BaseException:
        session.abort()
        raise
    finally:
        consumer.close()
    return 0


# --- command line ----------------------------------------------------------------------------


def add_stripe_translate_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger stripe-translate`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "stripe-translate",
        help="translate raw.stripe.v1 into canonical events (exactly once), bad ones to DLQ",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="Stripe mapping (JSON); default REVLEDGER_STRIPE_CONFIG or REVLEDGER_STRIPE_ENTITIES",
    )
    add_translator_arguments(parser, "stripe-translator")


def add_translator_arguments(parser: argparse.ArgumentParser, group_suffix: str) -> None:
    """The options every raw-topic translator takes (Stripe, CRM)."""
    parser.add_argument("--group", default=None, help=f"default: <app id>-{group_suffix}")
    parser.add_argument("--instance", default="0", help="distinct per process of one group")
    parser.add_argument(
        "--transaction-size", type=int, default=DEFAULT_TRANSACTION_SIZE, metavar="N"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve /metrics on this port (0: off)"
    )


def main_stripe_translate(args: argparse.Namespace) -> int:
    """Entry point of ``revledger stripe-translate``."""
    from streams.devstack_env import settings_from_devstack

    try:
        settings = settings_from_devstack()
        config = load_config(Path(args.config)) if args.config else config_from_environ()
    except (SettingsError, StripeConfigError) as exc:
        print(f"stripe-translate: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    metrics = TranslatorMetrics()
    return serve_translator(
        "stripe-translate",
        "stripe-translator",
        args,
        settings,
        metrics.registry,
        lambda options, stop: run_translator(settings, config, options, stop, metrics),
    )


def serve_translator(
    command: str,
    group_suffix: str,
    args: argparse.Namespace,
    settings: Settings,
    registry: CollectorRegistry,
    run: Callable[[TranslatorOptions, threading.Event], int],
) -> int:
    """Run a translator from its command line: checks, logging, metrics, signals, ``run``."""
    if args.transaction_size < 1:
        print(f"{command}: --transaction-size must be at least 1", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.metrics_port:
        start_http_server(args.metrics_port, settings.web_host, registry=registry)
    options = TranslatorOptions(
        group=args.group or f"{settings.app_id}-{group_suffix}",
        instance=args.instance,
        transaction_size=args.transaction_size,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"{command}: {options.group}-{options.instance} running", flush=True)
    return run(options, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.stripe_translator [options]`` without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.stripe_translator")
    commands = parser.add_subparsers(dest="command")
    add_stripe_translate_commands(commands)
    args = parser.parse_args(["stripe-translate", *(sys.argv[1:] if argv is None else argv)])
    return main_stripe_translate(args)


if __name__ == "__main__":
    sys.exit(main())
