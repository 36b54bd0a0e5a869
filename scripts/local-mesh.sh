#!/usr/bin/env bash
# `make run`: starts every node of peers.ron on this machine (a local mesh), shows the live
# peer table of the first one, and stops all of them on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo put the release binary: CARGO_TARGET_DIR or a cargo config may move it.
target_dir() {
    ${CARGO:-cargo} metadata --no-deps --format-version 1 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
bin=${PEERMESH_BIN:-$(target_dir)/release/peermesh}
[ -x "$bin" ] || { echo "no peermesh binary at $bin: run make build first" >&2; exit 1; }
config=${PEERMESH_CONFIG:-peers.ron}
rundir=$(mktemp -d "${TMPDIR:-/tmp}/peermesh-local.XXXXXX")
names=$(sed -n 's/.*name: *"\([^"]*\)".*/\1/p' "$config")
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "stopped ${#pids[@]} nodes; logs were in $rundir"
}
trap stop INT TERM EXIT
"$bin" check --config "$config" --name "$(echo "$names" | head -n1)" >/dev/null
for name in $names; do
    "$bin" run --config "$config" --name "$name" --control "$rundir/$name.sock" \
        2>"$rundir/$name.log" &
    pids+=($!)
done
first=$(echo "$names" | head -n1)
for _ in $(seq 50); do [ -S "$rundir/$first.sock" ] && break; sleep 0.1; done
echo "started ${#pids[@]} nodes ($(echo $names)); logs in $rundir; Ctrl-C stops them all"
"$bin" top --control "$rundir/$first.sock"
