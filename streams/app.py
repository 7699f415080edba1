"""The Faust application: built from :class:`~streams.settings.Settings`, every knob explicit.

Owns the Faust ``App`` object and its topics. Agents live in their own modules and are
registered by :func:`streams.worker.build_worker_app`.

Why these settings:
- ``processing_guarantee=exactly_once``: outputs, table changelogs and offsets commit in
  one Kafka transaction per owned partition (EOS v1 fencing: aiokafka has no KIP-447).
- ``agent_supervisor=CrashingSupervisor``: an agent that fails must stop the process, not
  restart in place past the failing message; :mod:`streams.supervision` goes further and
  exits without a final commit.
- ``key_serializer``/``value_serializer`` ``raw``: bytes in, bytes out; :mod:`streams.serde`
  is the only place that encodes or decodes.
- ``table_standby_replicas=1``: besides faster fail-over, faust-streaming 0.15.3 falls
  back to aiokafka's round-robin assignor when there are no standbys and no tables; the
  round-robin assignor leaves Faust's topic groups empty, and every exactly-once send
  then fails to find its transactional producer.
"""

from __future__ import annotations

import shutil
import ssl

import faust
import mode
from faust.types.auth import CredentialsT

from streams import faust_fixes
from streams.settings import Settings, SettingsError
from streams.topics import TOPICS, TopicSpec

# Faust's default 2.8 s is fine in production; tests and the demo pass a shorter one.
_PRODUCER_LINGER_MS = 5


def build_app(settings: Settings) -> faust.App:
    """Create the Faust app for ``settings``; no agent is registered here."""
    faust_fixes.apply()
    if settings.processing_guarantee == "exactly_once":
        discard_local_tables(settings)
    broker = [f"kafka://{server.strip()}" for server in settings.bootstrap_servers.split(",")]
    # Faust creates only the last level of its data dir.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=broker,
        processing_guarantee=settings.processing_guarantee,
        store=settings.store,
        # Faust keys its table stores by table name only: two apps sharing a data dir
        # would read each other's state, so each app id gets its own folder.
        datadir=str(settings.data_dir / settings.app_id),
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        topic_disable_leader=True,
        broker_commit_interval=settings.commit_interval_seconds,
        # A killed worker's partitions move after this long; Faust's default is 60 s.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=3.0,
        broker_commit_every=1_000,
        agent_supervisor=mode.CrashingSupervisor,
        consumer_auto_offset_reset="earliest",
        producer_linger_ms=_PRODUCER_LINGER_MS,
        producer_max_request_size=max(settings.max_message_bytes * 2, 1_048_576),
        consumer_max_fetch_size=max(settings.max_message_bytes * 2, 4 * 1_048_576),
        table_standby_replicas=1,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=settings.web_port != 0,
        web_host=settings.web_host,
        web_port=settings.web_port or 6066,
        web_bind=settings.web_host,
        loghandlers=[],
        # SASL/TLS from the same settings as the confluent-kafka clients get.
        broker_credentials=broker_credentials(settings),
    )


# RocksDB options of the tables that are written on every event (the ledger's customer
# state, the batcher's windows; issue 7). Faust opens one database per table and
# partition, each with 64 MiB write buffers (up to 3 before a flush) and its own 2 GiB
# block cache: resident memory grows with the bytes written until the buffers fill,
# whatever the number of customers (+337 MiB for 560 MiB written by 2,000 customers in
# benchmarks/state_memory.py; the soak's ledger worker 121 -> 1,323 MiB in 30 min).
# Bounded here per database: at most 2 write buffers of 4 MiB and an 8 MiB block cache.
# A small buffer flushes more often; the same keys are rewritten, so flushes stay small
# (benchmarks/state_memory.py --rocksdb faust|worker measures both).
STATE_STORE_OPTIONS: dict[str, int] = {
    "write_buffer_size": 4 * 1024 * 1024,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 1024 * 1024,
}


def state_store_options(settings: Settings) -> dict[str, int] | None:
    """:data:`STATE_STORE_OPTIONS` for a RocksDB store, a new dict each time (Faust pops
    keys from the one it is given); None for the memory store, which takes no options."""
    return dict(STATE_STORE_OPTIONS) if settings.store.startswith("rocksdb") else None


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """Faust's (aiokafka's) credentials for the Kafka security settings; None for PLAINTEXT.

    Raises:
        SettingsError: a TLS file cannot be read or is not a certificate or key.
    """
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    # SASLCredentials' repr shows the user name only; with a context it speaks SASL_SSL.
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=None if password is None else password.get_secret_value(),
        ssl_context=context,
        mechanism=settings.kafka_sasl_mechanism,
    )


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of the aiokafka clients, equivalent to librdkafka's ``ssl.*`` settings.

    It verifies the broker's chain against ``KAFKA_SSL_CA_LOCATION`` (else the system's
    trust store) and, unless the endpoint identification algorithm is ``none``, its host
    name; with a client certificate and key it authenticates the client too (mutual TLS).

    Raises:
        SettingsError: a file cannot be read or does not hold what it should.
    """
    ca = settings.kafka_ssl_ca_location
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=None if ca is None else str(ca)
        )
        if settings.kafka_ssl_certificate_location is not None:
            key_password = settings.kafka_ssl_key_password
            context.load_cert_chain(
                str(settings.kafka_ssl_certificate_location),
                None
                if settings.kafka_ssl_key_location is None
                else str(settings.kafka_ssl_key_location),
                password=None if key_password is None else key_password.get_secret_value(),
            )
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(
            "KAFKA_SSL_CA_LOCATION / KAFKA_SSL_CERTIFICATE_LOCATION / KAFKA_SSL_KEY_LOCATION:"
            f" {exc}"
        ) from exc
    # The chain is always verified (CERT_REQUIRED); only the host name check can be off.
    context.check_hostname = settings.kafka_ssl_endpoint_identification_algorithm == "https"
    return context


def discard_local_tables(settings: Settings) -> None:
    """Delete this app's local table stores so they are rebuilt from the changelogs.

    RocksDB writes are not part of the Kafka transaction: after a crash the local store
    can hold the writes of a transaction that was aborted, and Faust replays only the
    committed changelog over it. A customer first seen in the aborted transaction would
    keep state the ledger never committed, and its events would be taken for duplicates.
    The changelog holds exactly the committed state, so under exactly-once the worker
    starts from it.
    """
    shutil.rmtree(settings.data_dir / settings.app_id, ignore_errors=True)


def topic_name(settings: Settings, spec: TopicSpec) -> str:
    """The real Kafka topic name of ``spec`` under this deployment's prefix."""
    return f"{settings.topic_prefix}{spec.name}"


def faust_topic(app: faust.App, settings: Settings, spec: TopicSpec) -> faust.TopicT:
    """Declare ``spec`` on ``app`` with its partition count and retention config."""
    return app.topic(
        topic_name(settings, spec),
        partitions=spec.partitions(settings.partitions),
        replicas=settings.replication_factor,
        config=dict(spec.config),
        key_serializer="raw",
        value_serializer="raw",
    )


def all_topic_names(settings: Settings) -> list[str]:
    """Every topic name of the system under this deployment's prefix."""
    return [topic_name(settings, spec) for spec in TOPICS]
