"""The demo's detached services are recorded and stopped by ``revledger dev down``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from streams.devstack.services import (
    running_services,
    services_file,
    start_service,
    stop_services,
)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def test_started_service_is_recorded_and_stopped_when_stack_goes_down(tmp_path: Path) -> None:
    pid = start_service("sleeper", SLEEPER, dict(os.environ), tmp_path / "sleeper.log", tmp_path)
    assert [s["pid"] for s in running_services(tmp_path)] == [pid]
    said: list[str] = []
    assert stop_services(tmp_path, said.append) is True
    assert running_services(tmp_path) == []
    assert said == [f"sleeper (pid {pid}) stopped"]


def test_process_without_the_marker_is_never_signalled(tmp_path: Path) -> None:
    # A recorded pid now used by another process (no marker in its environment).
    other = subprocess.Popen(SLEEPER)
    try:
        services_file(tmp_path).write_text(
            f'[{{"name": "gone", "pid": {other.pid}, "marker": "x", "log": "-"}}]'
        )
        assert running_services(tmp_path) == []
        assert stop_services(tmp_path) is True
        assert other.poll() is None  # still running: not ours
    finally:
        other.kill()
        other.wait()


def test_stop_without_a_services_file_is_a_no_op(tmp_path: Path) -> None:
    assert stop_services(tmp_path) is True
