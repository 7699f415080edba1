"""The loop both fuzz scripts run: rounds of every target until the time is up.

A target is a hypothesis-decorated function of no arguments (one call runs its
examples); an exception it raises is a finding, kept in its tally's ``failures`` and
printed, and fuzzing goes on with the next target.
"""

from __future__ import annotations

import resource
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol


class Tallied(Protocol):
    """What the loop needs of a script's tally: examples run, findings kept."""

    examples: int
    failures: list[str]


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fuzz_rounds(
    targets: Mapping[str, Callable[[], None]],
    tallies: Mapping[str, Tallied],
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
