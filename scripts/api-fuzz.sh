#!/usr/bin/env bash
# Fuzz the HTTP API with schemathesis, from the OpenAPI document the running server serves.
#
#   scripts/api-fuzz.sh [embedded|services|all]   (default: all)
#
# For each backend set: starts the built `videosync serve` on a fresh data directory (and,
# for `services`, a fresh Postgres schema, Redis namespace and S3 prefix) on a free loopback
# port, with cheap Argon2 and rate limits the fuzzer does not reach; signs up the instance
# admin and a second user, makes a public channel, a video and an invite so real ids exist;
# runs schemathesis (scripts/api-fuzz.toml) as the admin; stops the server with SIGTERM.
# Any finding, a server that does not start or one that does not stop cleanly fails the run
# (at the first backend set that fails; its server log and reports are kept).
#
# `services` needs VIDEOSYNC_TEST_POSTGRES_URL, _REDIS_URL and _S3_URL (source the env file
# of scripts/services.sh); `all` skips it when they are unset, unless VIDEOSYNC_REQUIRE_SERVICES=1.
#
# Settings (environment):
#   API_FUZZ_BIN       the binary (default: $CARGO_TARGET_DIR/debug/videosync, as `cargo test` builds it)
#   API_FUZZ_EXAMPLES  test cases per operation and phase (default 30)
#   API_FUZZ_SEED      the random seed (default: a new one, printed, so a failure can be replayed)
#   API_FUZZ_KEEP      keep the scratch directory (server logs, schemathesis reports) when set to 1
set -euo pipefail

mode="${1:-all}"
case "$mode" in
    embedded | services | all) ;;
    -h | --help)
        sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "api-fuzz: unknown argument '$mode' (expected embedded, services or all)" >&2
        exit 2
        ;;
esac

root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${VIDEOSYNC_CACHE:-$HOME/.cache/videosync}"
venv="$cache/venv"
bin="${API_FUZZ_BIN:-${CARGO_TARGET_DIR:-$cache/target}/debug/videosync}"
examples="${API_FUZZ_EXAMPLES:-30}"
seed="${API_FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"

[[ -x "$bin" ]] || {
    echo "api-fuzz: no binary at $bin (build it: cargo build -p videosync-server --bin videosync)" >&2
    exit 1
}
[[ -x "$venv/bin/schemathesis" ]] || {
    echo "api-fuzz: schemathesis is not installed in $venv (run scripts/deps.sh test)" >&2
    exit 1
}

scratch="$(mktemp -d "${TMPDIR:-/tmp}/videosync-fuzz.XXXXXX")"
server_pid=""
pg_schema=""

cleanup() {
    local rc=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    if [[ -n "$pg_schema" ]]; then
        psql -q "$VIDEOSYNC_TEST_POSTGRES_URL" -c "DROP SCHEMA IF EXISTS $pg_schema CASCADE" >/dev/null 2>&1 || true
    fi
    if ((rc != 0)) || [[ "${API_FUZZ_KEEP:-0}" == 1 ]]; then
        echo "api-fuzz: kept $scratch (server logs, schemathesis reports)"
    else
        rm -rf "$scratch"
    fi
}
trap cleanup EXIT

# One JSON field of standard input (`a.b` for nested ones).
field() {
    "$venv/bin/python" -c '
import json, sys
value = json.load(sys.stdin)
for part in sys.argv[1].split("."):
    value = value[part]
print(value)' "$1"
}

# api METHOD PATH [TOKEN] [BODY]: the JSON answer; fails on a status >= 400.
api() {
    local method="$1" path="$2" token="${3:-}" body="${4:-}"
    local args=(--silent --show-error --fail-with-body --max-time 30 -X "$method" -H 'Accept: application/json')
    [[ -n "$token" ]] && args+=(-H "Authorization: Bearer $token")
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data "$body")
    curl "${args[@]}" "$base$path" || {
        echo "api-fuzz: seeding failed: $method $path" >&2
        return 1
    }
}

# Starts the server with the environment in "$@" (NAME=VALUE ...); sets server_pid and base.
start_server() {
    local log="$1"
    shift
    # A clean environment for the server's settings: the configuration refuses
    # VIDEOSYNC_* variables it does not know, and the caller's must not leak in.
    local unset=() var
    for var in "${!VIDEOSYNC_@}"; do
        unset+=(-u "$var")
    done
    env "${unset[@]}" \
        NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" \
        VIDEOSYNC_ARGON2_MEMORY_KIB=64 VIDEOSYNC_ARGON2_ITERATIONS=1 \
        VIDEOSYNC_LOGIN_PER_IP_PER_MINUTE=1000000 \
        VIDEOSYNC_LOGIN_PER_ACCOUNT_PER_MINUTE=1000000 \
        VIDEOSYNC_REGISTER_PER_IP_PER_HOUR=1000000 \
        VIDEOSYNC_WORKERS=0 \
        "$@" \
        "$bin" serve --addr 127.0.0.1:0 >"$log" 2>&1 &
    server_pid=$!
    local addr="" deadline=$((SECONDS + 120))
    while [[ -z "$addr" ]]; do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "api-fuzz: the server exited at start; its log:" >&2
            cat "$log" >&2
            server_pid=""
            return 1
        fi
        if ((SECONDS > deadline)); then
            echo "api-fuzz: the server did not listen within 120 s; its log:" >&2
            cat "$log" >&2
            return 1
        fi
        sleep 0.2
        addr="$(grep -o 'listening on http://[0-9.:]*' "$log" | head -n1 | sed 's|.*http://||')" || true
    done
    base="http://$addr"
}

