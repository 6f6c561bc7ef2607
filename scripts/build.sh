#!/usr/bin/env bash
# Configures and builds voidrecon into a build folder; extra arguments go to cmake's configure step.
set -euo pipefail

if (($# < 1)) || [[ "$1" == -* ]]; then
    echo "usage: build.sh BUILD_DIR [CMAKE_ARG...]   e.g. build.sh build-test -DWERROR=ON" >&2
    echo "       VR_JOBS sets the parallel build jobs (default: number of CPUs)" >&2
    exit 2
fi
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
build=$1
shift
[[ "$build" == /* ]] || build=$root/$build

cmake -S "$root" -B "$build" "$@" >"$build.configure.log" 2>&1 || {
    cat "$build.configure.log" >&2
    echo "build.sh: cmake configure failed for $build" >&2
    exit 1
}
rm -f "$build.configure.log"
cmake --build "$build" -j "${VR_JOBS:-$(nproc)}"
