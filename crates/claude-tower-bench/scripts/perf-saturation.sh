#!/usr/bin/env bash
# The default gateway (c) at saturation under `perf record`, for a layer's
# share of its CPU (see usage-share.py).
#
#   crates/claude-tower-bench/scripts/perf-saturation.sh OUT [VAR=VALUE ...]
#
# Starts the simulator and the gateway (extra VAR=VALUE settings go to the
# gateway's environment, e.g. CLAUDE_TOWER_USAGE=off), drives it with
# `load drive` (32 connections, small requests, 16 s) and records the
# gateway's stacks (DWARF, 997 Hz) for 10 s in the middle into OUT, then
# prints the drive's answers per second and CPU per answer of every
# process. Needs perf and the release builds that callgrind.sh names;
# GATEWAY_BIN runs another gateway build.
set -euo pipefail
out=$1; shift
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
gateway_bin=${GATEWAY_BIN:-$bin/claude-tower-gateway}
sim_port=${SIM_PORT:-18201}
port=${PROXY_PORT:-18202}

"$bin/claude-tower-sim" --listen "127.0.0.1:$sim_port" --log-capacity 1000 >/dev/null 2>&1 &
sim=$!
env -i RUST_LOG=warn CLAUDE_TOWER_LISTEN="127.0.0.1:$port" \
  ANTHROPIC_API_KEY=k ANTHROPIC_BASE_URL="http://127.0.0.1:$sim_port" \
  ANTHROPIC_FOUNDRY_BASE_URL="http://127.0.0.1:$sim_port/anthropic" ANTHROPIC_FOUNDRY_API_KEY=k \
  "$@" "$gateway_bin" >/dev/null 2>&1 &
gateway=$!
trap 'kill "$gateway" "$sim" 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done

"$bin/load" drive --target "127.0.0.1:$port" --seconds 16 --warm-up 1 \
  --server-pid "$gateway" --simulator-pid "$sim" >"$out.drive" &
drive=$!
sleep 3
perf record -q -p "$gateway" --call-graph dwarf,16384 -F 997 -o "$out" -- sleep 10 2>/dev/null
wait "$drive"
cat "$out.drive"
