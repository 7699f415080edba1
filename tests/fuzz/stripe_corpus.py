"""Inputs and properties for fuzzing the Stripe translator.

Shared by ``tests/unit/test_stripe_fuzz.py`` (a few hundred examples and the regressions,
in ``make test``) and ``tests/fuzz/fuzz_stripe.py`` (the long run). Pure: no broker.

Inputs:

- :func:`mutated_events`: Stripe's own example objects (``fixtures3.json``) in the events
  the unit tests translate (one per handled type) and raw, in every handled type, with
  1-6 edits at random places: a field dropped, a value of the wrong type, a huge or
  negative number, an unknown currency, nested garbage, a lone surrogate, a long string;
- :func:`mutated_bytes`: those events as JSON bytes, then cut, spliced with bytes that are
  not UTF-8, or with a byte changed;
- :func:`arbitrary_events`: an envelope of a handled type around arbitrary JSON;
- :func:`arbitrary_json`: any JSON value at all.

The property (:func:`check_raw`): :func:`streams.stripe_translator.outcome_of` - what the
translator process runs on each raw record - answers, never raises, and:

- ``Translated``: every event validates again from its own dump, encodes to Avro and
  decodes to itself, carries no float anywhere, and its topic is known;
- ``Malformed``: a ``stripe_*`` reason and a message, and the DLQ record the translator
  would write for it (with the original bytes) encodes;
- ``Skipped``: a reason;
- the answer is the same for the same bytes;
- no card or bank detail of the input reaches the output: a canary planted in the card
  and bank fields of the input (``payment_method_details``, ``billing_details``,
  ``source``, a payout's bank account) is nowhere in the events, and none of the
  fixtures' own card and bank values are either.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

from hypothesis import strategies as st

from connectors.stripe import HANDLERS, Malformed, Skipped, Translated, Translation
from streams.dlq import Failure, SourceRecord, dlq_record
from streams.producer import topic_for
from streams.serde import Codec
from streams.stripe_translator import outcome_of
from tests.stripe_objects import RESOURCES
from tests.unit.test_stripe_translate import (
    CONFIG,
    SECRETS_OF_CARDS_AND_BANKS,
    _samples,
)

CODEC = Codec()
CANARY = "CANARY7q3zK"
# Where Stripe carries card and bank details: a value planted here must never come out.
SECRET_FIELDS = ("payment_method_details", "billing_details", "source", "bank_account", "card")
_REASON = re.compile(r"stripe_[a-z0-9_]+")
# The object each handled type carries, for the raw-fixture seeds.
_OBJECT_OF = {
    "invoice": "invoice",
    "charge": "charge",
    "refund": "refund",
    "payout": "payout",
    "customer": "subscription",
    "credit_note": "credit_note",
}

JsonValue = Any


def _raw_fixture_events() -> list[dict[str, Any]]:
    """Every handled type around Stripe's unchanged example object of its resource."""
    found = []
    for kind in sorted(HANDLERS):
        name = "dispute" if kind.startswith("charge.dispute") else _OBJECT_OF[kind.split(".")[0]]
        envelope = copy.deepcopy(RESOURCES["event"])
        envelope.update(id=f"evt_raw_{kind}", type=kind)
        envelope["data"] = {"object": copy.deepcopy(RESOURCES[name])}
        found.append(envelope)
    return found


def _with_secrets(event: dict[str, Any]) -> dict[str, Any]:
    """The event with card and bank details (holding the canary) where Stripe puts them."""
    planted = copy.deepcopy(event)
    obj = planted["data"]["object"]
    card = {"brand": "visa", "last4": CANARY, "fingerprint": CANARY, "exp_month": 12}
    obj["payment_method_details"] = {"type": "card", "card": card}
    obj["billing_details"] = {"name": CANARY, "email": f"{CANARY}@example.com"}
    # Ids are references, not secrets (a payout names its bank account's ``ba_`` id on
    # purpose): the canary goes into the details only.
    obj["source"] = {"id": "card_fuzz", "object": "card", **card}
    if obj.get("object") == "payout":
        obj["destination"] = {
            "id": "ba_fuzz",
            "object": "bank_account",
            "account_number": CANARY,
            "routing_number": CANARY,
            "last4": CANARY,
        }
    return planted


