#!/usr/bin/env bash
# Set up a fresh machine for mailmigrate: Python venv with the project (and, with --dev, the test
# tools); with --dovecot also Dovecot from Debian's packages (needs root; the tests start their
# own instances, never the system one); with --cyrus also Cyrus IMAP 3.6 unpacked (not installed)
# under /opt/mailmigrate-cyrus/root, see setup_cyrus below; with --browser also Chromium and its
# ChromeDriver from Debian's packages (tests/test_browser.py; nothing downloads a browser); with
# --postgres also the PostgreSQL server from Debian's packages (postgresql-15 on Debian 12; the
# tests run their own clusters, see tests/servers/postgres.py: no system cluster is created or
# started). Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."
dev=0; dovecot=0; cyrus=0; browser=0; postgres=0
for a in "$@"; do
    case "$a" in
        --dev) dev=1 ;;
        --dovecot) dovecot=1 ;;
        --cyrus) cyrus=1 ;;
        --browser) browser=1 ;;
        --postgres) postgres=1 ;;
        *) echo "usage: scripts/setup.sh [--dev] [--dovecot] [--cyrus] [--browser] [--postgres]" >&2; exit 2 ;;
    esac
done

apt_pkgs=()
if [ "$dovecot" = 1 ]; then
    command -v /usr/sbin/dovecot >/dev/null 2>&1 && [ -e /usr/lib/dovecot/imap ] || apt_pkgs+=(dovecot-core dovecot-imapd)
    command -v openssl >/dev/null 2>&1 || apt_pkgs+=(openssl)
    [ -e /etc/ssl/certs/ca-certificates.crt ] || apt_pkgs+=(ca-certificates)
    [ -x /usr/bin/time ] || apt_pkgs+=(time)
fi
if [ "$browser" = 1 ]; then
    [ -x /usr/bin/chromium ] || apt_pkgs+=(chromium)
    [ -x /usr/bin/chromedriver ] || apt_pkgs+=(chromium-driver)
fi
if [ "$postgres" = 1 ]; then
    # postgresql-common would create and start a "main" cluster: create_main_cluster = false
    # stops the first, policy-rc.d (below) the second.
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        apt_pkgs+=(postgresql)
        if [ "$(id -u)" = 0 ]; then  # (not root: refused below, before anything is installed)
            mkdir -p /etc/postgresql-common/createcluster.d
            echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/mailmigrate.conf
        fi
    fi
fi
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_pkgs+=(python3-venv)
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root to install: ${apt_pkgs[*]}" >&2; exit 2
    fi
    echo "== apt-get install ${apt_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting a system Dovecot or PostgreSQL: tests run their own instances.
    policy_created=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; policy_created=1
    fi
    apt-get update -qq </dev/null
    apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" </dev/null
    if [ "$policy_created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# --- Cyrus IMAP (--cyrus) ---------------------------------------------------------------------
# Debian 12's cyrus-imapd conflicts with dovecot-imapd as an installed package, so it is never
# apt-get installed: cyrus-imapd, cyrus-common, sasl2-bin (saslpasswd2 for the test sasldb) and
# every library they need that this machine lacks are downloaded and unpacked with `dpkg -x` into
# one root. tests/servers/cyrus.py runs the binaries from there with LD_LIBRARY_PATH (and
# SASL_PATH) pointing into it. Skipped when that root is complete and its binaries load.
cyrus_root=${MM_CYRUS_ROOT:-/opt/mailmigrate-cyrus/root}
cyrus_bins=(usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/lib/cyrus/bin/ctl_cyrusdb
            usr/lib/cyrus/bin/idled usr/sbin/saslpasswd2)

cyrus_libpath() {  # the unpacked library folders, colon-separated
    local d out=""
    for d in "$1"/usr/lib/*-linux-gnu* "$1"/lib/*-linux-gnu*; do
        [ -d "$d" ] && out="$out${out:+:}$d"
    done
    echo "$out"
}

cyrus_works() {  # $1: root. True when every binary the tests use is there and finds its libraries.
    local b lp
    [ -e "$1/.mm-complete" ] || return 1
    lp=$(cyrus_libpath "$1")
    for b in "${cyrus_bins[@]}"; do
        [ -x "$1/$b" ] || return 1
        if LD_LIBRARY_PATH="$lp" ldd "$1/$b" 2>&1 | grep -q 'not found'; then return 1; fi
    done
    LD_LIBRARY_PATH="$lp" "$1/usr/lib/cyrus/bin/cyr_buildinfo" </dev/null >/dev/null 2>&1
}

cyrus_packages() {  # cyrus-imapd cyrus-common sasl2-bin + the libraries (Section libs) not installed
    local -A installed=() seen=()
    local pkg st prov a sec deps grp alts q
    while IFS=$'\t' read -r pkg st prov; do
        [ "${st:0:2}" = ii ] || continue
        installed[$pkg]=1
        for a in $(echo "$prov" | sed 's/([^)]*)//g; s/,/ /g'); do installed[$a]=1; done
    done < <(dpkg-query -W -f='${Package}\t${db:Status-Abbrev}\t${Provides}\n')
    local frontier=(cyrus-imapd cyrus-common sasl2-bin) next out=() top=1
    # One apt-cache call per level of the dependency tree (each call reads all lists: ~1 s).
    while [ "${#frontier[@]}" -gt 0 ]; do
        next=()
        while IFS=$'\t' read -r pkg sec deps; do
            [ -n "$pkg" ] && [ -z "${seen[$pkg]:-}" ] || continue
            # Follow libraries only: the MTA, perl, debconf, adduser... are not needed to run
            # master/imapd from the unpacked tree.
            case "$top:$sec" in 1:* | *:libs | *:*/libs) ;; *) continue ;; esac
            seen[$pkg]=1; out+=("$pkg")
            while IFS= read -r grp; do
                [ -n "${grp// /}" ] || continue
                IFS='|' read -ra alts <<<"$grp"
                q=""
                for a in "${alts[@]}"; do
                    a=$(echo "$a" | sed 's/([^)]*)//; s/:any//; s/[[:space:]]//g')
                    if [ -n "${installed[$a]:-}" ]; then q=1; break; fi
                done
                [ -n "$q" ] && continue
                a=$(echo "${alts[0]}" | sed 's/([^)]*)//; s/:any//; s/[[:space:]]//g')
                [ -n "${seen[$a]:-}" ] || next+=("$a")
            done < <(echo "$deps" | tr ',' '\n')
        done < <(apt-cache show --no-all-versions "${frontier[@]}" 2>/dev/null |
            awk -F': ' '/^Package: /{p=$2} /^Section: /{s=$2} /^(Pre-)?Depends: /{d=d (d?",":"") $2}
                       /^$/{if(p)print p "\t" s "\t" d; p=s=d=""} END{if(p)print p "\t" s "\t" d}' || true)
        frontier=("${next[@]}"); top=0
    done
    echo "${out[@]}"
}

