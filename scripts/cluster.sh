#!/usr/bin/env bash
# Start a 3-node ledger cluster on loopback for a newcomer (issue 15, first
# slice): each node its own data directory (DIR/nodeN), node key, raft port
# and web port; one admin key shared (the first leader seals genesis with it).
#   scripts/cluster.sh [DIR]     (or make cluster) default DIR: ./var/cluster; Ctrl-C stops all three
# Web: http://127.0.0.1:8101/, :8102/, :8103/. Raft: 127.0.0.1:7101..7103.
# Any node takes writes (a follower forwards them to the leader on 127.0.0.1:7201..7203).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARESYNC_BIN:-build/caresync}
DIR=${1:-var/cluster}
[[ -x "$BIN" ]] || { echo "cluster: build first (make build)" >&2; exit 1; }
umask 077
mkdir -p "$DIR"
if [[ ! -f "$DIR/cluster.json" ]]; then
  [[ -f "$DIR/admin.key" ]] || "$BIN" keygen --out "$DIR/admin.key" >/dev/null
  nodes=()
  for i in 1 2 3; do
    mkdir -p "$DIR/node$i/keys"
    cp "$DIR/admin.key" "$DIR/node$i/keys/admin.key"
    pk=$("$BIN" keygen --out "$DIR/node$i/keys/node.key" | grep -oE '[0-9a-f]{64}' | head -1)
    nodes+=("{\"id\": $i, \"address\": \"127.0.0.1:710$i\", \"key\": \"$pk\"}")
  done
  printf '{"nodes": [%s, %s, %s]}\n' "${nodes[@]}" > "$DIR/cluster.json"
fi
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
for i in 1 2 3; do
  "$BIN" serve --cluster "$DIR/cluster.json" --data-dir "$DIR/node$i" --port "810$i" &
  pids+=($!)
done
wait