def seeds() -> list[dict[str, Any]]:
    """The events mutations start from: those the unit tests translate, then raw fixtures."""
    return [_with_secrets(event) for event in (*_samples(), *_raw_fixture_events())]


SEEDS = seeds()


# --- mutations ---------------------------------------------------------------------------------


def _paths(value: JsonValue, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON tree (the root included), depth first."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def _get(value: JsonValue, path: tuple[Any, ...]) -> JsonValue:
    for step in path:
        value = value[step]
    return value


HUGE = (2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**20, 10**30, 10**300)
NUMBERS = st.sampled_from(HUGE).flatmap(lambda n: st.sampled_from((n, -n))) | st.integers(
    -(10**6), 10**6
)
ODD_STRINGS = st.sampled_from(
    (
        "",
        "xxx",
        "XTS",
        "usd ",
        "USD",
        "us",
        "dollar",
        "\ud800",  # a lone surrogate: JSON can carry it, UTF-8 cannot
        "\x00",
        "é" * 3,
        "in_" + "9" * 200,
        "x" * 70_000,
        "2024-07-01",
        "NaN",
        "1e999",
    )
)
CURRENCIES = st.sampled_from(("xxx", "XXX", "", "usd", "eur", "jpy", "bhd", "zzz", "ü$d", "\ud800"))


def garbage(max_leaves: int = 8) -> st.SearchStrategy[JsonValue]:
    """Nested JSON of any shape (what a field of the wrong type might hold)."""
    leaves = st.none() | st.booleans() | NUMBERS | st.floats(allow_nan=False) | ODD_STRINGS
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _replacement(draw: st.DrawFn, key: Any, current: JsonValue) -> JsonValue:
    """A new value for the field ``key`` holding ``current``."""
    kind = draw(
        st.sampled_from(
            ("wrong_type", "number", "negative", "currency", "garbage", "string", "deep", "float")
        )
    )
    if kind == "currency" or (kind == "string" and key == "currency"):
        return draw(CURRENCIES)
    if kind == "negative" and isinstance(current, int) and not isinstance(current, bool):
        return -current if current else -1
    if kind == "number":
        return draw(NUMBERS)
    if kind == "float":
        return draw(st.floats(allow_nan=False, allow_infinity=False))
    if kind == "string":
        return draw(ODD_STRINGS | st.text(max_size=20))
    if kind == "deep":
        depth = draw(st.integers(10, 200))
        nested: JsonValue = {}
        for _ in range(depth):
            nested = {"a": nested} if draw(st.booleans()) else [nested]
        return nested
    if kind == "garbage":
        return draw(garbage())
    return draw(st.sampled_from((None, True, False, "1000", 10.5, [], {}, [1, 2], {"id": 1})))


@st.composite
def mutated_events(draw: st.DrawFn, max_edits: int = 6) -> JsonValue:
    """A seed event with 1 to ``max_edits`` edits at random places."""
    event: JsonValue = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, max_edits))):
        paths = list(_paths(event))
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.integers(0, 20)) == 0:  # rarely: the whole event replaced
                event = draw(garbage())
            continue
        parent, key = _get(event, path[:-1]), path[-1]
        action = draw(st.sampled_from(("drop", "replace", "replace", "replace", "add")))
        if action == "drop":
            del parent[key]
        elif action == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(("id", "amount", "currency", "x", "data")))] = draw(
                garbage(4)
            )
        else:
            parent[key] = _replacement(draw, key, parent[key])
    return event


