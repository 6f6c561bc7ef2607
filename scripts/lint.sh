#!/usr/bin/env bash
# The style checks the suite runs: clang-format and clang-tidy with the repository's own
# configuration (.clang-format, .clang-tidy), and the banned C functions. Fails on any finding.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/lint.sh [BUILD_DIR]     BUILD_DIR defaults to build-test

Checks the formatting of src/, include/ and the C tests (clang-format --dry-run -Werror), lints
src/ and include/ with clang-tidy using BUILD_DIR/compile_commands.json (scripts/test.sh
builds it), and refuses the banned functions of the house style. "clang-format -i FILE" fixes
formatting.
USAGE
}
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
build=${1:-build-test}
[[ -f "$build/compile_commands.json" ]] ||
    { echo "lint.sh: $build/compile_commands.json missing: build first (scripts/build.sh $build)" >&2; exit 2; }

mapfile -t sources < <(find src -name '*.c' | sort)
mapfile -t headers < <(find src include -name '*.h' | sort)
mapfile -t tests < <(find tests/unit tests/fuzz -name '*.[ch]' | sort)
failed=0

echo "lint.sh: clang-format" >&2
clang-format --dry-run -Werror "${sources[@]}" "${headers[@]}" "${tests[@]}" || failed=1

# The house style bans these (unbounded or unchecked); snprintf, strtol with its end pointer and
# errno, and the capped buffers of buf.h replace them.
echo "lint.sh: banned functions" >&2
if grep -nE '\b(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|gets|atoi|atol)[[:space:]]*\(' \
        "${sources[@]}" "${headers[@]}"; then
    echo "lint.sh: banned functions above" >&2
    failed=1
fi

# One process per file, as many at once as there are CPUs; headers are checked through the
# sources that include them (HeaderFilterRegex).
echo "lint.sh: clang-tidy" >&2
if ! printf '%s\0' "${sources[@]}" |
        xargs -0 -n 1 -P "$(nproc)" clang-tidy -p "$build" --quiet 2>/dev/null; then
    failed=1
fi

if ((failed)); then
    echo "lint.sh: findings above" >&2
    exit 1
fi
echo "lint.sh: clean" >&2
