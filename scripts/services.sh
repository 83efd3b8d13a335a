#!/usr/bin/env bash
# Start (or reuse) the services the videosync test suite talks to, all on loopback:
#
#   PostgreSQL  127.0.0.1:5432   database videosync_test, user postgres, no password
#   Redis       127.0.0.1:6379
#   Garage (S3) 127.0.0.1:3900   bucket videosync-test, region garage (rpc :3901, admin :3903)
#
#   scripts/services.sh [start]   ensure all three run, then write $VIDEOSYNC_CACHE/services.env
#   scripts/services.sh stop      stop what this script started (never a service it found running)
#   scripts/services.sh env       print the path of the env file
#
# A service already answering on its port is reused. A missing package is installed with
# apt-get; the Garage binary is built once with `cargo install` into $VIDEOSYNC_CACHE/garage.
# Everything is idempotent: a second `start` reuses what exists and takes a few seconds.
set -euo pipefail

VIDEOSYNC_CACHE="${VIDEOSYNC_CACHE:-$HOME/.cache/videosync}"
GARAGE_VERSION="${GARAGE_VERSION:-2.5.0}"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_DB=videosync_test
PG_CLUSTER=main          # Debian cluster name, used only when we must create or start one
REDIS_HOST=127.0.0.1
REDIS_PORT=6379
S3_ENDPOINT=http://127.0.0.1:3900
S3_REGION=garage
S3_BUCKET=videosync-test
GARAGE_RPC_ADDR=127.0.0.1:3901
GARAGE_S3_ADDR=127.0.0.1:3900
GARAGE_ADMIN_ADDR=127.0.0.1:3903

# Fixed test credentials (loopback only), so every run and every machine gets the same key.
# Garage wants "GK" + 24 hex digits for the id and 64 hex digits for the secret.
S3_KEY_ID=GK766964656f73796e63746573
S3_KEY_SECRET=5a67d67da67418bd9a53285c6b8a982b83737d9996bc2fefa1c2501ee6d8eba7
S3_KEY_NAME=videosync-test

RUN_DIR="$VIDEOSYNC_CACHE/run"      # pid files and "started by us" markers
LOG_DIR="$VIDEOSYNC_CACHE/logs"
ENV_FILE="$VIDEOSYNC_CACHE/services.env"
GARAGE_BIN="$VIDEOSYNC_CACHE/garage/bin/garage"
GARAGE_DIR="$VIDEOSYNC_CACHE/garage-data"
GARAGE_CONF="$GARAGE_DIR/garage.toml"
GARAGE_PID="$RUN_DIR/garage.pid"
REDIS_PID="$RUN_DIR/redis.pid"

log() { printf '%s\n' "$*"; }
die() {
    printf 'services: error: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [[ $EUID -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' and sudo is not installed"
    fi
}

