#!/usr/bin/env bash
# Builds the release Debian package of voidrecon and prints its path: a Release build in
# build-release (prefix /usr), then cpack -G DEB into build-release/packages.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/package.sh [CMAKE_ARG...]

Builds build-release (-DCMAKE_BUILD_TYPE=Release) and packs voidrecon_<version>_<arch>.deb with
cpack; its path is the one line printed on stdout. Install it with dpkg -i (README, "Installing
the package"). Extra arguments go to cmake's configure step, e.g.
-DVR_PACKAGE_MAINTAINER="Ops <ops@example.com>". VR_JOBS sets the parallel build jobs.
USAGE
}
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
build=$root/build-release
out=$build/packages

"$root/scripts/setup.sh"
"$root/scripts/build.sh" "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr "$@" >&2
rm -rf "$out"
(cd "$build" && cpack -G DEB -B "$out") >&2
shopt -s nullglob
debs=("$out"/voidrecon_*.deb)
if ((${#debs[@]} != 1)); then
    echo "package.sh: expected one package in $out, found ${#debs[@]}" >&2
    exit 1
fi
echo "${debs[0]}"
