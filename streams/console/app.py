"""The console's web application (aiohttp): routes, middlewares, rendering.

Request path, outermost first:

1. :func:`security_headers`: every response (errors included) gets a Content Security
   Policy without inline script (``default-src 'none'``: no script at all, styles and
   images from this origin only, forms post only here, no framing), ``X-Frame-Options:
   DENY``, ``nosniff``, no referrer and ``Cache-Control: no-store`` (pages hold customer
   data).
2. :func:`authentication`: the session cookie's token is looked up (its SHA-256) in the
   console's sessions table; without a live session every page redirects to ``/login``
   (only ``/login``, ``/favicon.ico`` and ``/static/`` are public). Every POST must carry
   the CSRF token in its form (``csrf_token``), else 403: derived from the session (see
   :mod:`streams.console.auth`), or, for the login form, equal to its cookie.
3. The handler. Actions (``POST /stuck/redrive``, ``POST /periods/close``) are for
   operators: a viewer gets 403, and the refusal is audited like every attempt.

Shared configuration, database access and rendering: :mod:`streams.console.context`;
the pages and actions: :mod:`streams.console.pages`.

Must not import faust.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

import psycopg
from aiohttp import web

from streams.console import auth, pages, store
from streams.console.context import (
    CONFIG_KEY,
    CSRF_KEY,
    FORM_KEY,
    HERE,
    LOG,
    SESSION_TOKEN_KEY,
    STATE_KEY,
    USER_KEY,
    ConsoleConfig,
    ConsoleState,
    client_address,
    console_db,
    field_of,
    forbidden,
    make_templates,
    render,
)
from streams.serde import Codec

__all__ = ["CONTENT_SECURITY_POLICY", "ConsoleConfig", "create_app", "safe_next"]

SESSION_COOKIE = "revledger_session"
LOGIN_COOKIE = "revledger_login"
CSRF_FIELD = "csrf_token"
# The one answer to a failed login: wrong password, unknown user or throttled alike.
WRONG_LOGIN = "Wrong username or password."
# The login form's token lives 30 minutes: long enough to type a password, short enough
# that a stale tab asks again.
LOGIN_FORM_SECONDS = 30 * 60
# No script anywhere; styles and images (the CSS file, inline SVG's own attributes) from
# here; forms only post here; the console is never framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
}

# --- middlewares -----------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set the security headers on every response, error responses included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
    return response


def _is_public(path: str) -> bool:
    return path in ("/login", "/favicon.ico") or path.startswith("/static/")


async def favicon(request: web.Request) -> web.Response:
    """``/favicon.ico``: no icon (browsers ask for it on every page, logged in or not)."""
    return web.Response(status=204)


def _login_redirect(request: web.Request) -> web.HTTPSeeOther:
    target = request.path_qs if request.method == "GET" else "/"
    return web.HTTPSeeOther(f"/login?next={quote(target, safe='')}")


@web.middleware
async def authentication(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Find the session's user; anonymous → /login; a POST without its CSRF token → 403."""
    if _is_public(request.path):
        return await handler(request)
    token = request.cookies.get(SESSION_COOKIE)
    user = await console_db(request, store.session_user, token) if token else None
    if user is None:
        raise _login_redirect(request)
    request[USER_KEY] = user
    request[SESSION_TOKEN_KEY] = token
    request[CSRF_KEY] = auth.csrf_token(token)
    if request.method == "POST":
        form = await request.post()
        if not auth.csrf_valid(token, field_of(form, CSRF_FIELD)):
            LOG.warning("refused %s %s by %s: no valid CSRF token", request.method, request.path,
                        user.username)  # fmt: skip
            return forbidden(request, "Refused: the form's CSRF token is missing or wrong.")
        request[FORM_KEY] = form
    return await handler(request)


