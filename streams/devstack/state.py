"""The files that describe a running dev stack: ``.devstack/env`` and ``.devstack/state.json``.

``env`` is shell-sourcable (``set -a; . .devstack/env``) and is what other tools read;
``state.json`` adds what ``status``/``down`` need (versions, whether Postgres is external).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from streams.devstack import paths


@dataclass
class StackState:
    """What ``revledger dev up`` started (or found) and where it listens."""

    bootstrap_servers: str
    database_url: str
    kafka_pid: int | None
    postgres_pid: int | None
    kafka_version: str = "unknown"
    postgres_external: bool = False
    devstack_dir: str = ""

    def env_lines(self) -> list[str]:
        """Return the ``KEY=value`` lines of the env file."""
        return [
            f"KAFKA_BOOTSTRAP_SERVERS={self.bootstrap_servers}",
            f"DATABASE_URL={self.database_url}",
            f"KAFKA_PID={self.kafka_pid or ''}",
            f"POSTGRES_PID={self.postgres_pid or ''}",
        ]


def write(state: StackState, root: Path | None = None) -> None:
    """Write ``env`` and ``state.json`` atomically (write to a temp file, then rename)."""
    root = root or paths.devstack_dir()
    root.mkdir(parents=True, exist_ok=True)
    _atomic_write(paths.env_file(root), "\n".join(state.env_lines()) + "\n")
    _atomic_write(paths.state_file(root), json.dumps(asdict(state), indent=2) + "\n")


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` without readers ever seeing a partial file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read(root: Path | None = None) -> StackState | None:
    """Return the recorded stack, from ``state.json`` or else ``env``; None if neither exists."""
    root = root or paths.devstack_dir()
    try:
        return StackState(**json.loads(paths.state_file(root).read_text()))
    except (OSError, ValueError, TypeError):
        pass
    env = read_env(paths.env_file(root))
    if "KAFKA_BOOTSTRAP_SERVERS" not in env or "DATABASE_URL" not in env:
        return None
    return StackState(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"],
        database_url=env["DATABASE_URL"],
        kafka_pid=int(env["KAFKA_PID"]) if env.get("KAFKA_PID") else None,
        postgres_pid=int(env["POSTGRES_PID"]) if env.get("POSTGRES_PID") else None,
        devstack_dir=str(root),
    )


def read_env(path: Path) -> dict[str, str]:
    """Parse a ``KEY=value`` file (blank lines and ``#`` comments ignored)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    pairs = (line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def remove(root: Path | None = None) -> None:
    """Delete ``env`` and ``state.json`` (missing files are fine)."""
    root = root or paths.devstack_dir()
    for path in (paths.env_file(root), paths.state_file(root)):
        path.unlink(missing_ok=True)
