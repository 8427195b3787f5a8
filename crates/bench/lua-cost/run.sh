#!/usr/bin/env bash
# Redis's own CPU per event (INFO cpu, user + sys) of the append script beside raw XADD pairs
# and the stripped scripts in this folder: each fed the same 200,000 events through
# `redis-cli --pipe` on a fresh redis-server, rounds interleaved, the least of each kept (the
# machine's noise only ever adds). Usage: crates/bench/lua-cost/run.sh [rounds]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rounds="${1:-6}"
work="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
redis-server --port "$port" --save "" --appendonly no --daemonize yes \
    --pidfile "$work/redis.pid" --dir "$work" >/dev/null
trap 'redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.1; done
cli() { redis-cli -p "$port" "$@"; }
load() { cli SCRIPT LOAD "$(cat "$1")"; }
python3 "$here/gen.py" pairs - "$work/raw_xadd_pairs.resp"
python3 "$here/gen.py" append "$(load "$here/../../redis/src/lua/append.lua")" "$work/append.resp"
variants=(two_xadds per_request per_request_counter_calls per_request_counter_text)
for v in "${variants[@]}"; do
    python3 "$here/gen.py" variant "$(load "$here/$v.lua")" "$work/$v.resp"
done
cpu() { cli INFO cpu | tr -d '\r' | awk -F: '/^used_cpu_(user|sys):/ {s += $2} END {print s}'; }
declare -A best
for _ in $(seq "$rounds"); do
    for v in raw_xadd_pairs append "${variants[@]}"; do
        cli FLUSHALL >/dev/null
        before="$(cpu)"
        if cli --pipe <"$work/$v.resp" 2>&1 | grep -q "errors: [1-9]"; then
            echo "$v: Redis answered errors" >&2
            exit 1
        fi
        us="$(echo "($(cpu) - $before) * 1000000 / 200000" | bc -l)"
        if [[ -z "${best[$v]:-}" ]] || (($(echo "$us < ${best[$v]}" | bc -l))); then
            best[$v]="$us"
        fi
    done
done
for v in raw_xadd_pairs append "${variants[@]}"; do
    printf '%-28s %6.2f us/event  %.2f of the pairs\n' "$v" "${best[$v]}" \
        "$(echo "${best[raw_xadd_pairs]} / ${best[$v]}" | bc -l)"
done
