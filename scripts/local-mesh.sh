#!/usr/bin/env bash
# `make run`: starts every node of peers.ron on this machine (a local mesh), prints the
# commands that reach it from another terminal, shows the live peer table of the first
# node, and stops all of them on Ctrl-C (exit 0, nothing but a last line saying so).
#
# The nodes use their default control sockets ($XDG_RUNTIME_DIR/peermesh-NAME.sock, else
# /tmp/peermesh-UID/NAME.sock), so `peermesh status --name NAME` finds them without flags.
# PEERMESH_CONFIG and PEERMESH_BIN override the config and the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
# Where cargo put the release binary: CARGO_TARGET_DIR or a cargo config may move it.
target_dir() {
    ${CARGO:-cargo} metadata --no-deps --format-version 1 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
absolute() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename "$1")"); }
bin=${PEERMESH_BIN:-$(target_dir)/release/peermesh}
[ -x "$bin" ] || { echo "no peermesh binary at $bin: run make build first" >&2; exit 1; }
bin=$(absolute "$bin")
config=$(absolute "${PEERMESH_CONFIG:-peers.ron}")
names=$(grep -o 'name: *"[^"]*"' "$config" | sed 's/.*"\([^"]*\)"/\1/')
first=$(echo "$names" | head -n1)
"$bin" check --config "$config" --name "$first" >/dev/null
rundir=$(mktemp -d "${TMPDIR:-/tmp}/peermesh-local.XXXXXX")
pids=()
stop() {
    trap - INT TERM EXIT
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    echo "stopped ${#pids[@]} node$([ ${#pids[@]} = 1 ] || echo s); their logs are in $rundir"
}
# Ctrl-C is how this ends: stop the nodes and exit 0. Any other exit stops them too.
trap 'stop; exit 0' INT TERM
trap stop EXIT
# The first node also serves its status page and /metrics, unless something listens there.
http=${PEERMESH_HTTP:-127.0.0.1:9313}
http_args=(--http "$http")
if (: </dev/tcp/"${http%:*}"/"${http##*:}") 2>/dev/null; then
    http_args=()
fi
for name in $names; do
    if [ "$name" = "$first" ]; then
        "$bin" run --config "$config" --name "$name" "${http_args[@]}" 2>"$rundir/$name.log" &
    else
        "$bin" run --config "$config" --name "$name" 2>"$rundir/$name.log" &
    fi
    pids+=($!)
done
# Bounded wait (5 s) until the first node answers on its default socket.
for _ in $(seq 50); do
    "$bin" status --name "$first" >/dev/null 2>&1 && break
    sleep 0.1
done
i=0
for name in $names; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "node $name did not start; its log, $rundir/$name.log, says:" >&2
        tail -n 5 "$rundir/$name.log" >&2
        exit 1
    fi
    i=$((i + 1))
done
cat <<END
started ${#pids[@]} nodes ($(echo $names)); logs in $rundir; Ctrl-C stops them all
from another terminal:
  $bin status --name $first
  $bin matrix --name $first
  $bin top --name $first
END
[ ${#http_args[@]} -gt 0 ] && echo "status page of $first: http://$http/  (metrics: http://$http/metrics)"
"$bin" top --name "$first"