setup_cyrus() {
    if [ "$(id -u)" != 0 ]; then
        echo "setup: --cyrus needs root (apt-get download, the cyrus user)" >&2; exit 2
    fi
    # Cyrus drops privileges to the compiled-in user "cyrus".
    if ! getent passwd cyrus >/dev/null; then
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin cyrus
    fi
    if cyrus_works "$cyrus_root"; then
        return 0
    fi
    echo "== unpacking Cyrus IMAP into $cyrus_root"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show --no-all-versions cyrus-imapd >/dev/null 2>&1; then
        apt-get update -qq </dev/null
    fi
    local pkgs dl new f
    pkgs=$(cyrus_packages)
    echo "   packages: $pkgs"
    dl=$(mktemp -d /tmp/mm-cyrus-debs.XXXXXX)
    # apt-get download as root writes through _apt when it can reach the folder.
    chmod 755 "$dl"; chown _apt "$dl" 2>/dev/null || true
    # shellcheck disable=SC2086 # word splitting wanted
    if ! (cd "$dl" && apt-get download -qq $pkgs </dev/null); then
        # Stale package lists name versions the mirror no longer has: refresh once and retry.
        apt-get update -qq </dev/null
        pkgs=$(cyrus_packages)
        (cd "$dl" && rm -f ./*.deb && apt-get download -qq $pkgs </dev/null)
    fi
    new="$cyrus_root.new.$$"
    rm -rf "$new"; mkdir -p "$new"
    for f in "$dl"/*.deb; do dpkg -x "$f" "$new"; done
    rm -rf "$dl"
    ls "$new"/usr/lib/cyrus/bin/master >/dev/null
    touch "$new/.mm-complete"
    printf '%s\n' $pkgs > "$new/.mm-packages"
    # Every folder must be reachable by the cyrus user (dpkg -x keeps the packages' modes).
    chmod 755 "$new"
    rm -rf "$cyrus_root"
    mv "$new" "$cyrus_root"
    if ! cyrus_works "$cyrus_root"; then
        echo "setup: Cyrus unpacked into $cyrus_root but its binaries do not load:" >&2
        LD_LIBRARY_PATH=$(cyrus_libpath "$cyrus_root") ldd "$cyrus_root/usr/lib/cyrus/bin/imapd" | grep 'not found' >&2 || true
        exit 1
    fi
}
if [ "$cyrus" = 1 ]; then
    mkdir -p "$(dirname "$cyrus_root")"
    # One setup at a time per root (2 sessions on one machine).
    exec 9>"$(dirname "$cyrus_root")/.setup.lock"
    flock 9
    setup_cyrus
    exec 9>&-
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
        .venv/bin/python -m pip install --quiet -e '.[dev,postgres]' </dev/null
    else
        .venv/bin/python -m pip install --quiet -e . </dev/null
    fi
    echo "$want" > .venv/.installed
fi
# Byte-compile our own modules (pip does it for installed packages, not for an editable
# checkout): where PYTHONDONTWRITEBYTECODE is set, every run would otherwise re-compile them,
# 30 ms of a 0.2 s re-run. Quick when nothing changed.
.venv/bin/python -m compileall -q cli.py migrate >/dev/null
