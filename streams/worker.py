"""Running a worker: build the app with its agents and run it in the foreground.

``revledger worker`` calls :func:`run_worker`, ``revledger batcher`` :func:`run_batcher`;
tests run the same functions in a subprocess, so a kill -9 test kills what production runs.
"""

from __future__ import annotations

import faust

from streams.logs import configure_logging, logging_config
from streams.metrics import metrics_payload
from streams.settings import Settings


def add_metrics_page(app: faust.App) -> None:
    """Serve Prometheus metrics at ``/metrics`` on the worker's web server."""

    @app.page("/metrics")
    async def _metrics(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        body, content_type = metrics_payload()
        # aiohttp refuses a charset in ``content_type``; Prometheus' type carries one.
        return web.bytes(body, headers={"Content-Type": content_type})


def run_app(app: faust.App, settings: Settings, loglevel: str | None = None) -> int:
    """Run ``app`` until it is stopped; returns the process exit code."""
    level = (loglevel or settings.log_level).lower()
    configure_logging(settings.log_format, level)
    from streams.admin import ensure_changelog_topics

    ensure_changelog_topics(
        settings, [table.changelog_topic.get_topic_name() for table in app.tables.values()]
    )
    # Faust's worker replaces the root handlers when it starts: give it the same config.
    worker = faust.Worker(
        app,
        loglevel=level,
        quiet=True,
        redirect_stdouts=False,
        logging_config=logging_config(settings.log_format, level),
    )
    worker.execute_from_commandline()
    return 0


def run_worker(loglevel: str | None = None) -> int:
    """Build the ledger worker from the environment (and ``.devstack/env``) and run it."""
    from streams.devstack_env import settings_from_devstack
    from streams.ledger_worker import build_ledger_app

    settings = settings_from_devstack()
    app = build_ledger_app(settings)
    return run_app(app, settings, loglevel)


def run_batcher(loglevel: str | None = None) -> int:
    """Build the batcher from the environment (and ``.devstack/env``) and run it."""
    from streams.batcher import batcher_settings, build_batcher_app
    from streams.devstack_env import settings_from_devstack

    settings = settings_from_devstack()
    app = build_batcher_app(settings)
    return run_app(app, batcher_settings(settings), loglevel)
