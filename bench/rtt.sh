#!/usr/bin/env bash
# RTT precision: does `peermesh status --json` report the round trip the kernel sees?
#
# (a) Loopback: 5 nodes on 127.0.0.2..6:1313 heartbeat every 100 ms for SECS (30) s; then,
#     with the nodes still running, ICMP `ping -c PINGS -i 0.01` to each address. Every
#     node's p50 to every peer is compared with the ping median of the peer's address.
#     Target: |p50 - ping median| <= 30 us.
# (b) Through a relay adding 30 ms to the round trip (two `peermesh-relay` processes, 15 ms
#     each way). The route, since a node answers a datagram's source and knows peers by
#     their identity, not their address:
#
#         config:  alpha host 127.0.0.12   beta host 127.0.0.13   (the relays' addresses)
#         alpha:   peermesh run --bind 127.0.0.2:1313             (its real address)
#         beta:    peermesh run --bind 127.0.0.3:1313
#         relay A: --listen 127.0.0.12:1313 --to 127.0.0.2:1313 --delay-ms 15   (in front of alpha)
#         relay B: --listen 127.0.0.13:1313 --to 127.0.0.3:1313 --delay-ms 15   (in front of beta)
#
#     alpha pings beta at 127.0.0.13 -> relay B (+15 ms) -> beta, which answers the source,
#     127.0.0.13 -> relay B (+15 ms) -> its client, alpha. beta's pings take relay A the same
#     way. Each relay's first client is the other node, and both directions of both nodes'
#     probes cross a relay twice: +30 ms per round trip. The nodes see the relays' IPs as
#     sources, so the mesh runs with a keyring (plain datagrams are accepted only from the
#     peers' configured IPs, and relay A's IP is alpha's own entry).
#     Expected p50: 30 ms + the loopback ping median of (a). Target: within 1 %.
#
# The relays are the instrument, not what is measured: they run under SCHED_FIFO (chrt) when
# it is available, so compile jobs on a shared machine do not make them late. NODES_RT=1 runs
# the nodes so too: what is left of the error is then peermesh's, not the scheduler's.
#
# Everything runs in a private network namespace, on loopback only; every process started
# is stopped by PID on exit. QUICK=1: 8 s phases and 50 pings, a smoke run.
# Prints a table and writes it to bench/results-rtt.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SECS=${SECS:-8}; PINGS=${PINGS:-50}
else
    SECS=${SECS:-30}; PINGS=${PINGS:-200}
fi
DELAY_MS=15 # each way, through each relay: 30 ms per round trip
NODES_RT=${NODES_RT:-0}
rt=()
command -v chrt >/dev/null && rt=(chrt -f 20)
node_rt=()
[ "$NODES_RT" = 1 ] && node_rt=("${rt[@]}")
cargo build --release --bins --quiet
command -v ping >/dev/null || { apt-get install -y -qq iputils-ping >/dev/null || exit 1; }
bin=target/release/peermesh
relay=target/release/peermesh-relay
out=bench/results-rtt.txt
. bench/lib.sh
bench_lab pmrtt

