#!/usr/bin/env bash
# Application data, peermesh against Serf (Debian's serf 0.9.4), side by side in one run, on
# this machine's loopback inside a private network namespace: N = 5 and N = 20 nodes of each,
# one system at a time, each on 127.0.0.1..N. Serf runs with its defaults; peermesh with a
# 100 ms heartbeat (suspect 300 ms, dead 500 ms: `pm100` of vs-serf.sh). Every node runs an
# event handler (Serf: `serf agent -event-handler H`; peermesh: `peermesh run --handler H`)
# that appends `NANOSECONDS EVENT ...` (bash builtins only: no process but bash itself) to a file of its own and, for a query, answers with
# its stdout. From n1, per trial (5; QUICK=1: 2):
#   event   Serf `serf event -coalesce=false NAME PAYLOAD`; peermesh `peermesh send --all DATA`
#           and, as its own row, `send --confirm --all DATA`: the last handler stamp of the
#           N-1 other nodes (Serf's own handler runs too, not counted) minus the time just
#           before the command started; and the command's own exit.
#   query   Serf `serf query -format=json -timeout T NAME PAYLOAD`; peermesh `peermesh query
#           --json --timeout T DATA`: the command's exit (Serf always waits its whole
#           timeout), the responses in its JSON (Serf asks n1 itself too, so N; peermesh asks
#           the peers only, N-1), the last responder's handler stamp, and in a second run
#           without JSON (text output, printed as the responses come) the time the last
#           response line was printed.
#   tags    Serf `serf tags -set k=V`; peermesh `peermesh tag set k=V`: the last handler
#           stamp at the N-1 other nodes (Serf `member-update`, which its agent coalesces
#           with a 1 s quiet period; peermesh `tags`), and the time every other node *shows*
#           it (polled every ~10 ms: Serf's RPC `members`, peermesh's `status` tags).
# Then, at the first N only, the payload limits: the largest event/message payload, query
# payload, query response (the handler prints as many bytes as asked) and tag value that
# each system accepts, found by doubling then bisecting; and peermesh's total tags per node.
# Printed as median (min-max) per system and N, with the ratios peermesh/Serf of the
# medians, and written to bench/results-serf-data.txt. Everything it starts is stopped by
# PID on exit and the namespace is deleted. QUICK=1: a ~2 minute smoke run.
# SYSTEMS="serf" (or "pm") runs one half only; PEERMESH_BIN=PATH uses that binary and skips
# the cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then TRIALS=${TRIALS:-2} SETTLE=${SETTLE:-2}; else TRIALS=${TRIALS:-5} SETTLE=${SETTLE:-5}; fi
SIZES=${SIZES:-"5 20"}
SYSTEMS=${SYSTEMS:-"serf pm"}
LIMITS=${LIMITS:-1}
SERF_QUERY_TIMEOUT_MS=${SERF_QUERY_TIMEOUT_MS:-1000}
PM_QUERY_TIMEOUT_MS=${PM_QUERY_TIMEOUT_MS:-500}
out=${OUT:-bench/results-serf-data.txt}

export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}
case " $SYSTEMS " in *" serf "*) command -v serf >/dev/null || apt_install serf ;; esac
bin=
pm_handler=(--handler)  # emptied when testing a build without handlers (ALLOW_NO_HANDLER=1)
case " $SYSTEMS " in
    *" pm "*)
        if [ -n "${PEERMESH_BIN:-}" ]; then
            bin=$(realpath "$PEERMESH_BIN")
        else
            cargo build --release --quiet --bin peermesh
            bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/peermesh
        fi
        "$bin" send --help >/dev/null 2>&1 || { echo "$bin has no 'send' command (issue 13 not built in)" >&2; exit 1; }
        case "$("$bin" run --help 2>&1 || true)" in
            *--handler*) ;;
            *) [ "${ALLOW_NO_HANDLER:-0}" = 1 ] || { echo "$bin run has no --handler (ALLOW_NO_HANDLER=1 runs without)" >&2; exit 1; }
               pm_handler=() ;;
        esac
        ;;
esac

ns=pmdata$$
dir=$(mktemp -d)
chmod 755 "$dir"
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
        for p in "${node_pid[@]}"; do if alive "$p"; then left=1; fi; done
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
    trap - EXIT INT TERM
    stop_nodes
    ip netns del "$ns" 2>/dev/null || true
    if [ "$rc" = 0 ] && [ "${KEEP:-0}" != 1 ]; then rm -rf "$dir"; else echo "exit $rc; logs kept in $dir" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