def safe_next(target: str | None) -> str:
    """A local path to go to after login (anything else, e.g. another host, gives ``/``)."""
    if not target:
        return "/"
    parts = urlsplit(target)
    # Browsers read "/\\host" as "//host": another site. Control characters have no place.
    odd = "\\" in target or any(ord(c) < 0x20 for c in target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or odd:
        return "/"
    return target


# --- login and logout ------------------------------------------------------------------------


def _set_cookie(
    response: web.StreamResponse, config: ConsoleConfig, name: str, value: str, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=config.cookie_secure,
        samesite="Strict",
    )


async def login_page(request: web.Request) -> web.StreamResponse:
    """``GET /login``: the form, with a fresh double-submit token in a cookie."""
    return _login_form(request, error=None, status=200)


def _login_form(request: web.Request, error: str | None, status: int) -> web.StreamResponse:
    # Keep the form token this browser already holds: a second login page in another tab,
    # or a redirect to /login for something the page loads, must not invalidate the form
    # on screen (the token only proves the POST comes from a page we served).
    held = request.cookies.get(LOGIN_COOKIE, "")
    form_token = held if auth.looks_like_token(held) else auth.new_token()
    response = render(
        request,
        "login.html",
        status=status,
        login_token=form_token,
        next=safe_next(request.query.get("next")),
        error=error,
    )
    _set_cookie(response, request.app[CONFIG_KEY], LOGIN_COOKIE, form_token, LOGIN_FORM_SECONDS)
    return response


async def login_submit(request: web.Request) -> web.StreamResponse:
    """``POST /login``: check the form token, then the password; open a session."""
    form = await request.post()
    if not auth.same_token(request.cookies.get(LOGIN_COOKIE), field_of(form, CSRF_FIELD)):
        return forbidden(request, "Refused: the login form's CSRF token is missing or wrong.")
    username = (field_of(form, "username") or "").strip()
    password = field_of(form, "password") or ""
    address = client_address(request)
    throttle = request.app[CONFIG_KEY].login_throttle
    attempt = await console_db(request, store.login, username, password, address, throttle)
    user = attempt.user
    if user is None:
        # A refused attempt reads exactly like a wrong password: the throttle must not tell
        # an attacker which usernames it is protecting.
        LOG.warning(
            "%s login for %r from %s%s",
            "refused" if attempt.refused else "failed",
            username[:64],
            address,
            f": {attempt.refused}" if attempt.refused else "",
        )
        return _login_form(request, error=WRONG_LOGIN, status=401)
    token = auth.new_token()
    expires = await console_db(request, store.open_session, user, token)
    config = request.app[CONFIG_KEY]
    response = web.HTTPSeeOther(safe_next(field_of(form, "next")))
    lifetime = int((expires - dt.datetime.now(dt.UTC)).total_seconds())
    _set_cookie(response, config, SESSION_COOKIE, token, lifetime)
    response.del_cookie(LOGIN_COOKIE, path="/")
    LOG.info("login %s (%s) from %s", user.username, user.role.value, address)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: end the session server-side and drop the cookie."""
    await console_db(request, store.close_session, request[SESSION_TOKEN_KEY])
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# --- errors ----------------------------------------------------------------------------------


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A database that does not answer becomes a 503 page naming the cause, not a trace."""
    try:
        return await handler(request)
    except psycopg.OperationalError as exc:
        LOG.error("database unavailable: %s", exc)
        return web.Response(
            text="The database is not reachable; try again shortly.\n",
            status=503,
            content_type="text/plain",
        )


# --- the application -------------------------------------------------------------------------


def create_app(config: ConsoleConfig) -> web.Application:
    """The console application for ``config`` (run it with ``aiohttp.web.run_app``)."""
    app = web.Application(
        middlewares=[security_headers, error_pages, authentication],
        client_max_size=64 * 1024,  # forms only: a few fields
    )
    app[CONFIG_KEY] = config
    app[STATE_KEY] = ConsoleState(
        templates=make_templates(),
        codec=Codec(schema_registry_url=config.settings.schema_registry_url),
    )
    app.router.add_get("/login", login_page)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
    app.router.add_get("/", pages.overview)
    # Customer ids are the sources' ids: any text, a slash included (sent as %2F).
    app.router.add_get("/customers/{customer_id:.+}", pages.customer_page)
    app.router.add_get("/contracts", pages.contracts_page)
    app.router.add_get("/stuck", pages.stuck_page)
    app.router.add_post("/stuck/redrive", pages.redrive_action)
    app.router.add_get("/recon", pages.recon_page)
    app.router.add_get("/recon/{entity}/{date}", pages.recon_day_page)
    app.router.add_get("/periods", pages.periods_page)
    app.router.add_post("/periods/close", pages.close_action)
    app.router.add_get("/health", pages.health_page)
    app.router.add_get("/charts", pages.charts_page)
    app.router.add_get("/audit", pages.audit_page)
    app.router.add_static("/static/", HERE / "static", show_index=False, follow_symlinks=False)
    return app
