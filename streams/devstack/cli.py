"""``revledger dev up|down|status|fetch``: argparse wiring for the dev stack.

``streams.cli`` calls :func:`add_dev_commands`; ``python -m streams.devstack.cli`` also works
on its own (used by the tests, so they do not depend on the rest of the CLI).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streams.devstack import paths, stack


def add_dev_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dev`` and its sub-commands on an argparse ``subparsers`` object."""
    dev = subparsers.add_parser(
        "dev", help="local Kafka + PostgreSQL dev stack", description=__doc__.splitlines()[0]
    )
    dev.set_defaults(func=main_dev, dev_command=None)
    commands = dev.add_subparsers(dest="dev_command", metavar="{up,down,status,fetch}")
    up = commands.add_parser("up", help="start (or reuse) Kafka and PostgreSQL")
    up.add_argument("--fresh", action="store_true", help="stop and wipe data dirs first")
    down = commands.add_parser("down", help="stop both services and remove .devstack/env")
    down.add_argument("--purge", action="store_true", help="also delete the data dirs")
    commands.add_parser("status", help="show the stack; exit 1 unless both are running")
    commands.add_parser("fetch", help="resolve the Kafka jars with Maven (cached)")


def _echo(message: str) -> None:
    """Print a progress line immediately."""
    print(message, flush=True)


def _print_status(result: stack.StackStatus) -> None:
    """Print one line per service plus the connection settings."""
    recorded = result.state
    if recorded is None:
        print(f"no dev stack recorded in {paths.devstack_dir()}")
        return
    running = {True: "running", False: "NOT running"}
    print(f"KAFKA_BOOTSTRAP_SERVERS={recorded.bootstrap_servers}")
    print(f"DATABASE_URL={recorded.database_url}")
    print(
        f"kafka Apache Kafka {recorded.kafka_version} pid {recorded.kafka_pid} "
        f"{running[result.kafka_running]}"
    )
    kind = "external" if recorded.postgres_external else "embedded"
    print(f"postgres {kind} pid {recorded.postgres_pid or '-'} {running[result.postgres_running]}")


def main_dev(args: argparse.Namespace) -> int:
    """Run the ``dev`` sub-command in ``args``; return the process exit code."""
    command = getattr(args, "dev_command", None)
    try:
        if command == "up":
            recorded = stack.up(fresh=args.fresh, echo=_echo)
            print(f"env: {paths.env_file()}  (set -a; . {paths.env_file()}; set +a)")
            print("\n".join(recorded.env_lines()))
            return 0
        if command == "down":
            return 0 if stack.down(purge=args.purge, echo=_echo) else 1
        if command == "fetch":
            stack.fetch(echo=_echo)
            return 0
        if command == "status":
            result = stack.status()
            _print_status(result)
            return 0 if result.ok else 1
    except (RuntimeError, OSError) as err:
        print(f"revledger dev {command}: {err}", file=sys.stderr)
        return 1
    print("usage: revledger dev {up,down,status,fetch}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m streams.devstack.cli dev up``."""
    parser = argparse.ArgumentParser(prog="revledger")
    add_dev_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
