#!/usr/bin/env bash
# Set up a fresh machine for mailmigrate: Python venv with the project (and, with --dev, the test
# tools); with --dovecot also Dovecot from Debian's packages (needs root; the tests start their
# own instances, never the system one). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; dovecot=0
for a in "$@"; do
    case "$a" in
        --dev) dev=1 ;;
        --dovecot) dovecot=1 ;;
        *) echo "usage: scripts/setup.sh [--dev] [--dovecot]" >&2; exit 2 ;;
    esac
done

apt_pkgs=()
if [ "$dovecot" = 1 ]; then
    command -v /usr/sbin/dovecot >/dev/null 2>&1 && [ -e /usr/lib/dovecot/imap ] || apt_pkgs+=(dovecot-core dovecot-imapd)
    command -v openssl >/dev/null 2>&1 || apt_pkgs+=(openssl)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || apt_pkgs+=(ca-certificates)
    [ -x /usr/bin/time ] || apt_pkgs+=(time)
fi
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_pkgs+=(python3-venv)
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install: ${apt_pkgs[*]}" >&2; exit 2
    fi
    echo "== apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting a system Dovecot: tests run their own instances.
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_created=1
    fi
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" </dev/null
    if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

if [ ! -x .venv/bin/python ]; then
    py=$(command -v python3.11 || command -v python3)
    echo "== creating .venv with $("$py" --version 2>&1)"
    "$py" -m venv .venv
    rm -f .venv/.installed
fi
want="$(cat pyproject.toml | sha1sum | cut -c1-12)-$dev"
if [ "$(cat .venv/.installed 2>/dev/null)" != "$want" ]; then
    echo "== installing mailmigrate into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip </dev/null
    if [ "$dev" = 1 ]; then
        .venv/bin/python -m pip install --quiet -e '.[dev]' </dev/null
    else
        .venv/bin/python -m pip install --quiet -e . </dev/null
    fi
    echo "$want" > .venv/.installed
fi
# Byte-compile our own modules (pip does it for installed packages, not for an editable
# checkout): where PYTHONDONTWRITEBYTECODE is set, every run would otherwise re-compile them,
# 30 ms of a 0.2 s re-run. Quick when nothing changed.
.venv/bin/python -m compileall -q cli.py migrate >/dev/null