nsx() { ip netns exec "$ns" "$@"; }

# The handlers: one script per system and N, the stamp directory written into it. Each run
# appends one line to the file of its node: `NANOSECONDS EVENT NAME rest`, where NAME is
# Serf's user event or query name (`-` otherwise) and the rest is the start of stdin (and
# for peermesh its PEERMESH_* environment), spaces for anything unusual. A query whose
# payload is `size:N` is answered with N bytes of `x` (the response-limit test); any other
# with `ok-NODE`. stdin is always read to its end.
write_handlers() {
    local n=$1
    mkdir -p "$dir/stamps/serf-$n" "$dir/stamps/pm-$n"
    # bash builtins only (the clock from EPOCHREALTIME, stdin by read -N, the answer by
    # printf): a run is one exec of bash and no other process, for either system. A handler
    # of pipelines (date, head, tr, env, sort: ~10 processes a run) costs ~12 ms of CPU a
    # run here, so at N = 20 on 2 cores the 19 runs of one event took ~100 ms whatever the
    # mesh did: that measured the script, not the system.
    cat > "$dir/h-serf-$n.sh" <<EOF
#!/bin/bash
now=\${EPOCHREALTIME/./}000
IFS= read -r -N 300 in || true
while IFS= read -r -N 65536 _; do :; done
in=\${in//[^[:alnum:]:=_.,-]/ }
printf '%s %s %s %s\n' "\$now" "\$SERF_EVENT" "\${SERF_USER_EVENT:-\${SERF_QUERY_NAME:--}}" "\$in" >> "$dir/stamps/serf-$n/\$SERF_SELF_NAME"
if [ "\$SERF_EVENT" = query ]; then
    case \$in in
        size:*) sz=\${in#size:}; sz=\${sz%% *}; printf -v pad '%*s' "\$sz" ''; printf '%s' "\${pad// /x}" ;;
        *) echo "ok-\$SERF_SELF_NAME" ;;
    esac
fi
EOF
    cat > "$dir/h-pm-$n.sh" <<EOF
#!/bin/bash
now=\${EPOCHREALTIME/./}000
IFS= read -r -N 300 in || true
while IFS= read -r -N 65536 _; do :; done
in=\${in//[^[:alnum:]:=_.,-]/ }
envs=
for v in \${!PEERMESH_@}; do envs+="\$v=\${!v} "; done
envs=\${envs:0:600}
envs=\${envs//[^[:alnum:]:=_.,-]/ }
printf '%s %s - %s %s\n' "\$now" "\$PEERMESH_EVENT" "\$in" "\$envs" >> "$dir/stamps/pm-$n/\$PEERMESH_NODE"
if [ "\$PEERMESH_EVENT" = query ]; then
    case \$in in
        size:*) sz=\${in#size:}; sz=\${sz%% *}; printf -v pad '%*s' "\$sz" ''; printf '%s' "\${pad// /x}" ;;
        *) echo "ok-\$PEERMESH_NODE" ;;
    esac
fi
EOF
    chmod 755 "$dir/h-serf-$n.sh" "$dir/h-pm-$n.sh"
}

# The measuring half, run inside the namespace.
cat > "$dir/helper.py" <<'PY'
import json, os, re, socket, statistics, struct, subprocess, sys, threading, time

DIR, RAW, BIN = os.environ["DIR"], os.environ["RAW"], os.environ.get("BIN", "")
SERF_QT, PM_QT = int(os.environ["SERF_QUERY_TIMEOUT_MS"]), int(os.environ["PM_QUERY_TIMEOUT_MS"])
POLL = 0.05

def record(sys_, n, metric, value):
    with open(RAW, "a") as f:
        f.write(f"{sys_}\t{n}\t{metric}\t{value}\n")

def note(sys_, n, text):
    record(sys_, n, "note", text.replace("\t", " ").replace("\n", " ")[:300])

# ---- msgpack, as much as Serf's RPC needs (as in vs-serf.sh) ----
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

def pm_status(n, i):
    """The `status` object of peermesh node i (control protocol v1)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(f"{DIR}/pm-{n}-n{i}.sock")
        s.sendall(b'{"v":1,"cmd":"status"}\n')
        data = b""
        while chunk := s.recv(65536): data += chunk
    finally:
        s.close()
    answer = json.loads(data)
    return answer["status"] if "status" in answer else answer

conns = {}
def members(sys_, n, i):
    """name -> (state, tags) of every other node as node i sees it; None if it does not answer."""
    try:
        if sys_ == "serf":
            if i not in conns: conns[i] = Serf(i)
            return {m["Name"]: (m["Status"], m.get("Tags") or {})
                    for m in conns[i].call("members")["Members"] if m["Name"] != f"n{i}"}
        return {p["name"]: (p["state"], p.get("tags") or {}) for p in pm_status(n, i)["peers"]}
    except (OSError, EOFError, ValueError, RuntimeError, KeyError, TypeError):
        conns.pop(i, None)
        return None

def rpcwait(i, limit):
    end = time.time() + float(limit)
    while time.time() < end:
        try: Serf(int(i)); return
        except OSError: time.sleep(POLL)
    sys.exit(1)

def up(sys_, n, limit):
    """Waits until every node sees the n-1 others alive; prints the seconds it took."""
    n, t0 = int(n), time.time()
    while time.time() - t0 < float(limit):
        ok = 0
        for i in range(1, n + 1):
            v = members(sys_, n, i)
            if not v or len(v) != n - 1 or any(s != "alive" for s, _ in v.values()): break
            ok += 1
        if ok == n:
            print(round(time.time() - t0, 2)); return
        time.sleep(POLL)
    print("timeout"); sys.exit(1)

# ---- one trial ----
def stamps(sys_, n, node):
    """(ns, event, name, rest) of every handler run of that node so far."""
    try:
        with open(f"{DIR}/stamps/{sys_}-{n}/{node}") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split(" ", 3)
        if len(parts) >= 3 and parts[0].isdigit():
            out.append((int(parts[0]), parts[1], parts[2], parts[3] if len(parts) > 3 else ""))
    return out

def cli(sys_, n, *args):
    if sys_ == "serf":
        return ["serf", args[0], "-rpc-addr", "127.0.0.1:7373", *args[1:]]
    return [BIN, args[0], "--control", f"{DIR}/pm-{n}-n1.sock", *args[1:]]

def run_trial(sys_, n, cmd, want_event, token, need_token, poll_tag=None, limit=15.0, stdin=None):
    """Starts cmd at t0 and waits (at most `limit` s) until the command has exited and the
    handler of every other node stamped `want_event` (with `token` in its line when
    need_token) after t0, and, with poll_tag=(key, value), until every other node shows
    n1's tag key=value. Returns a dict of ms since t0 and the command's output."""
    others = [f"n{i}" for i in range(2, n + 1)]
    lines, done = [], {}
    t0 = time.time_ns()
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    def reader():
        for line in p.stdout: lines.append((time.time_ns(), line.decode("utf-8", "replace")))
    th = threading.Thread(target=reader, daemon=True); th.start()
    if stdin is not None:
        try: p.stdin.write(stdin); p.stdin.close()
        except OSError: pass
    handled, shown, exit_ns, rc = {}, {}, None, None
    end = time.time() + limit
    while time.time() < end:
        if exit_ns is None and p.poll() is not None:
            exit_ns, rc = time.time_ns(), p.returncode
        if want_event:
            for node in others:
                if node in handled: continue
                for ns_, ev, name, rest in stamps(sys_, n, node):
                    if ns_ >= t0 and ev == want_event and (not need_token or token in name or token in rest):
                        handled[node] = ns_; break
        if poll_tag:
            for i in range(2, n + 1):
                node = f"n{i}"
                if node in shown: continue
                v = members(sys_, n, i)
                if v and v.get("n1", (None, {}))[1].get(poll_tag[0]) == poll_tag[1]:
                    shown[node] = time.time_ns()
        if exit_ns is not None and (not want_event or len(handled) == len(others)) \
                and (not poll_tag or len(shown) == len(others)):
            break
        time.sleep(0.002 if not poll_tag else 0.005)
    if exit_ns is None:
        p.kill(); p.wait()
    th.join(2)
    err = p.stderr.read().decode("utf-8", "replace")
    ms = lambda ns_: round((ns_ - t0) / 1e6, 2)
    res = {"exit_ms": ms(exit_ns) if exit_ns else None, "rc": rc, "stderr": err,
           "stdout": "".join(l for _, l in lines), "lines": [(ms(t), l) for t, l in lines],
           "handled": len(handled), "others": len(others)}
    if want_event and len(handled) == len(others): res["handled_ms"] = ms(max(handled.values()))
    if poll_tag and len(shown) == len(others): res["shown_ms"] = ms(max(shown.values()))
    return res

def trials(sys_, n, count):
    n, count = int(n), int(count)
    label = "serf" if sys_ == "serf" else "pm"
    def keep(test, trial, res, *metrics):
        for m in metrics:
            key = m if m in res else None
            if key and res[key] is not None: record(label, n, f"{test}_{m}", res[key])
        missing = [m for m in metrics if res.get(m) is None]
        status = f"rc={res['rc']}" + (f", handlers {res['handled']}/{res['others']}" if test != "query_text" else "")
        print(f"  {label} N={n} {test} #{trial}: " + ", ".join(f"{m}={res.get(m)}" for m in metrics) + f" ({status})",
              file=sys.stderr)
        if missing or res["rc"] not in (0, None):
            note(label, n, f"{test} #{trial}: no {','.join(missing) or '-'}; rc={res['rc']}; "
                 f"handlers {res['handled']}/{res['others']}; {res['stderr'].strip()[:150]}")
    settle = lambda: time.sleep(0.3)
    for t in range(1, count + 1):       # a message / user event to all
        tok = f"ev{n}x{t}"
        if sys_ == "serf":
            res = run_trial(sys_, n, cli(sys_, n, "event", "-coalesce=false", tok, "p" + tok), "user", tok, True)
        else:
            res = run_trial(sys_, n, cli(sys_, n, "send", "--all", tok), "message", tok, True)
        keep("event", t, res, "handled_ms", "exit_ms"); settle()
    if sys_ != "serf":
        for t in range(1, count + 1):   # the same, confirmed
            tok = f"cf{n}x{t}"
            res = run_trial(sys_, n, cli(sys_, n, "send", "--confirm", "--json", "--all", tok), "message", tok, True)
            try:
                rep = json.loads(res["stdout"])
                record(label, n, "confirm_delivered", len(rep.get("delivered", [])))
            except ValueError:
                note(label, n, f"send --confirm --json printed no JSON: {res['stdout'][:100]!r}")
            keep("confirm", t, res, "handled_ms", "exit_ms"); settle()
    watch, seen_at = None, []  # peermesh: n1's `watch --json`, each line stamped as it comes
    if sys_ != "serf":
        watch = subprocess.Popen(cli(sys_, n, "watch", "--json"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        def watcher():
            for line in watch.stdout:
                try: seen_at.append((time.time_ns(), json.loads(line)))
                except ValueError: pass
        threading.Thread(target=watcher, daemon=True).start()
        time.sleep(0.3)
    for t in range(1, count + 1):       # query, JSON output
        tok = f"qj{n}x{t}"
        t_start = time.time_ns()
        if sys_ == "serf":
            cmd = cli(sys_, n, "query", "-format=json", f"-timeout={SERF_QT}ms", tok, "p" + tok)
        else:
            cmd = cli(sys_, n, "query", "--json", "--timeout", str(PM_QT), tok)
        res = run_trial(sys_, n, cmd, "query", tok, True, limit=SERF_QT / 1000 + PM_QT / 1000 + 10)
        want = n if sys_ == "serf" else n - 1
        try:
            rep = json.loads(res["stdout"])
            if sys_ == "serf":
                got = len(rep.get("Responses") or {})
            else:
                got = len(rep.get("responses") or [])
                if rep.get("missing"): note(label, n, f"query #{t}: missing {rep['missing']}")
            res["responses"] = got
            if got != want: note(label, n, f"query #{t}: {got} responses, {want} expected")
        except ValueError:
            note(label, n, f"query --json printed no JSON: {res['stdout'][:100]!r}")
        res["responders_ms"] = res.get("handled_ms")
        if watch is not None:  # the last query_response at n1 (watch lines after this query began)
            got = {}
            for at, ev in list(seen_at):
                if at >= t_start and ev.get("event") == "query_response" and ev.get("peer") not in got:
                    got[ev.get("peer")] = at
            if len(got) == n - 1: res["asker_ms"] = round((max(got.values()) - t_start) / 1e6, 2)
            keep("query", t, res, "exit_ms", "responses", "responders_ms", "asker_ms")
        else:
            keep("query", t, res, "exit_ms", "responses", "responders_ms")
        settle()
    if watch is not None:
        if not seen_at: note(label, n, "watch --json on n1 printed nothing")
        watch.terminate()
        try: watch.wait(3)
        except subprocess.TimeoutExpired: watch.kill(); watch.wait()
    for t in range(1, count + 1):       # query, text output: when the last response is printed
        tok = f"qt{n}x{t}"
        if sys_ == "serf":
            cmd = cli(sys_, n, "query", f"-timeout={SERF_QT}ms", tok, "p" + tok)
            pat = re.compile(r"Response from '(n\d+)'")
        else:
            cmd = cli(sys_, n, "query", "--timeout", str(PM_QT), tok)
            pat = re.compile(r"\b(n\d+)\b")
        res = run_trial(sys_, n, cmd, "query", tok, True, limit=SERF_QT / 1000 + PM_QT / 1000 + 10)
        seen = {}
        for at, line in res["lines"]:
            if sys_ != "serf" and re.search(r"missing|no answer|did not", line, re.I): continue
            for m in pat.finditer(line):
                if m.group(1) in seen: continue
                if sys_ == "serf" or m.group(1) != "n1": seen[m.group(1)] = at
        want = n if sys_ == "serf" else n - 1
        if len(seen) == want:
            res["printed_ms"] = max(seen.values())
            if sys_ == "serf": record(label, n, "query_asker_ms", res["printed_ms"])
        keep("query_text", t, res, "printed_ms", "exit_ms"); settle()
    for t in range(1, count + 1):       # a tag change
        tok = f"tg{n}x{t}"
        if sys_ == "serf":
            res = run_trial(sys_, n, cli(sys_, n, "tags", "-set", f"k={tok}"), "member-update", tok, True, poll_tag=("k", tok))
        else:
            # peermesh's `tags` event may not carry the value: any `tags` run about n1 after t0
            res = run_trial(sys_, n, cli(sys_, n, "tag", "set", f"k={tok}"), "tags", "PEERMESH_PEER=n1", True,
                            poll_tag=("k", tok))
        keep("tags", t, res, "handled_ms", "shown_ms", "exit_ms"); settle()

# ---- payload limits ----
def largest(ok, lo, hi_cap):
    """The largest size ok() accepts: ok(lo) must hold; doubles from lo up to hi_cap, then
    bisects. Returns (size, the refusal seen just above it) or (None, why) or (hi_cap, None)."""
    good, why = ok(lo)
    if not good: return None, why
    hi = lo
    while True:
        nxt = min(hi * 2, hi_cap)
        good, why = ok(nxt)
        if not good: bad, bad_why = nxt, why; break
        hi = nxt
        if hi == hi_cap: return hi_cap, None
    while bad - hi > 1:
        mid = (hi + bad) // 2
        good, why = ok(mid)
        if good: hi = mid
        else: bad, bad_why = mid, why
    return hi, bad_why

def sh(cmd, stdin=None, timeout=20):
    try:
        p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "", "timed out"
    except OSError as e:
        return 126, "", str(e)

def why(rc, out, err):
    text = (err.strip() or out.strip()).splitlines()
    return f"exit {rc}: " + (text[-1][:160] if text else "")

def limits(sys_, n):
    n = int(n)
    label = "serf" if sys_ == "serf" else "pm"
    def rec(metric, found, log_of=None):
        size, refusal = found
        if refusal and log_of:  # what the responder logged about the response it could not send
            try:
                hits = [l.strip() for l in open(f"{DIR}/{label}-{n}-{log_of}.log", errors="replace")
                        if re.search(r"exceed|too large|too long|limit|truncat|dropp", l, re.I)]
                if hits: refusal += f"; {log_of} logged: {hits[-1][:200]}"
            except OSError:
                pass
        record(label, n, f"limit_{metric}", size if size is not None else -1)
        if refusal: record(label, n, f"refusal_{metric}", refusal)
        print(f"  {label} limit {metric}: {size} ({refusal})", file=sys.stderr)
    if sys_ == "serf":
        def event(s):
            rc, o, e = sh(cli(sys_, n, "event", "-coalesce=false", "size", "x" * s))
            return rc == 0, why(rc, o, e)
        def query(s):
            rc, o, e = sh(cli(sys_, n, "query", "-format=json", "-timeout=300ms", "-node", "n2", "size", "x" * s))
            return rc == 0, why(rc, o, e)
        def response(s):
            rc, o, e = sh(cli(sys_, n, "query", "-format=json", f"-timeout={SERF_QT}ms", "-node", "n2", "size", f"size:{s}"))
            try: got = len((json.loads(o).get("Responses") or {}).get("n2", ""))
            except ValueError: got = -1
            return rc == 0 and got == s, f"asked {s} B, got {got} B back ({why(rc, o, e)})"
        def tag(s):
            rc, o, e = sh(cli(sys_, n, "tags", "-set", "k=" + "x" * s))
            return rc == 0, why(rc, o, e)
        rec("message", largest(event, 64, 1 << 16))
        rec("query", largest(query, 64, 1 << 16))
        rec("response", largest(response, 64, 1 << 16), "n2")
        rec("tag_value", largest(tag, 64, 1 << 16))
        sh(cli(sys_, n, "tags", "-delete", "k"))
        keys = []
        def total(s):  # as peermesh's below: tags t00=xxx... of at most 4,000 bytes each
            if keys: sh(cli(sys_, n, "tags", *sum((["-delete", k] for k in keys), [])))
            keys.clear()
            args, left, k = [], s, 0
            while left > 0:
                key = f"t{k:02d}"; v = max(1, min(4000, left - len(key)))
                args += ["-set", f"{key}={'x' * v}"]; keys.append(key); left -= len(key) + v; k += 1
            rc, o, e = sh(cli(sys_, n, "tags", *args))
            return rc == 0, why(rc, o, e)
        rec("tags_total", largest(total, 64, 1 << 16))
        if keys: sh(cli(sys_, n, "tags", *sum((["-delete", k] for k in keys), [])))
    else:
        def message(s):
            rc, o, e = sh(cli(sys_, n, "send", "n2"), stdin=b"x" * s)
            return rc == 0, why(rc, o, e)
        def query(s):
            rc, o, e = sh(cli(sys_, n, "query", "--json", "--timeout", "300", "--peer", "n2"), stdin=b"x" * s)
            try: json.loads(o); good = rc in (0, 1)  # answered (1: n2's handler was not asked "size:")
            except ValueError: good = False
            return good, why(rc, o, e)
        def response(s):
            rc, o, e = sh(cli(sys_, n, "query", "--json", "--timeout", "1000", "--peer", "n2", f"size:{s}"))
            got = -1
            try:
                for r in json.loads(o).get("responses") or []:
                    if r.get("node") == "n2" and not r.get("error"):
                        got = len(r["data"]) if "data" in r else len(__import__("base64").b64decode(r.get("data_b64", "")))
            except (ValueError, TypeError, KeyError):
                pass
            return rc == 0 and got == s, f"asked {s} B, got {got} B back ({why(rc, o, e)})"
        def tag(s):
            rc, o, e = sh(cli(sys_, n, "tag", "set", "k=" + "x" * s))
            return rc == 0, why(rc, o, e)
        keys = []
        def total(s):
            # s bytes of keys and values in all, as tags t00=xxx... of at most 4,000 bytes each
            if keys: sh(cli(sys_, n, "tag", "rm", *keys))
            keys.clear()
            items, left, k = [], s, 0
            while left > 0:
                key = f"t{k:02d}"; v = max(1, min(4000, left - len(key)))
                items.append(f"{key}={'x' * v}"); keys.append(key); left -= len(key) + v; k += 1
            rc, o, e = sh(cli(sys_, n, "tag", "set", *items))
            return rc == 0, why(rc, o, e)
        rec("message", largest(message, 64, 1 << 17))
        rec("query", largest(query, 64, 1 << 17))
        rec("response", largest(response, 64, 1 << 17), "n2")
        rec("tag_value", largest(tag, 64, 1 << 16))
        sh(cli(sys_, n, "tag", "rm", "k"))
        rec("tags_total", largest(total, 64, 1 << 16))
        if keys: sh(cli(sys_, n, "tag", "rm", *keys))

# ---- the table ----
LABELS = {"serf": "Serf defaults", "pm": "peermesh 100 ms"}
ROWS = [
    ("event_handled_ms", "event: every other handler ran, ms"),
    ("event_exit_ms", "event: the command exited, ms"),
    ("confirm_handled_ms", "send --confirm: every handler ran, ms"),
    ("confirm_exit_ms", "send --confirm: the command exited, ms"),
    ("confirm_delivered", "send --confirm: delivered (--json), nodes"),
    ("query_asker_ms", "query: every response in at n1, ms"),
    ("query_responders_ms", "query: last responder's handler ran, ms"),
    ("query_exit_ms", "query --json: the command exited, ms"),
    ("query_responses", "query --json: responses in it"),
    ("query_text_printed_ms", "query (text): last response printed, ms"),
    ("query_text_exit_ms", "query (text): the command exited, ms"),
    ("tags_handled_ms", "tag set: every other handler ran, ms"),
    ("tags_shown_ms", "tag set: every other node shows it, ms"),
    ("tags_exit_ms", "tag set: the command exited, ms"),
]
# peermesh rows without a Serf row of their own are compared with this Serf row
RATIO_TO = {"confirm_handled_ms": "event_handled_ms", "confirm_exit_ms": "event_exit_ms"}
NORATIO = {"confirm_delivered", "query_responses"}
LIMITS = [("message", "event / message payload"), ("query", "query payload"),  # Serf's name: `size`
          ("response", "query response"), ("tag_value", "one tag value (key k)"),
          ("tags_total", "all tags of a node, keys + values")]

def fmt(x, ints=False):
    if ints or x == 0: return str(int(x))
    a = abs(x)
    return f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 0.1 else f"{x:.3f}"

def report(meta):
    data, text, notes = {}, {}, []
    for line in open(RAW):
        s, n, m, v = line.rstrip("\n").split("\t", 3)
        if m == "note": notes.append(f"{s} N={n}: {v}"); continue
        if m.startswith("refusal_"): text[(s, m)] = v; continue
        data.setdefault((s, int(n), m), []).append(float(v))
    print(open(meta).read().rstrip())
    systems = ["serf", "pm"]
    w = 22
    for n in sorted({k[1] for k in data if not k[2].startswith("limit_")}):
        print()
        print(f"{'N = ' + str(n):<42}" + "".join(f"{LABELS[s]:>{w}}" for s in systems) + f"{'pm/serf':>9}")
        for m, label in ROWS:
            cells, med = [], {}
            for s in systems:
                v = data.get((s, n, m))
                if not v: cells.append("-"); continue
                med[s] = statistics.median(v)
                lo, hi, ints = min(v), max(v), all(x == int(x) for x in v)
                cells.append(fmt(med[s], ints) if lo == hi else f"{fmt(med[s], ints)} ({fmt(lo, ints)}-{fmt(hi, ints)})")
            if not any(c != "-" for c in cells): continue
            serf = med.get("serf")
            if serf is None and m in RATIO_TO:
                v = data.get(("serf", n, RATIO_TO[m]))
                serf = statistics.median(v) if v else None
            ratio = f"{med['pm'] / serf:.3f}" if m not in NORATIO and "pm" in med and serf else ""
            if m in ("query_exit_ms", "query_text_exit_ms") and "pm" in med and med["pm"] >= 0.95 * PM_QT:
                ratio = "timeout"  # both waited their own timeouts: no ratio to give
            print(f"{label:<42}" + "".join(f"{c:>{w}}" for c in cells) + f"{ratio:>9}")
    lim = {(s, m[6:]): v[0] for (s, n, m), v in data.items() if m.startswith("limit_")}
    if lim:
        print()
        print("largest payload accepted, bytes            " + "".join(f"{LABELS[s]:>{w}}" for s in systems) + f"{'pm/serf':>9}")
        for m, label in LIMITS:
            vals = [lim.get((s, m)) for s in systems]
            if all(v is None for v in vals): continue
            cells = ["-" if v is None else "refused" if v < 0 else str(int(v)) for v in vals]
            ratio = f"{vals[1] / vals[0]:.0f}x" if all(v and v > 0 for v in vals) else ""
            print(f"{label:<42}" + "".join(f"{c:>{w}}" for c in cells) + f"{ratio:>9}")
        for m, label in LIMITS:
            for s in systems:
                if (s, f"refusal_{m}") in text:
                    print(f"  {LABELS[s]}, {label}, one byte more: {text[(s, f'refusal_{m}')]}")
    for note_ in notes: print("note:", note_)

if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"rpcwait": rpcwait, "up": up, "trials": trials, "limits": limits, "report": report}[cmd](*args)
PY
export PYTHONUNBUFFERED=1 DIR="$dir" RAW="$dir/raw.tsv" BIN="$bin" SERF_QUERY_TIMEOUT_MS PM_QUERY_TIMEOUT_MS
: > "$RAW"
helper() { nsx python3 "$dir/helper.py" "$@"; }

# Starts node i of system sys with n nodes; its PID goes into node_pid[i]. `ip netns exec`
# execs the program, so $! is the node itself.
start_node() {
    local sys=$1 n=$2 i=$3
    if [ "$sys" = serf ]; then
        local join=()
        [ "$i" = 1 ] || join=(-join 127.0.0.1:7946)
        ip netns exec "$ns" serf agent -node "n$i" -bind "127.0.0.$i:7946" -rpc-addr "127.0.0.$i:7373" \
            -event-handler "$dir/h-serf-$n.sh" "${join[@]}" >>"$dir/serf-$n-n$i.log" 2>&1 &
    else
        ip netns exec "$ns" "$bin" run --config "$dir/pm-$n.ron" --name "n$i" --control "$dir/pm-$n-n$i.sock" \
            ${pm_handler[@]+"${pm_handler[@]}" "$dir/h-pm-$n.sh"} >>"$dir/pm-$n-n$i.log" 2>&1 &
    fi
    node_pid[$i]=$!
}

measure() {
    local sys=$1 n=$2 i res
    write_handlers "$n"
    if [ "$sys" = pm ]; then
        {
            echo "(port: 1313, heartbeat_interval_ms: 100, suspect_after_ms: 300, dead_after_ms: 500, nodes: ["
            for i in $(seq "$n"); do echo "  (name: \"n$i\", host: \"127.0.0.$i\"),"; done
            echo "])"
        } > "$dir/pm-$n.ron"
    fi
    start_node "$sys" "$n" 1
    [ "$sys" != serf ] || helper rpcwait 1 10 || { log "$sys N=$n: first agent never answered"; exit 1; }
    for i in $(seq 2 "$n"); do start_node "$sys" "$n" "$i"; done
    res=$(helper up "$sys" "$n" 60) || { log "$sys N=$n: no full membership in 60 s"; exit 1; }
    log "$sys N=$n: full membership after $res s; settling $SETTLE s"
    sleep "$SETTLE"
    timeout 600 ip netns exec "$ns" python3 "$dir/helper.py" trials "$sys" "$n" "$TRIALS" \
        || log "$sys N=$n: trials failed or timed out (exit $?)"
    if [ "$LIMITS" = 1 ] && [ "$n" = "${SIZES%% *}" ]; then
        log "$sys N=$n: payload limits"
        timeout 600 ip netns exec "$ns" python3 "$dir/helper.py" limits "$sys" "$n" \
            || log "$sys N=$n: limits failed or timed out (exit $?)"
    fi
    stop_nodes
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $SIZES; do
    for sys in $SYSTEMS; do measure "$sys" "$n"; done
done
{
    echo "Application data, peermesh vs Serf on loopback in a network namespace ($(date -u '+%F %H:%M UTC'), $(nproc) cores, $(uname -r))"
    pmv="not run"
    case " $SYSTEMS " in *" pm "*) pmv="$(git rev-parse --short HEAD 2>/dev/null || echo '?') ($bin)" ;; esac
    echo "peermesh $pmv, heartbeat 100 ms; serf $(dpkg-query -W -f='${Version}' serf 2>/dev/null || echo '?') (binary says: $(serf version 2>/dev/null | head -1)), defaults"
    echo "QUICK=$QUICK: $TRIALS trials per row; systems: $SYSTEMS; load average (1/5/15 min): at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg); took $((SECONDS - started)) s"
    echo "Every node runs a handler that (bash builtins only: one exec, no other process) appends the time and the event to its own file. Times are ms from just"
    echo "before the command (on n1) started to the last of the N-1 other nodes' stamps, or to the command's exit."
    echo "event: serf event -coalesce=false NAME PAYLOAD | peermesh send --all DATA (best effort) and send --confirm --all."
    echo "query: serf query [-format=json] -timeout=${SERF_QUERY_TIMEOUT_MS}ms (waits the whole timeout; asks n1 too: N responses)"
    echo "       | peermesh query [--json] --timeout $PM_QUERY_TIMEOUT_MS (asks the peers only: N-1 responses). 'in at n1': Serf's text output"
    echo "       as it is printed; peermesh: the last query_response of 'watch --json' on n1 during the --json run."
    echo "tags:  serf tags -set k=V (member-update handler; the agent coalesces member events, 1 s quiet period)"
    echo "       | peermesh tag set k=V (tags handler); 'shows it': polled every ~10 ms (Serf RPC members, peermesh status tags)."
    echo "cells: median (min-max) over the trials; pm/serf: ratio of the medians (send --confirm against Serf's event)."
} > "$dir/meta"
helper report "$dir/meta" | tee "$out"
