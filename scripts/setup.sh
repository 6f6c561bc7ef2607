#!/usr/bin/env bash
# Installs the Debian packages voidrecon needs to build, test and run; silent when all are present.
# Extra package names given as arguments are installed too (scripts/fuzz.sh asks for clang).
set -euo pipefail

# What the build (cmake/Dependencies.cmake), the scripts and the tests stand on (pytest runs the
# integration tests); clang-format and clang-tidy are the suite's style checks (scripts/lint.sh).
# help2man writes the man page; nginx, openssl, promtool (in prometheus) and systemd-analyze (in
# systemd) check the deployment files under deploy/; the package's test installs it for real,
# which takes adduser (its postinst) and man-db (man -w finds its page).
packages=(build-essential cmake pkg-config libuv1-dev libpq-dev libcjson-dev
          libcurl4-openssl-dev libssl-dev libsystemd-dev node-llhttp postgresql-15
          postgresql-client python3 python3-pytest python3-yaml curl valgrind clang-format
          clang-tidy help2man nginx openssl prometheus systemd adduser man-db "$@")

installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

# Any installed server major version serves (the scripts pick the newest), and psql of any
# version satisfies the client: Debian's unversioned postgresql-client is only a pointer.
satisfied() {
    case "$1" in
        postgresql-15)
            compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null && return 0 ;;
        postgresql-client)
            compgen -G '/usr/lib/postgresql/*/bin/psql' >/dev/null && return 0 ;;
    esac
    installed "$1"
}

if ! command -v dpkg-query >/dev/null; then
    echo "setup.sh: dpkg-query not found; this script supports Debian and its derivatives" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    satisfied "$p" || missing+=("$p")
done
((${#missing[@]} == 0)) && exit 0

if ((EUID == 0)); then
    sudo=()
elif command -v sudo >/dev/null; then
    sudo=(sudo)
else
    echo "setup.sh: missing packages: ${missing[*]}" >&2
    echo "setup.sh: sudo is not available; as root run: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "setup.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# nginx and prometheus are tools here, not services: while they install, a policy-rc.d that
# refuses every start keeps their packages from starting system daemons on ports 80 and 9090.
policy=/usr/sbin/policy-rc.d
if [[ ! -e "$policy" ]]; then
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
