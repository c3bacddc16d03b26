#!/usr/bin/env bash
# Two gateway builds side by side with the bare passthrough, in time: `load
# drive` against (b), then each build, rotating, every run a fresh server on
# one simulator. Prints one line per run: target, answers/s, the server's
# CPU per answer (µs), all processes' CPU per answer (µs); ab-summary.py
# turns them into paired ratios.
#
#   crates/claude-tower-bench/scripts/ab.sh ROUNDS SECONDS OLD_GATEWAY NEW_GATEWAY [VAR=VALUE ...] > OUT
#   crates/claude-tower-bench/scripts/ab-summary.py OUT
#
# VAR=VALUE settings go to both gateways' environment (the harness's wave2:
# CLAUDE_TOWER_CLIENT_KEYS=bench=bench-client-key CLAUDE_TOWER_TPM=100000000000
# CLAUDE_TOWER_RPM=10000000000). WORKLOAD=large drives 200 KB requests.
# The order within a round alternates (b old new, b new old), so a drift of
# the machine's speed during a round falls on both builds alike; on a VM
# whose speed moves by ±20 % within minutes, only the medians of the pairs
# mean anything. Needs the release builds that callgrind.sh names.
set -euo pipefail
rounds=$1 secs=$2 old=$3 new=$4
shift 4
extra=("$@")
root=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${CARGO_TARGET_DIR:-$root/target}/release
sim_port=${SIM_PORT:-18601}
port=${PROXY_PORT:-18602}

"$bin/claude-tower-sim" --listen "127.0.0.1:$sim_port" --log-capacity 1000 >/dev/null 2>&1 &
sim=$!
trap 'kill "$sim" 2>/dev/null || true' EXIT
sleep 0.5

run() {
  local name=$1 gateway
  case $name in
    b) "$bin/load" passthrough --listen "127.0.0.1:$port" --upstream "127.0.0.1:$sim_port" >/dev/null 2>&1 & ;;
    old | new)
      gateway=$old
      [ "$name" = new ] && gateway=$new
      env -i RUST_LOG=warn CLAUDE_TOWER_LISTEN="127.0.0.1:$port" \
        ANTHROPIC_API_KEY=k ANTHROPIC_BASE_URL="http://127.0.0.1:$sim_port" \
        ANTHROPIC_FOUNDRY_BASE_URL="http://127.0.0.1:$sim_port/anthropic" ANTHROPIC_FOUNDRY_API_KEY=k \
        ${extra[@]+"${extra[@]}"} "$gateway" >/dev/null 2>&1 &
      ;;
  esac
  local server=$!
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  local out
  out=$("$bin/load" drive --target "127.0.0.1:$port" --workload "${WORKLOAD:-small}" \
    --seconds "$secs" --warm-up 0.5 --server-pid "$server" --simulator-pid "$sim" 2>&1)
  kill "$server"
  wait "$server" 2>/dev/null || true
  echo "$name $(grep -o '[0-9]* answers/s' <<<"$out" | cut -d' ' -f1)" \
    "$(grep -o 'server [0-9.]* µs' <<<"$out" | cut -d' ' -f2)" \
    "$(grep -o 'all [0-9.]* µs' <<<"$out" | cut -d' ' -f2)"
}

for i in $(seq "$rounds"); do
  if [ $((i % 2)) = 0 ]; then order="b old new"; else order="b new old"; fi
  for name in $order; do run "$name"; done
done
