#!/usr/bin/env bash
# Application data through real daemons: how fast confirmed messages go, and how long
# `peermesh send --confirm` and a 64 KiB transfer take against the round trip.
#
# Two nodes, alpha and beta, in a private network namespace on loopback, heartbeat 100 ms,
# behind one `peermesh-relay` in mesh mode that puts D ms on each direction of the path
# (D = 0, 1, 5, 20: round trips of about 0, 2, 10, 40 ms plus loopback). For each D:
#   - the RTT p50 alpha measures to beta (`status --json`), the yardstick;
#   - `peermesh send --confirm beta DATA` from alpha, wall time from start to exit, for
#     DATA of 16 B, 1 KiB, 16 KiB and 64 KiB (TRIALS runs each, median and min-max);
# and at D = 0 the throughput of confirmed messages through alpha's daemon: a client keeps
# CONCURRENCY requests `{"cmd":"send","to":"beta","confirm":true,...}` in flight on the control
# socket for SECS seconds (one request per connection, as the protocol has it), counted
# when answered delivered; runs ROUNDS times (median, min-max).
#
# Prints a table and writes it to bench/results-app-data.txt. Everything it starts is
# stopped by PID on exit; the namespace is deleted. QUICK=1: a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    TRIALS=3 SECS=2 ROUNDS=1 DELAYS=${DELAYS:-"0 5"}
else
    TRIALS=${TRIALS:-15} SECS=${SECS:-5} ROUNDS=${ROUNDS:-3} DELAYS=${DELAYS:-"0 1 5 20"}
