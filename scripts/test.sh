#!/usr/bin/env bash
# The project's test command (README): set up (Dovecot, PostgreSQL, Chromium and chromedriver from
# Debian's packages, Cyrus IMAP unpacked from them, .venv with the project and test tools) and run
# the whole suite on 2 xdist workers. The tests start their own Dovecot, Cyrus and PostgreSQL
# instances on 127.0.0.1 (needs root), an SMTP server (aiosmtpd) and headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev --dovecot --cyrus --browser --postgres
exec .venv/bin/python -m pytest -n 2 -q -p no:cacheprovider "$@"
