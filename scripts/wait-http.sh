#!/usr/bin/env bash
# Waits until an HTTP URL answers 2xx, at most SECONDS; fails, saying why, when the time runs
# out or when the process PID (if given) exits first. Each try is bounded too, so a listener
# that accepts and never replies cannot hold the wait.
set -euo pipefail

if (($# < 2)); then
    echo "usage: wait-http.sh URL SECONDS [PID [NAME]]" >&2
    exit 2
fi
url=$1 seconds=$2 pid=${3:-} name=${4:-$1}
deadline=$((SECONDS + seconds))
until curl -fs --max-time 1 "$url" >/dev/null 2>&1; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
        echo "wait-http.sh: $name exited before it answered ($url)" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        echo "wait-http.sh: $name did not answer within ${seconds}s ($url)" >&2
        exit 1
    fi
    sleep 0.1
done
