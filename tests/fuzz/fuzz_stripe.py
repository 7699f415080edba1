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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from connectors.stripe import Malformed, Skipped, Translated, Translation  # noqa: E402
from tests.fuzz.runner import fuzz_rounds, peak_rss_mb  # noqa: E402
from tests.fuzz.stripe_corpus import (  # noqa: E402
    arbitrary_events,
    check_raw,
    encode_json,
    json_values,
    mutated_bytes,
    mutated_events,
)


@dataclass
class Tally:
    """What one target did."""

    examples: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest_size: int = 0


TALLIES: dict[str, Tally] = {}
SLOW_MS = 250.0


def _label(outcome: Translation) -> str:
    if isinstance(outcome, Translated):
        return "translated"
    if isinstance(outcome, Skipped):
        return f"skipped:{outcome.reason}"
    assert isinstance(outcome, Malformed)
    return f"dlq:{outcome.reason}"


def timed(name: str, raw: bytes) -> None:
    """Check one example, count it and keep the slowest; too slow fails the example."""
    tally = TALLIES[name]
    # CPU time, not wall time: the machine is shared.
    started = time.process_time()
    outcome = check_raw(raw)
    elapsed = (time.process_time() - started) * 1000
    tally.examples += 1
    tally.outcomes[_label(outcome)] += 1
    if elapsed > tally.slowest_ms:
        tally.slowest_ms, tally.slowest_size = elapsed, len(raw)
    if elapsed > SLOW_MS:
        raise AssertionError(f"{name}: {len(raw)}-byte input took {elapsed:.0f} ms")


def build_targets(examples: int) -> dict[str, Callable[[], None]]:
    """The hypothesis tests, ``examples`` per round each."""
    config = settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )

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
    global SLOW_MS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--examples-per-round", type=int, default=300)
    parser.add_argument("--seed", type=int, default=8, help="hypothesis seed of round 0")
    parser.add_argument("--slow-ms", type=float, default=SLOW_MS)
    parser.add_argument("--max-rss-mb", type=float, default=600.0)
    args = parser.parse_args(argv)
    SLOW_MS = args.slow_ms
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
    return report(rounds, seconds, args.max_rss_mb, args.seed)


def report(rounds: int, seconds: float, max_rss_mb: float, base_seed: int) -> int:
    print(f"\nfuzz_stripe: {rounds} rounds in {seconds / 60:.1f} min (seed {base_seed})")
    failed = False
    for name, tally in TALLIES.items():
        print(
            f"  {name:16} {tally.examples:8} examples  {len(tally.failures)} failures  "
            f"slowest {tally.slowest_ms:.1f} ms ({tally.slowest_size} bytes)"
        )
        common = ", ".join(f"{label} {n}" for label, n in tally.outcomes.most_common(8))
        print(f"      {common}")
        for failure in dict.fromkeys(tally.failures):
            print(f"      FAILED: {failure}")
        failed = failed or bool(tally.failures)
    rss = peak_rss_mb()
    print(f"  peak RSS {rss:.0f} MB (limit {max_rss_mb:.0f})")
    return 1 if failed or rss > max_rss_mb else 0


if __name__ == "__main__":
    sys.exit(main())