def encode_json(value: JsonValue) -> bytes:
    """JSON bytes as a webhook would carry them (lone surrogates escaped, as JSON allows)."""
    return json.dumps(value, ensure_ascii=True).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """A (mutated) seed event's JSON bytes, then cut, spliced with non-UTF-8 or changed."""
    data = bytearray(encode_json(draw(mutated_events(max_edits=2))))
    # Raw characters inside strings keep the JSON valid; cuts and bad bytes do not.
    for _ in range(draw(st.integers(1, 2))):
        at = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(("cut", "splice", "flip", "raw_utf8", "raw_utf8")))
        if action == "cut":
            del data[at:]
        elif action == "splice":
            data[at:at] = draw(
                st.sampled_from((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80\x80", b"\x00"))
                | st.binary(max_size=8)
            )
        elif action == "flip" and data:
            data[min(at, len(data) - 1)] = draw(st.integers(0, 255))
        else:  # a raw (unescaped) character, most often inside a string of the JSON text
            quotes = [n for n, byte in enumerate(data) if byte == ord('"')]
            if quotes:
                at = draw(st.sampled_from(quotes)) + 1
            data[at:at] = draw(st.sampled_from(("é", "€", "😀", "\u2028", "\x7f"))).encode()
    return bytes(data)


def json_values(max_leaves: int = 30) -> st.SearchStrategy[JsonValue]:
    """Arbitrary JSON: any nesting of null, booleans, numbers, strings, arrays, objects."""
    leaves = (
        st.none()
        | st.booleans()
        | st.integers()
        | NUMBERS
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=30)
        | ODD_STRINGS
    )
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
        ),
        max_leaves=max_leaves,
    )


# Field names the translator reads, so arbitrary objects reach past the first check.
STRIPE_KEYS = (
    "id", "object", "customer", "currency", "created", "total", "amount", "amount_paid",
    "amount_captured", "amount_refunded", "captured", "paid", "status", "lines", "data",
    "has_more", "period", "start", "end", "items", "price", "plan", "product", "charge",
    "invoice", "refunds", "balance_transaction", "balance_transactions", "fee",
    "exchange_rate", "taxes", "tax_amounts", "total_taxes", "discount_amounts",
    "pretax_credit_amounts", "parent", "pricing", "status_transitions", "finalized_at",
    "voided_at", "effective_at", "due_date", "current_period_start", "current_period_end",
    "quantity", "unit_amount", "recurring", "usage_type", "proration", "payments",
    "invoice_line_item", "type", "metadata", "destination", "arrival_date", "reason",
)  # fmt: skip


def stripe_shaped(max_leaves: int = 40) -> st.SearchStrategy[JsonValue]:
    """Arbitrary JSON objects keyed mostly by the field names Stripe objects have."""
    keys = st.sampled_from(STRIPE_KEYS) | st.text(max_size=8)
    leaves = (
        st.none()
        | st.booleans()
        | NUMBERS
        | st.integers(0, 2_000_000_000)
        | st.floats(allow_nan=False, allow_infinity=False)
        | CURRENCIES
        | st.text(max_size=12)
    )
    return st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=8),
        max_leaves=max_leaves,
    )


