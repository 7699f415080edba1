"""Settings for commands run beside a dev stack: the environment, then ``.devstack/env``.

``revledger dev up`` writes the endpoints it started to ``.devstack/env``; commands such
as ``revledger topics create`` and ``revledger worker`` use them unless the environment
already names a broker or database.
"""

from __future__ import annotations

import os
from pathlib import Path

from streams.settings import Settings, load_settings


def devstack_dir() -> Path:
    """The dev stack's folder: ``REVLEDGER_DEVSTACK_DIR`` or ``./.devstack``."""
    return Path(os.environ.get("REVLEDGER_DEVSTACK_DIR") or ".devstack").resolve()


def read_env_file(path: Path | None = None) -> dict[str, str]:
    """``KEY=value`` lines of the dev stack's env file; empty when there is none."""
    path = path or devstack_dir() / "env"
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def settings_from_devstack(**overrides: object) -> Settings:
    """Settings from the environment, with the dev stack's endpoints filling the gaps."""
    environ = {**read_env_file(), **{k: v for k, v in os.environ.items() if v}}
    return load_settings(environ, **overrides)
