#!/usr/bin/env bash
# Make Debian's headless Chromium and its WebDriver available for the console's browser
# tests (tests/browser/: selenium drives /usr/bin/chromium through /usr/bin/chromedriver).
# Idempotent:
#   - /usr/bin/chromium and /usr/bin/chromedriver both there: nothing to do;
#   - else, as root on Debian/Ubuntu: apt-get install `chromium` and `chromium-driver`
#     (apt-get update first only when the install fails: a fresh image has no lists);
#   - else: say what to do and exit 1.
# Called by `make fetch`; outside CI a failure only makes the browser tests skip.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver

report() {
    echo "chromium: $CHROMIUM ($("$CHROMIUM" --version 2>/dev/null | head -n 1 || echo 'version unknown'))"
    echo "chromedriver: $CHROMEDRIVER ($("$CHROMEDRIVER" --version 2>/dev/null | head -n 1 || echo 'version unknown'))"
}

if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
    report
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    echo "chromium: installing Debian's chromium and chromium-driver packages"
    if ! apt-get install -y --no-install-recommends chromium chromium-driver; then
        apt-get update
        apt-get install -y --no-install-recommends chromium chromium-driver
    fi
    if [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]; then
        report
        exit 0
    fi
    echo "chromium: the packages were installed but $CHROMIUM or $CHROMEDRIVER is missing" >&2
    exit 1
fi

cat >&2 <<'MSG'
Chromium and chromedriver are not installed, and this script installs them only as root
with apt-get. Install them, then run `make fetch` again:
  - Debian:  sudo apt-get install -y --no-install-recommends chromium chromium-driver
  - Ubuntu:  the chromium package there is a snap; install Google Chrome or Debian's
             packages, and link the binaries to /usr/bin/chromium and /usr/bin/chromedriver
             (or set REVLEDGER_CHROMIUM and REVLEDGER_CHROMEDRIVER for the browser tests).
MSG
exit 1
