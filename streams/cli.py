"""The ``revledger`` command: dev stack, topics, workers, DLQ, demo.

Each sub-command lives next to what it drives; this module only wires argparse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from streams.console.cli import add_console_commands
from streams.crm_translator import add_crm_translate_commands
from streams.dlq_tools import add_dlq_commands
from streams.importing import add_import_commands
from streams.lag_exporter import add_lag_commands
from streams.projection import add_project_commands
from streams.recon import add_recon_commands
from streams.reports import REPORT_COMMANDS, add_report_commands
from streams.schema_governance import add_schemas_commands
from streams.simulate import add_simulate_commands
from streams.stripe_translator import add_stripe_translate_commands
from streams.stripe_webhook import add_stripe_webhook_commands


def _build_parser() -> argparse.ArgumentParser:
    from streams.devstack.cli import add_dev_commands

    parser = argparse.ArgumentParser(
        prog="revledger",
        description="Streaming subledger and revenue recognition on Kafka.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_dev_commands(commands)

    topics = commands.add_parser("topics", help="create or list the system's topics")
    topics.add_argument("action", choices=["create", "list"])

    worker = commands.add_parser("worker", help="run a ledger worker (Faust) in the foreground")
    worker.add_argument("--loglevel", default=None, help="overrides REVLEDGER_LOG_LEVEL")

    batcher = commands.add_parser(
        "batcher", help="run the ERP batcher (Faust) in the foreground: entries to journal batches"
    )
    batcher.add_argument("--loglevel", default=None, help="overrides REVLEDGER_LOG_LEVEL")

    add_dlq_commands(commands)

    erp_import = commands.add_parser(
        "erp-import", help="write journal batches as ERP import files and acknowledge them"
    )
    erp_import.add_argument(
        "--format", required=True, choices=["netsuite-csv", "oracle-gl-interface", "json"]
    )
    erp_import.add_argument("--out", required=True, metavar="DIR", help="output directory")
    erp_import.add_argument("--group", default=None, help="default: <app id>-erp-import")
    erp_import.add_argument(
        "--ledger-id",
        action="append",
        metavar="[ENTITY=]ID",
        help="Oracle LEDGER_ID: a default for all entities, or ENTITY=ID (repeatable)",
    )
    erp_import.add_argument("--follow", action="store_true", help="keep polling at the end")
    erp_import.add_argument("--transaction-size", type=int, default=50, metavar="N")

    erp_resend = commands.add_parser(
        "erp-resend", help="re-produce a journal batch under its id (after fixing its cause)"
    )
    erp_resend.add_argument("batch_id", metavar="BATCH_ID")

    db = commands.add_parser("db", help="PostgreSQL projection: apply or list schema migrations")
    db.add_argument("action", choices=["migrate", "status"])
    db.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="default: DATABASE_URL, else the dev stack's database",
    )

    add_report_commands(commands)
    add_project_commands(commands)
    add_lag_commands(commands)
    add_schemas_commands(commands)
    add_recon_commands(commands)
    add_simulate_commands(commands)
    add_import_commands(commands)
    add_crm_translate_commands(commands)
    add_stripe_webhook_commands(commands)
    add_stripe_translate_commands(commands)
    add_console_commands(commands)

    export = commands.add_parser("export", help="the subledger of an entity in another format")
    export.add_argument("format", choices=["beancount"])
    export.add_argument("--entity", required=True)
    export.add_argument("--out", required=True, metavar="FILE")
    export.add_argument("--as-of", default=None, metavar="YYYY-MM-DD")
    export.add_argument("--database-url", default=None, metavar="URL")

    demo = commands.add_parser("demo", help="run the pipeline on a simulated company")
    demo.add_argument("--customers", type=int, default=500)
    demo.add_argument("--months", type=int, default=12)
    demo.add_argument("--seed", type=int, default=7)
    return parser


def _run_topics(args: argparse.Namespace) -> int:
    from streams.admin import admin_client, ensure_topics
    from streams.devstack_env import settings_from_devstack

    settings = settings_from_devstack()
    if args.action == "create":
        created = ensure_topics(settings)
        print(f"created {len(created)} topics" + (": " + ", ".join(created) if created else ""))
        return 0
    listed = admin_client(settings).list_topics(timeout=30).topics
    for name in sorted(listed):
        print(f"{name}\t{len(listed[name].partitions)} partitions")
    return 0


def _database_url(args: argparse.Namespace, what: str) -> str | None:
    """The URL from ``--database-url``, ``DATABASE_URL`` or the dev stack; None (said) if none."""
    from streams.devstack_env import settings_from_devstack
    from streams.settings import SettingsError

    url = args.database_url
    if not url:
        try:
            url = settings_from_devstack().database_url
        except SettingsError as exc:
            print(f"revledger {what}: {exc}", file=sys.stderr)
            return None
    if not url:
        print(
            f"revledger {what}: no database: pass --database-url, set DATABASE_URL"
            " or start the dev stack (revledger dev up)",
            file=sys.stderr,
        )
    return url or None


def _run_db(args: argparse.Namespace) -> int:
    """``revledger db migrate|status``."""
    from connectors.postgres.migrate import main_db

    url = _database_url(args, f"db {args.action}")
    return 1 if url is None else main_db(args.action, url)


def _run_export(args: argparse.Namespace) -> int:
    """``revledger export beancount --entity E --out FILE``."""
    import datetime as dt

    import psycopg

    from connectors.postgres.beancount import UnknownEntity, export_beancount

    url = _database_url(args, "export beancount")
    if url is None:
        return 1
    try:
        as_of = dt.date.fromisoformat(args.as_of) if args.as_of else None
        written = export_beancount(url, args.entity, Path(args.out), as_of)
    except (UnknownEntity, ValueError) as exc:
        print(f"revledger export beancount: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        print(
            f"revledger export beancount: database unreachable: {exc}".splitlines()[0],
            file=sys.stderr,
        )
        return 1
    print(f"wrote {written} entries of {args.entity} to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``revledger`` console script."""
    args = _build_parser().parse_args(argv)
    if args.command == "dev":
        from streams.devstack.cli import main_dev

        return main_dev(args)
    if args.command == "topics":
        return _run_topics(args)
    if args.command == "worker":
        from streams.worker import run_worker

        return run_worker(loglevel=args.loglevel)
    if args.command == "batcher":
        from streams.worker import run_batcher

        return run_batcher(loglevel=args.loglevel)
    if args.command == "dlq":
        from streams.dlq_tools import main_dlq

        return main_dlq(args)
    if args.command == "erp-import":
        from streams.erp_import import main_erp_import

        return main_erp_import(args)
    if args.command == "erp-resend":
        from streams.erp_resend import main_erp_resend

        return main_erp_resend(args)
    if args.command == "db":
        return _run_db(args)
    if args.command == "export":
        return _run_export(args)
    if args.command == "lag-exporter":
        from streams.lag_exporter import main_lag

        return main_lag(args)
    if args.command == "project":
        from streams.projection import main_project

        return main_project(args)
    if args.command == "stripe-webhook":
        from streams.stripe_webhook import main_stripe_webhook

        return main_stripe_webhook(args)
    if args.command == "stripe-translate":
        from streams.stripe_translator import main_stripe_translate

        return main_stripe_translate(args)
    if args.command == "import":
        from streams.importing import main_import

        return main_import(args)
    if args.command == "crm-translate":
        from streams.crm_translator import main_crm_translate

        return main_crm_translate(args)
    if args.command == "simulate":
        from streams.simulate import main_simulate

        return main_simulate(args)
    if args.command == "recon":
        from streams.recon import main_recon

        return main_recon(args)
    if args.command == "console":
        from streams.console.cli import main_console

        return main_console(args)
    if args.command == "schemas":
        from streams.schema_governance import main_schemas

        return main_schemas(args)
    if args.command in REPORT_COMMANDS:
        from streams.reports import main_report

        return main_report(args)
    if args.command == "demo":
        from streams.demo import run_demo

        return run_demo(customers=args.customers, months=args.months, seed=args.seed)
    return 2


if __name__ == "__main__":
    sys.exit(main())
