#!/usr/bin/env bash
# Instructions per request of each configuration the harness compares, under
# callgrind: the bare passthrough (b), the default gateway (c), without the
# wave-2 layers (d), and with identity, usage and a memory quota (e).
#
#   crates/claude-tower-bench/scripts/instructions.sh [small|large|stream] [N1 N2]
#
# Each configuration runs callgrind.sh twice, with N1 and N2 requests
# (default 200 and 1200), and reports (T(N2) - T(N1)) / (N2 - N1): start-up
# cancels out. What does not cancel is work that follows the clock (timers,
# periodic tasks: a run under valgrind lasts seconds, not the same ones
# twice), a few hundred thousand instructions a run; over 1000 requests it
# is a few hundred per request (two runs of (c): 94.9k, 94.3k), over 200 a
# few thousand (91k-99k). Unlike the load harness's throughput, these
# figures do not move with the machine's load, so they tell a change of a
# few percent in one configuration's cost apart from noise; they count user-space
# instructions only (not the kernel's socket work every configuration pays
# alike), so a ratio here is not a throughput ratio. Needs the release
# builds that callgrind.sh names; takes a minute or two per configuration.
# CONFIGS picks the configurations (default "b c d e"; the ratios need b and c).
set -euo pipefail
workload=${1:-small} n1=${2:-200} n2=${3:-1200}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

wave2="CLAUDE_TOWER_CLIENT_KEYS=bench=k CLAUDE_TOWER_TPM=100000000000 CLAUDE_TOWER_RPM=10000000000"
declare -A label=([b]="(b) passthrough" [c]="(c) gateway" [d]="(d) gateway, no wave-2 layers"
  [e]="(e) gateway + identity, usage, memory quota")
declare -A env=([b]="" [c]="" [d]="CLAUDE_TOWER_USAGE=off" [e]="$wave2")

per_request() {
  local config=$1 target=c totals=()
  [ "$config" = b ] && target=b
  for n in "$n1" "$n2"; do
    GATEWAY_ENV="${env[$config]}" "$here/callgrind.sh" "$target" "$workload" "$n" \
      "$out/$config.$n" >"$out/$config.$n.run" 2>&1 ||
      { cat "$out/$config.$n.run" >&2; exit 1; }
    totals+=("$(awk '/^totals:/ {print $2}' "$out/$config.$n.run" | tr -d ,)")
  done
  echo $(((totals[1] - totals[0]) / (n2 - n1)))
}

configs=${CONFIGS:-b c d e}
declare -A count=([b]=0 [c]=0)
for config in $configs; do
  count[$config]=$(per_request "$config")
done
echo "| configuration | instructions / $workload request | vs (b) | vs (c) |"
echo "|---|---|---|---|"
for config in $configs; do
  awk -v l="${label[$config]}" -v n="${count[$config]}" -v b="${count[b]}" -v c="${count[c]}" \
    'BEGIN { printf "| %s | %.1fk | %s | %s |\n", l, n / 1000, b ? sprintf("%.2f", n / b) : "-", c ? sprintf("%.2f", n / c) : "-" }'
done
