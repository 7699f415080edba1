"""Settings for commands run beside a dev stack: the environment, then ``.devstack/env``.

``revledger dev up`` writes the endpoints it started to ``.devstack/env``; commands such
as ``revledger topics create`` and ``revledger worker`` use them unless the environment
already names a broker or database.
"""

from __future__ import annotations

import os

from streams.devstack.paths import env_file
from streams.devstack.state import read_env
from streams.settings import Settings, load_settings


def settings_from_devstack(**overrides: object) -> Settings:
    """Settings from the environment, with the dev stack's endpoints filling the gaps."""
    path = env_file()
    recorded = read_env(path) if path.exists() else {}
    environ = {**recorded, **{k: v for k, v in os.environ.items() if v}}
    return load_settings(environ, **overrides)
