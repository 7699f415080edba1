"""Process plumbing for the dev stack: free ports, liveness checks, detached spawn, shutdown.

Services are started in their own session (process group), so ``dev up`` can exit while they
keep running, and ``dev down`` can stop a service together with all of its children.
PIDs are only trusted when the process command line still contains a marker (a path under
the devstack directory), so a recycled PID is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port(preferred: int | None = None) -> int:
    """Return ``preferred`` if it can be bound on loopback, else a fresh ephemeral port."""
    for candidate in (preferred, 0):
        if candidate is None:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free loopback port")


def port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """Return True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is an exited child of this process (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _proc_state(pid: int) -> str | None:
    """Return the /proc state letter of ``pid`` (``Z`` for zombies) or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Return True if ``pid`` runs (not a zombie) and its command line contains ``marker``."""
    if not pid:
        return False
    _reap(pid)
    if not Path("/proc").is_dir():  # non-Linux fallback: signal 0
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    if _proc_state(pid) in (None, "Z", "X"):
        return False
    if marker is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return marker.encode() in cmdline


def spawn_detached(cmd: Sequence[str], log_path: Path, cwd: Path) -> int:
    """Start ``cmd`` in a new session with stdout/stderr appended to ``log_path``; return pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start =====\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc.pid


def _wait_gone(pid: int, marker: str | None, timeout: float) -> bool:
    """Poll until ``pid`` is no longer alive; return True if it went away in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid, marker):
            return True
        time.sleep(0.1)
    return not pid_alive(pid, marker)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group of ``pid`` (just ``pid`` if it shares ours)."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if pgid == os.getpgrp():
            os.kill(pid, sig)
        else:
            os.killpg(pgid, sig)


def stop_process_group(pid: int | None, marker: str | None, timeout: float = 30.0) -> bool:
    """SIGTERM the group of ``pid``, wait ``timeout`` s, then SIGKILL it. True if it stopped."""
    if not pid_alive(pid, marker):
        if pid:
            _wait_reaped(pid, 3.0)
        return True
    assert pid is not None
    pgid = os.getpgid(pid)
    _signal_group(pid, signal.SIGTERM)
    if not _wait_gone(pid, marker, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_gone(pid, marker, 5.0)
    _kill_leftovers(pgid)
    _wait_reaped(pid, 3.0)
    return not pid_alive(pid, marker)


def _wait_reaped(pid: int, timeout: float) -> None:
    """Give init a moment to reap an exited daemon, so no ``<defunct>`` entry lingers."""
    deadline = time.monotonic() + timeout
    while _proc_state(pid) is not None and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)


def _kill_leftovers(pgid: int) -> None:
    """SIGKILL whatever is still in process group ``pgid`` after its leader has gone."""
    if pgid == os.getpgrp() or not Path("/proc").is_dir():
        return
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid and _proc_state(pid) not in (None, "Z", "X"):
                os.kill(pid, signal.SIGKILL)


def find_pids(marker: str) -> list[int]:
    """Return live pids whose command line contains ``marker`` (for stacks without state)."""
    if not Path("/proc").is_dir():
        return []
    pids = (int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())
    return [pid for pid in pids if pid != os.getpid() and pid_alive(pid, marker)]


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file (empty string if it is missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
