"""Where the dev stack keeps things: the devstack directory, the jar cache and the pom."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
POM_PATH = REPO_ROOT / "deploy" / "kafka" / "pom.xml"


def devstack_dir() -> Path:
    """Return the devstack directory: ``$REVLEDGER_DEVSTACK_DIR`` or ``<repo>/.devstack``."""
    override = os.environ.get("REVLEDGER_DEVSTACK_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return REPO_ROOT / ".devstack"


def cache_dir() -> Path:
    """Return the download cache: ``$REVLEDGER_CACHE_DIR`` or ``~/.cache/revledger``."""
    override = os.environ.get("REVLEDGER_CACHE_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path("~/.cache/revledger").expanduser()


def env_file(root: Path | None = None) -> Path:
    """Return the shell-sourcable ``KEY=value`` file describing the running stack."""
    return (root or devstack_dir()) / "env"


def state_file(root: Path | None = None) -> Path:
    """Return the JSON state file (a superset of :func:`env_file`)."""
    return (root or devstack_dir()) / "state.json"
