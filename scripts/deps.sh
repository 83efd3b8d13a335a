#!/usr/bin/env bash
# Install what building (and, with `test`, testing) videosync needs on Debian/Ubuntu.
#
#   scripts/deps.sh          build deps: C toolchain, clang, ffmpeg dev libraries, Rust,
#                            Node.js (20.19 or newer) and the web app's npm packages
#                            (`npm ci` in web/, from its lock file)
#   scripts/deps.sh test     the same, plus PostgreSQL and Redis (server and client),
#                            nginx, Chromium for the browser tests, and the Python test
#                            tools (scripts/requirements-test.txt) in a virtual
#                            environment at $VIDEOSYNC_CACHE/venv
#   scripts/deps.sh bench    the system packages of test (no Python tools), plus the HTTP
#                            load tool oha (cargo install, into $VIDEOSYNC_CACHE/tools/bin)
#                            for the server benchmark
#
# Only missing packages are installed (checked with `dpkg -s`); `apt-get update`
# runs at most once, and only when something is missing. A second run does nothing.
set -euo pipefail

# The load tool of the server benchmark (`scripts/deps.sh bench`).
OHA_VERSION=1.16.0

mode="${1:-build}"
case "$mode" in
    build | test | bench) ;;
    -h | --help)
        sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "deps: unknown argument '$mode' (expected nothing, 'test' or 'bench')" >&2
        exit 2
        ;;
esac

build_pkgs=(
    build-essential pkg-config clang libclang-dev
    libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev libavdevice-dev
    libswscale-dev libswresample-dev ffmpeg
    curl ca-certificates nodejs
)
test_pkgs=(postgresql postgresql-client redis-server redis-tools python3 python3-venv nginx chromium fonts-noto-color-emoji)

pkgs=("${build_pkgs[@]}")
if [[ "$mode" == test || "$mode" == bench ]]; then
    pkgs+=("${test_pkgs[@]}")
fi

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "deps: need root to run '$*' and sudo is not installed" >&2
        exit 1
    fi
}

is_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'
}

if ! command -v dpkg >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: this script supports Debian/Ubuntu (dpkg + apt-get); install these by hand:" >&2
    echo "      ${pkgs[*]}" >&2
    exit 1
fi

missing=()
for p in "${pkgs[@]}"; do
    is_installed "$p" || missing+=("$p")
done

if ((${#missing[@]})); then
    echo "deps: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    echo "deps: system packages present (${#pkgs[@]} checked)"
fi

# Rust toolchain. rustup installs into ~/.cargo; the Makefile puts ~/.cargo/bin on PATH.
if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "deps: cargo not found; installing Rust with rustup (minimal profile) into ~/.cargo"
    curl https://sh.rustup.rs -sSf | sh -s -- -y --profile minimal
    # shellcheck disable=SC1091
    source "$HOME/.cargo/env"
    echo "deps: Rust installed; run 'source ~/.cargo/env' to use cargo in this shell"
fi

if command -v rustup >/dev/null 2>&1; then
    installed_components="$(rustup component list --installed 2>/dev/null || true)"
    for c in rustfmt clippy; do
        if ! grep -q "^$c" <<<"$installed_components"; then
            echo "deps: adding rustup component $c"
            rustup component add "$c"
        fi
    done
else
    for c in rustfmt clippy; do
        cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1 ||
            echo "deps: warning: cargo $c missing and rustup is not installed; add it by hand" >&2
    done
fi

# Node.js: the web app's build (Vite) needs 20.19 or newer. Debian's own
# package ships npm separately (NodeSource's includes it).
if ! command -v npm >/dev/null 2>&1; then
    echo "deps: installing npm"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
fi
node_version="$(node --version 2>/dev/null || echo v0)"
IFS=. read -r node_major node_minor _ <<<"${node_version#v}"
if ((node_major < 20 || (node_major == 20 && node_minor < 19))); then
    echo "deps: Node.js $node_version is too old; the web app's build needs 20.19 or newer" >&2
    echo "      (Debian 13 ships 20.19; on Debian 12 install Node.js 20 or 22 from NodeSource)" >&2
    exit 1
fi

# The web app's packages, exactly as its lock file says. The lock file is
# copied into node_modules once installed, so a second run compares two
# files and installs nothing.
web="$(cd "$(dirname "$0")/.." && pwd)/web"
if ! cmp -s "$web/package-lock.json" "$web/node_modules/.videosync-lock.json"; then
    echo "deps: installing the web app's packages (npm ci in $web)"
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
    cp "$web/package-lock.json" "$web/node_modules/.videosync-lock.json"
else
    echo "deps: web app packages present ($web/node_modules)"
fi

# Python test tools (schemathesis), pinned, in a virtual environment of the
# system Python. The requirements file is copied into the environment once it
# is installed, so a second run compares two files and installs nothing.
if [[ "$mode" == test ]]; then
    cache="${VIDEOSYNC_CACHE:-$HOME/.cache/videosync}"
    venv="$cache/venv"
    requirements="$(dirname "$0")/requirements-test.txt"
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "deps: making the Python virtual environment $venv"
        mkdir -p "$cache"
        /usr/bin/python3 -m venv "$venv"
    fi
    if ! cmp -s "$requirements" "$venv/requirements-test.txt"; then
        echo "deps: installing the Python test tools into $venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --requirement "$requirements"
        cp "$requirements" "$venv/requirements-test.txt"
    else
        echo "deps: Python test tools present ($venv)"
    fi
fi

# The server benchmark's load tool: a fixed version, built once into the cache.
if [[ "$mode" == bench ]]; then
    tools="${VIDEOSYNC_CACHE:-$HOME/.cache/videosync}/tools"
    if [[ -x "$tools/bin/oha" ]]; then
        echo "deps: $("$tools/bin/oha" --version) present in $tools/bin"
    else
        echo "deps: installing oha $OHA_VERSION into $tools (cargo install; a few minutes)"
        cargo install oha --version "$OHA_VERSION" --locked --root "$tools"
    fi
fi

echo "deps: ok ($(cargo --version))"
