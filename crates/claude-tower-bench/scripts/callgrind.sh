#!/usr/bin/env bash
# Instructions per request of the passthrough (b) or the gateway (c), under
# callgrind, with curl as the client (one keep-alive connection).
#
#   crates/claude-tower-bench/scripts/callgrind.sh b|c small|large|stream N OUT
#
# Run it twice with different N and divide the difference of the totals by
# the difference of N: start-up cost cancels out. Needs the release builds:
#   cargo build --release -p claude-tower-bench -p claude-tower-sim --bin load \
#     --bin claude-tower-sim -p claude-tower-gateway
# STREAM_BYTES sets the stream workload's size (default 64 KiB).
# GATEWAY_BIN runs another gateway build (e.g. an older commit's) as (c);
# GATEWAY_ENV adds variables to its environment, e.g. the harness's
# configurations: `CLAUDE_TOWER_USAGE=off` (plain) or
# `CLAUDE_TOWER_CLIENT_KEYS=bench=k CLAUDE_TOWER_TPM=100000000000
# CLAUDE_TOWER_RPM=10000000000` (wave2; the client sends `x-api-key: k`).
set -euo pipefail
target=$1 workload=$2 n=$3 out=$4
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
gateway=${GATEWAY_BIN:-$bin/claude-tower-gateway}
sim_port=${SIM_PORT:-18101}
port=${PROXY_PORT:-18102}

"$bin/claude-tower-sim" --listen "127.0.0.1:$sim_port" --log-capacity 1000 >/dev/null &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
sleep 0.5
case $target in
  b) valgrind --tool=callgrind --callgrind-out-file="$out" \
       "$bin/load" passthrough --listen "127.0.0.1:$port" --upstream "127.0.0.1:$sim_port" \
       >/dev/null 2>"$out.log" & ;;
  c) env -i RUST_LOG=warn CLAUDE_TOWER_LISTEN="127.0.0.1:$port" \
       ANTHROPIC_API_KEY=k ANTHROPIC_BASE_URL="http://127.0.0.1:$sim_port" \
       ANTHROPIC_FOUNDRY_BASE_URL="http://127.0.0.1:$sim_port/anthropic" ANTHROPIC_FOUNDRY_API_KEY=k \
       ${GATEWAY_ENV:-} valgrind --tool=callgrind --callgrind-out-file="$out" "$gateway" \
       >/dev/null 2>"$out.log" & ;;
  *) echo "target must be b or c" >&2; exit 2 ;;
esac
server=$!
for _ in $(seq 150); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done

body=$(mktemp)
"$bin/load" print-body "$workload" >"$body"
headers=(-H 'content-type: application/json' -H 'anthropic-version: 2023-06-01' -H 'x-api-key: k')
if [ "$workload" = stream ]; then headers+=(-H "x-sim-stream-bytes: ${STREAM_BYTES:-65536}"); fi
urls=()
for _ in $(seq "$n"); do urls+=(-o /dev/null "http://127.0.0.1:$port/v1/messages"); done
curl -s -w '%{http_code}\n' "${headers[@]}" --data-binary @"$body" "${urls[@]}" | sort | uniq -c
rm -f "$body"
kill -TERM "$server"
wait "$server" || true
grep -E '^totals' "$out"
