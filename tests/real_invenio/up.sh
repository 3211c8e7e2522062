#!/usr/bin/env bash
# Bring up a real InvenioRDM REST API on 127.0.0.1 for the `real_invenio` test tier:
# 14.0.5 by default, 12.1.0 with REAL_INVENIO_SERIES=12 (both can run side by side).
#
#   tests/real_invenio/up.sh                         # everything; rerun-safe (skips what runs)
#   REAL_INVENIO_SERIES=12 tests/real_invenio/up.sh  # the v12 series (own lock, state, ports)
#   tests/real_invenio/up.sh --restart-server --ratelimit "5 per second"
#                                                    # restart only gunicorn, rate limiting on
#   tests/real_invenio/up.sh --restart-server        # restart only gunicorn, limiting off
#   tests/real_invenio/down.sh [--wipe|--wipe-data]  # stop everything (and delete state)
#
# State (venv, PostgreSQL data, files, logs, pids) lives in ${REAL_INVENIO_DIR}; the tests read
# ${REAL_INVENIO_DIR}/server.env (URL, tokens, community slugs; mode 600, never printed).
# Series 14: state /tmp/async-uploader-real-invenio, lock requirements.lock, ports HTTP 5000,
#   PostgreSQL 54329, Redis 56379, search stand-in 59200.
# Series 12: state /tmp/async-uploader-real-invenio-v12, lock requirements-v12.lock, ports
#   HTTP 5012, PostgreSQL 54339, Redis 56389, search stand-in 59212.
# Ports are loopback only; override with REAL_INVENIO_{HTTP,PG,REDIS,SEARCH}_PORT. REAL_INVENIO_SEARCH_REFRESH_S (default
# 1.0) delays search visibility of writes like OpenSearch's refresh interval (0: at once). Needs root (apt-get, postgres user)
# or an already-installed PostgreSQL + Redis when run as another user.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=series.sh
source "$HERE/series.sh"  # SERIES, STATE, *_PORT, RDM_SPEC, LOCK from REAL_INVENIO_SERIES
RATELIMIT=${REAL_INVENIO_RATELIMIT:-}
# Seconds before a write to the search stand-in is searchable (OpenSearch's refresh interval).
SEARCH_REFRESH_S=${REAL_INVENIO_SEARCH_REFRESH_S:-1.0}
VENV="$STATE/venv"
LOGS="$STATE/logs"
INSTANCE="$STATE/instance"
PGROOT="$STATE/pg"
ENV_FILE="$STATE/server.env"
RESTART_SERVER=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --restart-server) RESTART_SERVER=1 ;;
        --ratelimit) RATELIMIT="${2:?--ratelimit needs a value such as '5 per second'}"; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "up.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

mkdir -p "$STATE" "$LOGS"
T_START=$(date +%s.%N)
CURRENT_STEP=""
# shellcheck disable=SC2154
trap 'rc=$?; [[ $rc == 0 ]] || echo "[up] FAILED (exit $rc) at step: ${CURRENT_STEP:-?}; logs in $LOGS" >&2' EXIT

