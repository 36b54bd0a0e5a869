#!/usr/bin/env bash
# peermesh against Serf (Debian's serf 0.9.4, hashicorp/memberlist SWIM underneath) on this
# machine's loopback, inside a private network namespace: N = 5 and N = 20 nodes of each, one
# system at a time, each on 127.0.0.1..N. Configurations:
#   serf    Serf's defaults (LAN profile: probes one member every 1 s, gossip every 200 ms,
#           TCP push-pull every 30 s)
#   pm1s    peermesh's defaults: heartbeat 1 s, suspect 3 s, dead 5 s. This is also the
#           "matched probe rate" run (each peer probed at Serf's 1 s probe interval), so the
#           default and matched runs are one and the same run.
#   pm100   peermesh at 100 ms: suspect 300 ms, dead 500 ms (the same 3x and 5x)
# Measured per configuration and N, printed as median (min-max):
#   RSS and threads per node (/proc/PID/status), idle CPU per node in % of one core over the
#   window (utime+stime from /proc/PID/stat), UDP datagrams per node per second
#   (/proc/net/snmp of the namespace, divided by N), loopback bytes per node per second
#   (/proc/net/dev lo, divided by N), time to full membership after start, failure detection
#   time after kill -9, and the RTT estimate's error against ICMP ping on the same addresses.
# Then the ratios peermesh/Serf of the medians, from this same run. The table is printed and
# written to bench/results-serf.txt. Everything it starts is stopped by PID on exit and the
# namespace is deleted. QUICK=1: a ~2 minute smoke run with short windows and one trial.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SETTLE=3 WINDOW=6 PARTS=2 TRIALS=1 MIN_TRIALS=1 PINGS=20 PAIRS=2 TRIAL_BUDGET=15
else
    SETTLE=10 WINDOW=30 PARTS=3 TRIALS=5 MIN_TRIALS=3 PINGS=50 PAIRS=3 TRIAL_BUDGET=45
fi
SIZES=${SIZES:-"5 20"}
SYSTEMS="serf pm1s pm100"
out=bench/results-serf.txt

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}
command -v serf >/dev/null || apt_install serf
command -v ping >/dev/null || apt_install iputils-ping
cargo build --release --quiet
bin=$PWD/target/release/peermesh

ns=pmserf$$
dir=$(mktemp -d)
declare -A node_pid=()
started=$SECONDS
log() { printf '[%4ds] %s\n' $((SECONDS - started)) "$*" >&2; }

