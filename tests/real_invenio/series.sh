# Sourced by up.sh and down.sh: the per-series defaults (REAL_INVENIO_SERIES, default 14).
# Each series has its own lock, state dir and ports so both can run side by side; every
# value stays overridable by its REAL_INVENIO_* variable.
# shellcheck shell=bash
SERIES=${REAL_INVENIO_SERIES:-14}
case "$SERIES" in
    14) _dir=/tmp/async-uploader-real-invenio; _http=5000; _pg=54329; _redis=56379; _search=59200
        RDM_SPEC="invenio-app-rdm[opensearch2]==14.0.5"; LOCK="$HERE/requirements.lock" ;;
    12) _dir=/tmp/async-uploader-real-invenio-v12; _http=5012; _pg=54339; _redis=56389; _search=59212
        RDM_SPEC="invenio-app-rdm[opensearch2]==12.1.0"; LOCK="$HERE/requirements-v12.lock" ;;
    *) echo "REAL_INVENIO_SERIES must be 14 or 12, not '$SERIES'" >&2; exit 2 ;;
esac
STATE=${REAL_INVENIO_DIR:-$_dir}
HTTP_PORT=${REAL_INVENIO_HTTP_PORT:-$_http}
PG_PORT=${REAL_INVENIO_PG_PORT:-$_pg}
REDIS_PORT=${REAL_INVENIO_REDIS_PORT:-$_redis}
SEARCH_PORT=${REAL_INVENIO_SEARCH_PORT:-$_search}
unset _dir _http _pg _redis _search
# shellcheck disable=SC2034  # used by the sourcing script
export REAL_INVENIO_SERIES=$SERIES