log() { echo "[up] $*"; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(date +%s.%N)"; }
run_step() {  # run_step NAME FUNCTION: times the step and names it if it fails
    CURRENT_STEP=$1
    local t0; t0=$(date +%s.%N)
    log "$1 ..."
    "$2"
    log "$1: $(elapsed "$t0") s"
}
# http_status URL -> prints the HTTP status (000 if nothing answers)
http_status() {
    python3 - "$1" <<'EOF'
import sys, urllib.error, urllib.request
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}
port_busy() { python3 -c "import socket,sys; s=socket.socket(); sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) == 0 else 1)" "$1"; }
# pid_alive FILE WORD: the pid in FILE runs and its command line contains WORD (pids get reused)
pid_alive() {
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$(cat "$1")/cmdline" 2>/dev/null | grep -q -- "$2"
}
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

step_packages() {
    if [[ -n "$(pg_bin)" ]] && command -v redis-server >/dev/null; then
        log "postgresql and redis-server already installed"; return
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >"$LOGS/apt.log" 2>&1
    apt-get install -y -q postgresql redis-server >>"$LOGS/apt.log" 2>&1
}

step_venv() {
    local want
    if [[ -f "$LOCK" ]]; then want=$(sha256sum "$LOCK" | cut -d' ' -f1); else want="unpinned"; fi
    if [[ -x "$VENV/bin/gunicorn" && "$(cat "$VENV/.installed" 2>/dev/null)" == "$want" ]]; then
        log "venv up to date"; return
    fi
    [[ -x "$VENV/bin/python" ]] || python3 -m venv "$VENV"
    # The pip log is large; only failures are shown (tail of the log).
    if [[ -f "$LOCK" ]]; then
        # Every package is pinned in the lock, so no dependency resolution is needed.
        "$VENV/bin/pip" install -q --no-deps -r "$LOCK" >"$LOGS/pip.log" 2>&1 \
            || { grep -v '^WARNING: Location' "$LOGS/pip.log" | tail -30 >&2; return 1; }
    elif [[ $SERIES != 14 ]]; then
        echo "$LOCK is missing; series $SERIES cannot be resolved unpinned (see the lock's notes)" >&2
        return 1
    else
        "$VENV/bin/pip" install -q "$RDM_SPEC" gunicorn >"$LOGS/pip.log" 2>&1 \
            || { grep -v '^WARNING: Location' "$LOGS/pip.log" | tail -30 >&2; return 1; }
        { echo "# Pinned working set for tests/real_invenio (from: pip install '$RDM_SPEC' gunicorn)."
          echo "# Regenerate: delete this file and the venv, run up.sh, review the diff."
          "$VENV/bin/pip" freeze --all --exclude pip --exclude setuptools --exclude wheel; } >"$LOCK"
        log "wrote $LOCK"
        want=$(sha256sum "$LOCK" | cut -d' ' -f1)
    fi
    echo "$want" >"$VENV/.installed"
}

step_postgres() {
    local bin; bin=$(pg_bin)
    [[ -n "$bin" ]] || { echo "no PostgreSQL binaries under /usr/lib/postgresql" >&2; return 1; }
    mkdir -p "$PGROOT/sock"
    [[ $(id -u) == 0 ]] && chown -R postgres:postgres "$PGROOT"
    if [[ ! -f "$PGROOT/data/PG_VERSION" ]]; then
        as_pg "$bin/initdb" -D "$PGROOT/data" -U postgres --auth=trust --no-sync -E UTF8 \
            >"$LOGS/initdb.log" 2>&1 || { tail -20 "$LOGS/initdb.log" >&2; return 1; }
    fi
    if as_pg "$bin/pg_ctl" -D "$PGROOT/data" status >/dev/null 2>&1; then
        log "PostgreSQL already running"
    else
        if port_busy "$PG_PORT"; then echo "port $PG_PORT is taken (set REAL_INVENIO_PG_PORT)" >&2; return 1; fi
        as_pg "$bin/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/postgres.log" -w -t 60 start \
            -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$PGROOT/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null || { tail -20 "$PGROOT/postgres.log" >&2
                            echo "PostgreSQL did not start; down.sh --wipe-data starts afresh" >&2
                            return 1; }
    fi
    local q=(as_pg "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAq -c)
    [[ "$("${q[@]}" "select 1 from pg_roles where rolname='invenio'")" == 1 ]] \
        || "${q[@]}" "create role invenio login createdb"
}

reset_database() {  # a fresh (or half-initialised) instance starts from an empty database
    local bin; bin=$(pg_bin)
    as_pg "$bin/dropdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres --if-exists invenio
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres -O invenio -E UTF8 invenio
}

step_redis() {
    if [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; then
        log "Redis already running"; return
    fi
    if port_busy "$REDIS_PORT"; then echo "port $REDIS_PORT is taken (set REAL_INVENIO_REDIS_PORT)" >&2; return 1; fi
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --daemonize yes \
        --pidfile "$STATE/redis.pid" --logfile "$LOGS/redis.log" --dir "$STATE"
    for _ in $(seq 50); do
        [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && return
        sleep 0.1
    done
    tail -20 "$LOGS/redis.log" >&2; return 1
}

search_conf() {  # what the running stand-in was started with: refresh delay and code version
    echo "refresh=$SEARCH_REFRESH_S code=$(cat "$HERE"/search_*.py | sha256sum | cut -c1-16)"
}

start_search() {
    if [[ "$(http_status "http://127.0.0.1:$SEARCH_PORT/")" == 200 ]]; then
        if [[ "$(cat "$STATE/search.conf" 2>/dev/null)" == "$(search_conf)" ]]; then
            log "search stand-in already running"; return
        fi
        # New code or another refresh delay: restart (SIGTERM saves the documents first).
        log "search stand-in: restarting ($(search_conf))"
        stop_pidfile "$STATE/search.pid" search_standin.py
    fi
    if port_busy "$SEARCH_PORT"; then echo "port $SEARCH_PORT is taken (set REAL_INVENIO_SEARCH_PORT)" >&2; return 1; fi
    nohup python3 "$HERE/search_standin.py" --port "$SEARCH_PORT" --log "$LOGS/search-requests.log" \
        --state "$STATE/search-state.json" --refresh-s "$SEARCH_REFRESH_S" >>"$LOGS/search.log" 2>&1 &
    echo $! >"$STATE/search.pid"
    search_conf >"$STATE/search.conf"
    for _ in $(seq 100); do
        [[ "$(http_status "http://127.0.0.1:$SEARCH_PORT/")" == 200 ]] && return
        sleep 0.1
    done
    tail -20 "$LOGS/search.log" >&2; return 1
}

stop_pidfile() {  # stop_pidfile FILE WORD: TERM, wait up to 15 s, then KILL (only our own process)
    local f=$1 pid
    [[ -f "$f" ]] || return 0
    pid=$(cat "$f")
    if pid_alive "$f" "$2"; then
        kill -TERM "$pid"
        for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$f"
}

step_search() { start_search; }

render_config() {
    mkdir -p "$INSTANCE"
    [[ -f "$STATE/secret_key" ]] || python3 -c "import secrets; print(secrets.token_hex(32))" >"$STATE/secret_key"
    chmod 600 "$STATE/secret_key"
    sed -e "s|@SECRET_KEY@|$(cat "$STATE/secret_key")|" -e "s|@PG_PORT@|$PG_PORT|" \
        -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@SEARCH_PORT@|$SEARCH_PORT|" \
        -e "s|@REDIS_PORT@|$REDIS_PORT|" "$HERE/invenio.cfg" >"$INSTANCE/invenio.cfg"
    rm -rf "$INSTANCE/app_data"
    cp -r "$HERE/app_data" "$INSTANCE/app_data"
}

step_setup() {
    render_config
    if [[ -f "$STATE/setup.done" && -f "$ENV_FILE" ]]; then
        if [[ "$(http_status "http://127.0.0.1:$SEARCH_PORT/async-uploader-rdmrecords-records")" != 200 ]]; then
            log "search stand-in lost its documents: rebuilding indices"
            INVENIO_INSTANCE_PATH="$INSTANCE" "$VENV/bin/python" "$HERE/setup_instance.py" \
                --env-file "$ENV_FILE" --files-dir "$STATE/files" --reindex-only
        else
            log "instance already set up (delete $STATE/setup.done to redo)"
        fi
        return
    fi
    # Start from nothing: empty database, empty search state, no files.
    stop_pidfile "$STATE/search.pid" search_standin.py
    rm -rf "$STATE/search-state.json" "$STATE/files" "$ENV_FILE"
    start_search
    reset_database
    INVENIO_INSTANCE_PATH="$INSTANCE" "$VENV/bin/python" "$HERE/setup_instance.py" \
        --env-file "$ENV_FILE" --files-dir "$STATE/files" --url "http://127.0.0.1:$HTTP_PORT" \
        --series "$SERIES"
    touch "$STATE/setup.done"
}

step_server() {
    local url="http://127.0.0.1:$HTTP_PORT/api/records?size=1"
    if pid_alive "$STATE/gunicorn.pid" gunicorn; then
        if [[ $RESTART_SERVER == 0 && "$(cat "$STATE/ratelimit" 2>/dev/null)" == "$RATELIMIT" \
              && "$(http_status "$url")" == 200 ]]; then
            log "gunicorn already running"; return
        fi
        stop_pidfile "$STATE/gunicorn.pid" gunicorn
    fi
    if port_busy "$HTTP_PORT"; then echo "port $HTTP_PORT is taken by another process" >&2; return 1; fi
    render_config
    echo "$RATELIMIT" >"$STATE/ratelimit"
    echo "=== start $(date -Is) ratelimit='${RATELIMIT}'" >>"$LOGS/gunicorn.log"
    INVENIO_INSTANCE_PATH="$INSTANCE" REAL_INVENIO_RATELIMIT="$RATELIMIT" nohup \
        "$VENV/bin/gunicorn" -b "127.0.0.1:$HTTP_PORT" -w 1 --threads 8 --timeout 300 \
        -p "$STATE/gunicorn.pid" invenio_app.wsgi:application >>"$LOGS/gunicorn.log" 2>&1 &
    local pid=$!
    for _ in $(seq 240); do  # up to ~120 s
        [[ "$(http_status "$url")" == 200 ]] && { log "server answers at http://127.0.0.1:$HTTP_PORT/api (rate limit: ${RATELIMIT:-off})"; return; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    echo "gunicorn did not answer GET $url; last log lines:" >&2
    tail -40 "$LOGS/gunicorn.log" >&2
    return 1
}

if [[ $RESTART_SERVER == 1 ]]; then
    run_step "gunicorn (restart)" step_server
else
    run_step "packages (apt)" step_packages
    run_step "invenio venv (pip)" step_venv
    run_step "PostgreSQL" step_postgres
    run_step "Redis" step_redis
    run_step "search stand-in" step_search
    run_step "instance set-up" step_setup
    run_step "gunicorn" step_server
fi
CURRENT_STEP=""
log "series $SERIES ready in $(elapsed "$T_START") s; env file: $ENV_FILE"
