"""Stripe webhook events -> canonical events: the one pure entry point, :func:`translate`.

``translate(event, config)`` takes a Stripe event as parsed JSON and answers one of:

* :class:`Translated` - the canonical events (billing, payment or contract), in the order
  they should be produced;
* :class:`Skipped` - an event type the connector does not translate (``unknown_type``) or
  one without accounting effect (a $0 invoice, an uncaptured charge, an inquiry closed):
  counted by the caller, never posted;
* :class:`Malformed` - an event that cannot be translated faithfully: a payload of the
  wrong shape, an unknown currency, totals that do not add up, a Stripe feature the
  canonical events cannot express. The caller dead-letters it with ``reason`` (a
  ``stripe_*`` code) and the original bytes.

The same event always gives the same answer (no clock, no I/O, no state), so Stripe's
retry of an event gives identical canonical events with identical ids, and the ledger's
duplicate check makes the second copy change nothing. The mapping table is in
docs/STRIPE.md.

Must not import: faust, aiokafka, confluent_kafka, psycopg, anything under ``streams``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from connectors.stripe import billing, credit_notes, payments, subscriptions
from connectors.stripe.config import StripeConfig
from connectors.stripe.context import Context, Refusal, Skip, parse
from connectors.stripe.objects import StripeEvent, ref_id
from ledger.events import Event

Handler = Callable[[Context], "list[Event] | Skip"]

HANDLERS: Mapping[str, Handler] = {
    **billing.HANDLERS,
    **credit_notes.HANDLERS,
    **payments.HANDLERS,
    **subscriptions.HANDLERS,
}
"""The Stripe event types the connector translates, each with its handler."""


@dataclass(frozen=True, slots=True)
class Translated:
    """The canonical events of one Stripe event."""

    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class Skipped:
    """An event deliberately not posted: ``reason`` says why (a metric label)."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Malformed:
    """An event that cannot be posted as it is: the DLQ reason and a message naming it."""

    reason: str
    message: str


Translation = Translated | Skipped | Malformed


def translate(event: Mapping[str, Any], config: StripeConfig) -> Translation:
    """Translate one Stripe event (parsed JSON) into canonical events.

    Args:
        event: the webhook body as parsed JSON (``{"id": "evt_...", "type": ...}``).
        config: the account mapping (entities, time zone, policies).

    Returns:
        :class:`Translated`, :class:`Skipped` or :class:`Malformed`; never raises for bad
        input.
    """
    if not isinstance(event, Mapping) or event.get("object", "event") != "event":
        return Malformed("stripe_not_an_event", "the body is not a Stripe event object")
    where = _not_unicode(event)
    if where is not None:
        return Malformed(
            "stripe_payload_invalid", f"the string at {where} is not Unicode (a lone surrogate)"
        )
    try:
        envelope = parse(StripeEvent, dict(event), "event")
    except Refusal as refusal:
        return Malformed(refusal.reason, refusal.message)
    handler = HANDLERS.get(envelope.type)
    if handler is None:
        return Skipped("unknown_type", envelope.type)
    wanted = config.livemode
    if wanted != "both" and envelope.livemode != (wanted == "live"):
        mode = "live" if envelope.livemode else "test"
        return Skipped("other_mode", f"{envelope.id} is a {mode}-mode event")
    try:
        answer = handler(Context(envelope, config))
    except Refusal as refusal:
        return Malformed(refusal.reason, f"{envelope.type} {envelope.id}: {refusal.message}")
    if isinstance(answer, Skip):
        return Skipped(answer.reason, answer.detail)
    return Translated(tuple(answer))


def _not_unicode(value: Any) -> str | None:
    """Where the first string (or key) that UTF-8 cannot encode is, if any.

    JSON may escape half of a surrogate pair on its own (``"\\ud800"``) and ``json.loads``
    keeps it; such a string reaching a canonical event or a DLQ message made the Avro
    encoder raise and stopped the translator (found by the fuzz). Iterative: payloads
    can be nested as deep as the JSON parser allows.
    """
    stack: list[tuple[str, Any]] = [("event", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    return path
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if isinstance(key, str) and not key.isascii():
                    try:
                        key.encode()
                    except UnicodeEncodeError:
                        return f"{path} (a key)"
                stack.append((f"{path}.{key}" if len(path) < 200 else path, child))
        elif isinstance(item, list | tuple):
            stack.extend(
                (f"{path}[{n}]" if len(path) < 200 else path, x) for n, x in enumerate(item)
            )
    return None


def routing_key(event: Mapping[str, Any], account_id: str = "self") -> str:
    """The raw topic's key for an event: its Stripe customer id where the object names one.

    Objects without a customer (payouts, disputes, refunds of old API versions) are keyed
    by the Stripe balance they belong to (``processor:stripe:<account>``, ``account_id``
    for the platform's own events, as :meth:`StripeConfig.processor_key`), which keeps one
    account's such events in order on one partition. Never raises.
    """
    data = event.get("data") if isinstance(event, Mapping) else None
    obj = data.get("object") if isinstance(data, Mapping) else None
    if isinstance(obj, Mapping):
        customer = obj.get("customer")
        if obj.get("object") == "customer":
            customer = obj.get("id")
        if isinstance(customer, str | dict):
            found = ref_id(customer)
            if found:
                return found
    account = event.get("account") if isinstance(event, Mapping) else None
    return f"processor:stripe:{account if isinstance(account, str) else account_id}"
