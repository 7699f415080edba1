"""The console's pages and actions (routes in :func:`streams.console.app.create_app`).

Pages read through :func:`streams.console.context.read` (views only); actions
(``POST /stuck/redrive``, ``POST /periods/close``) are for operators: a viewer gets 403 and
the refusal is audited like every attempt (:func:`streams.console.context.write_audit`).
Kafka actions run in the executor, one at a time.

Must not import faust.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
from typing import Any
from urllib.parse import quote

import psycopg
from aiohttp import web

from connectors.postgres import queries
from streams.console import operations, store, timeline
from streams.console.context import (
    CONFIG_KEY,
    FORM_KEY,
    LOG,
    STATE_KEY,
    USER_KEY,
    chart_markup,
    console_db,
    field_of,
    forbidden,
    read,
    render,
    write_audit,
)
from streams.settings import Settings


async def overview(request: web.Request) -> web.StreamResponse:
    """``GET /``: search by customer id (``?customer=``), counts of what needs a look."""
    customer = (request.query.get("customer") or "").strip()
    if customer:
        raise web.HTTPSeeOther(f"/customers/{quote(customer, safe='')}")

    def gather(conn: psycopg.Connection) -> dict[str, Any]:
        return {
            "dlq": queries.dlq_summary(conn),
            "breaks": operations.break_days(conn),
            "entities": operations.entities(conn),
        }

    return render(request, "overview.html", **await read(request, gather))


async def customer_page(request: web.Request) -> web.StreamResponse:
    """``GET /customers/{customer_id}[?page=N]``: a page of the customer's timeline (the
    latest unless asked), its counts per state, balances, open invoices, latest contracts."""
    customer_id = request.match_info["customer_id"]
    thresholds = request.app[CONFIG_KEY].settings.thresholds
    wanted = _page_number(request, None)
    found = await read(request, timeline.customer_timeline, customer_id, thresholds, wanted)
    status = 200 if found.found else 404
    return render(request, "customer.html", status=status, timeline=found)


async def contracts_page(request: web.Request) -> web.StreamResponse:
    """``GET /contracts?customer=ID[&page=N]``: all of a customer's contracts with their
    schedules, latest booked first, a page at a time."""
    customer_id = (request.query.get("customer") or "").strip()
    if not customer_id:
        raise web.HTTPBadRequest(text="customer is required: /contracts?customer=ID")
    wanted = _page_number(request, 1)
    found = await read(request, timeline.customer_contracts, customer_id, wanted or 1)
    return render(request, "contracts.html", status=200 if found.total else 404, found=found)


def _page_number(request: web.Request, default: int | None) -> int | None:
    """The ``page`` query parameter as a whole number, else ``default``.

    Raises:
        web.HTTPBadRequest: it is not a whole number.
    """
    if "page" not in request.query:
        return default
    try:
        return int(request.query["page"])
    except ValueError as exc:
        raise web.HTTPBadRequest(text="page must be a whole number") from exc


async def stuck_page(request: web.Request, flash: tuple[str, str] | None = None) -> web.Response:
    """``GET /stuck``: dead letters and held events by reason and materiality band."""
    state = request.app[STATE_KEY]
    thresholds = request.app[CONFIG_KEY].settings.thresholds
    work = await read(request, operations.stuck_work, thresholds, state.codec)
    return render(request, "stuck.html", stuck=work, flash=flash)


async def recon_page(request: web.Request) -> web.StreamResponse:
    """``GET /recon``: open breaks per entity and day."""
    return render(request, "recon.html", days=await read(request, operations.break_days))


async def recon_day_page(request: web.Request) -> web.StreamResponse:
    """``GET /recon/{entity}/{date}``: one day's open breaks with their events."""
    entity = request.match_info["entity"]
    try:
        day = dt.date.fromisoformat(request.match_info["date"])
    except ValueError as exc:
        raise web.HTTPNotFound(text="the date must be YYYY-MM-DD") from exc
    breaks, events = await read(request, operations.day_breaks, entity, day)
    return render(request, "recon_day.html", entity=entity, day=day, breaks=breaks, events=events)


async def periods_page(
    request: web.Request, flash: tuple[str, str] | None = None, status: int = 200
) -> web.Response:
    """``GET /periods``: each entity's periods; the oldest open one can be closed."""
    by_entity = await read(request, operations.all_periods)
    oldest = {
        entity: next((row.period for row in rows if row.status != "closed"), None)
        for entity, rows in by_entity.items()
    }
    return render(
        request, "periods.html", status=status, periods=by_entity, oldest=oldest, flash=flash
    )


async def health_page(request: web.Request) -> web.StreamResponse:
    """``GET /health``: source systems (last event, throughput), DLQ, and broker lag."""
    systems = await read(request, operations.source_systems)
    dlq = await read(request, queries.dlq_summary)
    settings = request.app[CONFIG_KEY].settings
    lag, lag_error = await _worker_lag(settings)
    return render(
        request,
        "health.html",
        systems=systems,
        dlq=dlq,
        lag=lag,
        lag_error=lag_error,
        group=settings.app_id,
        now=dt.datetime.now(dt.UTC),
    )


# A page must not hang on an unreachable broker: give the lag read this long.
LAG_TIMEOUT_SECONDS = 10.0


