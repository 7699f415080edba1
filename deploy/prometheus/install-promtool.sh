#!/usr/bin/env bash
# Make `promtool` available (tests/unit/test_prometheus_rules.py checks the Prometheus
# config and alert rules with it). Idempotent:
#   - promtool already on PATH: nothing to do;
#   - else, as root on Debian/Ubuntu: install Debian's `prometheus` package, which ships
#     /usr/bin/promtool (its service is not started in containers: policy-rc.d / no init);
#   - else: say what to do and exit 1.
# Called by `make fetch`; outside CI a failure only makes those tests skip.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    echo "promtool: $(command -v promtool) ($(promtool --version 2>&1 | head -n 1))"
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    echo "promtool: installing Debian's prometheus package (it ships promtool)"
    if ! apt-get install -y --no-install-recommends prometheus; then
        # A fresh image has no package lists yet.
        apt-get update
        apt-get install -y --no-install-recommends prometheus
    fi
    if command -v promtool >/dev/null 2>&1; then
        echo "promtool: $(command -v promtool) ($(promtool --version 2>&1 | head -n 1))"
        exit 0
    fi
    echo "promtool: the prometheus package was installed but promtool is not on PATH" >&2
    exit 1
fi

cat >&2 <<'MSG'
promtool is not installed, and this script installs it only as root with apt-get.
Install it one of these ways, then run `make fetch` again:
  - Debian/Ubuntu:  sudo apt-get install -y --no-install-recommends prometheus
  - macOS:          brew install prometheus
  - anywhere:       the prometheus-*.tar.gz of https://prometheus.io/download/ holds a
                    promtool binary; put it on PATH.
MSG
exit 1
