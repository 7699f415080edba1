"""``revledger crm-translate``: ``raw.salesforce.v1`` -> ``contracts.events.v1``, exactly once.

The loop is the Stripe translator's (:class:`streams.stripe_translator.TranslatorSession`:
a plain confluent-kafka consume-translate-produce loop whose outputs and consumer offsets
commit in one transaction, KIP-447); only the translation differs. For each raw
Salesforce event message it calls the pure :func:`connectors.salesforce.translate` and

- produces the canonical contract events to ``contracts.events.v1``, Avro-encoded, keyed
  by customer id with the murmur2 partitioner;
- or, for a message it cannot translate, a ``DlqRecord`` with the ``salesforce_*`` reason
  and the original key, value and headers on the same partition of ``dlq.v1``;
- or, for a message without contract effect, nothing: counted
  (``revledger_crm_events_total{entity,outcome}``) and skipped.

Canonical ids come from the Salesforce record id and the change's transaction key and
sequence number (or the platform event's uuid), so a redelivered event is a duplicate
to the ledger even when the transaction around it is replayed.

Must not import faust.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer
from prometheus_client import CollectorRegistry, Counter

from connectors.salesforce import (
    HANDLERS,
    Malformed,
    SalesforceConfig,
    SalesforceConfigError,
    Skipped,
    Translated,
    Translation,
    config_from_environ,
    load_config,
    translate,
)
from ledger.events import Event
from streams.producer import topic_for
from streams.serde import Codec
from streams.settings import Settings, SettingsError, kafka_client_config
from streams.stripe_translator import (
    EXIT_CONFIG_ERROR,
    KAFKA_TIMEOUT_SECONDS,
    TRANSACTION_MAX_SECONDS,
    TranslatorOptions,
    TranslatorSession,
    add_translator_arguments,
    serve_translator,
)
from streams.topics import CONTRACTS, DLQ, RAW_SALESFORCE

log = logging.getLogger(__name__)


def outcome_of(value: bytes | None, config: SalesforceConfig) -> Translation:
    """The translation of one raw record's bytes (pure: what the loop does per record)."""
    if not value:
        return Malformed("salesforce_not_json", "empty record")
    try:
        # Decimal, never float: Salesforce money arrives as JSON numbers.
        message = json.loads(value, parse_float=Decimal)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return Malformed("salesforce_not_json", f"the record is not JSON: {exc}")
    if not isinstance(message, dict):
        return Malformed("salesforce_not_an_event", "the record is not a JSON object")
    return translate(message, config)


def entity_of(value: bytes | None) -> str:
    """The sObject a raw record is about, for the metric label ('other' when unknown)."""
    try:
        message = json.loads(value or b"", parse_float=Decimal)
        data = message.get("data", message)
        payload = data.get("payload", data)
        entity = payload["ChangeEventHeader"]["entityName"]
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return "other"
    return entity if entity in HANDLERS else "other"


class CrmTranslatorMetrics:
    """Counters of one CRM translator process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "revledger_crm_events_total",
            "Raw Salesforce events by sObject (other: not translated) and outcome"
            " (translated, skipped_<reason>, dlq)",
            ["entity", "outcome"],
            registry=self.registry,
        )
        self.produced = Counter(
            "revledger_crm_canonical_events_total",
            "Canonical contract events produced from Salesforce events",
            ["topic"],
            registry=self.registry,
        )


class CrmTranslatorSession(TranslatorSession):
    """The Stripe translator's transactional loop with the Salesforce translation."""

    config: SalesforceConfig  # type: ignore[assignment]
    metrics: CrmTranslatorMetrics  # type: ignore[assignment]

    def take(self, message: Message) -> None:
        """Translate one raw record inside the open transaction."""
        if not self._open:
            self.producer.begin_transaction()
            self._open, self._opened_at = True, time.monotonic()
        entity = entity_of(message.value())
        outcome = outcome_of(message.value(), self.config)
        if isinstance(outcome, Translated):
            for event in outcome.events:
                self._produce_event(event, message)
            self.metrics.events.labels(entity, "translated").inc()
        elif isinstance(outcome, Skipped):
            self.metrics.events.labels(entity, f"skipped_{outcome.reason}").inc()
        else:
            self._dead_letter(outcome, message)  # type: ignore[arg-type]
            self.metrics.events.labels(entity, "dlq").inc()
        self._offsets[(message.topic(), message.partition())] = message.offset() + 1
        self._records += 1
        full = self._records >= self.transaction_size
        if full or time.monotonic() - self._opened_at >= TRANSACTION_MAX_SECONDS:
            self.commit()

    def _produce_event(self, event: Event, message: Message) -> None:
        spec = topic_for(event)
        topic = self.settings.topic_prefix + spec.name
        value = self.codec.encode(event, topic=topic)
        headers = [("salesforce.record.id", event.source_id.encode())]
        self._produce(topic, event.customer_id.encode(), value, headers, None)
        self.metrics.produced.labels(spec.name).inc()


def run_crm_translator(
    settings: Settings,
    config: SalesforceConfig,
    options: TranslatorOptions,
    stop: threading.Event,
    metrics: CrmTranslatorMetrics | None = None,
) -> int:
    """Translate until ``stop`` is set; returns the exit code.

    Raises:
        KafkaException: the broker failed (the open transaction is aborted first; a
            restart reads again from the last commit).
    """
    from streams.admin import ensure_topics

    ensure_topics(settings, (RAW_SALESFORCE, CONTRACTS, DLQ))
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
    session = CrmTranslatorSession(
        settings,
        config,  # type: ignore[arg-type]
        consumer,
        producer,
        Codec(schema_registry_url=settings.schema_registry_url),
        metrics or CrmTranslatorMetrics(),  # type: ignore[arg-type]
        options.transaction_size,
        name="crm-translate",
    )
    consumer.subscribe([settings.topic_prefix + RAW_SALESFORCE.name], on_revoke=session.on_revoke)
    try:
        session.run(stop)
    except BaseException:
        session.abort()
        raise
    finally:
        consumer.close()
    return 0


# --- command line ----------------------------------------------------------------------------


def add_crm_translate_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger crm-translate`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "crm-translate",
        help="translate raw.salesforce.v1 into contract events (exactly once), bad ones to DLQ",
    )
    parser.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="Salesforce mapping (JSON); default REVLEDGER_SALESFORCE_CONFIG or"
        " REVLEDGER_SALESFORCE_ENTITIES",
    )
    add_translator_arguments(parser, "crm-translator")


def main_crm_translate(args: argparse.Namespace) -> int:
    """Entry point of ``revledger crm-translate``."""
    from streams.devstack_env import settings_from_devstack

    try:
        settings = settings_from_devstack()
        config = load_config(Path(args.config)) if args.config else config_from_environ()
    except (SettingsError, SalesforceConfigError) as exc:
        print(f"crm-translate: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    metrics = CrmTranslatorMetrics()
    return serve_translator(
        "crm-translate",
        "crm-translator",
        args,
        settings,
        metrics.registry,
        lambda options, stop: run_crm_translator(settings, config, options, stop, metrics),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.crm_translator [options]`` without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.crm_translator")
    commands = parser.add_subparsers(dest="command")
    add_crm_translate_commands(commands)
    args = parser.parse_args(["crm-translate", *(sys.argv[1:] if argv is None else argv)])
    return main_crm_translate(args)


if __name__ == "__main__":
    sys.exit(main())