# A process of ours that has not exited (an exited, unreaped child is a zombie: not alive).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
# TERM every current node by PID, KILL what is left after 3 s, reap them all.
stop_nodes() {
    local p k left
    for p in "${node_pid[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for k in $(seq 30); do
        left=0
        for p in "${node_pid[@]}"; do alive "$p" && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for p in "${node_pid[@]}"; do
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    node_pid=()
}
cleanup() {
    local rc=$?
    stop_nodes
    ip netns del "$ns" 2>/dev/null || true
    if [ "$rc" = 0 ]; then rm -rf "$dir"; else echo "failed (exit $rc); logs kept in $dir" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
nsx() { ip netns exec "$ns" "$@"; }

# The measuring half: polls nodes (Serf's msgpack RPC over one TCP connection per agent,
# peermesh's control socket), samples /proc, and prints the table. It runs inside the
# namespace, so /proc/net/* are the namespace's own counters.
cat > "$dir/helper.py" <<'PY'
import json, os, re, socket, statistics, struct, subprocess, sys, time

DIR, RAW = os.environ["DIR"], os.environ["RAW"]
POLL = 0.05

def record(sys_, n, metric, value):
    with open(RAW, "a") as f:
        f.write(f"{sys_}\t{n}\t{metric}\t{value}\n")

# ---- msgpack, as much as Serf's RPC needs ----
def enc(o):
    if isinstance(o, bool): return b"\xc3" if o else b"\xc2"
    if isinstance(o, int): return bytes([o]) if 0 <= o < 128 else b"\xd3" + struct.pack(">q", o)
    if isinstance(o, str):
        b = o.encode()
        return (bytes([0xa0 | len(b)]) if len(b) < 32 else b"\xda" + struct.pack(">H", len(b))) + b
    if isinstance(o, dict):
        return bytes([0x80 | len(o)]) + b"".join(enc(k) + enc(v) for k, v in o.items())
    raise TypeError(o)

class Reader:
    NUMS = {0xca: (">f", 4), 0xcb: (">d", 8), 0xcc: (">B", 1), 0xcd: (">H", 2), 0xce: (">I", 4),
            0xcf: (">Q", 8), 0xd0: (">b", 1), 0xd1: (">h", 2), 0xd2: (">i", 4), 0xd3: (">q", 8)}
    def __init__(self, sock): self.sock, self.buf = sock, b""
    def take(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk: raise EOFError("serf closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out
    def num(self, fmt, n): return struct.unpack(fmt, self.take(n))[0]
    def obj(self):
        t = self.take(1)[0]
        if t < 0x80: return t
        if t >= 0xe0: return t - 256
        if t <= 0x8f: return self.map(t & 0x0f)
        if t <= 0x9f: return [self.obj() for _ in range(t & 0x0f)]
        if t <= 0xbf: return self.take(t & 0x1f).decode("utf-8", "replace")
        if t in (0xc0, 0xc2, 0xc3): return {0xc0: None, 0xc2: False, 0xc3: True}[t]
        for size, kinds in ((1, (0xc4, 0xd9)), (2, (0xc5, 0xda)), (4, (0xc6, 0xdb))):
            if t in kinds:
                b = self.take(self.num({1: ">B", 2: ">H", 4: ">I"}[size], size))
                return b if t < 0xd0 else b.decode("utf-8", "replace")
        if t in self.NUMS: return self.num(*self.NUMS[t])
        if t in (0xdc, 0xdd): return [self.obj() for _ in range(self.num(*((">H", 2) if t == 0xdc else (">I", 4))))]
        if t in (0xde, 0xdf): return self.map(self.num(*((">H", 2) if t == 0xde else (">I", 4))))
        raise ValueError("msgpack type %#x" % t)
    def map(self, n): return {self.obj(): self.obj() for _ in range(n)}

class Serf:
    def __init__(self, i):
        self.sock = socket.create_connection((f"127.0.0.{i}", 7373), timeout=2)
        self.r, self.seq = Reader(self.sock), 0
        self.call("handshake", {"Version": 1}, reply=False)
    def call(self, cmd, body=None, reply=True):
        self.seq += 1
        self.sock.sendall(enc({"Command": cmd, "Seq": self.seq}) + (enc(body) if body else b""))
        head = self.r.obj()
        if head.get("Error"): raise RuntimeError(head["Error"])
        return self.r.obj() if reply else None

conns = {}
def view(sys_, n, i):
    """name -> state of every other node as node i sees it; None if it does not answer."""
    try:
        if sys_ == "serf":
            if i not in conns: conns[i] = Serf(i)
            members = conns[i].call("members")["Members"]
            return {m["Name"]: m["Status"] for m in members if m["Name"] != f"n{i}"}
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(2)
        s.connect(f"{DIR}/{sys_}-{n}-n{i}.sock")
        s.sendall(b'{"v":1,"cmd":"status"}\n')
        data = b""
        while chunk := s.recv(65536): data += chunk
        s.close()
        return {p["name"]: p["state"] for p in json.loads(data)["status"]["peers"]}
    except (OSError, EOFError, ValueError, RuntimeError, KeyError):
        conns.pop(i, None)
        return None

def up(sys_, n, t0, limit, metric):
    """Waits until every node sees the n-1 others alive; records the time since t0."""
    n, t0, limit = int(n), float(t0), float(limit)
    for _ in range(int(limit / POLL) + 1):
        ok = 0
        for i in range(1, n + 1):
            v = view(sys_, n, i)
            if not v or len(v) != n - 1 or any(s != "alive" for s in v.values()): break
            ok += 1
        if ok == n:
            if metric != "-": record(sys_, n, metric, round(time.time() - t0, 3))
            print(round(time.time() - t0, 3)); return
        if time.time() - t0 > limit: break
        time.sleep(POLL)
    print("timeout"); sys.exit(1)

def rpcwait(i, limit):
    end = time.time() + float(limit)
    for _ in range(int(float(limit) / POLL) + 1):
        try: Serf(int(i)); return
        except OSError: pass
        if time.time() > end: break
        time.sleep(POLL)
    sys.exit(1)

def detect(sys_, n, victim, pid, limit):
    """kill -9 the victim by PID, then poll the others every 50 ms until all report it."""
    n, victim, limit = int(n), int(victim), float(limit)
    want = "failed" if sys_ == "serf" else "dead"
    others = [i for i in range(1, n + 1) if i != victim]
    for i in others: view(sys_, n, i)  # connect first, so polling starts at once
    seen = {}
    t0 = time.time()
    os.kill(int(pid), 9)
    for _ in range(int(limit / POLL) + 1):
        for i in others:
            if i not in seen and (view(sys_, n, i) or {}).get(f"n{victim}") == want:
                seen[i] = time.time() - t0
        if len(seen) == len(others) or time.time() - t0 > limit: break
        time.sleep(POLL)
    if len(seen) < len(others):
        print(f"timeout: {len(seen)}/{len(others)} saw it"); return
    record(sys_, n, "detect_all_s", round(max(seen.values()), 3))
    record(sys_, n, "detect_first_s", round(min(seen.values()), 3))
    print(f"{max(seen.values()):.2f} s (first {min(seen.values()):.2f} s)")

def snap(pids):
    snmp = open("/proc/net/snmp").read().split("\n")
    def row(proto, field):
        names = [l for l in snmp if l.startswith(proto + ":")]
        return int(names[1].split()[names[0].split().index(field)])
    lo = next(l for l in open("/proc/net/dev") if l.strip().startswith("lo:")).split(":")[1].split()
    ticks, run_ns = {}, {}
    for p in pids:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        ticks[p] = int(f[11]) + int(f[12])  # utime, stime (fields 14 and 15)
        for tid in os.listdir(f"/proc/{p}/task"):  # ns on CPU, per thread (finer than ticks)
            try: run_ns[(p, tid)] = int(open(f"/proc/{p}/task/{tid}/schedstat").read().split()[0])
            except OSError: pass
    return dict(t=time.monotonic(), udp_in=row("Udp", "InDatagrams"), udp_out=row("Udp", "OutDatagrams"),
                tcp_out=row("Tcp", "OutSegs"), lo_rx=int(lo[0]), lo_tx=int(lo[8]), lo_txp=int(lo[9]),
                ticks=ticks, run_ns=run_ns)

def window(sys_, n, secs, parts, *pids):
    """Idle window: nothing polls the nodes; /proc sampled at `parts` equal sub-windows."""
    n, secs, parts = int(n), float(secs), int(parts)
    hz = os.sysconf("SC_CLK_TCK")
    snaps = [snap(pids)]
    for k in range(1, parts + 1):
        time.sleep(max(0.0, snaps[0]["t"] + secs * k / parts - time.monotonic()))
        snaps.append(snap(pids))
    for a, b in zip(snaps, snaps[1:]):
        dt = b["t"] - a["t"]
        per = lambda key: (b[key] - a[key]) / dt / n
        record(sys_, n, "udp_out_pps", round(per("udp_out"), 2))
        record(sys_, n, "udp_in_pps", round(per("udp_in"), 2))
        record(sys_, n, "lo_Bps", round(per("lo_tx"), 1))
        record(sys_, n, "lo_pps", round(per("lo_txp"), 2))
        if b["lo_txp"] > a["lo_txp"]:
            record(sys_, n, "lo_B_per_pkt", round((b["lo_tx"] - a["lo_tx"]) / (b["lo_txp"] - a["lo_txp"]), 1))
        record(sys_, n, "tcp_segs_ps", round(per("tcp_out"), 3))
        if b["lo_tx"] - a["lo_tx"] != b["lo_rx"] - a["lo_rx"]:
            record(sys_, n, "note", "lo rx and tx byte counts differ")
    first, last = snaps[0], snaps[-1]
    dt = last["t"] - first["t"]
    for p in pids:
        comm = open(f"/proc/{p}/comm").read().strip()
        if comm not in ("serf", "peermesh"): record(sys_, n, "note", f"pid {p} is {comm}")
        record(sys_, n, "cpu_pct", round((last["ticks"][p] - first["ticks"][p]) / hz / dt * 100, 3))
        ns = sum(v - first["run_ns"][k] for k, v in last["run_ns"].items() if k[0] == p and k in first["run_ns"])
        record(sys_, n, "cpu_sched_pct", round(ns / 1e9 / dt * 100, 4))
        status = dict(l.split(":", 1) for l in open(f"/proc/{p}/status") if ":" in l)
        record(sys_, n, "rss_mb", round(int(status["VmRSS"].split()[0]) / 1024, 2))
        record(sys_, n, "threads", int(status["Threads"]))
    record(sys_, n, "load1", float(open("/proc/loadavg").read().split()[0]))

def rtt(sys_, n, pairs, pings):
    """ICMP ping median between two nodes' addresses against the system's own estimate."""
    n = int(n)
    for a in range(1, int(pairs) + 1):
        b = a + 1
        ping = subprocess.run(["ping", "-n", "-c", pings, "-i", "0.02", "-I", f"127.0.0.{a}", f"127.0.0.{b}"],
                              capture_output=True, text=True, timeout=30).stdout
        times = [float(x) * 1000 for x in re.findall(r"time=([0-9.]+) ms", ping)]
        if not times: continue
        icmp = statistics.median(times)
        if sys_ == "serf":
            text = subprocess.run(["serf", "rtt", "-rpc-addr", f"127.0.0.{a}:7373", f"n{b}"],
                                  capture_output=True, text=True, timeout=10).stdout
            m = re.search(r"rtt: ([0-9.]+) ms", text)
            est = float(m.group(1)) * 1000 if m else None
        else:
            s = socket.socket(socket.AF_UNIX); s.settimeout(2)
            s.connect(f"{DIR}/{sys_}-{n}-n{a}.sock"); s.sendall(b'{"v":1,"cmd":"status"}\n')
            data = b""
            while chunk := s.recv(65536): data += chunk
            peer = next(p for p in json.loads(data)["status"]["peers"] if p["name"] == f"n{b}")
            est = peer["rtt_us"]["p50"] if peer["rtt_us"] else None
        record(sys_, n, "rtt_icmp_us", round(icmp, 1))
        if est is not None:
            record(sys_, n, "rtt_est_us", round(est, 1))
            record(sys_, n, "rtt_err_us", round(abs(est - icmp), 1))

# ---- the table ----
LABELS = {"serf": "Serf defaults", "pm1s": "peermesh 1 s", "pm100": "peermesh 100 ms"}
ROWS = [("rss_mb", "RSS per node, MB"), ("threads", "threads per process"),
        ("cpu_pct", "idle CPU/node, % core (ticks)"),
        ("cpu_sched_pct", "idle CPU/node, % core (schedstat)"), ("udp_out_pps", "UDP sent, datagrams/node/s"),
        ("udp_in_pps", "UDP received, datagrams/node/s"), ("lo_Bps", "lo bytes/node/s (all IP)"),
        ("lo_B_per_pkt", "lo bytes per packet"),
        ("tcp_segs_ps", "TCP segments/node/s"), ("join_s", "full membership after start, s"),
        ("detect_all_s", "failure detected by all, s"), ("detect_first_s", "  ... by the first, s"),
        ("rtt_icmp_us", "ICMP ping RTT median, us"), ("rtt_est_us", "RTT estimate, us"),
        ("rtt_err_us", "RTT error |est - ICMP|, us"), ("load1", "load average (1 min), window end")]
RATIO = {"rss_mb", "threads", "cpu_pct", "cpu_sched_pct", "udp_out_pps", "lo_Bps", "detect_all_s", "rtt_err_us", "join_s"}

def fmt(x, ints=False):
    if ints or x == 0: return str(int(x))
    a = abs(x)
    return f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 0.1 else f"{x:.3f}"

def report(meta):
    data = {}
    notes = []
    for line in open(RAW):
        s, n, m, v = line.rstrip("\n").split("\t")
        if m == "note": notes.append(f"{s} N={n}: {v}"); continue
        data.setdefault((s, int(n), m), []).append(float(v))
    print(open(meta).read().rstrip())
    systems = ["serf", "pm1s", "pm100"]
    w = 24
    for n in sorted({k[1] for k in data}):
        print()
        print(f"{'N = ' + str(n):<34}" + "".join(f"{LABELS[s]:>{w}}" for s in systems)
              + f"{'pm1s/serf':>11}{'pm100/serf':>11}")
        for m, label in ROWS:
            cells, med = [], {}
            for s in systems:
                v = data.get((s, n, m))
                if not v: cells.append("-"); continue
                med[s] = statistics.median(v)
                lo, hi, ints = min(v), max(v), all(x == int(x) for x in v)
                cells.append(fmt(med[s], ints) if lo == hi else f"{fmt(med[s], ints)} ({fmt(lo, ints)}-{fmt(hi, ints)})")
            ratios = []
            for s in ("pm1s", "pm100"):
                ok = m in RATIO and s in med and med.get("serf")
                ratios.append(f"{med[s] / med['serf']:.2f}" if ok else "")
            print(f"{label:<34}" + "".join(f"{c:>{w}}" for c in cells) + "".join(f"{r:>11}" for r in ratios))
    for note in notes: print("note:", note)

if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"up": up, "rpcwait": rpcwait, "detect": detect, "window": window, "rtt": rtt, "report": report}[cmd](*args)
PY
export DIR="$dir" RAW="$dir/raw.tsv"
: > "$RAW"
helper() { nsx python3 "$dir/helper.py" "$@"; }

# Starts node i of configuration sys with n nodes; its PID goes into node_pid[i]. `ip netns
# exec` execs the program, so $! is the node itself (not through nsx: a function would fork).
start_node() {
    local sys=$1 n=$2 i=$3
    if [ "$sys" = serf ]; then
        local join=()
        [ "$i" = 1 ] || join=(-join 127.0.0.1:7946)
        ip netns exec "$ns" serf agent -node "n$i" -bind "127.0.0.$i:7946" -rpc-addr "127.0.0.$i:7373" "${join[@]}" \
            >>"$dir/$sys-$n-n$i.log" 2>&1 &
    else
        ip netns exec "$ns" "$bin" run --config "$dir/$sys-$n.ron" --name "n$i" --control "$dir/$sys-$n-n$i.sock" \
            2>>"$dir/$sys-$n-n$i.log" &
    fi
    node_pid[$i]=$!
}

# One configuration at one size: start, membership, settle, idle window, RTT, kill trials.
measure() {
    local sys=$1 n=$2 i t0 v trial res trials_start
    if [ "$sys" != serf ]; then
        local iv=1000
        [ "$sys" = pm100 ] && iv=100
        {
            echo "(port: 1313, heartbeat_interval_ms: $iv, suspect_after_ms: $((3 * iv)), dead_after_ms: $((5 * iv)), nodes: ["
            for i in $(seq "$n"); do echo "  (name: \"n$i\", host: \"127.0.0.$i\"),"; done
            echo "])"
        } > "$dir/$sys-$n.ron"
    fi
    t0=$(date +%s.%N)
    start_node "$sys" "$n" 1
    # Serf's -join needs the first agent listening; the wait counts in its membership time.
    [ "$sys" != serf ] || helper rpcwait 1 10 || { log "$sys N=$n: first agent never answered"; exit 1; }
    for i in $(seq 2 "$n"); do start_node "$sys" "$n" "$i"; done
    res=$(helper up "$sys" "$n" "$t0" 60 join_s) || { log "$sys N=$n: no full membership in 60 s"; exit 1; }
    log "$sys N=$n: full membership after $res s; settling ${SETTLE} s, then a ${WINDOW} s idle window"
    sleep "$SETTLE"
    helper window "$sys" "$n" "$WINDOW" "$PARTS" "${node_pid[@]}"
    helper rtt "$sys" "$n" "$PAIRS" "$PINGS"
    trials_start=$SECONDS
    for trial in $(seq "$TRIALS"); do
        if [ "$trial" -gt "$MIN_TRIALS" ] && [ $((SECONDS - trials_start)) -gt "$TRIAL_BUDGET" ]; then break; fi
        v=$(( (trial - 1) % (n - 1) + 2 ))  # never n1, the node the others join through
        res=$(helper detect "$sys" "$n" "$v" "${node_pid[$v]}" 60)
        wait "${node_pid[$v]}" 2>/dev/null || true
        log "$sys N=$n trial $trial: n$v killed, seen by all after $res"
        start_node "$sys" "$n" "$v"
        helper up "$sys" "$n" "$(date +%s.%N)" 30 - >/dev/null \
            || { log "$sys N=$n: n$v did not come back within 30 s"; break; }
    done
    stop_nodes
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $SIZES; do
    for sys in $SYSTEMS; do measure "$sys" "$n"; done
done
{
    echo "peermesh vs Serf on loopback in a network namespace ($(date -u '+%F %H:%M UTC'), $(nproc) cores, $(uname -r))"
    echo "peermesh $(git rev-parse --short HEAD 2>/dev/null || echo '?') release build; serf $(dpkg-query -W -f='${Version}' serf 2>/dev/null || echo '?') (binary says: $(serf version | head -1))"
    echo "QUICK=$QUICK: settle ${SETTLE} s, idle window ${WINDOW} s in $PARTS parts, $MIN_TRIALS-$TRIALS kill trials, $PAIRS ping pairs x $PINGS pings"
    echo "load average (1/5/15 min): at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - started)) s"
    echo "CPU: utime+stime ticks of /proc/PID/stat ($(getconf CLK_TCK)/s, so 1 tick = $(python3 -c "print(round(100/$(getconf CLK_TCK)/$WINDOW, 3))")% over the window) and, finer,"
    echo "the ns on CPU of /proc/PID/task/*/schedstat summed over the threads alive at both ends."
    echo "cells: median (min-max). RSS/threads/CPU: across nodes. Datagrams/bytes: namespace counters / N,"
    echo "across the window's parts. Detection: across kill trials. RTT: across node pairs. Ratios: of medians."
    echo "UDP: /proc/net/snmp Udp OutDatagrams (InDatagrams); each datagram counted once on each side."
    echo "Bytes: lo tx_bytes of /proc/net/dev: each packet once (lo's rx counts the same packets again), with"
    echo "its IPv4 + UDP/TCP headers (28 bytes for UDP; lo adds no link header); includes Serf's TCP push-pull."
} > "$dir/meta"
helper report "$dir/meta" | tee "$out"
