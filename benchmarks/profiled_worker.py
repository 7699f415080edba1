"""The real ledger worker with a cProfile switch, for the hot-path profile of the benchmarks.

``python -m benchmarks.profiled_worker OUT.prof`` runs :func:`streams.worker.run_worker`
(what ``revledger worker`` runs). Signal :data:`START` turns a CPU-time profiler on
(``time.process_time``: time waiting on the broker is not counted), :data:`STOP` turns
it off and writes the stats to ``OUT.prof``; the benchmark brackets its burst with them,
so start-up, rebalancing and idle time stay out of the profile. Real-time signals, as
Faust's worker takes SIGUSR1 and SIGUSR2 for itself.

Only the main thread is profiled: Faust runs every agent on the event loop there; the
reference reader's thread is left out.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from types import FrameType

START = signal.SIGRTMIN + 1
STOP = signal.SIGRTMIN + 2


def main(argv: list[str]) -> int:
    """Run the worker; profile between :data:`START` and :data:`STOP`."""
    if len(argv) != 1:
        print("usage: python -m benchmarks.profiled_worker OUT.prof", file=sys.stderr)
        return 2
    from streams.worker import run_worker

    profiler = cProfile.Profile(time.process_time)

    def start(_signum: int, _frame: FrameType | None) -> None:
        profiler.enable()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        profiler.disable()
        profiler.dump_stats(argv[0])

    signal.signal(START, start)
    signal.signal(STOP, stop)
    return run_worker()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
