#!/usr/bin/env bash
# The whole suite, as CI runs it: installs what is missing, builds with -Werror and runs every
# test under ctest, checks the style (scripts/lint.sh), then builds and runs the tests again
# under AddressSanitizer and UndefinedBehaviorSanitizer.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/test.sh [CTEST_ARG...]     e.g. scripts/test.sh -R integration.intake

Builds build-test (-DWERROR=ON) and build-asan (-DSANITIZE=address,undefined) and runs
ctest in each; the suite starts its own PostgreSQL. Between the two, scripts/lint.sh checks
formatting and lint. Extra arguments go to ctest. VR_TEST_SANITIZE=0 skips the sanitizer
build, VR_TEST_LINT=0 the style checks.
USAGE
}
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
"$root/scripts/setup.sh"

suite() {
    local dir=$1
    shift
    echo "test.sh: building $dir" >&2
    "$root/scripts/build.sh" "$dir" -DWERROR=ON "$@" >/dev/null
    echo "test.sh: running the suite in $dir" >&2
    (cd "$root/$dir" && ctest --output-on-failure --timeout 600 -j "$(nproc)" "${ctest_args[@]}")
}

ctest_args=("$@")
started=$SECONDS
suite build-test -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [[ "${VR_TEST_LINT:-1}" != 0 ]]; then
    "$root/scripts/lint.sh" build-test
fi
if [[ "${VR_TEST_SANITIZE:-1}" != 0 ]]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    suite build-asan -DCMAKE_BUILD_TYPE=Debug -DSANITIZE=address,undefined
fi
echo "test.sh: all suites passed in $((SECONDS - started)) s" >&2
