#!/usr/bin/env bash
# The main job on the embedded default: migrate the bundled sample mailbox (samples/demo, a
# Maildir) into demo-output/Maildir with no server, and print the summary. Run it twice: the
# second run copies nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/mailmigrate demo --target-maildir demo-output/Maildir "$@"
