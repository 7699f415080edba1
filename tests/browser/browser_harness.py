"""Helpers of the console's browser tests, scripts and benchmark: headless Chromium, the
console server as a subprocess, its users.

* :func:`chromium`: selenium 4 driving Debian's ``/usr/bin/chromium`` through
  ``/usr/bin/chromedriver`` (``deploy/browser/install-chromium.sh``, run by ``make fetch``;
  ``REVLEDGER_CHROMIUM`` / ``REVLEDGER_CHROMEDRIVER`` point elsewhere). Missing, it raises
  :class:`ChromiumUnavailable` and the ``browser`` fixture skips, except under ``CI=true``
  where that is an error. The flags keep Chromium off the network it would otherwise try
  (lookups, updates, sync): on a closed network it hangs without them.
* :func:`console_server` runs ``python -m streams.console serve`` (:func:`serve_command`)
  as a subprocess on a free port (as people run it), waits until it answers and keeps its
  log for failure reports; :func:`add_user` creates a user through
  ``python -m streams.console user add``.
* :func:`http_session` logs in over plain HTTP and :func:`hand_over_session` gives that
  session to Chromium: for the benchmark and the screenshot, which measure or photograph
  pages (logging in through the form is the tests' business).

A module of its own (not ``conftest``): test modules of several directories import helpers
by module name, and every directory has a ``conftest``.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("REVLEDGER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REVLEDGER_CHROMEDRIVER", "/usr/bin/chromedriver")
# Without these, headless Chromium on a closed network waits on DNS, QUIC, component
# updates and sync; a fresh profile per session keeps runs from seeing each other's cookies.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
PAGE_LOAD_SECONDS = 30
SERVER_START_SECONDS = 30
# Passwords of the test users: the console asks for at least 12 characters.
PASSWORDS = {"viewer": "viewer-passphrase-1", "operator": "operator-passphrase-1"}


class ChromiumUnavailable(RuntimeError):
    """Chromium or chromedriver is not installed where we look (the message says which)."""


def skip_without_chromium(reason: str) -> None:
    """Fail under ``CI=true`` (CI installs Chromium); otherwise skip the test."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"headless Chromium unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"headless Chromium unavailable: {reason}")


def chromium_options(profile_dir: str) -> Any:
    """Chromium options for tests and scripts: headless, off the network, a fresh profile."""
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    return options


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium driven by chromedriver, quit (and its profile removed) after.

    Raises:
        ChromiumUnavailable: ``CHROMIUM`` or ``CHROMEDRIVER`` is not an executable.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            raise ChromiumUnavailable(
                f"{path} is not an executable (run deploy/browser/install-chromium.sh)"
            )
    profile = tempfile.mkdtemp(prefix="revledger-chromium-")
    # An explicit driver path: selenium must not go looking for (downloading) one.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=chromium_options(profile))
    try:
        driver.set_page_load_timeout(PAGE_LOAD_SECONDS)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def http_session(
    base_url: str, username: str, password: str
) -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    """An HTTP client logged in through the console's login form (its CSRF token included).

    For scripts that measure or photograph pages: the login itself is the browser tests'
    business.
    """
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(f"{base_url}/login", timeout=30) as response:
        form = response.read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    if token is None:
        raise RuntimeError("the login page has no csrf_token field")
    body = urllib.parse.urlencode(
        {"csrf_token": token.group(1), "username": username, "password": password, "next": "/"}
    ).encode()
    with opener.open(f"{base_url}/login", data=body, timeout=30) as response:
        if urllib.parse.urlsplit(response.url).path == "/login":
            raise RuntimeError(f"login of {username} refused")
    return opener, jar


def hand_over_session(driver: Any, base_url: str, jar: http.cookiejar.CookieJar) -> None:
    """Give ``driver`` the cookies of ``jar`` (a session opened by :func:`http_session`)."""
    driver.get(f"{base_url}/login")  # a page of the origin, to set its cookies on
    for cookie in jar:
        driver.add_cookie({"name": cookie.name, "value": cookie.value, "path": "/"})


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the server binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ConsoleServer:
    """A console server subprocess on ``port``, logging to ``log_path``."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_until_answering(self, path: str = "/login", timeout: float = SERVER_START_SECONDS):
        """Poll ``path`` until the server answers (any HTTP status); fail if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"console server exited with {self.process.returncode}:\n{self.log()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(self.url + path, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"console server not answering after {timeout:.0f}s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def console_server(
    argv: list[str], log_path: Path, env: Mapping[str, str] | None = None, port: int | None = None
) -> Iterator[ConsoleServer]:
    """Run ``argv`` (``{port}`` replaced) until the block ends; its log printed on failure.

    ``env`` is the server's whole environment (default: this process's), e.g.
    :func:`streams.settings.worker_environment` of the test's Kafka settings.
    """
    port = port or free_port()
    command = [part.replace("{port}", str(port)) for part in argv]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=dict(os.environ if env is None else env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = ConsoleServer(process, port, log_path)
    try:
        server.wait_until_answering()
        yield server
    except BaseException:
        print(f"--- console server log ({log_path}) ---\n{server.log()[-6000:]}")
        raise
    finally:
        server.stop()


def serve_command(database_url: str) -> list[str]:
    """``python -m streams.console serve`` on ``{port}`` against ``database_url``."""
    return [
        sys.executable,
        "-m",
        "streams.console",
        "serve",
        "--port",
        "{port}",
        "--database-url",
        database_url,
    ]


def add_user(database_url: str, name: str, role: str, password: str) -> None:
    """``python -m streams.console user add NAME --role ROLE --password-stdin``."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.console",
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--database-url",
            database_url,
        ],
        input=password + "\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if done.returncode != 0:
        output = done.stdout + done.stderr
        raise AssertionError(f"user add {name} exited {done.returncode}: {output}")
