"""What every console handler shares: configuration, database access, rendering.

- :class:`ConsoleConfig` (the reads' and the console's conninfo, Kafka settings, cookies)
  and :class:`ConsoleState` (templates, codec, the lock serialising Kafka actions), kept on
  the application under :data:`CONFIG_KEY` and :data:`STATE_KEY`;
- what the authentication middleware puts on a request (:data:`USER_KEY` ...);
- database work: synchronous psycopg in the default executor, one short-lived connection
  per call: :func:`read` (read-only transactions, views only) and :func:`console_db`
  (users, sessions, audit), and :func:`write_audit`;
- rendering: Jinja2 with autoescaping, :func:`render`, :func:`forbidden`, the charts.

Must not import faust.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
import psycopg
from aiohttp import web
from markupsafe import Markup
from multidict import MultiDictProxy

from streams.console import charts, operations, store, timeline
from streams.console.auth import LoginThrottle
from streams.console.store import User
from streams.reports import format_amount
from streams.serde import Codec
from streams.settings import Settings

LOG = logging.getLogger("revledger.console")
HERE = Path(__file__).resolve().parent
CONNECT_TIMEOUT_SECONDS = 10
T = TypeVar("T")


@dataclass(frozen=True)
class ConsoleConfig:
    """How the console reaches its data and how it sets cookies.

    Attributes:
        database_url: conninfo for reading the projection (a login role in
            ``revledger_reader`` or ``revledger_console``: views only).
        console_database_url: conninfo of the console's own role (``revledger_console``):
            users, sessions, audit.
        settings: Kafka settings for redrive and period close (topic prefix, brokers,
            security), and the materiality thresholds.
        cookie_secure: mark cookies ``Secure`` (sent over HTTPS only); on behind TLS.
        login_throttle: how many failed logins per username and per address, within what
            window, before further attempts are refused.
        trusted_proxies: addresses of reverse proxies whose ``X-Forwarded-For`` names the
            client (see :func:`client_address`); without them, behind a proxy every
            client would have the proxy's address, and the address limit would lock
            everyone out at once.
    """

    database_url: str
    console_database_url: str
    settings: Settings
    cookie_secure: bool = True
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle)
    trusted_proxies: frozenset[str] = frozenset()


@dataclass
class ConsoleState:
    """What handlers share: templates, the codec, and the lock serialising Kafka actions."""

    templates: jinja2.Environment
    codec: Codec
    action_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


CONFIG_KEY = web.AppKey("config", ConsoleConfig)
STATE_KEY = web.AppKey("state", ConsoleState)
# What the authentication middleware finds, for the handlers.
USER_KEY = web.RequestKey("user", User)
SESSION_TOKEN_KEY = web.RequestKey("session_token", str)
CSRF_KEY = web.RequestKey("csrf", str)
FORM_KEY = web.RequestKey("form", MultiDictProxy)


# --- database access -------------------------------------------------------------------------


def _read(config: ConsoleConfig, work: Callable[..., T], *args: Any) -> T:
    with psycopg.connect(
        config.database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        options="-c default_transaction_read_only=on",
    ) as conn:
        return work(conn, *args)


def _console(config: ConsoleConfig, work: Callable[..., T], *args: Any) -> T:
    with psycopg.connect(
        config.console_database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
    ) as conn:
        return work(conn, *args)


async def read(request: web.Request, work: Callable[..., T], *args: Any) -> T:
    """Run ``work(conn, *args)`` on a read-only connection, in the executor."""
    config = request.app[CONFIG_KEY]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(_read, config, work, *args))


async def console_db(request: web.Request, work: Callable[..., T], *args: Any) -> T:
    """Run ``work(conn, *args)`` on a connection of the console's role, in the executor."""
    config = request.app[CONFIG_KEY]
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(_console, config, work, *args))


def client_address(request: web.Request) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the last
    address of ``X-Forwarded-For`` that is not a trusted proxy (the one the first trusted
    proxy saw; what comes before it the client could have written itself)."""
    peer = request.remote
    proxies = request.app[CONFIG_KEY].trusted_proxies
    if peer is None or peer not in proxies:
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if hop in proxies:
            continue
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:  # not an address: trust nothing the header says
            return peer
    return peer


async def write_audit(
    request: web.Request, action: str, target: dict[str, Any], outcome: str, detail: str = ""
) -> None:
    """Append an audit row for the request's user."""
    user = request[USER_KEY]
    await console_db(
        request, store.audit, user, action, target, outcome, detail[:2000], client_address(request)
    )
    LOG.info("audit %s %s %s %s %s", user.username, action, target, outcome, detail[:200])


# --- rendering -------------------------------------------------------------------------------


@functools.lru_cache(maxsize=65536)  # a page repeats the same amounts many times
def _money(amount_minor: int | None, currency: str | None) -> str:
    if amount_minor is None or currency is None:
        return ""
    try:
        return f"{format_amount(amount_minor, currency, grouped=True)} {currency}"
    except Exception:  # an unknown currency must not break a page: show minor units
        return f"{amount_minor} {currency} (minor units)"


def make_templates() -> jinja2.Environment:
    """The Jinja environment: package templates, autoescaping on for every file."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.globals["page_links"] = timeline.page_links
    return env


def render(request: web.Request, name: str, status: int = 200, **context: Any) -> web.Response:
    """Render template ``name`` with the user, CSRF token and navigation in context."""
    state = request.app[STATE_KEY]
    context.setdefault("flash", None)
    page = state.templates.get_template(name).render(
        user=request.get(USER_KEY),
        csrf=request.get(CSRF_KEY, ""),
        path=request.path,
        **context,
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def chart_markup(figures: operations.EntityCharts) -> dict[str, Markup]:
    """The three SVG charts of an entity, marked safe (the chart code escapes its text)."""
    return {
        "waterfall": Markup(charts.waterfall_svg(figures.waterfall)),
        "rollforward": Markup(charts.rollforward_svg(figures.rollforward)),
        "aging": Markup(charts.aging_svg(figures.aging)),
    }


def forbidden(request: web.Request, message: str) -> web.Response:
    """A 403 page saying why (``class="flash error"``)."""
    if request.get(USER_KEY) is None:
        return web.Response(text=message + "\n", status=403, content_type="text/plain")
    return render(request, "error.html", status=403, message=message)


def field_of(form: Any, name: str) -> str | None:
    """The text value of form field ``name`` (None when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else None