def _plausible_objects() -> st.SearchStrategy[JsonValue]:
    """Stripe-like objects: the fields handlers read, each usually of the right type.

    Arbitrary JSON alone stops at the first validation; these reach the handlers' own
    arithmetic and cross-checks (totals, periods, refunds, fees).
    """
    seconds = st.integers(0, 2_000_000_000) | NUMBERS
    amount = st.integers(-(10**6), 10**7) | NUMBERS
    # Mostly right, sometimes not: each wrong value stops the handler at its check.
    currency = st.sampled_from(("usd", "usd", "eur", "jpy", "jpy", "xxx", ""))
    ids = st.sampled_from(("in_1", "ch_1", "re_1", "il_1", "si_1", "sub_1", "")) | st.text(
        min_size=1, max_size=8
    )
    anything = stripe_shaped(6)
    price = st.fixed_dictionaries(
        {"id": ids},
        optional={
            "product": ids | st.fixed_dictionaries({"id": ids}),
            "currency": currency,
            "unit_amount": amount,
            "type": st.sampled_from(("recurring", "one_time")),
            "recurring": st.fixed_dictionaries(
                {},
                optional={
                    "interval": st.sampled_from(("month", "year", "day")),
                    "interval_count": amount,
                    "usage_type": st.sampled_from(("licensed", "metered")),
                },
            ),
        },
    )
    period = st.fixed_dictionaries({"start": seconds, "end": seconds})
    tax = st.fixed_dictionaries(
        {"amount": amount},
        optional={
            "inclusive": st.booleans(),
            "tax_rate": ids,
            "tax_behavior": st.just("inclusive"),
        },
    )
    line = st.fixed_dictionaries(
        {"id": ids, "amount": amount},
        optional={
            "currency": currency,
            "period": period,
            "price": price,
            "quantity": amount,
            "invoice_line_item": ids,
            "tax_amounts": st.lists(tax, max_size=2),
            "discount_amounts": st.lists(st.fixed_dictionaries({"amount": amount}), max_size=2),
            "proration": st.booleans(),
            "subscription": ids,
            "subscription_item": ids,
            "current_period_start": seconds,
            "current_period_end": seconds,
            "type": st.sampled_from(("invoiceitem", "subscription", "custom_line_item")),
            "x": anything,
        },
    )
    listed = st.fixed_dictionaries(
        {"object": st.just("list"), "data": st.lists(line, max_size=3)},
        optional={"has_more": st.booleans()},
    )
    txn = st.fixed_dictionaries(
        {"id": ids, "amount": amount, "currency": currency},
        optional={"fee": amount, "exchange_rate": st.none() | st.floats(0, 1e6)},
    )
    transitions = st.fixed_dictionaries(
        {},
        optional={
            name: st.none() | seconds
            for name in ("finalized_at", "paid_at", "voided_at", "marked_uncollectible_at")
        },
    )
    charge = st.fixed_dictionaries(
        {"id": ids, "amount": amount, "currency": currency, "created": seconds},
        optional={
            "customer": ids,
            "captured": st.booleans(),
            "amount_captured": amount,
            "amount_refunded": amount,
            "balance_transaction": ids | txn,
            "invoice": ids,
        },
    )
    statuses = st.sampled_from(
        ("open", "paid", "void", "lost", "won", "succeeded", "active", "canceled", "trialing")
    )
    return st.fixed_dictionaries(
        {
            "id": ids,
            "created": seconds,
            "currency": currency,
            "amount": amount,
            "total": amount,
            "status": statuses,
        },
        optional={
            "object": st.sampled_from(
                ("invoice", "charge", "refund", "dispute", "payout", "subscription", "credit_note")
            ),
            "customer": st.none() | ids | st.fixed_dictionaries({"id": ids}),
            "amount_paid": amount,
            "amount_remaining": amount,
            "amount_captured": amount,
            "amount_refunded": amount,
            "amount_shipping": amount,
            "captured": st.booleans(),
            "paid": st.booleans(),
            "lines": listed,
            "items": listed,
            "refunds": st.fixed_dictionaries(
                {"object": st.just("list"), "data": st.lists(charge, max_size=2)}
            ),
            "charge": ids | charge,
            "invoice": ids,
            "balance_transaction": ids | txn,
            "balance_transactions": st.lists(txn, max_size=3),
            "status_transitions": transitions,
            "effective_at": seconds,
            "due_date": seconds,
            "arrival_date": seconds,
            "start_date": seconds,
            "ended_at": seconds,
            "canceled_at": seconds,
            "current_period_start": seconds,
            "current_period_end": seconds,
            "total_tax_amounts": st.lists(tax, max_size=2),
            "paid_out_of_band": st.booleans(),
            "metadata": st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
            "extra": anything,
        },
    )


