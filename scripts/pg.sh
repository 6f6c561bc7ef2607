#!/usr/bin/env bash
# Manages a throwaway local PostgreSQL cluster kept in one folder (start, stop, url, status, destroy).
set -euo pipefail

usage() {
    cat >&2 <<'EOF'
usage: pg.sh start DIR [PORT] [--fast]   initialise if needed, start, create database voidrecon;
                                         prints postgresql://postgres@127.0.0.1:PORT/voidrecon
       pg.sh stop DIR                    stop (fast shutdown); fine when not running
       pg.sh url DIR                     print the URL of the cluster in DIR
       pg.sh status DIR                  "running URL" (exit 0), "stopped" (3), "not initialised" (4)
       pg.sh destroy DIR                 stop, then delete DIR and any folders it points to

PORT defaults to the one remembered in DIR/port, or a free one. --fast turns off fsync,
synchronous_commit and full_page_writes: for test clusters only, a crash can lose data.
VR_PG_BIN overrides the PostgreSQL bin folder (default: newest /usr/lib/postgresql/*/bin).
EOF
    exit 2
}

die() {
    echo "pg.sh: $*" >&2
    exit 1
}

# Only the arguments on our command lines decide where we connect.
unset CDPATH PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGSERVICE PGOPTIONS PGDATA

fast=0
args=()
for a in "$@"; do
    case "$a" in
        --fast) fast=1 ;;
        -h | --help) usage ;;
        -*) echo "pg.sh: unknown option $a" >&2; usage ;;
        *) args+=("$a") ;;
    esac
done
((${#args[@]} >= 2)) || usage
cmd=${args[0]}
dir=${args[1]}
want_port=${args[2]:-}
case "$cmd" in
    start) ((${#args[@]} <= 3)) || usage ;;
    stop | url | status | destroy) ((${#args[@]} == 2)) || usage ;;
    *) usage ;;
esac
if [[ -n "$want_port" ]] && ! [[ "$want_port" =~ ^[0-9]+$ && "$want_port" -ge 1 && "$want_port" -le 65535 ]]; then
    die "bad port: $want_port"
fi

pgbin=${VR_PG_BIN:-}
if [[ -z "$pgbin" ]]; then
    pgbin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null \
            | sort -V | tail -n 1)
fi
[[ -n "$pgbin" && -x "$pgbin/pg_ctl" ]] ||
    die "no PostgreSQL server binaries found (apt-get install postgresql-15, or run scripts/setup.sh)"

# initdb and pg_ctl refuse to run as root: then the cluster belongs to the postgres system user.
as_root=0
((EUID == 0)) && as_root=1

as_pg() {
    if ((as_root)); then
        # The caller's folder may be closed to postgres; "/" never is.
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

pg_can_enter() {
    # shellcheck disable=SC2016 # $1 belongs to the inner shell
    runuser -u postgres -- sh -c 'cd "$1"' sh "$1" 2>/dev/null
}

# Folders this script made under /tmp look like this; nothing else is ever deleted through a pointer.
tmp_made() {
    [[ "$1" =~ ^/tmp/vrpg[a-z]*\.[A-Za-z0-9]+$ && -d "$1" && ! -L "$1" ]]
}

make_tmp() {
    local d
    d=$(mktemp -d "/tmp/$1.XXXXXXXX")
    if ((as_root)); then
        chown postgres: "$d"
    fi
    echo "$d"
}

# Where the cluster lives: $dir itself, or the folder named in $dir/fallback when the postgres
# user cannot enter $dir. Sockets go to base/run unless that path is too long for a unix socket.
base='' data='' logdir='' sockdir=''
locate() {
    base=$dir
    if [[ -f "$dir/fallback" ]]; then
        base=$(<"$dir/fallback")
    fi
    data=$base/data
    logdir=$base/log
    sockdir=$base/run
    if [[ -f "$dir/sockdir" ]]; then
        sockdir=$(<"$dir/sockdir")
    fi
}

prepare() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    base=$dir
    if ((as_root)); then
        if ! id postgres >/dev/null 2>&1; then
            useradd --system --user-group --no-create-home --home-dir /var/lib/postgresql \
                    --shell /usr/sbin/nologin postgres
        fi
        local old=
        [[ -f "$dir/fallback" ]] && old=$(<"$dir/fallback")
        if [[ -n "$old" ]] && tmp_made "$old" && [[ "$(stat -c %U "$old")" == postgres ]]; then
            base=$old
        elif pg_can_enter "$dir"; then
            rm -f "$dir/fallback"
        else
            base=$(make_tmp vrpg)
            chmod 700 "$base"
            echo "$base" >"$dir/fallback"
        fi
    fi
    data=$base/data
    logdir=$base/log
    sockdir=$base/run
    # Unix socket paths are limited to 107 bytes; the file name takes 18 more.
    if ((${#sockdir} > 80)); then
        local old=
        [[ -f "$dir/sockdir" ]] && old=$(<"$dir/sockdir")
        if [[ -n "$old" ]] && tmp_made "$old"; then
            sockdir=$old
        else
            sockdir=$(make_tmp vrpgsock)
            echo "$sockdir" >"$dir/sockdir"
        fi
    else
        rm -f "$dir/sockdir"
    fi
    mkdir -p "$data" "$logdir" "$sockdir"
    if ((as_root)); then
        chown postgres: "$data" "$logdir" "$sockdir"
    fi
}

initialised() {
    [[ -f "$data/PG_VERSION" ]]
}

running() {
    initialised && as_pg "$pgbin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

stored_port() {
    [[ -f "$dir/port" ]] && cat "$dir/port"
}

url_for() {
    echo "postgresql://postgres@127.0.0.1:$1/voidrecon"
}

port_in_use() {
    if command -v ss >/dev/null; then
        [[ -n "$(ss -Htln "sport = :$1" 2>/dev/null)" ]]
    else
        timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
    fi
}

# Below Linux's ephemeral range, so outgoing connections do not take it meanwhile.
free_port() {
    local i p
    for ((i = 0; i < 100; i++)); do
        p=$((20000 + RANDOM % 12000))
        if ! port_in_use "$p"; then
            echo "$p"
            return 0
        fi
    done
    die "no free TCP port found"
}

write_conf() {
    local port=$1 conf=$data/voidrecon.conf
    {
        echo "# Written by scripts/pg.sh at every start; edits are lost."
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '${sockdir//\'/\'\'}'"
        if ((fast)); then
            echo "fsync = off"
            echo "synchronous_commit = off"
            echo "full_page_writes = off"
        fi
    } >"$conf"
    if ((as_root)); then
        chown postgres: "$conf"
    fi
}

do_initdb() {
    local locale=C
    if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
        locale=C.UTF-8
    fi
    # A half-made data folder from an interrupted initdb would make initdb refuse.
    find "$data" -mindepth 1 -delete
    if ! as_pg "$pgbin/initdb" -D "$data" -A trust -U postgres -E UTF8 --locale="$locale" \
            --nosync >"$logdir/initdb.log" 2>&1; then
        cat "$logdir/initdb.log" >&2
        die "initdb failed in $data"
    fi
    echo "include 'voidrecon.conf'" >>"$data/postgresql.conf"
}

psql_admin() {
    "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"
}

cmd_start() {
    prepare
    initialised || do_initdb
    if running; then
        url_for "$(stored_port)"
        return 0
    fi
    local port auto=0 log=$logdir/postgres.log offset
    port=$want_port
    if [[ -z "$port" ]]; then
        auto=1
        port=$(stored_port || true)
        if [[ -z "$port" ]] || port_in_use "$port"; then
            port=$(free_port)
        fi
    fi
    for _ in 1 2 3; do
        write_conf "$port"
        offset=0
        [[ -f "$log" ]] && offset=$(stat -c %s "$log")
        if as_pg "$pgbin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >/dev/null 2>&1; then
            echo "$port" >"$dir/port"
            if [[ -z "$(psql_admin "$port" "select 1 from pg_database where datname = 'voidrecon'")" ]]; then
                psql_admin "$port" "create database voidrecon" >/dev/null
            fi
            url_for "$port"
            return 0
        fi
        # Another process may have taken an automatically chosen port since we looked.
        if ((auto)) && tail -c +"$((offset + 1))" "$log" 2>/dev/null | grep -q 'could not bind'; then
            port=$(free_port)
            continue
        fi
        break
    done
    echo "pg.sh: PostgreSQL failed to start on port $port; end of $log:" >&2
    tail -c +"$((offset + 1))" "$log" 2>/dev/null | tail -n 40 >&2 || true
    exit 1
}

cmd_stop() {
    [[ -d "$dir" ]] || return 0
    locate
    running || return 0
    as_pg "$pgbin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null ||
        die "pg_ctl stop failed for $data"
}

cmd_url() {
    locate
    [[ -f "$dir/port" ]] || die "no cluster in $dir (run: pg.sh start $dir)"
    url_for "$(stored_port)"
}

cmd_status() {
    if [[ ! -d "$dir" ]]; then
        echo "not initialised"
        exit 4
    fi
    locate
    if ! initialised; then
        echo "not initialised"
        exit 4
    fi
    if running; then
        echo "running $(url_for "$(stored_port)")"
        exit 0
    fi
    echo "stopped"
    exit 3
}

cmd_destroy() {
    [[ -d "$dir" ]] || return 0
    cmd_stop
    locate
    [[ "$base" != "$dir" ]] && tmp_made "$base" && rm -rf "$base"
    [[ "$sockdir" != "$base/run" ]] && tmp_made "$sockdir" && rm -rf "$sockdir"
    rm -rf "$dir"
}

if [[ -d "$dir" ]]; then
    dir=$(cd "$dir" && pwd -P)
fi
"cmd_$cmd"
