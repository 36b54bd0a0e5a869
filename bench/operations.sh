#!/usr/bin/env bash
# Operations at the largest mesh: what a reload and a metrics scrape cost a running node, and
# whether they delay its heartbeats.
#
# One node, n0, of a 1,024-node config (127.1.x.y, port 1313, heartbeat 1000 ms), in a private
# network namespace with its HTTP endpoint on 127.0.0.1:9313, and one real peer, n1, that
# watches n0's heartbeats. The 1,022 others are not running (n0 heartbeats them anyway: the
# full load of a 1,024-node mesh on its loop). Measured, TRIALS times each (median, min-max):
#   - `peermesh reload` wall time (process start to exit) for an unchanged file, a file that
#     removes 512 nodes, and the file that adds them back;
#   - `curl /metrics` and `curl /status.json` wall time, and the size of each answer;
# then SOAK seconds of reloads and scrapes back to back; over the whole run, the largest
# gap between two datagrams of n0 that n1 saw (its `last_heard_ms` of n0, sampled about every
# 50 ms: n0 pings n1 once an interval and answers n1's pings, so about half an interval).
#
# Prints a table and writes it to bench/results-operations.txt. QUICK=1: a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
TRIALS=${TRIALS:-$([ "$QUICK" = 1 ] && echo 3 || echo 15)}
NODES=${NODES:-1024}
SOAK=${SOAK:-$([ "$QUICK" = 1 ] && echo 5 || echo 30)}
out=bench/results-operations.txt
cargo build --release --bins --quiet -p peermesh
target=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target/release/peermesh
command -v curl >/dev/null || { echo "bench/operations.sh: needs curl" >&2; exit 1; }
source bench/lib.sh
bench_lab pmops
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }

# config FILE FIRST LAST: nodes n0, n1 and nFIRST..nLAST-1.
config() {
    local file=$1 first=$2 last=$3 i
    {
        echo '(heartbeat_interval_ms: 1000, http_listen: "127.0.0.1:9313", nodes: ['
        for i in 0 1 $(seq "$first" $((last - 1))); do
            echo "  (name: \"n$i\", host: \"127.1.$((i / 250)).$((i % 250 + 1))\"),"
        done
        echo '])'
    } > "$file"
}
config "$dir/full.ron" 2 "$NODES"
config "$dir/half.ron" 2 $((NODES / 2 + 1))
cp "$dir/full.ron" "$dir/peers.ron"
ip netns exec "$ns" "$bin" run --config "$dir/peers.ron" --name n0 --control "$dir/n0.sock" 2>"$dir/n0.log" &
pids+=($!)
ip netns exec "$ns" "$bin" run --config "$dir/peers.ron" --name n1 --control "$dir/n1.sock" --http 127.0.0.1:9314 2>"$dir/n1.log" &
pids+=($!)
for _ in $(seq 100); do [ -S "$dir/n0.sock" ] && [ -S "$dir/n1.sock" ] && break; sleep 0.1; done
sleep 3

# n1's view of n0's heartbeats, sampled in the background.
( while :; do
    "$bin" status --json --control "$dir/n1.sock" 2>/dev/null |
        python3 -c 'import json,sys; s=json.load(sys.stdin); print([p for p in s["peers"] if p["name"]=="n0"][0]["last_heard_ms"])' 2>/dev/null
    sleep 0.05
  done ) > "$dir/heard.txt" &
pids+=($!)

# time_ms CMD...: the wall time of CMD in milliseconds (output discarded).
time_ms() {
    local t0 t1
    t0=$(date +%s%N); "$@" >/dev/null; t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000)) | awk '{printf "%.1f\n", $1 / 1000}'
}
stats() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.stdin.read().split()]; print(f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})")'; }
reload() { "$bin" reload --control "$dir/n0.sock"; }
same=() removed=() added=() metrics=() status=()
for t in $(seq "$TRIALS"); do
    same+=("$(time_ms reload)")
    cp "$dir/half.ron" "$dir/peers.ron"; removed+=("$(time_ms reload)")
    cp "$dir/full.ron" "$dir/peers.ron"; added+=("$(time_ms reload)")
    metrics+=("$(time_ms ip netns exec "$ns" curl -sf http://127.0.0.1:9313/metrics)")
    status+=("$(time_ms ip netns exec "$ns" curl -sf http://127.0.0.1:9313/status.json)")
    log "trial $t: reload ${same[-1]} / ${removed[-1]} / ${added[-1]} ms, metrics ${metrics[-1]} ms"
done
log "soak: $SOAK s of reloads and scrapes back to back"
end=$((SECONDS + SOAK))
while [ "$SECONDS" -lt "$end" ]; do
    cp "$dir/half.ron" "$dir/peers.ron"; reload >/dev/null
    ip netns exec "$ns" curl -sf http://127.0.0.1:9313/metrics >/dev/null
    cp "$dir/full.ron" "$dir/peers.ron"; reload >/dev/null
    ip netns exec "$ns" curl -sf http://127.0.0.1:9313/status.json >/dev/null
done
metrics_bytes=$(ip netns exec "$ns" curl -sf http://127.0.0.1:9313/metrics | wc -c)
status_bytes=$(ip netns exec "$ns" curl -sf http://127.0.0.1:9313/status.json | wc -c)
peers=$("$bin" status --json --control "$dir/n0.sock" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["peers"]))')
worst=$(sort -n "$dir/heard.txt" | tail -1)
{
    echo "operations at $NODES nodes (heartbeat 1000 ms), $TRIALS trials, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD)"
    echo "figure                                   median (min-max)"
    echo "reload, file unchanged (ms)              $(printf '%s\n' "${same[@]}" | stats)"
    echo "reload, 512 nodes removed (ms)           $(printf '%s\n' "${removed[@]}" | stats)"
    echo "reload, 512 nodes added (ms)             $(printf '%s\n' "${added[@]}" | stats)"
    echo "GET /metrics (ms)                        $(printf '%s\n' "${metrics[@]}" | stats)   $metrics_bytes bytes"
    echo "GET /status.json (ms)                    $(printf '%s\n' "${status[@]}" | stats)   $status_bytes bytes"
    echo "peers listed by n0 at the end            $peers"
    echo "largest gap n1 saw between n0's heartbeats: ${worst} ms at a 1000 ms interval ($(wc -l < "$dir/heard.txt") samples)"
    echo "(wall times include starting the peermesh/curl process: about 1-3 ms)"
} | tee "$out"