@st.composite
def arbitrary_events(draw: st.DrawFn) -> JsonValue:
    """A well-formed envelope of a handled type around an arbitrary Stripe-like object."""
    obj = draw(
        _plausible_objects() | st.dictionaries(st.sampled_from(STRIPE_KEYS), stripe_shaped())
    )
    envelope: dict[str, JsonValue] = {
        "id": draw(st.sampled_from(("evt_1", "evt_2", "evt_3", "evt_" + "x" * 150))),
        "object": "event",
        "type": draw(st.sampled_from(sorted(HANDLERS))),
        "created": draw(st.integers(0, 2_000_000_000) | NUMBERS),
        "livemode": draw(st.booleans()),
        "data": {"object": obj},
    }
    if draw(st.booleans()):
        envelope["data"]["previous_attributes"] = draw(
            st.dictionaries(st.sampled_from(STRIPE_KEYS), stripe_shaped(10), max_size=4)
        )
    if draw(st.integers(0, 3)) == 0:
        envelope["account"] = draw(st.none() | st.text(max_size=10) | NUMBERS)
    return envelope


# --- the property --------------------------------------------------------------------------


def _floats(value: JsonValue, where: str = "") -> Iterator[str]:
    if isinstance(value, float):
        yield where
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _floats(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _floats(item, f"{where}[{index}]")


def check_raw(raw: bytes) -> Translation:
    """The fuzz property on one raw record's bytes (see the module docstring)."""
    outcome = outcome_of(raw, CONFIG)
    if isinstance(outcome, Translated):
        _check_translated(outcome)
    elif isinstance(outcome, Malformed):
        _check_malformed(outcome, raw)
    elif isinstance(outcome, Skipped):
        assert isinstance(outcome.reason, str) and outcome.reason, outcome
    else:
        raise AssertionError(f"not a Translation: {outcome!r}")
    again = outcome_of(raw, CONFIG)
    assert again == outcome, f"not deterministic: {outcome!r} then {again!r}"
    return outcome


def _check_translated(outcome: Translated) -> None:
    assert outcome.events, "translated into no event"
    for event in outcome.events:
        dumped = event.model_dump()
        assert type(event).model_validate(dumped) == event, f"{event!r} does not validate"
        floats = list(_floats(dumped))
        assert not floats, f"{type(event).__name__} carries floats at {floats}"
        topic_for(event)
        wire = CODEC.encode(event)
        assert CODEC.decode(wire) == event, f"{event!r} does not survive the wire"
        text = event.model_dump_json()
        for secret in (CANARY, *SECRETS_OF_CARDS_AND_BANKS):
            assert secret not in text, f"{secret!r} reached {type(event).__name__}: {text}"
            assert secret.encode() not in wire, f"{secret!r} reached the wire"


def _check_malformed(outcome: Malformed, raw: bytes) -> None:
    assert _REASON.fullmatch(outcome.reason), f"reason {outcome.reason!r}"
    assert isinstance(outcome.message, str) and outcome.message, outcome
    assert CANARY not in outcome.message, f"a card or bank detail in the DLQ message: {outcome}"
    # What the translator process writes to the DLQ for it, with the original bytes.
    source = SourceRecord(
        topic="raw.stripe.v1",
        partition=0,
        offset=0,
        key=b"cus_1",
        value=raw,
        headers=(("stripe.event.type", b"x"),),
    )
    record = dlq_record(
        Failure(outcome.reason, outcome.message),
        source,
        service_version="fuzz",
        failed_at=dt.datetime(2024, 7, 1, tzinfo=dt.UTC),
    )
    decoded = CODEC.decode(CODEC.encode(record))
    assert decoded.original_value == raw, "the DLQ record lost the original bytes"
