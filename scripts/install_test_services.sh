#!/usr/bin/env bash
# What only the test suite needs, beside lrfind's own install (scripts/install.sh): Debian's
# PostgreSQL server (tests/test_study_postgres.py starts a throwaway one on 127.0.0.1) and Debian's
# chromium (tests/test_report_browser.py), plus the playwright package in .venv. playwright only
# drives the Debian chromium: never `playwright install` (its own browser download).
# Idempotent: apt runs only when initdb or chromium is missing, pip only when playwright is.
set -euo pipefail
cd "$(dirname "$0")/.."

have_initdb() { command -v initdb >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
missing=()
have_initdb || missing+=(postgresql)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
if ! .venv/bin/python -c "import playwright.sync_api" 2>/dev/null; then
    # the torch pin keeps pip from swapping the CPU build of torch for a CUDA one
    .venv/bin/pip install -q --disable-pip-version-check -c <(echo torch==2.13.0) playwright
fi
echo "test services ready: $(command -v chromium || echo 'chromium MISSING'), initdb $(command -v initdb || compgen -G '/usr/lib/postgresql/*/bin/initdb' | tail -1)"
