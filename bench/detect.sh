#!/usr/bin/env bash
# Failure detection: how long from `kill -9` of one node until every other node says `dead`.
#
# For heartbeat intervals of 1 s and 100 ms (default suspect = 3, dead = 5 intervals), with 5
# and with 20 nodes, TRIALS (5) times each: kill -9 one node, note the time, and read when
# each other node logged `peer VICTIM suspect -> dead`; the trial's figure is the last of
# them. Then the victim is restarted (a new incarnation) and the next trial waits until every
# node has every peer alive again. Target: <= 600 ms at 100 ms intervals.
#
# The daemon's own log timestamps have whole seconds only (env_logger's default), so each
# node's stderr goes through a FIFO to a reader that stamps every line with $EPOCHREALTIME
# (microseconds, the same clock as the kill's stamp) as it arrives; a line is written the
# moment the core changes state. The final state is cross-checked with `status --json`.
#
# Then a false-positive soak: 20 nodes at 100 ms for SOAK_SECS (600) s, counting every
# suspect/dead/unreachable transition and one-way warning in the logs. Target: zero.
#
# Everything runs in a private network namespace, on loopback only; every process started
# is stopped by PID on exit. QUICK=1: 2 trials per case and a 60 s soak, a smoke run.
# Prints a table and writes it to bench/results-detect.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    TRIALS=${TRIALS:-2}; SOAK_SECS=${SOAK_SECS:-60}
else
    TRIALS=${TRIALS:-5}; SOAK_SECS=${SOAK_SECS:-600}
