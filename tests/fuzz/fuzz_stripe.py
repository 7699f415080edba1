"""Long fuzz run of the Stripe translator, not part of ``make test``.

Run: ``.venv/bin/python tests/fuzz/fuzz_stripe.py [--minutes 10] [--seed 8]``
(``make fuzz`` runs it after the Avro decoder's).

Runs hypothesis in rounds over five targets until the time is up (10 minutes by default),
then prints, per target, the examples tried, the outcomes (translated / skipped / DLQ
reasons), the failures found and the slowest example, plus the peak RSS. Exit status 1 if
anything failed.

Targets (inputs in :mod:`tests.fuzz.stripe_corpus`, the property is
:func:`tests.fuzz.stripe_corpus.check_raw`: the translator answers and never raises,
translated events validate, encode and carry no float, DLQ records keep the original
bytes, no card or bank detail reaches the output):

- ``mutated_fixture``: Stripe's example objects in every handled event type, with 1-6
  edits (dropped fields, wrong types, huge and negative numbers, unknown currencies,
  nested garbage);
- ``mutated_bytes``: those as JSON bytes, cut, spliced with bytes that are not UTF-8;
- ``arbitrary_event``: a handled envelope around an arbitrary Stripe-shaped object;
- ``arbitrary_json``: any JSON value;
- ``arbitrary_bytes``: any bytes.

Each round gives hypothesis a seed derived from ``--seed`` and the round number, so a run
is repeatable; every example is timed (CPU time) and one over ``--slow-ms`` (default
250 ms) counts as a failure: a hostile webhook must not stall the translator.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hypothesis import given, seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from connectors.stripe import Malformed, Skipped, Translated, Translation  # noqa: E402
from tests.fuzz.runner import (  # noqa: E402
    SLOW_MS,
    Tallies,
    Tally,
    fuzz_rounds,
    report,
    round_settings,
)
from tests.fuzz.stripe_corpus import (  # noqa: E402
    arbitrary_events,
    check_raw,
    encode_json,
    json_values,
    mutated_bytes,
    mutated_events,
)

TALLIES = Tallies()


def _label(outcome: Translation) -> str:
    if isinstance(outcome, Translated):
        return "translated"
    if isinstance(outcome, Skipped):
        return f"skipped:{outcome.reason}"
    assert isinstance(outcome, Malformed)
    return f"dlq:{outcome.reason}"


def timed(name: str, raw: bytes) -> None:
    """Check one example, count it and keep the slowest; too slow fails the example."""
    TALLIES.timed(name, len(raw), lambda: check_raw(raw), _label)


def build_targets(examples: int) -> dict[str, Callable[[], None]]:
    """The hypothesis tests, ``examples`` per round each."""
    config = round_settings(examples)

    @config
    @given(mutated_events())
    def mutated_fixture(event: object) -> None:
        timed("mutated_fixture", encode_json(event))

    @config
    @given(mutated_bytes())
    def mutated_raw(raw: bytes) -> None:
        timed("mutated_bytes", raw)

    @config
    @given(arbitrary_events())
    def arbitrary_event(event: object) -> None:
        timed("arbitrary_event", encode_json(event))

    @config
    @given(json_values())
    def arbitrary_json(value: object) -> None:
        timed("arbitrary_json", encode_json(value))

    @config
    @given(st.binary(max_size=4000))
    def arbitrary_bytes(raw: bytes) -> None:
        timed("arbitrary_bytes", raw)

    return {
        "mutated_fixture": mutated_fixture,
        "mutated_bytes": mutated_raw,
        "arbitrary_event": arbitrary_event,
        "arbitrary_json": arbitrary_json,
        "arbitrary_bytes": arbitrary_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    """Fuzz until the time is up; print the tally; 1 if anything failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--examples-per-round", type=int, default=300)
    parser.add_argument("--seed", type=int, default=8, help="hypothesis seed of round 0")
    parser.add_argument("--slow-ms", type=float, default=SLOW_MS)
    parser.add_argument("--max-rss-mb", type=float, default=600.0)
    args = parser.parse_args(argv)
    TALLIES.slow_ms = args.slow_ms
    targets = build_targets(args.examples_per_round)
    for name in targets:
        TALLIES[name] = Tally()
    # A fixed seed per round: the run is repeatable, and rounds differ.
    rounds, seconds = fuzz_rounds(
        targets,
        TALLIES,
        args.minutes,
        lambda round_, target: seed(args.seed * 1_000_003 + round_)(target),
    )
    title = f"\nfuzz_stripe: {rounds} rounds in {seconds / 60:.1f} min (seed {args.seed})"
    return report(title, TALLIES, args.max_rss_mb)


if __name__ == "__main__":
    sys.exit(main())
