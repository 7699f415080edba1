"""Photograph a customer's timeline in the console for the README.

``.venv/bin/python deploy/browser/screenshot.py [--out docs/images/console-timeline.png]``

Needs the dev stack's PostgreSQL (``make up``) and Chromium
(``deploy/browser/install-chromium.sh``). A private database (dropped at the end) gets a
simulated company written by the projection's sink (``tests/browser/console_data.py``, as
the browser tests load it); ``python -m streams.console serve`` serves it; a viewer's
session opens the timeline of the customer with the most events in headless Chromium, the
timeline section is scrolled to the top of the window, and the window is saved as PNG.
The data are deterministic (a fixed seed), so the picture only changes with the console.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for helpers in ("tests/integration", "tests/browser", "."):
    if str(ROOT / helpers) not in sys.path:
        sys.path.insert(0, str(ROOT / helpers))

DEFAULT_OUT = ROOT / "docs" / "images" / "console-timeline.png"
USERNAME = "readme-viewer"
PASSWORD = "readme-viewer-passphrase"
WINDOW = (1280, 1100)


def main(argv: list[str] | None = None) -> int:
    """Load, serve, photograph; prints where the PNG went."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    parser.add_argument("--database-url", default=None, help="a superuser URL (default: dev stack)")
    args = parser.parse_args(argv)

    import psycopg
    from browser_harness import (
        add_user,
        chromium,
        console_server,
        hand_over_session,
        http_session,
        serve_command,
    )
    from console_data import load_company, richest_customer
    from selenium.webdriver.common.by import By

    from streams.devstack_env import settings_from_devstack

    from pg_data import fresh_database

    admin_url = args.database_url or settings_from_devstack().database_url
    if not admin_url:
        print("no database: start the dev stack (make up) or give --database-url")
        return 1
    with fresh_database(admin_url) as conninfo:
        load_company(conninfo)
        with psycopg.connect(conninfo) as conn:
            customer = richest_customer(conn)
        add_user(conninfo, USERNAME, "viewer", PASSWORD)
        log_path = Path(tempfile.mkdtemp(prefix="console-screenshot-")) / "console.log"
        with console_server(serve_command(conninfo), log_path) as server, chromium() as driver:
            _, jar = http_session(server.url, USERNAME, PASSWORD)
            hand_over_session(driver, server.url, jar)
            driver.set_window_size(*WINDOW)
            driver.get(f"{server.url}/customers/{customer.customer_id}")
            # The timeline itself (events → entries → batch → ERP) rather than the tables
            # above it; the page header scrolls away with it.
            driver.execute_script(
                "arguments[0].scrollIntoView({block: 'start'});",
                driver.find_element(By.ID, "timeline"),
            )
            args.out.parent.mkdir(parents=True, exist_ok=True)
            if not driver.save_screenshot(str(args.out)):
                print(f"Chromium could not save {args.out}")
                return 1
    print(f"{args.out}: the timeline of {customer.customer_id} ({customer.events} events)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
