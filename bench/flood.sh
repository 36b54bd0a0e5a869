#!/usr/bin/env bash
# Flood soak: one node takes >= 100,000 garbage datagrams/s for 5 s on loopback from a
# second process while it heartbeats 4 healthy peers every 100 ms. Prints the flood rate,
# what the node dropped, and whether any peer was ever seen `suspect` (on either side).
# Runs in a private network namespace; everything it starts is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${SECS:-5}
cargo build --release --bins >/dev/null 2>&1
bin=target/release/peermesh
flood=target/release/peermesh-flood
. bench/lib.sh
bench_lab pmflood
names=(alpha beta gamma delta epsilon)
keyed_config "$dir/peers.ron" 100 300 800 "${names[@]}"
for n in "${names[@]}"; do
    ip netns exec "$ns" "$bin" run --config "$dir/peers.ron" --name "$n" --control "$dir/$n.sock" 2>"$dir/$n.log" &
    pids+=($!)
done
sleep 2
key_id=$(grep -o 'sealing with key [0-9a-f]*' "$dir/alpha.log" | head -1 | awk '{print $4}')
states() {
    for n in "${names[@]}"; do "$bin" status --json --control "$dir/$n.sock"; echo; done | python3 -c '
import json, sys
bad = []
for line in sys.stdin:
    if line.strip():
        s = json.loads(line)
        bad += [s["node"] + "->" + p["name"] + ":" + p["state"] for p in s["peers"] if p["state"] != "alive"]
print(" ".join(bad))'
}
before=$(states)
[ -z "$before" ] || { echo "not all alive before the flood: $before"; exit 1; }
# Two flooders, so the sender side is not the bottleneck on a 2-core machine.
for k in 1 2; do
    ip netns exec "$ns" "$flood" --target 127.0.0.2:1313 --secs "$SECS" --key-id "$key_id" > "$dir/flood$k.out" &
    pids+=($!)
done
bad_seen=""
checks=0
end=$((SECONDS + SECS + 1))
while [ $SECONDS -lt $end ]; do
    b=$(states); checks=$((checks + 1))
    [ -n "$b" ] && bad_seen="$bad_seen $b"
    sleep 0.05
done
wait "${pids[5]}" "${pids[6]}" 2>/dev/null || true
sent=$(cat "$dir"/flood*.out | awk '{s += $2} END {print s}')
handled=$("$bin" status --json --control "$dir/alpha.sock" | python3 -c '
import json, sys; d = json.load(sys.stdin)["dropped"]
print(d["malformed"] + d["auth_failed"] + d["wrong_version"])')
echo "flood soak ($(date -u +%F), $(nproc) cores, release build)"
echo "  flood: $sent datagrams sent in ${SECS} s by 2 processes = $((sent / SECS))/s"
echo "  node handled (dropped as garbage): $handled = $((handled / SECS))/s"
echo "  state checks on all 5 nodes during the flood: $checks"
if [ -z "$bad_seen" ]; then
    echo "  result: no peer was ever reported suspect or worse, on either side"
else
    echo "  result: FAILED, seen: $bad_seen"; exit 1
fi