# Install the given Debian packages unless they are already installed.
ensure_pkgs() {
    local missing=() p
    for p in "$@"; do
        dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and apt-get is not available"
    log "services: installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds or SECONDS pass.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

# ---------------------------------------------------------------- PostgreSQL

pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

# Run SQL as the postgres superuser: over TCP without a password when that works,
# else over the local socket with peer authentication (fresh Debian defaults).
pg_sql() {
    if psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
        psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atq -v ON_ERROR_STOP=1 -c "$1"
    else
        as_root runuser -u postgres -- psql -p "$PG_PORT" -d postgres -Atq -v ON_ERROR_STOP=1 -c "$1"
    fi
}

# The test URL carries no password. Debian's default pg_hba.conf asks for one over TCP, so
# on a cluster this script set up (it installed the server or created the cluster), allow the
# postgres user into the test database from loopback. A cluster it found running is never
# edited: the error says what to allow by hand.
pg_allow_test_login() {
    psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$PG_DB" -Atqc 'select 1' >/dev/null 2>&1 && return 0
    [[ -f "$RUN_DIR/postgres.managed" ]] ||
        die "postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB refuses a password-less login, and this PostgreSQL was not set up by this script, so its pg_hba.conf is left alone; add 'host $PG_DB postgres 127.0.0.1/32 trust' (and ::1/128) to it and reload, or stop that server so the script can run its own"
    local hba
    hba="$(pg_sql 'show hba_file')" || die "cannot ask PostgreSQL for its hba_file"
    [[ -f "$hba" ]] || die "postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB refuses a password-less login and $hba is not a local file; allow it (trust) by hand"
    log "services: adding trust for postgres@$PG_DB from loopback to $hba"
    as_root sed -i "1i # videosync: password-less test database on loopback (scripts/services.sh)\\
host    $PG_DB    postgres    127.0.0.1/32    trust\\
host    $PG_DB    postgres    ::1/128         trust" "$hba"
    pg_sql 'select pg_reload_conf()' >/dev/null
    wait_for 5 psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$PG_DB" -Atqc 'select 1' ||
        die "postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB still refuses a password-less login; check $hba"
}

start_postgres() {
    local how=reused
    if ! command -v pg_isready >/dev/null 2>&1; then
        ensure_pkgs postgresql-client
    fi
    if ! pg_up; then
        dpkg -s postgresql 2>/dev/null | grep -q '^Status: install ok installed' ||
            touch "$RUN_DIR/postgres.managed"
        ensure_pkgs postgresql postgresql-client
        local ver
        # shellcheck disable=SC2012 # version directories are plain numbers
        ver="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n1)" || true
        [[ -n "$ver" ]] || die "PostgreSQL is installed but /usr/lib/postgresql is empty"
        if [[ ! -d "/etc/postgresql/$ver/$PG_CLUSTER" ]]; then
            log "services: creating PostgreSQL $ver cluster '$PG_CLUSTER' on port $PG_PORT"
            as_root pg_createcluster --port "$PG_PORT" "$ver" "$PG_CLUSTER" >/dev/null
            touch "$RUN_DIR/postgres.managed"
        fi
        # The package's install script may have started the cluster already.
        if ! pg_up; then
            as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start ||
                die "PostgreSQL $ver/$PG_CLUSTER failed to start; see /var/log/postgresql/postgresql-$ver-$PG_CLUSTER.log"
        fi
        wait_for 30 pg_up || die "PostgreSQL $ver/$PG_CLUSTER started but $PG_HOST:$PG_PORT does not answer pg_isready (is the cluster on another port?)"
        echo "$ver $PG_CLUSTER" >"$RUN_DIR/postgres.started"
        how=started
    fi
    if [[ "$(pg_sql "select 1 from pg_database where datname = '$PG_DB'")" != 1 ]]; then
        pg_sql "create database $PG_DB" >/dev/null || die "cannot create database $PG_DB"
        log "services: created database $PG_DB"
    fi
    pg_allow_test_login
    # Each conformance test makes a schema of its own (vs_t_*); clear the last
    # run's so the test database does not grow without end.
    # One DROP per statement (psql autocommits each): dropping hundreds of schemas in one
    # transaction runs out of lock slots (max_locks_per_transaction).
    local pg=(psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$PG_DB" -q -v ON_ERROR_STOP=1)
    "${pg[@]}" -Atc "SELECT format('DROP SCHEMA %I CASCADE;', nspname) FROM pg_namespace WHERE nspname LIKE 'vs\\_t\\_%'" |
        PGOPTIONS="-c client_min_messages=warning" "${pg[@]}" >/dev/null ||
        die "cannot clear old test schemas in $PG_DB"
    log "postgres  $how  postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB"
}

# --------------------------------------------------------------------- Redis

redis_up() { [[ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

start_redis() {
    local how=reused
    command -v redis-cli >/dev/null 2>&1 || ensure_pkgs redis-tools
    if ! redis_up; then
        command -v redis-server >/dev/null 2>&1 || ensure_pkgs redis-server
    fi
    # The package's install script may have started a server already.
    if ! redis_up; then
        mkdir -p "$VIDEOSYNC_CACHE/redis"
        # No persistence: the test instance is scratch space.
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
            --save "" --appendonly no --dir "$VIDEOSYNC_CACHE/redis" \
            --pidfile "$REDIS_PID" --logfile "$LOG_DIR/redis.log" ||
            die "redis-server failed to start; see $LOG_DIR/redis.log"
        wait_for 15 redis_up || die "redis-server started but $REDIS_HOST:$REDIS_PORT does not answer PING; see $LOG_DIR/redis.log"
        touch "$RUN_DIR/redis.started"
        how=started
    fi
    log "redis     $how  redis://$REDIS_HOST:$REDIS_PORT/"
}

# -------------------------------------------------------------------- Garage

garage() { "$GARAGE_BIN" -c "$GARAGE_CONF" "$@"; }

# Any HTTP answer (Garage says 403 to an anonymous request) means the S3 API is up.
s3_up() {
    local code
    code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$S3_ENDPOINT/")" || return 1
    [[ "$code" != 000 ]]
}

garage_pid_alive() {
    [[ -f "$GARAGE_PID" ]] && kill -0 "$(cat "$GARAGE_PID")" 2>/dev/null
}

build_garage() {
    [[ -x "$GARAGE_BIN" ]] && return 0
    if ! command -v cargo >/dev/null 2>&1 && [[ -f "$HOME/.cargo/env" ]]; then
        # shellcheck disable=SC1091
        source "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build Garage; run scripts/deps.sh first"
    log "services: building Garage $GARAGE_VERSION into $VIDEOSYNC_CACHE/garage (once; 15-30 minutes on 2 cores)"
    log "services: build log: $LOG_DIR/garage-build.log"
    # A target directory of its own: an exported CARGO_TARGET_DIR (the Makefile sets the
    # project's) would fill the project's build cache with gigabytes of Garage.
    if ! env -u CARGO_TARGET_DIR cargo install garage --version "$GARAGE_VERSION" --locked \
        --root "$VIDEOSYNC_CACHE/garage" --target-dir "$VIDEOSYNC_CACHE/garage-build" \
        >"$LOG_DIR/garage-build.log" 2>&1; then
        tail -n 20 "$LOG_DIR/garage-build.log" >&2
        die "building Garage failed; full log in $LOG_DIR/garage-build.log"
    fi
    rm -rf "$VIDEOSYNC_CACHE/garage-build"
}

# Write the single-node config. The rpc secret and admin token are generated once and kept.
write_garage_config() {
    mkdir -p "$GARAGE_DIR/meta" "$GARAGE_DIR/data"
    chmod 700 "$GARAGE_DIR"
    local secret_file="$GARAGE_DIR/rpc_secret" token_file="$GARAGE_DIR/admin_token"
    [[ -s "$secret_file" ]] || (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$secret_file")
    [[ -s "$token_file" ]] || (umask 077 && od -An -tx1 -N32 /dev/urandom | tr -d ' \n' >"$token_file")
    local conf
    conf="$(
        cat <<EOF
# Written by scripts/services.sh: single-node Garage for the videosync test suite.
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "$GARAGE_RPC_ADDR"
rpc_public_addr = "$GARAGE_RPC_ADDR"
rpc_secret = "$(cat "$secret_file")"

[s3_api]
api_bind_addr = "$GARAGE_S3_ADDR"
s3_region = "$S3_REGION"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "$GARAGE_ADMIN_ADDR"
admin_token = "$(cat "$token_file")"
EOF
    )"
    if [[ ! -f "$GARAGE_CONF" ]] || [[ "$(cat "$GARAGE_CONF")" != "$conf" ]]; then
        (umask 077 && printf '%s\n' "$conf" >"$GARAGE_CONF")
    fi
}

# Give the node a role (zone dc1, 1 GB) and apply the layout, unless that is already done.
ensure_garage_layout() {
    local node status cur
    status="$(garage status 2>&1)" || die "garage status failed: $status"
    # "NO ROLE ASSIGNED": fresh node. "pending...": assigned by a run that stopped before apply.
    grep -q -e 'NO ROLE ASSIGNED' -e 'pending\.\.\.' <<<"$status" || return 0
    node="$(garage node id -q 2>/dev/null)" || die "garage node id failed"
    node="${node%%@*}"
    if grep -q 'NO ROLE ASSIGNED' <<<"$status"; then
        garage layout assign -z dc1 -c 1G "$node" >/dev/null || die "garage layout assign failed"
    fi
    cur="$(garage layout show 2>/dev/null | sed -n 's/^Current cluster layout version: *\([0-9]\+\).*/\1/p' | head -n1)" || true
    [[ -n "$cur" ]] || die "cannot read the current layout version from 'garage layout show'"
    garage layout apply --version $((cur + 1)) >/dev/null || die "garage layout apply --version $((cur + 1)) failed"
    log "services: garage layout version $((cur + 1)) applied (node ${node:0:16}, zone dc1, 1 GB)"
}

ensure_garage_key_and_bucket() {
    if ! garage key info "$S3_KEY_ID" >/dev/null 2>&1; then
        garage key import --yes -n "$S3_KEY_NAME" "$S3_KEY_ID" "$S3_KEY_SECRET" >/dev/null ||
            die "garage key import failed"
        log "services: imported S3 key $S3_KEY_ID"
    fi
    if ! garage bucket info "$S3_BUCKET" >/dev/null 2>&1; then
        garage bucket create "$S3_BUCKET" >/dev/null || die "garage bucket create $S3_BUCKET failed"
        log "services: created bucket $S3_BUCKET"
    fi
    garage bucket allow --read --write --owner "$S3_BUCKET" --key "$S3_KEY_ID" >/dev/null ||
        die "garage bucket allow failed"
}

start_garage() {
    local how=reused
    command -v curl >/dev/null 2>&1 || ensure_pkgs curl ca-certificates
    build_garage
    write_garage_config
    if ! s3_up; then
        if garage_pid_alive; then
            die "Garage (pid $(cat "$GARAGE_PID")) runs but $S3_ENDPOINT does not answer; see $LOG_DIR/garage.log"
        fi
        # setsid: keep the daemon out of the caller's process group, so ^C on `make test` spares it.
        NO_COLOR=1 RUST_LOG="${RUST_LOG:-garage=info}" setsid nohup "$GARAGE_BIN" -c "$GARAGE_CONF" server \
            >>"$LOG_DIR/garage.log" 2>&1 </dev/null &
        echo $! >"$GARAGE_PID"
        if ! wait_for 30 s3_up; then
            garage_pid_alive || die "Garage exited at start; last lines of $LOG_DIR/garage.log: $(tail -n 5 "$LOG_DIR/garage.log")"
            die "Garage started (pid $(cat "$GARAGE_PID")) but $S3_ENDPOINT does not answer; see $LOG_DIR/garage.log"
        fi
        wait_for 30 garage status || die "Garage runs but 'garage status' fails; see $LOG_DIR/garage.log"
        how=started
    fi
    garage status >/dev/null 2>&1 ||
        die "a server answers on $S3_ENDPOINT but 'garage -c $GARAGE_CONF status' fails: is it another Garage, with another rpc secret?"
    ensure_garage_layout
    wait_for 30 garage health || die "Garage cluster is not healthy after the layout change; see $LOG_DIR/garage.log"
    ensure_garage_key_and_bucket
    log "garage    $how  $S3_ENDPOINT (bucket $S3_BUCKET, region $S3_REGION)"
}

stop_garage() {
    if garage_pid_alive; then
        local pid
        pid="$(cat "$GARAGE_PID")"
        kill "$pid"
        wait_for 15 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
        log "garage    stopped (pid $pid)"
    else
        log "garage    not started by this script; left alone"
    fi
    rm -f "$GARAGE_PID"
}

# ---------------------------------------------------------------- commands

write_env() {
    local tmp="$ENV_FILE.tmp.$$"
    cat >"$tmp" <<EOF
export VIDEOSYNC_TEST_POSTGRES_URL=postgres://postgres@$PG_HOST:$PG_PORT/$PG_DB
export VIDEOSYNC_TEST_REDIS_URL=redis://$REDIS_HOST:$REDIS_PORT/
export VIDEOSYNC_TEST_S3_URL='s3://$S3_BUCKET?endpoint=$S3_ENDPOINT&region=$S3_REGION'
export AWS_ACCESS_KEY_ID=$S3_KEY_ID
export AWS_SECRET_ACCESS_KEY=$S3_KEY_SECRET
export AWS_REGION=$S3_REGION
EOF
    mv "$tmp" "$ENV_FILE"
    log "env file  $ENV_FILE  (source it to run the tests by hand)"
}

cmd_start() {
    mkdir -p "$VIDEOSYNC_CACHE" "$RUN_DIR" "$LOG_DIR"
    start_postgres
    start_redis
    start_garage
    write_env
}

cmd_stop() {
    stop_garage
    if [[ -f "$RUN_DIR/redis.started" ]]; then
        redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
        log "redis     stopped"
    else
        log "redis     not started by this script; left alone"
    fi
    rm -f "$RUN_DIR/redis.started"
    if [[ -f "$RUN_DIR/postgres.started" ]]; then
        local ver cluster
        read -r ver cluster <"$RUN_DIR/postgres.started"
        as_root pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" stop
        log "postgres  stopped ($ver/$cluster)"
    else
        log "postgres  not started by this script; left alone"
    fi
    rm -f "$RUN_DIR/postgres.started"
}

case "${1:-start}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    env) echo "$ENV_FILE" ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$1' (expected start, stop or env)" ;;
esac
