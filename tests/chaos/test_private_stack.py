"""The fault suite's stack stays private: it refuses the shared dev stack's directory, and
its port pinning for restarts leaves nothing patched behind for later tests."""

from __future__ import annotations

import threading
from pathlib import Path

import harness as h
import pytest

from streams.devstack import kafka, postgres, procs


def test_private_stack_refuses_a_directory_under_the_shared_devstack(monkeypatch, tmp_path):
    monkeypatch.setenv("REVLEDGER_DEVSTACK_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="shared devstack directory"):
        h.PrivateStack(tmp_path / "chaos")
    with pytest.raises(ValueError, match="shared devstack directory"):
        h.PrivateStack(Path(tmp_path))


def test_port_pinning_is_undone_when_two_restarts_overlap_in_two_threads():
    """A broker restart and a PostgreSQL stop pin ports from two threads at once.

    The worst order, if both could patch at once: the first restart ends while the
    second is still under way, and the second then restores the first's patch.
    """
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with h._same_ports():
            first_in.set()
            second_in.wait(0.5)  # the lock keeps the second out: give up waiting
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with h._same_ports():
            second_in.set()
            first_out.wait(5)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert kafka.free_port is procs.free_port
    assert postgres.free_port is procs.free_port
