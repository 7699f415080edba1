"""The Stripe webhook endpoint: only signed, fresh, bounded events are written, then 200.

Runs the real aiohttp application (aiohttp's test server and client) with a fake writer
in place of Kafka: what matters here is which requests reach the writer and what each
caller is told.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.stripe_webhook import (
    SignatureError,
    WebhookMetrics,
    WebhookOptions,
    WriteFailed,
    build_app,
    secrets_from_environ,
    signature,
    signature_header,
    verify_signature,
)

NOW = 1_721_952_000
SECRET = "whsec_test_current"
OLD_SECRET = "whsec_test_previous"
PATH = "/stripe/webhook"
BODY = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "invoice.paid",
        "created": NOW,
        "data": {"object": {"object": "invoice", "id": "in_1", "customer": "cus_1"}},
    }
).encode()


class FakeWriter:
    """Records what would have gone to ``raw.stripe.v1``; can be told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.written: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    async def write(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        if self.fail:
            raise WriteFailed("broker unavailable")
        self.written.append((key, value, dict(headers)))

    def close(self) -> None:
        return None


def deliver(
    body: bytes | AsyncIterator[bytes],
    headers: dict[str, str],
    writer: FakeWriter,
    *,
    max_body_bytes: int = 64 * 1024,
    secrets: tuple[str, ...] = (SECRET,),
    metrics: WebhookMetrics | None = None,
) -> tuple[int, dict[str, Any]]:
    """POST ``body`` to the endpoint at time NOW; return the status and JSON answer."""
    options = WebhookOptions(secrets=secrets, max_body_bytes=max_body_bytes, path=PATH)
    app = build_app(options, writer, now=lambda: NOW, metrics=metrics)

    async def post() -> tuple[int, dict[str, Any]]:
        async with TestClient(TestServer(app)) as client:
            response = await client.post(PATH, data=body, headers=headers)
            return response.status, await response.json()

    return asyncio.run(post())


def signed(body: bytes = BODY, secret: str = SECRET, at: int = NOW) -> dict[str, str]:
    return {"Stripe-Signature": signature_header(body, secret, at)}


def test_signed_event_is_written_unchanged_keyed_by_customer_then_acknowledged():
    writer = FakeWriter()

    status, answer = deliver(BODY, signed(), writer)

    assert (status, answer["outcome"]) == (200, "accepted")
    ((key, value, headers),) = writer.written
    assert (key, value) == (b"cus_1", BODY)
    assert headers["stripe.event.id"] == b"evt_1"
    assert headers["stripe.event.type"] == b"invoice.paid"


def test_wrong_secret_is_refused_and_nothing_written():
    writer = FakeWriter()

    status, answer = deliver(BODY, signed(secret="whsec_someone_else"), writer)

    assert (status, answer["outcome"]) == (400, "bad_signature")
    assert writer.written == []


def test_altered_body_is_refused_and_nothing_written():
    writer = FakeWriter()
    altered = BODY.replace(b"cus_1", b"cus_2")

    status, answer = deliver(altered, signed(BODY), writer)

    assert (status, answer["outcome"]) == (400, "bad_signature")
    assert writer.written == []


@pytest.mark.parametrize("offset", [-301, 301], ids=["too_old", "in_the_future"])
def test_timestamp_outside_tolerance_is_refused_and_nothing_written(offset):
    writer = FakeWriter()

    status, answer = deliver(BODY, signed(at=NOW + offset), writer)

    assert (status, answer["outcome"]) == (400, "stale_timestamp")
    assert writer.written == []


def test_missing_signature_header_is_refused_and_nothing_written():
    writer = FakeWriter()

    status, answer = deliver(BODY, {}, writer)

    assert (status, answer["outcome"]) == (400, "missing_signature")
    assert writer.written == []


def test_oversized_body_is_refused_with_413_and_nothing_written():
    writer = FakeWriter()
    big = BODY + b" " * 2_048

    status, answer = deliver(big, signed(big), writer, max_body_bytes=1_024)

    assert (status, answer["outcome"]) == (413, "too_large")
    assert writer.written == []


def test_oversized_chunked_body_without_length_is_refused_while_reading():
    writer = FakeWriter()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b"x" * 512

    status, answer = deliver(chunks(), signed(b"x" * 32_768), writer, max_body_bytes=1_024)

    assert (status, answer["outcome"]) == (413, "too_large")
    assert writer.written == []


def test_either_secret_is_accepted_during_a_rotation():
    writer = FakeWriter()
    both = (OLD_SECRET, SECRET)
    header = f"t={NOW},v1={signature(BODY, OLD_SECRET, NOW)},v1={signature(BODY, 'x', NOW)}"

    with_old = deliver(BODY, {"Stripe-Signature": header}, writer, secrets=both)
    with_new = deliver(BODY, signed(), writer, secrets=both)

    assert (with_old[0], with_new[0]) == (200, 200)
    assert len(writer.written) == 2  # the second copy is a duplicate the ledger ignores


def test_signed_body_that_is_not_an_event_is_refused():
    writer = FakeWriter()
    body = b'{"hello": "world"}'

    status, answer = deliver(body, signed(body), writer)

    assert (status, answer["outcome"]) == (400, "not_an_event")
    assert writer.written == []


@pytest.mark.parametrize(
    "body",
    [
        # json.loads refuses an integer of more than 4,300 digits with a plain ValueError.
        b'{"id": "evt_1", "type": "invoice.paid", "n": ' + b"9" * 5000 + b"}",
        # A lone surrogate is valid JSON but cannot be a Kafka key or header.
        b'{"id": "evt_\\ud800", "type": "invoice.paid"}',
        b'{"id": "evt_1", "type": "invoice.paid",'
        b' "data": {"object": {"object": "invoice", "customer": "cus_\\udc00"}}}',
    ],
)
def test_signed_body_that_cannot_be_stored_as_an_event_is_refused_not_a_crash(body):
    writer = FakeWriter()

    status, answer = deliver(body, signed(body), writer)

    assert (status, answer["outcome"]) == (400, "not_an_event")
    assert writer.written == []


def test_failed_write_answers_503_so_stripe_retries():
    status, answer = deliver(BODY, signed(), FakeWriter(fail=True))

    assert (status, answer["outcome"]) == (503, "write_failed")


def test_outcomes_are_counted_on_the_metrics_registry():
    metrics = WebhookMetrics()
    deliver(BODY, signed(), FakeWriter(), metrics=metrics)
    deliver(BODY, {}, FakeWriter(), metrics=metrics)

    assert metrics.requests.labels("accepted")._value.get() == 1
    assert metrics.requests.labels("missing_signature")._value.get() == 1


def test_signature_header_without_timestamp_or_v1_is_a_bad_header():
    for header in ("v1=abc", f"t={NOW}", f"t=soon,v1={signature(BODY, SECRET, NOW)}"):
        with pytest.raises(SignatureError) as raised:
            verify_signature(header, BODY, [SECRET], now=NOW)
        assert raised.value.outcome == "bad_signature_header"


def test_signature_matches_stripes_documented_scheme():
    # HMAC-SHA256 keyed by the endpoint secret over "<t>.<body>" (docs.stripe.com/webhooks).
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()

    assert signature(BODY, SECRET, NOW) == expected
    assert verify_signature(signature_header(BODY, SECRET, NOW), BODY, [SECRET], now=NOW) == NOW


def test_secrets_come_from_a_comma_separated_environment_variable():
    environ = {"REVLEDGER_STRIPE_WEBHOOK_SECRETS": " whsec_a, ,whsec_b "}

    assert secrets_from_environ(environ) == ("whsec_a", "whsec_b")
    assert secrets_from_environ({}) == ()
