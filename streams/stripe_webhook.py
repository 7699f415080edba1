"""``revledger stripe-webhook``: Stripe's webhooks in, verified, onto ``raw.stripe.v1``.

An aiohttp server of its own (Stripe needs an answer within seconds, whatever the workers
are doing). For ``POST /stripe/webhook`` it:

1. refuses a body over ``--max-body-bytes`` with 413, from ``Content-Length`` before
   reading anything, else while reading (chunked bodies), never holding more than the
   limit;
2. verifies ``Stripe-Signature`` (``t=<unix>,v1=<hex>[,v1=...]``): HMAC-SHA256 keyed by
   the endpoint secret over ``"<t>.<body>"``, compared in constant time against every v1
   signature with every configured secret (``REVLEDGER_STRIPE_WEBHOOK_SECRETS``, comma
   separated: during a rotation Stripe signs with the old and the new secret), and
   ``|now - t|`` within ``--tolerance`` seconds (default 300, Stripe's; a replayed
   old delivery is refused). Missing header, bad header, no matching signature, stale
   timestamp: 400;
3. refuses a body that is not a JSON event object (``id`` and ``type``): 400;
4. writes the body, bytes unchanged, to ``raw.stripe.v1`` keyed by the Stripe customer
   id (:func:`connectors.stripe.routing_key`), with the murmur2 partitioner, an
   idempotent producer and ``acks=all``, and answers 200 only once the broker
   acknowledged the write; 503 if it did not (Stripe retries, and a retry of an event
   already written is a duplicate the ledger ignores).

Nothing is translated here: the translator worker (``streams/stripe_translator.py``)
does that from the topic, so a translation fix can be replayed on what Stripe sent.

``GET /healthz`` answers ok; ``GET /metrics`` serves
``revledger_stripe_webhook_requests_total{outcome}``.

Must not import faust.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from confluent_kafka import KafkaException, Producer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from connectors.stripe.translate import routing_key
from streams.settings import Settings, SettingsError, kafka_client_config
from streams.topics import RAW_STRIPE

log = logging.getLogger(__name__)

ENV_SECRETS = "REVLEDGER_STRIPE_WEBHOOK_SECRETS"
SIGNATURE_HEADER = "Stripe-Signature"
DEFAULT_PATH = "/stripe/webhook"
DEFAULT_PORT = 8087
# Stripe's own libraries accept 5 minutes of difference between the signed timestamp and
# the receiver's clock: enough for clock skew and retries, short enough against replays.
DEFAULT_TOLERANCE_SECONDS = 300
# Stripe event payloads are a few KiB, rarely over 100 KiB; 512 KiB leaves room and stays
# under the topic's 1 MiB message limit with headers.
DEFAULT_MAX_BODY_BYTES = 512 * 1024
# Stripe waits up to ~10-20 s for an answer; a broker that has not acknowledged by then
# gets a 503, and Stripe retries later.
DELIVERY_TIMEOUT_SECONDS = 15.0
_READ_CHUNK_BYTES = 64 * 1024

EXIT_CONFIG_ERROR = 2


class SignatureError(ValueError):
    """Raised by :func:`verify_signature`; ``outcome`` is the metric label and short reason.

    Outcomes: ``missing_signature`` (no header), ``bad_signature_header`` (no ``t`` or no
    ``v1``), ``bad_signature`` (no v1 matches any secret), ``stale_timestamp`` (outside the
    tolerance).
    """

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


class WriteFailed(RuntimeError):
    """Raised by an :class:`EventWriter` when the broker did not acknowledge a write."""


def signature(body: bytes, secret: str, timestamp: int) -> str:
    """Stripe's v1 signature: hex HMAC-SHA256 of ``"<timestamp>.<body>"`` keyed by the secret."""
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(body: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header value as Stripe sends it (for tests and tools)."""
    return f"t={timestamp},v1={signature(body, secret, timestamp)}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            with contextlib.suppress(ValueError):
                timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(
            "bad_signature_header", "Stripe-Signature needs t=<unix time> and v1=<signature>"
        )
    return timestamp, signatures


def verify_signature(
    header: str | None,
    body: bytes,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check a ``Stripe-Signature`` header against ``body``; return its timestamp.

    Every v1 signature is compared with every secret's, each comparison in constant time
    (``hmac.compare_digest``) and all of them made, so the time taken says nothing about
    which secret or how many bytes matched.

    Raises:
        SignatureError: see its docstring for the outcomes.
    """
    if not header:
        raise SignatureError("missing_signature", "no Stripe-Signature header")
    timestamp, given = _parse_header(header)
    matched = False
    for secret in secrets:
        expected = signature(body, secret, timestamp).encode()
        for candidate in given:
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise SignatureError("bad_signature", "no signature matches the body and a secret")
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureError(
            "stale_timestamp", f"signed at {timestamp}, outside {tolerance_seconds}s of now"
        )
    return timestamp


# --- writing ---------------------------------------------------------------------------------


class EventWriter(Protocol):
    """Where verified events go: the raw topic, or a fake in unit tests."""

    async def write(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Write one event; return only once it is durable.

        Raises:
            WriteFailed: it was not acknowledged.
        """
        ...

    def close(self) -> None:
        """Deliver what is pending and release the client."""
        ...


class KafkaEventWriter:
    """Writes to ``raw.stripe.v1``: idempotent, ``acks=all``, murmur2 like every producer.

    confluent-kafka reports deliveries from ``poll``; a thread polls and hands each result
    to the waiting request's event loop.
    """

    def __init__(
        self,
        settings: Settings,
        topic: str,
        delivery_timeout_seconds: float = DELIVERY_TIMEOUT_SECONDS,
    ) -> None:
        self.topic = topic
        self.delivery_timeout_seconds = delivery_timeout_seconds
        self._producer = Producer(
            kafka_client_config(
                settings,
                {
                    "partitioner": "murmur2_random",
                    "enable.idempotence": True,
                    "acks": "all",
                    # A request waits for its own write: no batching delay worth having.
                    "linger.ms": 1,
                    # librdkafka gives up (and reports the error) before the request does.
                    "message.timeout.ms": int(delivery_timeout_seconds * 1000) - 1000,
                },
            )
        )
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="stripe-webhook-kafka", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.1)

    async def write(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Produce and wait for the broker's acknowledgement (see :class:`EventWriter`)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def settle(error: object) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(WriteFailed(str(error)))

        def delivered(error: object, message: object) -> None:
            loop.call_soon_threadsafe(settle, error)

        try:
            self._producer.produce(
                self.topic, key=key, value=value, headers=headers, on_delivery=delivered
            )
        except (BufferError, KafkaException) as exc:
            raise WriteFailed(f"not queued: {exc}") from exc
        try:
            await asyncio.wait_for(future, self.delivery_timeout_seconds)
        except TimeoutError as exc:
            raise WriteFailed("no acknowledgement in time") from exc

    def close(self) -> None:
        """Flush for a few seconds, then stop polling."""
        self._producer.flush(5.0)
        self._stop.set()
        self._poller.join(2.0)


# --- the application -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookOptions:
    """What the endpoint accepts."""

    secrets: tuple[str, ...]
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    path: str = DEFAULT_PATH
    account_id: str = "self"


class WebhookMetrics:
    """The endpoint's counters, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "revledger_stripe_webhook_requests_total",
            "Webhook deliveries by outcome (accepted, bad_signature, too_large, ...)",
            ["outcome"],
            registry=self.registry,
        )


class _TooLarge(Exception):
    pass


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(_READ_CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _event_of(body: bytes) -> dict | None:
    """The parsed event when ``body`` is a JSON object with string ``id`` and ``type``."""
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError also covers an integer of more than 4,300 digits, which json.loads
        # refuses with a plain ValueError (found by the translator's fuzz).
        return None
    if not isinstance(event, dict):
        return None
    if not isinstance(event.get("id"), str) or not isinstance(event.get("type"), str):
        return None
    return event


def _utf8(text: str) -> bytes | None:
    """``text`` as UTF-8, or None when it holds a lone surrogate (JSON allows ``\\ud800``)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return None


def build_app(
    options: WebhookOptions,
    writer: EventWriter,
    *,
    now: Callable[[], float] = time.time,
    metrics: WebhookMetrics | None = None,
) -> web.Application:
    """The aiohttp application: the webhook route, ``/healthz`` and ``/metrics``."""
    counters = metrics or WebhookMetrics()

    def answer(outcome: str, status: int, text: str) -> web.Response:
        counters.requests.labels(outcome).inc()
        return web.json_response({"outcome": outcome, "detail": text}, status=status)

    async def receive(request: web.Request) -> web.Response:
        try:
            body = await _read_limited(request, options.max_body_bytes)
        except _TooLarge:
            return answer("too_large", 413, f"body over {options.max_body_bytes} bytes")
        try:
            timestamp = verify_signature(
                request.headers.get(SIGNATURE_HEADER),
                body,
                options.secrets,
                now=now(),
                tolerance_seconds=options.tolerance_seconds,
            )
        except SignatureError as exc:
            return answer(exc.outcome, 400, str(exc))
        event = _event_of(body)
        if event is None:
            return answer("not_an_event", 400, "body is not a JSON event with id and type")
        key = _utf8(routing_key(event, options.account_id))
        event_id, event_type = _utf8(event["id"]), _utf8(event["type"])
        if key is None or event_id is None or event_type is None:
            return answer("not_an_event", 400, "the event's id, type or customer is not UTF-8")
        headers = [
            ("stripe.event.id", event_id),
            ("stripe.event.type", event_type),
            ("stripe.signature.timestamp", str(timestamp).encode()),
            ("received.at", dt.datetime.fromtimestamp(now(), tz=dt.UTC).isoformat().encode()),
        ]
        try:
            await writer.write(key, body, headers)
        except WriteFailed as exc:
            log.warning("stripe-webhook: event %s not written: %s", event["id"], exc)
            return answer("write_failed", 503, "not stored; retry later")
        return answer("accepted", 200, event["id"])

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def metrics_page(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(counters.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    # Our own reader enforces the limit while streaming; aiohttp's is a second fence.
    app = web.Application(client_max_size=options.max_body_bytes)
    app.router.add_post(options.path, receive)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)

    async def close_writer(app: web.Application) -> None:
        writer.close()

    app.on_cleanup.append(close_writer)
    return app


# --- command line ----------------------------------------------------------------------------


def secrets_from_environ(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    """The signing secrets in ``REVLEDGER_STRIPE_WEBHOOK_SECRETS`` (comma separated)."""
    environ = dict(os.environ) if environ is None else environ
    raw = environ.get(ENV_SECRETS, "")
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def add_stripe_webhook_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``revledger stripe-webhook`` to the CLI's sub-commands."""
    parser = subparsers.add_parser(
        "stripe-webhook",
        help="receive Stripe webhooks, verify their signature, write them to raw.stripe.v1",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default=None, help="default: REVLEDGER_WEB_HOST")
    parser.add_argument("--path", default=DEFAULT_PATH)
    parser.add_argument(
        "--tolerance", type=int, default=DEFAULT_TOLERANCE_SECONDS, metavar="SECONDS"
    )
    parser.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="BYTES"
    )
    parser.add_argument(
        "--account", default=None, help="the platform's Stripe account id (keys payouts)"
    )


def main_stripe_webhook(args: argparse.Namespace) -> int:
    """Entry point of ``revledger stripe-webhook``."""
    from streams.devstack_env import settings_from_devstack

    secrets = secrets_from_environ()
    if not secrets:
        print(f"stripe-webhook: set {ENV_SECRETS} (comma-separated whsec_...)", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.tolerance <= 0 or args.max_body_bytes <= 0 or not 0 <= args.port <= 65535:
        print("stripe-webhook: --tolerance and --max-body-bytes must be > 0", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    try:
        settings = settings_from_devstack()
    except SettingsError as exc:
        print(f"stripe-webhook: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    logging.basicConfig(level=settings.log_level.upper())
    options = WebhookOptions(
        secrets=secrets,
        tolerance_seconds=args.tolerance,
        max_body_bytes=args.max_body_bytes,
        path=args.path,
        account_id=args.account or os.environ.get("REVLEDGER_STRIPE_ACCOUNT") or "self",
    )
    return run_webhook(settings, options, args.host or settings.web_host, args.port)


def run_webhook(settings: Settings, options: WebhookOptions, host: str, port: int) -> int:
    """Serve until SIGTERM / SIGINT (aiohttp's ``run_app`` drains requests in flight)."""
    from streams.admin import ensure_topics

    ensure_topics(settings, (RAW_STRIPE,))
    topic = settings.topic_prefix + RAW_STRIPE.name
    writer = KafkaEventWriter(settings, topic)
    print(f"stripe-webhook: http://{host}:{port}{options.path} -> {topic}", flush=True)
    web.run_app(build_app(options, writer), host=host, port=port, print=None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.stripe_webhook [options]`` without the ``revledger`` CLI."""
    parser = argparse.ArgumentParser(prog="python -m streams.stripe_webhook")
    commands = parser.add_subparsers(dest="command")
    add_stripe_webhook_commands(commands)
    args = parser.parse_args(["stripe-webhook", *(sys.argv[1:] if argv is None else argv)])
    return main_stripe_webhook(args)


if __name__ == "__main__":
    sys.exit(main())
