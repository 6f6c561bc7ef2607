#!/usr/bin/env bash
# Test fixture: a fresh fast cluster whose database voidrecon_template holds the migrated schema.
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: testdb.sh start DIR BIN   wipe DIR, start a --fast cluster there, create and migrate
                                 voidrecon_template with "BIN migrate", write DIR/env
       testdb.sh stop DIR        stop the cluster (DIR is kept for its logs)

DIR/env holds VR_TEST_PG_URL_BASE=postgresql://postgres@127.0.0.1:PORT; a test makes its own
database with: CREATE DATABASE x TEMPLATE voidrecon_template
EOF
    exit 2
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
pg=$here/pg.sh

(($# >= 2)) || usage
case "$1" in
    start)
        (($# == 3)) || usage
        dir=$2
        bin=$3
        [[ -x "$bin" ]] || { echo "testdb.sh: not an executable: $bin" >&2; exit 1; }
        "$pg" destroy "$dir"
        url=$("$pg" start "$dir" --fast)
        base=${url%/*}
        fail() {
            echo "testdb.sh: $*" >&2
            "$pg" stop "$dir" || true
            exit 1
        }
        psql=(psql -X -q -v ON_ERROR_STOP=1 -d "$base/postgres")
        "${psql[@]}" -c 'create database voidrecon_template' || fail "cannot create voidrecon_template"
        if ! VOIDRECON_DATABASE_URL=$base/voidrecon_template "$bin" migrate; then
            fail "$bin migrate failed on $base/voidrecon_template"
        fi
        # No session may stay connected to a template while it is copied; this forbids them.
        "${psql[@]}" -c 'alter database voidrecon_template with is_template true allow_connections false' ||
            fail "cannot mark voidrecon_template as a template"
        {
            echo "VR_TEST_PG_URL_BASE=$base"
            echo "VR_TEST_PG_TEMPLATE=voidrecon_template"
        } >"$dir/env"
        ;;
    stop)
        (($# == 2)) || usage
        "$pg" stop "$2"
        ;;
    *) usage ;;
esac
