"""What both fuzz scripts share: tallies, the timing of one example, the hypothesis
settings of a round, the loop of rounds until the time is up, and the report.

A target is a hypothesis-decorated function of no arguments (one call runs its
examples); an exception it raises is a finding, kept in its tally's ``failures`` and
printed, and fuzzing goes on with the next target.
"""

from __future__ import annotations

import resource
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, settings

T = TypeVar("T")

# An example slower than this (CPU time) fails: a hostile input must not stall a worker.
SLOW_MS = 250.0


@dataclass
class Tally:
    """What one target did."""

    examples: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest_size: int = 0


class Tallies(dict[str, Tally]):
    """The tallies of a script's targets, by name, and the time one example may take."""

    def __init__(self, slow_ms: float = SLOW_MS) -> None:
        super().__init__()
        self.slow_ms = slow_ms

    def timed(
        self,
        name: str,
        size: int,
        run: Callable[[], T],
        label: Callable[[T], str] | None = None,
    ) -> T:
        """Run one example, count it (and its outcome's ``label``), keep the slowest.

        Raises:
            AssertionError: the example took more than :attr:`slow_ms` of CPU time.
        """
        tally = self[name]
        # CPU time, not wall time: the machine is shared, and a wall-clock pause while
        # another process runs is not something the input did.
        started = time.process_time()
        result = run()
        elapsed = (time.process_time() - started) * 1000
        tally.examples += 1
        if label is not None:
            tally.outcomes[label(result)] += 1
        if elapsed > tally.slowest_ms:
            tally.slowest_ms, tally.slowest_size = elapsed, size
        if elapsed > self.slow_ms:
            raise AssertionError(f"{name}: {size}-byte input took {elapsed:.0f} ms")
        return result


def round_settings(examples: int) -> settings:
    """Hypothesis settings of one round: ``examples`` per target, no database, no deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzz_rounds(
    targets: Mapping[str, Callable[[], None]],
    tallies: Mapping[str, Tally],
    minutes: float,
    prepare: Callable[[int, Callable[[], None]], Callable[[], Any]] = lambda _, t: t,
) -> tuple[int, float]:
    """Run every target once per round until ``minutes`` are up; ``(rounds, seconds)``.

    ``prepare(round, target)`` gives what to call for that round (e.g. the target under a
    per-round seed, so a run repeats and rounds differ).
    """
    started = time.monotonic()
    deadline = started + minutes * 60
    rounds = 0
    while time.monotonic() < deadline:
        for name, target in targets.items():
            try:
                prepare(rounds, target)()
            except Exception as exc:  # a finding: keep it and go on fuzzing
                tallies[name].failures.append(
                    "".join(traceback.format_exception_only(type(exc), exc)).strip()[:2000]
                )
                traceback.print_exc()
        rounds += 1
        total = sum(t.examples for t in tallies.values())
        print(
            f"round {rounds}: {total} examples in {time.monotonic() - started:.0f} s",
            flush=True,
        )
    return rounds, time.monotonic() - started


def report(title: str, tallies: Mapping[str, Tally], max_rss_mb: float) -> int:
    """Print each target's tally and the peak RSS; 1 if anything failed or RSS passed
    ``max_rss_mb``, else 0."""
    print(title)
    width = max((len(name) for name in tallies), default=0)
    failed = False
    for name, tally in tallies.items():
        print(
            f"  {name:{width}} {tally.examples:8} examples  {len(tally.failures)} failures  "
            f"slowest {tally.slowest_ms:.1f} ms ({tally.slowest_size} bytes)"
        )
        if tally.outcomes:
            common = ", ".join(f"{label} {n}" for label, n in tally.outcomes.most_common(8))
            print(f"      {common}")
        for failure in dict.fromkeys(tally.failures):
            print(f"      FAILED: {failure}")
        failed = failed or bool(tally.failures)
    rss = peak_rss_mb()
    print(f"  peak RSS {rss:.0f} MB (limit {max_rss_mb:.0f})")
    return 1 if failed or rss > max_rss_mb else 0
