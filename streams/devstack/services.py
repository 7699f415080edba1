"""revledger's own processes (workers, projector, exporter) started next to the dev stack.

``revledger demo`` leaves its workers running so that people can look at them (metrics,
lag, psql) after it has printed its reports; ``revledger dev down`` (``make down``) must
then stop them too, before the broker they talk to goes away. Each one is recorded in
``<devstack>/services.json`` with its pid and a marker put in its environment, so a
recycled pid is never signalled.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from streams.devstack import paths
from streams.devstack.procs import stop_process_group

MARKER_VARIABLE = "REVLEDGER_SERVICE_MARKER"


def services_file(root: Path | None = None) -> Path:
    """Return the file listing the started services."""
    return (root or paths.devstack_dir()) / "services.json"


def _recorded(root: Path) -> list[dict]:
    try:
        loaded = json.loads(services_file(root).read_text())
    except (OSError, ValueError):
        return []
    return loaded if isinstance(loaded, list) else []


def _write(root: Path, services: list[dict]) -> None:
    path = services_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(services, indent=2) + "\n")
    os.replace(tmp, path)


def _marked(pid: int, marker: str) -> bool:
    """True if process ``pid`` runs with our marker in its environment."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"{MARKER_VARIABLE}={marker}".encode() in environ


def start_service(
    name: str,
    command: Sequence[str],
    environment: Mapping[str, str],
    log_path: Path,
    root: Path | None = None,
) -> int:
    """Start ``command`` detached (own session, output to ``log_path``) and record it."""
    root = root or paths.devstack_dir()
    marker = f"{root}/services/{name}/{time.time_ns()}"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start =====\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(command),
            env={**environment, MARKER_VARIABLE: marker},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    services = _recorded(root)
    services.append({"name": name, "pid": process.pid, "marker": marker, "log": str(log_path)})
    _write(root, services)
    return process.pid


def running_services(root: Path | None = None) -> list[dict]:
    """The recorded services still alive."""
    root = root or paths.devstack_dir()
    return [s for s in _recorded(root) if _marked(int(s["pid"]), str(s["marker"]))]


def service_alive(pid: int, root: Path | None = None) -> bool:
    """True if the recorded service ``pid`` is still running."""
    return any(int(s["pid"]) == pid for s in running_services(root))


def stop_services(root: Path | None = None, echo: Callable[[str], None] = lambda _: None) -> bool:
    """SIGTERM every recorded service (SIGKILL after a timeout); True if none is left."""
    root = root or paths.devstack_dir()
    left: list[dict] = []
    for service in _recorded(root):
        pid, marker = int(service["pid"]), str(service["marker"])
        if not _marked(pid, marker):
            continue
        # The marker was checked just above; stop_process_group re-checks liveness by pid.
        stopped = stop_process_group(pid, None, timeout=30.0)
        echo(f"{service['name']} (pid {pid}) {'stopped' if stopped else 'STILL RUNNING'}")
        if not stopped:
            left.append(service)
    _write(root, left)
    return not left