fi
cargo build --release --bins --quiet
bin=target/release/peermesh
out=bench/results-detect.txt
ns=pmdetect$$
dir=$(mktemp -d)
declare -A pid stamper
cleanup() {
    local p
    for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pid[@]}" "${stamper[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
umask 077
"$bin" keygen > "$dir/keyring"

now() { echo "$EPOCHREALTIME"; }
# config N INTERVAL_MS: nodes n01..nN on 127.0.0.2.., default suspect and dead times.
config() {
    local i
    echo "(heartbeat_interval_ms: $2, keyring: \"keyring\", nodes: ["
    for i in $(seq 1 "$1"); do printf '  (name: "n%02d", host: "127.0.0.%d"),\n' "$i" $((i + 1)); done
    echo "])"
}
# start NAME: the node in the namespace; its stderr, each line stamped, appended to NAME.log.
start() {
    local n=$1
    rm -f "$dir/$n.fifo"; mkfifo "$dir/$n.fifo"
    (while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done) \
        < "$dir/$n.fifo" >> "$dir/$n.log" &
    stamper[$n]=$!
    ip netns exec "$ns" "$bin" run --config "$dir/peers.ron" --name "$n" \
        --control "$dir/$n.sock" 2>"$dir/$n.fifo" &
    pid[$n]=$!
}
# stop NAME [SIGNAL]: signal the node's PID, wait for it and for its stamper.
stop() {
    kill "-${2:-TERM}" "${pid[$1]}" 2>/dev/null || true
    wait "${pid[$1]}" 2>/dev/null || true
    wait "${stamper[$1]}" 2>/dev/null || true
    unset "pid[$1]" "stamper[$1]"
}
stop_all() { local n; for n in "${!pid[@]}"; do stop "$n"; done; }
status_all() { # one status JSON per line
    local n
    for n in "$@"; do "$bin" status --json --control "$dir/$n.sock" 2>/dev/null || echo '{}'; echo; done
}
# wait_alive LIMIT_S NAME...: bounded wait until every node has every peer alive.
wait_alive() {
    local limit=$1; shift
    local end=$((SECONDS + limit))
    while [ $SECONDS -lt $end ]; do
        if status_all "$@" | python3 -c '
import json, sys
ok = True
for line in sys.stdin:
    if line.strip():
        s = json.loads(line)
        ok = ok and bool(s.get("peers")) and all(p["state"] == "alive" for p in s["peers"])
sys.exit(0 if ok else 1)'; then return 0; fi
        sleep 0.05
    done
    echo "not every node has every peer alive after ${limit} s" >&2
    return 1
}
# dead_times T0 VICTIM NAME...: for each observer, seconds from T0 to its logged
# `VICTIM ... -> dead` (or `-> unreachable`, marked u) after T0; "-" if none yet.
dead_times() {
    local t0=$1 victim=$2 n; shift 2
    for n in "$@"; do
        awk -v t0="$t0" -v pat=": peer $victim suspect -> " '
            $1 >= t0 && index($0, pat) {
                kind = ($NF == "dead") ? "" : "u"
                printf "%.1f%s\n", ($1 - t0) * 1000, kind; found = 1; exit
            }
            END { if (!found) print "-" }' "$dir/$n.log"
    done
}

results=()
row() { printf '  %-9s %5s  %13s  %13s  %14s  %6s  %s' "$@"; }
# trial_case N INTERVAL_MS: TRIALS kills in a fresh mesh of N nodes.
trial_case() {
    local n_nodes=$1 ms=$2 t victim t0 limit times dead state
    config "$n_nodes" "$ms" > "$dir/peers.ron"
    local names=()
    for t in $(seq 1 "$n_nodes"); do names+=("$(printf 'n%02d' "$t")"); done
    for t in "${names[@]}"; do start "$t"; done
    wait_alive 30 "${names[@]}"
    local figures=() firsts=() notes=""
    for t in $(seq 1 "$TRIALS"); do
        victim=${names[$(( (t - 1) % (n_nodes - 1) + 1 ))]}
        local others=()
        for x in "${names[@]}"; do [ "$x" = "$victim" ] || others+=("$x"); done
        # A random phase against the heartbeats: 2 to 3 intervals after all are alive.
        sleep "$(awk -v ms="$ms" -v r=$RANDOM 'BEGIN { printf "%.3f", ms * (2 + r / 32768) / 1000 }')"
        t0=$(now)
        kill -9 "${pid[$victim]}"
        wait "${pid[$victim]}" 2>/dev/null || true # reaped here, quietly
        # Bounded: dead_after plus 10 intervals.
        limit=$(awk -v ms="$ms" 'BEGIN { print int(ms * 15 / 20) + 1 }')
        for _ in $(seq 1 "$limit"); do
            times=$(dead_times "$t0" "$victim" "${others[@]}")
            grep -q -- '^-$' <<< "$times" || break
            sleep 0.02
        done
        # The daemon's own word for it, for every observer.
        dead=$(status_all "${others[@]}" | python3 -c '
import json, sys
v = sys.argv[1]
print(sum(1 for l in sys.stdin if l.strip() for p in json.loads(l).get("peers", [])
          if p["name"] == v and p["state"] == "dead"))' "$victim")
        if grep -q -- '^-$' <<< "$times"; then
            notes="$notes trial $t: not every node logged $victim dead;"
        else
            figures+=("$(sort -g <<< "${times//u/}" | tail -1)")
            firsts+=("$(sort -g <<< "${times//u/}" | head -1)")
            grep -q u <<< "$times" && notes="$notes trial $t: $(grep -c u <<< "$times") said unreachable;"
        fi
        [ "$dead" = "${#others[@]}" ] || notes="$notes trial $t: status shows $dead/${#others[@]} dead;"
        stop "$victim" KILL
        start "$victim"
        wait_alive 30 "${names[@]}"
    done
    stop_all
    rm -f "$dir"/*.log
    state=$(python3 -c '
import statistics, sys
xs = [float(x) for x in sys.argv[2:]]
target = sys.argv[1]
if not xs:
    print("-", "-", "-", "-"); sys.exit()
med = statistics.median(xs)
ok = "yes" if target == "-" or med <= float(target) else "NO"
print(f"{med:.0f}", f"{min(xs):.0f}-{max(xs):.0f}", len(xs), ok)' "$([ "$ms" = 100 ] && echo 600 || echo -)" "${figures[@]}")
    read -r med range count ok <<< "$state"
    local fstate
    fstate=$(python3 -c '
import statistics, sys
xs = [float(x) for x in sys.argv[1:]]
print(f"{statistics.median(xs):.0f}" if xs else "-")' "${firsts[@]}")
    results+=("$(row "$ms ms" "$n_nodes" "$med ms" "$range ms" "$fstate ms" "$count/$TRIALS" \
        "$([ "$ms" = 100 ] && echo "$ok" || echo "n/a")")")
    [ -z "$notes" ] || results+=("      notes:$notes")
    echo "${results[-1]}" >&2
}

for case in "1000 5" "1000 20" "100 5" "100 20"; do
    read -r ms n <<< "$case"
    trial_case "$n" "$ms"
done

# ---- false-positive soak ----------------------------------------------------------------------
config 20 100 > "$dir/peers.ron"
names=()
for t in $(seq 1 20); do names+=("$(printf 'n%02d' "$t")"); done
for t in "${names[@]}"; do start "$t"; done
wait_alive 30 "${names[@]}"
soak_t0=$(now)
end=$((SECONDS + SOAK_SECS))
while [ $SECONDS -lt $end ]; do
    # Bounded; every node must still be running.
    for t in "${names[@]}"; do kill -0 "${pid[$t]}" || { echo "node $t died during the soak" >&2; exit 1; }; done
    sleep 1
done
soak_counts=$(cat "$dir"/n*.log | awk -v t0="$soak_t0" '
    $1 >= t0 && / -> suspect$/ { s++ } $1 >= t0 && / -> dead$/ { d++ }
    $1 >= t0 && / -> unreachable$/ { u++ } $1 >= t0 && /does not hear this node/ { a++ }
    END { printf "%d %d %d %d", s, d, u, a }')
read -r s_n d_n u_n a_n <<< "$soak_counts"
soak_dropped=$(status_all "${names[@]}" | python3 -c '
import json, sys
t = 0
for l in sys.stdin:
    if l.strip():
        t += sum(json.loads(l).get("dropped", {}).values())
print(t)')
stop_all

{
    echo "failure detection ($(date -u '+%F %T') UTC, $(nproc) cores, release build, QUICK=$QUICK)"
    echo "load: $(uptime | sed 's/.*load average/load average/')"
    echo "kill -9 -> every other node logs 'suspect -> dead' (suspect = 3, dead = 5 intervals)"
    row interval nodes "median (last)" "min-max (last)" "median (first)" trials "<= 600 ms"; echo
    printf '%s\n' "${results[@]}"
    echo "false-positive soak: 20 nodes, 100 ms heartbeats, ${SOAK_SECS} s (${#names[@]} nodes x 19 peers)"
    echo "  -> suspect: $s_n, -> dead: $d_n, -> unreachable: $u_n, one-way warnings: $a_n, datagrams dropped: $soak_dropped"
    if [ "$((s_n + d_n + u_n + a_n))" = 0 ]; then echo "  result: zero false positives"; else echo "  result: FALSE POSITIVES"; fi
} | tee "$out"