# Stops the server with SIGTERM; fails unless it exits 0 within 30 s.
stop_server() {
    local log="$1" rc=0
    kill -TERM "$server_pid"
    local deadline=$((SECONDS + 30))
    while kill -0 "$server_pid" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "api-fuzz: the server did not stop within 30 s of SIGTERM" >&2
            return 1
        fi
        sleep 0.2
    done
    wait "$server_pid" || rc=$?
    server_pid=""
    if ((rc != 0)); then
        echo "api-fuzz: the server exited with status $rc after SIGTERM; its log:" >&2
        tail -n 50 "$log" >&2
        return 1
    fi
    # A 500 is logged with its cause: show any, the fuzzer's report names the request.
    if grep -q 'internal error' "$log"; then
        echo "api-fuzz: the server logged internal errors:" >&2
        grep 'internal error' "$log" | head -n 20 >&2
        return 1
    fi
}

# Makes what the fuzzer needs ids of; exports them for scripts/api-fuzz.toml.
seed_data() {
    local admin other
    admin="$(api POST /api/v1/auth/register "" '{"username":"fuzz-admin","password":"fuzz-admin-password"}')"
    API_FUZZ_TOKEN="$(field access_token <<<"$admin")"
    API_FUZZ_REFRESH="$(field refresh_token <<<"$admin")"
    other="$(api POST /api/v1/auth/register "" '{"username":"fuzz-member","password":"fuzz-member-password"}')"
    local other_token
    other_token="$(field access_token <<<"$other")"
    API_FUZZ_USER="$(field user.id <<<"$other")"
    API_FUZZ_CHANNEL="$(api POST /api/v1/channels "$API_FUZZ_TOKEN" \
        '{"name":"Fuzz public","visibility":"public","allow_guests":true}' | field id)"
    # A second channel for the operation that deletes one, so the rest keep theirs.
    API_FUZZ_DOOMED_CHANNEL="$(api POST /api/v1/channels "$API_FUZZ_TOKEN" \
        '{"name":"Fuzz doomed","visibility":"private"}' | field id)"
    API_FUZZ_VIDEO="$(api POST "/api/v1/channels/$API_FUZZ_CHANNEL/videos" "$API_FUZZ_TOKEN" \
        '{"title":"Fuzz video","description":"made for the fuzzer","tags":["fuzz"]}' | field id)"
    API_FUZZ_DOOMED_VIDEO="$(api POST "/api/v1/channels/$API_FUZZ_CHANNEL/videos" "$API_FUZZ_TOKEN" \
        '{"title":"Fuzz doomed video"}' | field id)"
    API_FUZZ_INVITE="$(api POST "/api/v1/channels/$API_FUZZ_CHANNEL/invites" "$API_FUZZ_TOKEN" \
        '{"role":"viewer","max_uses":1000}' | field code)"
    api POST "/api/v1/invites/$API_FUZZ_INVITE/accept" "$other_token" '{}' >/dev/null
    export API_FUZZ_TOKEN API_FUZZ_REFRESH API_FUZZ_USER API_FUZZ_CHANNEL API_FUZZ_DOOMED_CHANNEL \
        API_FUZZ_VIDEO API_FUZZ_DOOMED_VIDEO API_FUZZ_INVITE
}