async def _worker_lag(settings: Settings) -> tuple[list[Any], str | None]:
    """The ledger worker group's lag rows, or an error text (broker unreachable...)."""
    from streams.lag_exporter import BrokerReader, LagReadError, read_group_lag

    def work() -> list[Any]:
        return list(read_group_lag(BrokerReader(settings), settings.app_id).rows)

    loop = asyncio.get_running_loop()
    try:
        rows = await asyncio.wait_for(loop.run_in_executor(None, work), LAG_TIMEOUT_SECONDS)
    except (LagReadError, TimeoutError, OSError, RuntimeError) as exc:
        return [], f"lag not available: {exc or type(exc).__name__}"
    except Exception as exc:  # a client error must not take the health page down
        return [], f"lag not available: {type(exc).__name__}: {exc}"
    return sorted(rows, key=lambda r: (r.topic, r.partition)), None


async def charts_page(request: web.Request) -> web.StreamResponse:
    """``GET /charts``: per entity, the waterfall, roll-forward and AR aging as SVG."""

    def gather(conn: psycopg.Connection) -> list[operations.EntityCharts]:
        found = (operations.entity_charts(conn, e) for e in operations.entities(conn))
        return [figures for figures in found if figures is not None]

    figures = await read(request, gather)
    charts = [(f, chart_markup(f)) for f in figures]
    return render(request, "charts.html", charts=charts)


async def audit_page(request: web.Request) -> web.StreamResponse:
    """``GET /audit``: the latest audit rows."""
    rows = await console_db(request, store.recent_audit, 200)
    return render(request, "audit.html", rows=rows)


# --- actions ---------------------------------------------------------------------------------


async def _refuse_viewer(
    request: web.Request, action: str, target: dict[str, Any]
) -> web.Response | None:
    """A 403 page for a user whose role may not act (audited as refused), else None."""
    user = request[USER_KEY]
    if user.role.may_act:
        return None
    await write_audit(request, action, target, "refused", f"role {user.role.value} may not act")
    return forbidden(request, f"Refused: {action} is for operators; you are a {user.role.value}.")


def _run_redrive(settings: Settings, reason: str | None, customer: str | None) -> str:
    """Redrive with :func:`streams.dlq_tools.redrive_records`; returns what it did, in words."""
    from streams.dlq_tools import DlqFilter, redrive_records

    return redrive_records(settings, DlqFilter(reason=reason, customer=customer)).summary


async def redrive_action(request: web.Request) -> web.StreamResponse:
    """``POST /stuck/redrive``: re-produce dead letters (by reason, by customer); operators."""
    form = request[FORM_KEY]
    reason = (field_of(form, "reason") or "").strip() or None
    customer = (field_of(form, "customer") or "").strip() or None
    target = {"reason": reason or "all", "customer": customer}
    if (refused := await _refuse_viewer(request, "dlq.redrive", target)) is not None:
        return refused
    state = request.app[STATE_KEY]
    settings = request.app[CONFIG_KEY].settings
    loop = asyncio.get_running_loop()
    try:
        async with state.action_lock:
            said = await loop.run_in_executor(None, _run_redrive, settings, reason, customer)
    except Exception as exc:  # a broker error: tell the operator, audit it, keep serving
        LOG.exception("redrive failed")
        await write_audit(request, "dlq.redrive", target, "failed", f"{type(exc).__name__}: {exc}")
        return await stuck_page(request, flash=("error", f"Redrive failed: {exc}"))
    await write_audit(request, "dlq.redrive", target, "done", said)
    return await stuck_page(request, flash=("ok", said or "redrive done"))


async def close_action(request: web.Request) -> web.StreamResponse:
    """``POST /periods/close``: first a confirmation page, then (``confirm=yes``) the close."""
    from streams.period_close import PeriodCloseRefused, close_period

    form = request[FORM_KEY]
    entity = (field_of(form, "entity") or "").strip()
    period = (field_of(form, "period") or "").strip()
    target = {"entity": entity, "period": period}
    if (refused := await _refuse_viewer(request, "period.close", target)) is not None:
        return refused
    if field_of(form, "confirm") != "yes":
        rows = await read(request, _entity_periods, entity)
        row = next((r for r in rows if r.period == period), None)
        return render(request, "period_confirm.html", entity=entity, period=period, row=row)
    settings = request.app[CONFIG_KEY].settings
    state = request.app[STATE_KEY]
    try:
        async with state.action_lock:
            record = await read(request, functools.partial(close_period, settings), entity, period)
    except (PeriodCloseRefused, queries.ReportError, ValueError) as exc:
        await write_audit(request, "period.close", target, "refused", str(exc))
        return await periods_page(request, flash=("error", str(exc)), status=409)
    except Exception as exc:
        LOG.exception("period close failed")
        await write_audit(request, "period.close", target, "failed", f"{type(exc).__name__}: {exc}")
        return await periods_page(request, flash=("error", f"Close failed: {exc}"), status=502)
    detail = f"PeriodClosed {record.event_id} produced, closed on {record.closed_on}"
    await write_audit(request, "period.close", target, "done", detail)
    message = f"{entity} {period}: close sent; the period shows closed once the ledger applied it."
    return await periods_page(request, flash=("ok", message))


def _entity_periods(conn: psycopg.Connection, entity: str) -> list[queries.PeriodRow]:
    try:
        return queries.periods(conn, entity)
    except queries.UnknownEntity:
        return []
