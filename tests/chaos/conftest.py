"""The fault-injection suite's pytest wiring: the ``chaos`` marker, its profile, helper imports.

``REVLEDGER_CHAOS_PROFILE`` picks the profile (``tests/chaos/harness.py``): ``short``
(``make chaos-short``), ``full`` (``make chaos``) or ``off`` (the default: skip the suite,
until the double posting the full profile found is fixed).
``REVLEDGER_CHAOS_SEED`` sets the seed of the simulated company and of the fault schedule
(default: the profile's fixed seed, so CI repeats the same run; ``random`` draws a fresh
one, printed, to probe other points).

The suite runs on a broker and a PostgreSQL of its own (``harness.PrivateStack``), never
on the session's shared dev stack: the faults it injects hurt no other test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers of the integration tests (worker_process) are imported by module name, as
# the integration tests themselves do (their directory is not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker here (the suite owns it; ``--strict-markers`` is on)."""
    config.addinivalue_line(
        "markers",
        "chaos: fault injection on a private Kafka broker and PostgreSQL"
        " (REVLEDGER_CHAOS_PROFILE=short|full|off)",
    )