# fuzz NAME NAME=VALUE...: one server on the backends the variables choose, fuzzed.
fuzz() {
    local name="$1"
    shift
    local dir="$scratch/$name"
    mkdir -p "$dir"
    echo "== api-fuzz ($name): starting $bin"
    start_server "$dir/server.log" VIDEOSYNC_DATA_DIR="$dir/data" "$@"
    echo "api-fuzz ($name): serving on $base; seeding"
    seed_data
    echo "api-fuzz ($name): schemathesis $("$venv/bin/schemathesis" --version | sed 's/.*version //'), seed $seed, $examples examples per operation"
    local started=$SECONDS rc=0 attempt
    for attempt in 1 2; do
        rc=0
        rm -rf "$dir/report"
        # Run from the scratch directory: schemathesis writes its caches to the working directory.
        (
            cd "$dir"
            "$venv/bin/schemathesis" --config-file "$root/scripts/api-fuzz.toml" run \
                "$base/api/v1/openapi.json" \
                --max-examples "$examples" --seed "$seed" \
                --report junit --report-dir "$dir/report" \
                --no-color
        ) 2>&1 | tee "$dir/schemathesis.log" || rc=$?
        ((${PIPESTATUS[0]:-0} != 0)) && rc=1
        # schemathesis itself sometimes fails while it builds a test case, before any
        # request of that case is sent: CPython's "SystemError: AST constructor
        # recursion depth mismatch", or Hypothesis reporting its own lambda-source
        # cache, shared by the two workers' threads, as a "FlakyFailure" inside
        # example generation. Neither is a finding about the server. Such a run
        # alone is repeated once with another seed; anything else (a failure, a
        # timeout, a refused connection, any other error) fails at once.
        if ((rc != 0 && attempt == 1)) && internal_crash_only "$dir"; then
            echo "api-fuzz ($name): schemathesis crashed internally (not a server finding); running again with another seed" >&2
            seed="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"
            continue
        fi
        break
    done
    echo "api-fuzz ($name): schemathesis took $((SECONDS - started)) s"
    stop_server "$dir/server.log" || rc=1
    if ((rc != 0)); then
        echo "api-fuzz ($name): FAILED (replay with API_FUZZ_SEED=$seed; server log: $dir/server.log)" >&2
        exit 1
    fi
    echo "api-fuzz ($name): no findings"
}

# Whether the last run's only problems were failures of schemathesis itself: no
# failure, and every block of its ERRORS section a crash while generating a case
# (raised from schemathesis's example generation, or a CPython SystemError or
# RecursionError).
internal_crash_only() {
    local out="$1/schemathesis.log"
    grep -q "Failures:" "$out" && return 1
    awk '
        /^=+ ERRORS =+$/ { inside = 1; next }
        inside && /^=+ .* =+$/ { inside = 0 }
        !inside { next }
        /^_+ .* _+$/ { blocks++; current = blocks; next }
        current && /SystemError: AST constructor recursion depth mismatch|RecursionError|schemathesis\/generation\/hypothesis\/examples\.py/ {
            internal[current] = 1
        }
        END {
            if (blocks == 0) exit 1
            for (b = 1; b <= blocks; b++) if (!(b in internal)) exit 1
            exit 0
        }
    ' "$out"
}

services_available() {
    local var missing=()
    for var in VIDEOSYNC_TEST_POSTGRES_URL VIDEOSYNC_TEST_REDIS_URL VIDEOSYNC_TEST_S3_URL; do
        [[ -n "${!var:-}" ]] || missing+=("$var")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ "$mode" == services || "${VIDEOSYNC_REQUIRE_SERVICES:-}" == 1 ]]; then
        echo "api-fuzz: ${missing[*]} not set: start the services (scripts/services.sh) and source their env file" >&2
        exit 1
    fi
    echo "api-fuzz: skipping the services run (${missing[*]} not set)"
    return 1
}

fuzz_services() {
    local tag
    tag="$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"
    # A schema of the test pattern (vs_t_*), which scripts/services.sh also clears.
    pg_schema="vs_t_fuzz$tag"
    psql -q -v ON_ERROR_STOP=1 "$VIDEOSYNC_TEST_POSTGRES_URL" -c "CREATE SCHEMA $pg_schema" >/dev/null
    local db="$VIDEOSYNC_TEST_POSTGRES_URL"
    [[ "$db" == *\?* ]] && db="$db&" || db="$db?"
    db="${db}options=-c%20search_path%3D$pg_schema"
    # The bucket of the test S3 URL, with a prefix of this run's own.
    local s3="$VIDEOSYNC_TEST_S3_URL" s3_path s3_query=""
    s3_path="${s3%%\?*}"
    [[ "$s3" == *\?* ]] && s3_query="?${s3#*\?}"
    local jwt
    jwt="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
    fuzz services \
        VIDEOSYNC_DATABASE_URL="$db" \
        VIDEOSYNC_STORE_URL="${s3_path%/}/fuzz-$tag$s3_query" \
        VIDEOSYNC_QUEUE_URL="$VIDEOSYNC_TEST_REDIS_URL" \
        VIDEOSYNC_BUS_URL="$VIDEOSYNC_TEST_REDIS_URL" \
        VIDEOSYNC_LOG_URL="$VIDEOSYNC_TEST_REDIS_URL" \
        VIDEOSYNC_KV_URL="$VIDEOSYNC_TEST_REDIS_URL" \
        VIDEOSYNC_NAMESPACE="fuzz$tag" \
        VIDEOSYNC_JWT_SECRET="$jwt"
}

# Each step exits on failure (set -e; the trap stops the server and keeps the scratch directory).
if [[ "$mode" != services ]]; then
    fuzz embedded
fi
if [[ "$mode" != embedded ]] && services_available; then
    fuzz_services
fi
