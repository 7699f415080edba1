"""``revledger console serve | user add``: run the console, manage its users.

- ``serve --port P [--host H] [--database-url URL] [--console-database-url URL]
  [--trusted-proxy ADDR ...] [--secure-cookies | --no-secure-cookies]``: serve the
  console. The reads go through ``--database-url`` (default ``DATABASE_URL`` / the dev
  stack's), users, sessions and the audit through ``--console-database-url`` (default
  ``REVLEDGER_CONSOLE_DATABASE_URL``, else the same URL). Cookies are ``Secure`` unless
  the host is a loopback address (a browser on plain http://127.0.0.1 would drop them);
  force either way with the flags. Behind a reverse proxy, name it with
  ``--trusted-proxy`` so the login throttle and the audit see the client's address.
- ``user add NAME --role viewer|operator [--password-stdin]``: create the user, or set an
  existing user's role and password (which ends its sessions). Without
  ``--password-stdin`` the password is asked twice on the terminal; it is never an
  argument (argument lists are visible to every local user).

Wire into ``streams/cli.py`` with ``add_console_commands(subparsers)`` and
``main_console(args)`` for ``args.command == "console"``. Must not import faust.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import logging
import os
import sys
from collections.abc import Sequence

import psycopg

from streams.console.auth import AuthError

LOOPBACK_NAMES = ("localhost",)
CONSOLE_DATABASE_ENV = "REVLEDGER_CONSOLE_DATABASE_URL"


def add_console_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``console serve`` and ``console user add`` to a CLI's sub-commands."""
    parser = subparsers.add_parser("console", help="the finance operations web console")
    _add_actions(parser)


def _add_actions(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="console_action", required=True, metavar="ACTION")
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument(
        "--database-url", default=None, help="PostgreSQL conninfo (default: DATABASE_URL)"
    )
    database.add_argument(
        "--console-database-url",
        default=None,
        help=f"conninfo of the console's role (default: {CONSOLE_DATABASE_ENV}, else"
        " --database-url)",
    )
    serve = actions.add_parser("serve", parents=[database], help="serve the console over HTTP")
    serve.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument(
        "--trusted-proxy",
        action="append",
        default=[],
        metavar="ADDR",
        help="address of a reverse proxy whose X-Forwarded-For names the client (repeatable;"
        " the login throttle and the audit use the client's address)",
    )
    cookies = serve.add_mutually_exclusive_group()
    cookies.add_argument(
        "--secure-cookies",
        dest="secure_cookies",
        action="store_true",
        default=None,
        help="mark cookies Secure (HTTPS only); the default unless the host is loopback",
    )
    cookies.add_argument(
        "--no-secure-cookies",
        dest="secure_cookies",
        action="store_false",
        help="do not mark cookies Secure (plain HTTP on a trusted network only)",
    )
    user = actions.add_parser("user", help="manage console users")
    user_actions = user.add_subparsers(dest="user_action", required=True, metavar="ACTION")
    add = user_actions.add_parser(
        "add", parents=[database], help="create a user, or reset its role and password"
    )
    add.add_argument("name", help="username: 1-64 of a-z 0-9 . _ -")
    add.add_argument("--role", required=True, choices=("viewer", "operator"))
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m streams.console``."""
    parser = argparse.ArgumentParser(
        prog="python -m streams.console", description="the finance operations web console"
    )
    _add_actions(parser)
    return parser


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _urls(args: argparse.Namespace) -> tuple[str, str, object]:
    """The read URL, the console URL and the settings (the dev stack fills the gaps)."""
    from streams.devstack_env import settings_from_devstack

    settings = settings_from_devstack()
    url = args.database_url or settings.database_url
    if not url:
        raise SystemExit("revledger console: no database: give --database-url or DATABASE_URL")
    console_url = args.console_database_url or os.environ.get(CONSOLE_DATABASE_ENV) or url
    return url, console_url, settings


def main_console(args: argparse.Namespace) -> int:
    """Entry point of ``revledger console`` (and ``python -m streams.console``)."""
    if args.console_action == "serve":
        return _serve(args)
    return _user_add(args)


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from streams.console.app import ConsoleConfig, create_app

    url, console_url, settings = _urls(args)
    secure = args.secure_cookies if args.secure_cookies is not None else not is_loopback(args.host)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = ConsoleConfig(
        url,
        console_url,
        settings,  # type: ignore[arg-type]
        cookie_secure=secure,
        trusted_proxies=frozenset(_addresses(args.trusted_proxy)),
    )
    print(
        f"revledger console on http://{args.host}:{args.port}/ (secure cookies: {secure})",
        flush=True,
    )
    web.run_app(create_app(config), host=args.host, port=args.port, print=None)
    return 0


def _addresses(values: Sequence[str]) -> list[str]:
    """``values`` as normalised IP addresses (as the peer address is written).

    Raises:
        SystemExit: one is not an IP address.
    """
    try:
        return [str(ipaddress.ip_address(value.strip())) for value in values]
    except ValueError as exc:
        raise SystemExit(f"revledger console: --trusted-proxy: {exc}") from exc


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AuthError("the two passwords differ")
    return first


def _user_add(args: argparse.Namespace) -> int:
    from streams.console import store

    _, console_url, _ = _urls(args)
    try:
        password = _read_password(args.password_stdin)
        with psycopg.connect(console_url, autocommit=True, connect_timeout=10) as conn:
            created = store.add_user(conn, args.name, args.role, password)
    except AuthError as exc:
        print(f"revledger console user add: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"revledger console user add: database error: {exc}", file=sys.stderr)
        return 1
    verb = "created" if created else "updated (its sessions ended)"
    print(f"user {args.name} ({args.role}) {verb}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streams.console``."""
    args = build_parser().parse_args(argv)
    return main_console(args)
