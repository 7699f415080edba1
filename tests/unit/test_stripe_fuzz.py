"""The Stripe translator on hostile input: what the fuzz found, and a short fuzz in ``make test``.

The long run is ``tests/fuzz/fuzz_stripe.py`` (``make fuzz``); inputs and the property are
in ``tests/fuzz/stripe_corpus.py``. Each regression below is an input the fuzz found that
made the translator raise instead of answering: in the translator process, an exception
stops the partition (a crash loop on one poison record) instead of dead-lettering it.
"""

from __future__ import annotations

import copy
import datetime as dt
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.stripe import Malformed, Translated
from tests.fuzz.stripe_corpus import (
    CANARY,
    SEEDS,
    arbitrary_events,
    check_raw,
    encode_json,
    json_values,
    mutated_bytes,
    mutated_events,
)

FAST = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def _seed(kind: str) -> dict:
    """A deep copy of the first seed event of type ``kind`` (translated when unchanged)."""
    return copy.deepcopy(next(event for event in SEEDS if event["type"] == kind))


# --- regressions -----------------------------------------------------------------------------


@pytest.mark.parametrize("created", [10**13, -(10**13), 2**63, -(2**63), 10**30])
def test_event_time_outside_years_1_to_9999_is_malformed_not_a_crash(created):
    stripe = _seed("invoice.finalized")
    stripe["created"] = created

    outcome = check_raw(encode_json(stripe))

    assert isinstance(outcome, Malformed)
    assert outcome.reason == "stripe_payload_invalid"
    assert f"timestamp {created} is out of range" in outcome.message


def test_object_time_outside_years_1_to_9999_is_malformed_when_charge_succeeded():
    stripe = _seed("charge.succeeded")
    stripe["data"]["object"]["created"] = -(10**13)

    outcome = check_raw(encode_json(stripe))

    assert isinstance(outcome, Malformed) and outcome.reason == "stripe_payload_invalid"


def test_service_period_ending_on_the_first_day_there_is_is_translated_not_a_crash():
    stripe = _seed("invoice.finalized")
    stripe["data"]["object"]["lines"]["data"][0]["period"] = {
        "start": -62135596800,
        "end": -62135596800,
    }

    outcome = check_raw(encode_json(stripe))  # raised OverflowError on date.min - 1 day

    assert isinstance(outcome, Translated)
    assert outcome.events[0].lines[0].service_end == dt.date.min


def test_integer_of_more_than_4300_digits_is_not_json_rather_than_a_crash():
    raw = b'{"object": "event", "id": "evt_1", "created": ' + b"1" * 5000 + b"}"

    outcome = check_raw(raw)

    assert isinstance(outcome, Malformed) and outcome.reason == "stripe_not_json"
    assert "4300" in outcome.message


@pytest.mark.parametrize("where", ["id", "type", "object_id", "key"])
def test_lone_surrogate_anywhere_is_malformed_and_its_dlq_record_encodes(where):
    stripe = _seed("invoice.voided")
    if where == "object_id":
        stripe["data"]["object"]["id"] = "in_\ud800"
    elif where == "key":
        stripe["data"]["object"]["metadata"] = {"\udfff": "x"}
    else:
        stripe[where] = "evt_\ud800" if where == "id" else "invoice.voided\ud800"
    raw = encode_json(stripe)  # JSON escapes it: "\ud800" is valid JSON, not valid UTF-8

    outcome = check_raw(raw)  # the DLQ message named the id and could not be encoded

    assert isinstance(outcome, Malformed)
    assert outcome.reason == "stripe_payload_invalid"
    assert "lone surrogate" in outcome.message


def test_surrogate_pair_is_a_character_not_a_refusal():
    stripe = _seed("invoice.voided")
    stripe["data"]["object"]["description"] = "\U0001f600"
    raw = json.dumps(stripe).encode()  # ensure_ascii: written as the pair \ud83d\ude00

    assert isinstance(check_raw(raw), Translated)


def test_card_and_bank_details_planted_in_every_seed_never_come_out():
    translated = 0
    for stripe in SEEDS:
        assert CANARY in json.dumps(stripe)
        translated += isinstance(check_raw(encode_json(stripe)), Translated)
    assert translated >= 11  # one per type the unit tests translate, and the raw payout


# --- a short fuzz (the long run: make fuzz) --------------------------------------------------


@FAST
@given(mutated_events())
def test_mutated_fixture_events_are_translated_skipped_or_dead_lettered(stripe):
    check_raw(encode_json(stripe))


@FAST
@given(mutated_bytes())
def test_mutated_bytes_are_translated_skipped_or_dead_lettered(raw):
    check_raw(raw)


@FAST
@given(arbitrary_events())
def test_arbitrary_stripe_like_events_are_translated_skipped_or_dead_lettered(stripe):
    check_raw(encode_json(stripe))


@FAST
@given(json_values() | st.binary(max_size=200))
def test_arbitrary_json_and_bytes_are_translated_skipped_or_dead_lettered(value):
    check_raw(value if isinstance(value, bytes) else encode_json(value))
