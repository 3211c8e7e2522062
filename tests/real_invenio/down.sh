#!/usr/bin/env bash
# Stop what tests/real_invenio/up.sh started (by process id, never by name).
# REAL_INVENIO_SERIES=12 selects the v12 series' state dir and ports (default 14), as in up.sh.
#
#   tests/real_invenio/down.sh              # stop; keep state (the next up.sh takes ~20 s)
#   tests/real_invenio/down.sh --wipe-data  # stop, delete everything but the venv
#   tests/real_invenio/down.sh --wipe       # stop, delete the whole state dir
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=series.sh
source "$HERE/series.sh"  # SERIES, STATE, REDIS_PORT, ... from REAL_INVENIO_SERIES
WIPE=""
case "${1:-}" in
    "") ;;
    --wipe|--wipe-data) WIPE=$1 ;;
    *) echo "down.sh: unknown argument: $1" >&2; exit 2 ;;
esac
[[ -d "$STATE" ]] || { echo "[down] nothing to do: $STATE does not exist"; exit 0; }
failed=0

# stop_pidfile NAME FILE EXPECTED: TERM the process if its command line matches, wait, KILL.
stop_pidfile() {
    local name=$1 file=$2 expected=$3 pid
    if [[ ! -f "$file" ]]; then echo "[down] $name: not running (no pid file)"; return; fi
    pid=$(cat "$file")
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "[down] $name: not running (stale pid $pid)"; rm -f "$file"; return
    fi
    # Guard against a recycled pid: only signal the process we started.
    if ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$expected"; then
        echo "[down] $name: pid $pid is not $expected; left alone"; rm -f "$file"; return
    fi
    kill -TERM "$pid"
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "[down] $name: still alive after 20 s, sending KILL"; kill -KILL "$pid"; sleep 0.2
    fi
    if kill -0 "$pid" 2>/dev/null; then echo "[down] $name: FAILED to stop pid $pid"; failed=1
    else echo "[down] $name: stopped (pid $pid)"; fi
    rm -f "$file"
}

stop_pidfile gunicorn "$STATE/gunicorn.pid" gunicorn
stop_pidfile "search stand-in" "$STATE/search.pid" search_standin.py  # TERM saves its state
stop_pidfile redis "$STATE/redis.pid" redis-server

PGDATA="$STATE/pg/data"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -f "$PGDATA/postmaster.pid" && -n "$PGBIN" ]]; then
    pg=("$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop)
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "${pg[@]}" >/dev/null; else "${pg[@]}" >/dev/null; fi \
        && echo "[down] PostgreSQL: stopped" || { echo "[down] PostgreSQL: FAILED to stop"; failed=1; }
else
    echo "[down] PostgreSQL: not running"
fi

if [[ $failed == 0 && -n "$WIPE" ]]; then
    if [[ $WIPE == --wipe ]]; then
        rm -rf "$STATE"
    else
        find "$STATE" -mindepth 1 -maxdepth 1 ! -name venv -exec rm -rf {} +
    fi
    echo "[down] removed state ($WIPE) in $STATE"
fi
[[ -z "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" ]] || { echo "[down] redis still answers on $REDIS_PORT"; failed=1; }
exit $failed
