# shellcheck shell=bash
# Shared environment setup for scripts/test and scripts/demo. Source it, don't run it.
#
# Sourcing cds to the repository root and defines the steps; each script runs
# the ones it needs, then _tether_activate (.venv/bin first on PATH):
#   scripts/test: a C compiler, .venv with an editable install of tether and its
#     [test], [bench] and [fuzz] extras, node_modules matching package-lock.json,
#     Debian's redis-server and chromium;
#   scripts/demo: .venv with tether alone (no runtime dependency), and Node.js only
#     if the build could not vendor socket.io-client's browser bundle.
# Each step is cheap when nothing changed.
#
# Knobs: PYTHON (interpreter that creates the venv, default python3).

_tether_step() { printf '\n==> %s\n' "$*"; }
_tether_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "${BASH_SOURCE[0]}")/.." || _tether_die "cannot cd to the repository root"

# _tether_setup_python [EXTRAS]: .venv with an editable install of tether[EXTRAS]
# (comma-separated, e.g. test,bench,fuzz; none for tether alone).
_tether_setup_python() {
    local python="${PYTHON:-python3}" stamp=.venv/.tether-stamp extras="${1:-}"
    if [[ ! -x .venv/bin/python ]]; then
        command -v "$python" >/dev/null 2>&1 || _tether_die "$python not found (set PYTHON=...)"
        "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
            || _tether_die "$python is older than 3.10"
        _tether_step "creating .venv with $python ($("$python" --version 2>&1))"
        rm -rf .venv
        "$python" -m venv .venv || _tether_die "'$python -m venv .venv' failed"
    fi
    # The stamp records where the editable install points, so a moved checkout
    # reinstalls, and which extras it has: the demo's install lacks the test's.
    # setup.py, _speedups.c and _sendnow.c count too: the editable install compiles the C
    # speedups in place, so a changed C source needs a rebuild.
    if [[ -f "$stamp" && "$stamp" -nt pyproject.toml && "$stamp" -nt setup.py
          && "$stamp" -nt src/tether/protocol/_speedups.c && "$stamp" -nt src/tether/_sendnow.c
          && "$(sed -n 1p "$stamp")" == "$PWD" ]] && _tether_has_extras "$(sed -n 2p "$stamp")" "$extras"; then
        return 0
    fi
    local target=.
    [[ -n "$extras" ]] && target=".[$extras]"
    _tether_step "pip install -e '$target'"
    .venv/bin/python -m pip install -q -e "$target" || _tether_die "pip install failed"
    printf '%s\n%s\n' "$PWD" "$extras" >"$stamp"
}

# _tether_has_extras HAVE WANT: every comma-separated extra of WANT is in HAVE.
_tether_has_extras() {
    local extra
    for extra in ${2//,/ }; do
        [[ ",$1," == *",$extra,"* ]] || return 1
    done
}

_tether_setup_npm() {
    command -v npm >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || _tether_die "npm not found and no apt-get to install it"
    _tether_step "apt-get install nodejs npm"
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null \
        || _tether_die "could not install nodejs and npm"
}

_tether_setup_node() {
    [[ -f package-lock.json ]] || return 0
    if [[ -d node_modules && node_modules -nt package-lock.json ]]; then
        return 0
    fi
    _tether_setup_npm
    _tether_step "npm ci"
    npm ci --no-audit --no-fund || _tether_die "npm ci failed"
    touch node_modules  # npm may keep the old directory; mark it as current
}

# The C speedups and bench/loadgen.c need a C compiler; the test run requires
# the speedups to build (TETHER_REQUIRE_SPEEDUPS), so install one if missing.
_tether_setup_compiler() {
    command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 && return 0
    command -v apt-get >/dev/null 2>&1 || { printf 'warning: no C compiler\n' >&2; return 0; }
    _tether_step "apt-get install gcc"
    apt-get update -qq && apt-get install -y -qq gcc >/dev/null \
        || printf 'warning: could not install gcc\n' >&2
}

# Debian packages the tests run as real peers: redis-server (the scale-out
# tests start their own instance), chromium (the browser tests drive it with
# playwright-core; nothing is downloaded by the test tools themselves), and
# haproxy and nginx (the load-balancer recipes of docs/deployment.md run in
# front of tether processes; each test starts its own, on loopback), and
# tinyproxy (the HTTP proxy the clients' proxy tests go through).
_tether_setup_debian() {
    local missing=() package
    for package in "$@"; do
        case "$package" in
            redis-server) command -v redis-server >/dev/null 2>&1 || missing+=(redis-server) ;;
            chromium) command -v chromium >/dev/null 2>&1 || missing+=(chromium) ;;
            haproxy) command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy) ;;
            nginx) command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || missing+=(nginx) ;;
            tinyproxy) command -v tinyproxy >/dev/null 2>&1 || [[ -x /usr/bin/tinyproxy ]] || missing+=(tinyproxy) ;;
        esac
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null 2>&1 \
        || _tether_die "missing ${missing[*]} and no apt-get to install them"
    _tether_step "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
        || _tether_die "could not install ${missing[*]}"
}

# The chat demo's browser client: the install's build (setup.py) copies it into
# src/tether/demo/vendor from node_modules or fetches it with npm pack. Only if
# it could not (no npm) is npm installed and the install repeated.
_tether_setup_demo_client() {
    local bundle=socket.io-client/socket.io.esm.min.js
    [[ -f src/tether/demo/vendor/$bundle || -f node_modules/socket.io-client/dist/${bundle#*/} ]] \
        && return 0
    _tether_setup_npm
    rm -f .venv/.tether-stamp
    _tether_setup_python "$@"
}

_tether_activate() {
    export VIRTUAL_ENV="$PWD/.venv"
    export PATH="$VIRTUAL_ENV/bin:$PATH"
}
