"""Local dev stack: a single-node Apache Kafka 4.x broker and an embedded PostgreSQL.

``revledger dev up|down|status|fetch`` (see :mod:`streams.devstack.cli`) drives it; the test
suite's ``devstack`` fixture reuses it. Everything lives under ``.devstack/`` (override with
``REVLEDGER_DEVSTACK_DIR``); the Kafka jars are cached outside the repository under
``${REVLEDGER_CACHE_DIR:-~/.cache/revledger}``. No Docker, and no Faust import here.

Modules, one concept each:

- :mod:`~streams.devstack.paths`: where things live (devstack dir, jar cache, pom).
- :mod:`~streams.devstack.procs`: ports, liveness, detached spawn, process-group shutdown.
- :mod:`~streams.devstack.kafka`: jar fetch, KRaft config, storage format, broker start/stop.
- :mod:`~streams.devstack.postgres`: embedded PostgreSQL init/start/stop and the database.
- :mod:`~streams.devstack.state`: the ``.devstack/env`` and ``state.json`` files.
- :mod:`~streams.devstack.stack`: ``up``, ``down``, ``status`` for the whole stack.
"""

from streams.devstack.stack import StackStatus, down, fetch, status, up
from streams.devstack.state import StackState

__all__ = ["StackState", "StackStatus", "down", "fetch", "status", "up"]