# start NAME CONFIG [--bind ADDR]: a node in the namespace, its stderr in NAME.log.
start() {
    local name=$1 config=$2; shift 2
    ip netns exec "$ns" "${node_rt[@]}" "$bin" run --config "$config" --name "$name" \
        --control "$dir/$name.sock" "$@" 2>>"$dir/$name.log" &
    pids+=($!)
    eval "pid_$name=$!"
}
# stop NAME: SIGTERM to the node's PID and wait for it (bounded by the node's own exit).
stop() {
    local var="pid_$1"
    kill "${!var}" 2>/dev/null || true
    wait "${!var}" 2>/dev/null || true
}
status_all() { # one status JSON per line, for the nodes named
    for n in "$@"; do "$bin" status --json --control "$dir/$n.sock" 2>/dev/null || echo '{}'; echo; done
}
# wait_alive NAME...: bounded wait until every named node has every peer alive with an RTT.
wait_alive() {
    local i
    for i in $(seq 1 100); do
        if status_all "$@" | python3 -c '
import json, sys
ok = True
for line in sys.stdin:
    if line.strip():
        s = json.loads(line)
        ok = ok and bool(s.get("peers")) and all(p["state"] == "alive" and p["rtt_us"] for p in s["peers"])
sys.exit(0 if ok else 1)'; then return 0; fi
        sleep 0.1
    done
    echo "nodes never all alive:" >&2; tail -n 5 "$dir"/*.log >&2; return 1
}
# ping_median IP: median of the per-reply times of PINGS ICMP echoes, in microseconds.
ping_median() {
    ip netns exec "$ns" ping -n -c "$PINGS" -i 0.01 -W 1 "$1" | python3 -c '
import re, statistics, sys
t = [float(m.group(1)) * 1000 for m in re.finditer(r"time=([0-9.]+) ms", sys.stdin.read())]
print(f"{statistics.median(t):.1f} {len(t)}" if t else "nan 0")'
}

# ---- (a) loopback -------------------------------------------------------------------------
names=(alpha beta gamma delta epsilon)
keyed_config "$dir/a.ron" 100 300 500 "${names[@]}" # the default 3 and 5 intervals
for n in "${names[@]}"; do start "$n" "$dir/a.ron"; done
wait_alive "${names[@]}"
sleep "$SECS"
: > "$dir/ping.txt"
for i in "${!names[@]}"; do
    echo "${names[$i]} $(ping_median "127.0.0.$((i + 2))")" >> "$dir/ping.txt"
done
status_all "${names[@]}" > "$dir/a.json"
for n in "${names[@]}"; do stop "$n"; done

# ---- (b) through the relays ---------------------------------------------------------------
cat > "$dir/b.ron" <<EOF
(heartbeat_interval_ms: 100, keyring: "keyring", nodes: [
  (name: "alpha", host: "127.0.0.12"),
  (name: "beta", host: "127.0.0.13"),
])
EOF
relay_secs=$((SECS + 10))
ip netns exec "$ns" "${rt[@]}" "$relay" --listen 127.0.0.12:1313 --to 127.0.0.2:1313 \
    --delay-ms "$DELAY_MS" --secs "$relay_secs" > "$dir/relay-a.out" 2>"$dir/relay-a.log" &
pids+=($!); relay_a=$!
ip netns exec "$ns" "${rt[@]}" "$relay" --listen 127.0.0.13:1313 --to 127.0.0.3:1313 \
    --delay-ms "$DELAY_MS" --secs "$relay_secs" > "$dir/relay-b.out" 2>"$dir/relay-b.log" &
pids+=($!); relay_b=$!
sleep 0.2
start alpha "$dir/b.ron" --bind 127.0.0.2:1313
start beta "$dir/b.ron" --bind 127.0.0.3:1313
wait_alive alpha beta
# The RTT window holds the last 64 samples (6.4 s at 100 ms): SECS fills it with relayed ones.
sleep "$SECS"
status_all alpha beta > "$dir/b.json"
stop alpha; stop beta
# The relays stop by themselves after --secs and print how late their sends were.
wait "$relay_a" "$relay_b" 2>/dev/null || true

# ---- the table ----------------------------------------------------------------------------
{
    echo "rtt precision ($(date -u '+%F %T') UTC, $(nproc) cores, release build, QUICK=$QUICK, NODES_RT=$NODES_RT, relays: ${rt[*]:-no chrt})"
    echo "load: $(uptime | sed 's/.*load average/load average/')"
    python3 - "$dir/ping.txt" "$dir/a.json" "$dir/b.json" "$DELAY_MS" "$SECS" "$PINGS" <<'EOF'
import json, statistics, sys
ping_file, a_file, b_file, delay_ms, secs, pings = sys.argv[1:]
ping = {}
for line in open(ping_file):
    name, med, n = line.split()
    ping[name] = (float(med), int(n))
def load(path):
    return [json.loads(l) for l in open(path) if l.strip() and l.strip() != "{}"]
print(f"(a) loopback, 5 nodes, 100 ms heartbeats for {secs} s; ICMP ping -c {pings} -i 0.01 medians")
print(f"  {'observer':<9} {'peer':<9} {'p50 us':>8} {'ping us':>8} {'err us':>8} {'err %':>7}  within 30 us")
errs = []
for s in load(a_file):
    for p in s["peers"]:
        p50 = p["rtt_us"]["p50"] if p["rtt_us"] else float("nan")
        ref = ping[p["name"]][0]
        err = p50 - ref
        errs.append(err)
        ok = "yes" if abs(err) <= 30 else "NO"
        print(f"  {s['node']:<9} {p['name']:<9} {p50:8.1f} {ref:8.1f} {err:+8.1f} {100 * err / ref:+6.1f}%  {ok}")
if errs:
    a = [abs(e) for e in errs]
    print(f"  summary: {len(errs)} pairs, |err| median {statistics.median(a):.1f} us, max {max(a):.1f} us, "
          f"{sum(x <= 30 for x in a)}/{len(a)} within 30 us (target: all)")
loop = statistics.median(v for v, _ in ping.values())
want = 2 * float(delay_ms) * 1000 + loop
print(f"(b) through relays adding {2 * float(delay_ms):.0f} ms per round trip; expected p50 = "
      f"{2 * float(delay_ms) * 1000:.0f} + {loop:.1f} (loopback ping) = {want:.1f} us")
print(f"  {'observer':<9} {'peer':<9} {'p50 us':>9} {'min us':>9} {'p99 us':>9} {'err us':>8} {'err %':>7}  within 1%")
for s in load(b_file):
    for p in s["peers"]:
        r = p["rtt_us"] or {"p50": float("nan"), "min": float("nan"), "p99": float("nan")}
        err = r["p50"] - want
        ok = "yes" if abs(err) <= want / 100 else "NO"
        print(f"  {s['node']:<9} {p['name']:<9} {r['p50']:9.1f} {r['min']:9.1f} {r['p99']:9.1f} {err:+8.1f} {100 * err / want:+6.2f}%  {ok}")
EOF
    echo "  relays (their own account of how late they sent):"
    sed 's/^/    /' "$dir/relay-a.out" "$dir/relay-b.out"
} | tee "$out"
