#!/usr/bin/env bash
# bench/node.sh — the footprint of one peermesh node: binary size, idle CPU and RSS with
# 20 / 100 / 1,000 peers at a 1 s interval, and loopback RTT against ICMP ping.
#
# Run by hand (as root: it makes a private network namespace):   bench/node.sh
# Smoke run with short windows:                                  QUICK=1 bench/node.sh
# Knobs: WINDOW (s, 20-peer windows), WINDOW_BIG (s, 100/1,000-peer windows), WARMUP (s),
#        RTT_SECS (s), SKIP_1000=1, KEYED=1 (a keyring: every datagram sealed),
#        SAMPLED_PEERS (default 2000; 0 skips the sampled-mode case),
#        ONLY_SAMPLED=1 (just the sampled-mode case: one node against SAMPLED_PEERS peers).
# Not part of the tests. See bench/README.md.
#
# All traffic stays on the loopback of a namespace this script makes and removes; every
# process it starts is killed by PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    WINDOW=${WINDOW:-10} WINDOW_BIG=${WINDOW_BIG:-5} WARMUP=${WARMUP:-5} RTT_SECS=${RTT_SECS:-10}
else
    WINDOW=${WINDOW:-60} WINDOW_BIG=${WINDOW_BIG:-20} WARMUP=${WARMUP:-5} RTT_SECS=${RTT_SECS:-30}
fi
WINDOWS=3
SKIP_1000=${SKIP_1000:-0}
SAMPLED_PEERS=${SAMPLED_PEERS:-2000}
ONLY_SAMPLED=${ONLY_SAMPLED:-0}
KEYED=${KEYED:-0}
RESULTS=$ROOT/bench/results-node.txt

die() { echo "node.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: the script makes a private network namespace"
command -v ip >/dev/null || die "needs ip (iproute2)"
if ! command -v ping >/dev/null; then
    echo "node.sh: ping is missing; installing iputils-ping" >&2
    apt-get install -y iputils-ping >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && apt-get install -y iputils-ping >/dev/null 2>&1; } ||
        die "cannot install iputils-ping"
fi

echo "== building release binaries"
cargo build --release --bins
BIN=$ROOT/target/release/peermesh
LOADGEN=$ROOT/target/release/peermesh-loadgen
# Other work on the machine disturbs every figure here (RTT most): it is printed with them.
LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)

NS=pmbench$$
WORK=$(mktemp -d /tmp/peermesh-bench.XXXXXX)
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
inns() { ip netns exec "$NS" "$@"; }
# One UDP socket per played node, plus the node's own: keep well clear of the fd limit.
ulimit -n 8192 2>/dev/null || true

# ---- helpers -----------------------------------------------------------------------------

# stats V...: "median (min–max)" of numbers, printed with the precision they came with.
stats() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        if (NR == 1) print m; else printf "%s (%s-%s)\n", m, v[1], v[NR] }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# The address of node i (1-based): 127.0.1.1, ..., 127.0.1.255, 127.0.2.0, ...
addr_of() { echo "127.0.$((1 + $1 / 256)).$(($1 % 256))"; }

# With KEYED=1 every config names a key file next to it (sealed datagrams).
KEYRING_FIELD=
if [ "$KEYED" = 1 ]; then
    (umask 077 && "$BIN" keygen >"$WORK/keyring")
    KEYRING_FIELD='keyring: "keyring", '
fi

# gen_config FILE N INTERVAL_MS ADDR_FN [FIELDS]: nodes n1..nN at port 1313, and FIELDS
# (such as `probe_mode: "sampled", `) at the top level.
gen_config() {
    local file=$1 n=$2 interval=$3 addr=$4 fields=${5:-} i
    {
        echo "(port: 1313, heartbeat_interval_ms: $interval, ${KEYRING_FIELD}${fields}nodes: ["
        for ((i = 1; i <= n; i++)); do
            echo "    (name: \"n$i\", host: \"$($addr "$i")\"),"
        done
        echo "])"
    } >"$file"
}