fi
CONCURRENCY=${CONCURRENCY:-24}
SIZES="16 1024 16384 65536"
out=bench/results-app-data.txt
cargo build --release --bins --quiet -p peermesh -p peermesh-tools
target=$(cargo metadata --no-deps --format-version 1 | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=$target/release/peermesh
relay=$target/release/peermesh-relay
source bench/lib.sh
bench_lab pmdata
log() { printf '[%4ds] %s\n' "$SECONDS" "$*" >&2; }

# The config lists the relay's addresses; the nodes bind their real ones behind it.
cat > "$dir/peers.ron" <<END
(heartbeat_interval_ms: 100, suspect_after_ms: 300, dead_after_ms: 500, nodes: [
  (name: "alpha", host: "127.0.0.12", port: 1313),
  (name: "beta", host: "127.0.0.13", port: 1313),
])
END

start_mesh() { # D: one-way delay of the relay, ms
    local d=$1
    # Started as `ip netns exec` itself, not through a function: `$!` is then the process
    # that becomes the relay (a function in the background is a subshell, and killing it
    # left the relay running, holding its addresses for the next delay).
    ip netns exec "$ns" "$relay" --secs 3600 --node alpha,127.0.0.12:1313,127.0.0.2:1313 \
        --node beta,127.0.0.13:1313,127.0.0.3:1313 --path "alpha,beta,$d" --path "beta,alpha,$d" \
        > "$dir/relay.out" 2>&1 &
    relay_pid=$!
    pids+=("$relay_pid")
    ip netns exec "$ns" "$bin" run --config "$dir/peers.ron" --name alpha --bind 127.0.0.2:1313 \
        --control "$dir/alpha.sock" 2> "$dir/alpha.log" &
    alpha_pid=$!
    pids+=("$alpha_pid")
    ip netns exec "$ns" "$bin" run --config "$dir/peers.ron" --name beta --bind 127.0.0.3:1313 \
        --control "$dir/beta.sock" 2> "$dir/beta.log" &
    beta_pid=$!
    pids+=("$beta_pid")
    local k
    for k in $(seq 100); do
        rtt=$("$bin" status --control "$dir/alpha.sock" --json 2>/dev/null | python3 -c '
import json, sys
peers = json.load(sys.stdin)["peers"]
beta = [p for p in peers if p["name"] == "beta"][0]
print(beta["rtt_us"]["p50"] if beta["state"] == "alive" and beta.get("rtt_us") else "")
' 2>/dev/null || true)
        [ -n "$rtt" ] && break
        sleep 0.1
    done
    [ -n "$rtt" ] || { log "alpha never saw beta alive at D=$d"; tail "$dir/alpha.log" >&2; exit 1; }
    sleep 2 # a window of samples at this delay
    rtt=$("$bin" status --control "$dir/alpha.sock" --json | python3 -c '
import json, sys
peers = json.load(sys.stdin)["peers"]
print([p for p in peers if p["name"] == "beta"][0]["rtt_us"]["p50"])')
}

stop_mesh() {
    local p
    for p in "$alpha_pid" "$beta_pid" "$relay_pid"; do kill "$p" 2>/dev/null || true; done
    for p in "$alpha_pid" "$beta_pid" "$relay_pid"; do wait "$p" 2>/dev/null || true; done
}

# median (min-max) of numbers on stdin
stats() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) {print "-"; exit} m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.2f (%.2f-%.2f)\n", m, v[1], v[NR]}'; }

# Wall time of one `send --confirm` of SIZE bytes, in ms (exit 0 required).
send_ms() {
    local size=$1 t0 t1
    head -c "$size" /dev/zero | tr '\0' 'x' > "$dir/payload"
    t0=$(date +%s%N)
    "$bin" send --control "$dir/alpha.sock" --confirm beta < "$dir/payload" > /dev/null
    t1=$(date +%s%N)
    echo "scale=3; ($t1 - $t0) / 1000000" | bc
}

throughput() { # messages/s answered delivered over SECS s with CONCURRENCY in flight
    python3 - "$dir/alpha.sock" "$SECS" "$CONCURRENCY" <<'PY'
import selectors, socket, sys, time
path, secs, conc = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
req = b'{"v":1,"cmd":"send","to":"beta","data":"ping","confirm":true}\n'
sel = selectors.DefaultSelector()
done = failed = 0
def open_one():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(req)
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ, bytearray())
end = time.monotonic() + secs
for _ in range(conc):
    open_one()
while time.monotonic() < end:
    for key, _ in sel.select(timeout=max(0.0, end - time.monotonic())):
        s, buf = key.fileobj, key.data
        chunk = s.recv(65536)
        buf += chunk
        if chunk and not buf.endswith(b"\n"):
            continue
        sel.unregister(s)
        s.close()
        if b'"failed":[]' in buf and b'"ok":true' in buf:
            done += 1
        else:
            failed += 1
        if time.monotonic() < end:
            open_one()
print(f"{done / secs:.0f} {failed}")
PY
}

declare -A cell=()
rtts=()
for d in $DELAYS; do
    log "one-way delay $d ms"
    start_mesh "$d"
    rtts+=("$d:$rtt")
    for size in $SIZES; do
        for _ in $(seq "$TRIALS"); do send_ms "$size"; done > "$dir/t-$d-$size"
        cell[$d,$size]=$(stats < "$dir/t-$d-$size")
        log "  $size B: ${cell[$d,$size]} ms"
    done
    if [ "$d" = 0 ]; then
        for _ in $(seq "$ROUNDS"); do throughput; done > "$dir/tput"
        tput=$(awk '{print $1}' "$dir/tput" | stats)
        tput_failed=$(awk '{s += $2} END {print s + 0}' "$dir/tput")
        log "  throughput: $tput messages/s ($tput_failed not delivered)"
    fi
    stop_mesh
done

{
    echo "peermesh application data through daemons ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r))"
    echo "peermesh $(git rev-parse --short HEAD) release build; 2 nodes, heartbeat 100 ms, behind peermesh-relay in mesh mode"
    echo "QUICK=$QUICK: $TRIALS sends per cell, throughput $ROUNDS x ${SECS}s with $CONCURRENCY requests in flight"
    echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "confirmed messages through one daemon (4 B payload, alpha -> beta, no added delay):"
    echo "  ${tput:-?} messages/s, median (min-max) of $ROUNDS rounds; $tput_failed not answered delivered"
    echo
    printf '%-24s' "send --confirm, ms"
    for size in $SIZES; do printf '%22s' "$size B"; done
    echo
    for entry in "${rtts[@]}"; do
        d=${entry%%:*}
        r=${entry#*:}
        printf '%-24s' "D=$d ms, RTT p50 $(printf '%.2f' "$(echo "$r / 1000" | bc -l)") ms"
        for size in $SIZES; do printf '%22s' "${cell[$d,$size]}"; done
        echo
    done
    echo
    echo "each cell: wall time of \`peermesh send --confirm beta < FILE\` from start to exit (process"
    echo "start, control request, fragments, acks, reply), median (min-max). Minus the RTT: the cost"
    echo "over one round trip. 64 KiB = 59 fragments of 1124 B."
} | tee "$out"
