# Shared by the bench scripts (sourced, not run). Expects `bin` to name the peermesh binary.

# bench_lab PREFIX: a private network namespace `$ns` with loopback up, a scratch directory
# `$dir` holding a fresh key file, and a trap that on exit stops every PID in `pids` and
# removes the namespace and the directory.
bench_lab() {
    ns=$1$$
    dir=$(mktemp -d)
    pids=()
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    umask 077
    "$bin" keygen > "$dir/keyring"
}

bench_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}

# keyed_config FILE INTERVAL_MS SUSPECT_MS DEAD_MS NAME...: a config for the named nodes on
# 127.0.0.2, 127.0.0.3, ... (port 1313), sealed with `$dir/keyring`.
keyed_config() {
    local file=$1 interval=$2 suspect=$3 dead=$4 i=2 name
    shift 4
    {
        echo "(heartbeat_interval_ms: $interval, suspect_after_ms: $suspect, dead_after_ms: $dead, keyring: \"keyring\", nodes: ["
        for name in "$@"; do echo "  (name: \"$name\", host: \"127.0.0.$i\"),"; i=$((i + 1)); done
        echo "])"
    } > "$file"
}
