#!/usr/bin/env bash
# Runs one libFuzzer target over its corpus for a while, then merges what it found into the
# corpus (tests/fuzz/corpus/<name>), so every new path and every crash stays a regression test.
set -euo pipefail

usage() {
    cat <<'USAGE'
usage: scripts/fuzz.sh TARGET SECONDS [LIBFUZZER_ARG...]   e.g. scripts/fuzz.sh httpreq 60

TARGET is a fuzz target of tests/fuzz/ (atlas, httpd, httpreq, provider; with or without
_fuzz). Builds build-fuzz with clang (-DFUZZ=ON -DSANITIZE=address,undefined: the targets are
linked with -fsanitize=fuzzer,address,undefined, and everything they call, llhttp included, is
compiled with fuzzer-no-link,address,undefined; assertions stay on), fuzzes for SECONDS with
the corpus as its seed, then merges the inputs that found new coverage into the corpus.
A crash stops the run: its input is written to build-fuzz/artifacts/ and the script fails;
add it to the corpus once fixed, so the replay test keeps it.
USAGE
}
case "${1:-}" in
    -h | --help) usage; exit 0 ;;
esac
(($# >= 2)) || { usage >&2; exit 2; }
name=${1%_fuzz}
seconds=$2
shift 2
[[ "$seconds" =~ ^[0-9]+$ && "$seconds" -ge 1 ]] || { echo "fuzz.sh: SECONDS must be a whole number" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
corpus=$root/tests/fuzz/corpus/$name
[[ -f "$root/tests/fuzz/${name}_fuzz.c" && -d "$corpus" ]] ||
    { echo "fuzz.sh: no fuzz target \"$name\" (see tests/fuzz/*_fuzz.c)" >&2; exit 2; }

"$root/scripts/setup.sh" clang libclang-rt-14-dev
echo "fuzz.sh: building build-fuzz" >&2
# RelWithDebInfo without its -DNDEBUG: an assert is an invariant, and fuzzing is how one breaks.
"$root/scripts/build.sh" build-fuzz -DFUZZ=ON -DSANITIZE=address,undefined \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g" >/dev/null
bin=$root/build-fuzz/tests/${name}_fuzz
found=$root/build-fuzz/found/$name
artifacts=$root/build-fuzz/artifacts/
mkdir -p "$found" "$artifacts"

before=$(find "$corpus" -type f | wc -l)
echo "fuzz.sh: fuzzing $name for $seconds s from $before corpus files" >&2
"$bin" -max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts" "$@" \
    "$found" "$corpus"
# Only what adds coverage goes into the corpus, under the content's hash as libFuzzer names it.
"$bin" -merge=1 -artifact_prefix="$artifacts" "$corpus" "$found" >/dev/null 2>&1
after=$(find "$corpus" -type f | wc -l)
echo "fuzz.sh: $name corpus: $before -> $after files (new ones in tests/fuzz/corpus/$name)" >&2