start_node() { # start_node CONFIG NAME -> sets NODE_PID
    local sock=$WORK/$2.sock
    rm -f "$sock"
    # `ip netns exec` execs the program: $! is the node's own PID (not a subshell's).
    ip netns exec "$NS" "$BIN" run --config "$1" --name "$2" --control "$sock" \
        2>>"$WORK/$2.log" &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
    local i
    for ((i = 0; i < 500; i++)); do
        if [ -S "$sock" ]; then
            [ "$(cat "/proc/$NODE_PID/comm")" = peermesh ] || die "PID $NODE_PID is not the node"
            return 0
        fi
        kill -0 "$NODE_PID" 2>/dev/null || die "node $2 exited: $(tail -3 "$WORK/$2.log")"
        sleep 0.02
    done
    die "node $2 never opened its control socket"
}

stop() { # stop PID...: SIGTERM, wait, forget
    local pid keep=() p
    for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do
        for pid in "$@"; do [ "$p" = "$pid" ] && continue 2; done
        keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

status_json() { inns "$BIN" status --control "$WORK/$1.sock" --json; }
alive_count() { status_json "$1" | grep -o '"state":"alive"' | wc -l; }

# CPU time of a (single-threaded) process: "schedstat_ns stat_ticks ctxt_switches".
cpu_sample() {
    local sched stat ctxt
    sched=$(cut -d' ' -f1 "/proc/$1/schedstat")
    stat=$(sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }') # utime + stime
    ctxt=$(awk '/ctxt_switches/ { s += $2 } END { print s }' "/proc/$1/status")
    echo "$sched $stat $ctxt"
}
now_ns() { date +%s%N; }
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# ---- 1. binary size ------------------------------------------------------------------------

SIZE=$(stat -c %s "$BIN")
SIZE_MIB=$(awk -v b="$SIZE" 'BEGIN { printf "%.2f", b / 1048576 }')
STRIPPED=$(file -b "$BIN" 2>/dev/null | grep -o 'not stripped\|stripped' || echo "?")
echo "== release binary: $SIZE bytes = $SIZE_MIB MiB ($STRIPPED)"

# ---- 2. idle CPU and RSS with N peers at 1 s -----------------------------------------------

TICK_NS=$((1000000000 / $(getconf CLK_TCK)))
declare -A CPU CPU_TICKS WAKE RSS HWM ALIVE
# idle PEERS WINDOW_SECS [sampled]
idle() {
    local peers=$1 window=$2 mode=${3:-full} n=$(($1 + 1)) cfg=$WORK/idle-$1.ron
    local fields='probe_mode: "full", ' peers_arg=(--peers n1)
    if [ "$mode" = sampled ]; then
        # Every played node runs a whole sampled-mode core: n1 gets what a sampled mesh of
        # this size sends one node (probes of it, indirect probes through it, updates).
        fields='probe_mode: "sampled", ' peers_arg=()
    fi
    gen_config "$cfg" "$n" 1000 addr_of "$fields"
    echo "== $peers peers at 1 s ($mode): warm-up ${WARMUP} s, then $WINDOWS windows of ${window} s"
    start_node "$cfg" n1
    local node=$NODE_PID
    # Full mode: the played nodes heartbeat only n1 (--peers n1): n1 sees exactly what a full
    # mesh would send it, and the load generator stays small next to it.
    ip netns exec "$NS" "$LOADGEN" --config "$cfg" --play all-but:n1 "${peers_arg[@]}" --quiet \
        >"$WORK/loadgen-$peers.out" 2>&1 &
    local lg=$!
    PIDS+=("$lg")
    sleep "$WARMUP"
    kill -0 "$lg" 2>/dev/null || die "loadgen exited: $(cat "$WORK/loadgen-$peers.out")"
    local pcts=() ticks=() wakes=() rss=() w a b t0 t1
    for ((w = 1; w <= WINDOWS; w++)); do
        a=($(cpu_sample "$node")) t0=$(now_ns)
        sleep "$window"
        b=($(cpu_sample "$node")) t1=$(now_ns)
        local dt=$((t1 - t0))
        pcts+=($(awk -v d=$((b[0] - a[0])) -v t=$dt 'BEGIN { printf "%.4f", 100 * d / t }'))
        ticks+=($(awk -v d=$(((b[1] - a[1]) * TICK_NS)) -v t=$dt 'BEGIN { printf "%.3f", 100 * d / t }'))
        wakes+=($(awk -v d=$((b[2] - a[2])) -v t=$dt 'BEGIN { printf "%.0f", d * 1e9 / t }'))
        rss+=($(kib "$node" VmRSS))
        echo "   window $w: cpu ${pcts[-1]}% (stat ticks ${ticks[-1]}%), ${wakes[-1]} wake-ups/s, VmRSS ${rss[-1]} KiB"
    done
    ALIVE[$peers]="$(alive_count n1)/$peers"
    HWM[$peers]=$(kib "$node" VmHWM)
    CPU[$peers]=$(stats "${pcts[@]}")
    CPU_TICKS[$peers]=$(stats "${ticks[@]}")
    WAKE[$peers]=$(stats "${wakes[@]}")
    RSS[$peers]=$(stats "${rss[@]}")
    echo "   alive at n1: ${ALIVE[$peers]}; VmHWM ${HWM[$peers]} KiB"
    stop "$lg"
    stop "$node"
    echo "   $(cat "$WORK/loadgen-$peers.out")"
}

if [ "$ONLY_SAMPLED" = 1 ]; then
    idle "$SAMPLED_PEERS" "$WINDOW_BIG" sampled
    peers=$SAMPLED_PEERS
    echo "== sampled: $peers peers: cpu ${CPU[$peers]}% (stat ${CPU_TICKS[$peers]}%), ${WAKE[$peers]} wake-ups/s, VmRSS ${RSS[$peers]} KiB, VmHWM ${HWM[$peers]} KiB, alive ${ALIVE[$peers]}"
    exit 0
fi
idle 20 "$WINDOW"
idle 100 "$WINDOW_BIG"
[ "$SKIP_1000" = 1 ] || idle 1000 "$WINDOW_BIG"
[ "$SAMPLED_PEERS" = 0 ] || idle "$SAMPLED_PEERS" "$WINDOW_BIG" sampled

# ---- 3. loopback RTT vs ICMP ping ------------------------------------------------------------

rtt_addr() { echo "127.0.0.$(($1 + 1))"; } # n1..n5 on 127.0.0.2..6
RCFG=$WORK/rtt.ron
gen_config "$RCFG" 5 100 rtt_addr
echo "== RTT: 5 nodes at 100 ms for ${RTT_SECS} s, then ping -c 200 -i 0.01 each peer"
RTT_PIDS=()
for i in 1 2 3 4 5; do
    start_node "$RCFG" "n$i"
    RTT_PIDS+=("$NODE_PID")
done
sleep "$RTT_SECS"
# "name p50" per peer from n1's status (rtt_us.p50, µs).
status_json n1 | grep -o '"name":"[^"]*"\|"p50":[0-9.eE+-]*' |
    awk -F: '/"name"/ { gsub(/"/, "", $2); n = $2 } /"p50"/ { print n, $2 }' >"$WORK/p50.txt"
RTT_LINES=() P50S=() PINGS=() UPINGS=() DIFFS=()
# ping_median ADDR [-U]: median of 200 per-reply times in µs (ping's own summary has only
# avg/mdev). Plain ping times with kernel receive timestamps; -U is user-to-user, i.e. it
# includes ping's own wake-up, as peermesh's figure includes the nodes' wake-ups.
ping_median() {
    local times
    mapfile -t times < <(inns ping -n -c 200 -i 0.01 ${2:-} "$1" |
        sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' | awk '{ printf "%.1f\n", $1 * 1000 }')
    [ "${#times[@]}" -gt 0 ] || die "no ping replies from $1"
    median "${times[@]}"
}
for i in 2 3 4 5; do
    addr=$(rtt_addr "$i")
    p50=$(awk -v n="n$i" '$1 == n { printf "%.1f", $2 }' "$WORK/p50.txt")
    [ -n "$p50" ] || die "n1 has no RTT for n$i: $(status_json n1)"
    pmed=$(ping_median "$addr")
    umed=$(ping_median "$addr" -U)
    diff=$(awk -v a="$p50" -v b="$pmed" 'BEGIN { printf "%.1f", a - b }')
    P50S+=("$p50") PINGS+=("$pmed") UPINGS+=("$umed") DIFFS+=("$diff")
    RTT_LINES+=("$(printf '  n1 -> n%s (%s): p50 %6.1f us, ping %6.1f us (diff %+6.1f), ping -U %6.1f us' \
        "$i" "$addr" "$p50" "$pmed" "$diff" "$umed")")
    echo "${RTT_LINES[-1]}"
done
stop "${RTT_PIDS[@]}"

# ---- table -----------------------------------------------------------------------------------

verdict() { awk -v v="$1" -v t="$2" 'BEGIN { print (v + 0 <= t + 0) ? "ok" : "MISSED" }'; }
first() { echo "${1%% *}"; }
mib() { awk -v k="$(first "$1")" 'BEGIN { printf "%.2f", k / 1024 }'; }
# The table is ASCII only, so printf's byte widths line up.
row() { printf '%-38s %-46s %-9s %s\n' "$@"; }
ascii() { sed 's/–/-/g'; }
{
    echo "peermesh node footprint - $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs," \
        "$(lscpu | sed -n 's/^Model name: *//p' | head -1), kernel $(uname -r)," \
        "load average before: $LOAD_BEFORE$( [ "$QUICK" = 1 ] && echo ", QUICK=1")$( [ "$KEYED" = 1 ] && echo ", KEYED=1")"
    echo "median (min-max) over $WINDOWS windows of ${WINDOW} s (20 peers) / ${WINDOW_BIG} s" \
        "(100, 1000 peers); CPU in % of one core from schedstat ns [utime+stime ticks]"
    echo
    row "figure" "value" "target" "verdict"
    row "release binary (stripped)" "$SIZE B = $SIZE_MIB MiB ($STRIPPED)" "<= 2 MiB" \
        "$(verdict "$SIZE" 2097152)"
    for p in 20 100 1000; do
        [ -n "${CPU[$p]:-}" ] || continue
        t_cpu=- t_rss=- v_cpu= v_rss=
        if [ "$p" = 20 ]; then
            t_cpu="<= 0.06%" t_rss="<= 4 MiB"
            v_cpu=$(verdict "$(first "${CPU[$p]}")" 0.06)
            v_rss=$(verdict "$(first "${RSS[$p]}")" 4096)
        fi
        row "idle CPU %, $p peers @ 1 s" "${CPU[$p]} [${CPU_TICKS[$p]}]" "$t_cpu" "$v_cpu"
        row "  wake-ups/s, $p peers" "${WAKE[$p]}" "-" ""
        row "  VmRSS, $p peers" "${RSS[$p]} KiB = $(mib "${RSS[$p]}") MiB" "$t_rss" "$v_rss"
        row "  VmHWM, $p peers (alive ${ALIVE[$p]})" "${HWM[$p]} KiB = $(mib "${HWM[$p]}") MiB" "-" ""
    done
    row "loopback RTT p50, us (4 peers)" "$(stats "${P50S[@]}")" "-" ""
    row "ICMP ping median, us" "$(stats "${PINGS[@]}")" "-" ""
    row "  p50 - ping, us" "$(stats "${DIFFS[@]}")" "<= 30 us" \
        "$(verdict "$(median "${DIFFS[@]}")" 30)"
    row "ping -U (user-to-user) median, us" "$(stats "${UPINGS[@]}")" "-" ""
    printf '%s\n' "${RTT_LINES[@]}"
} | ascii >"$WORK/table.txt"
echo
cat "$WORK/table.txt"
cp "$WORK/table.txt" "$RESULTS"
echo
echo "written to ${RESULTS#"$ROOT"/}"
