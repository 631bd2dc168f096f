#!/usr/bin/env bash
# The tails figures in one command: runs of the shared harness with the mock direct, this gateway
# (every feature on, bench/harness.sh) and the bare Tornado+pycurl relay, then bench/tails.py on them:
# the gateway's p99s and CPU as ratios to the relay's, beside their targets; with --runs N, each
# run's ratio, the median and how many runs met the target (one run's ratio swings on a shared
# machine). The gateway runs before the relay in odd runs, after it in even ones.
#
#   ../shared/bench/setup_peers.sh         # once: installs the bare relay (and the other peers)
#   bench/tails.sh                         # S1..S5, about 2 minutes; results in bench/results/
#   bench/tails.sh --scenarios "S2 S4"     # some scenarios
#   bench/tails.sh --runs 3                # three runs, then the medians
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=1
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
TAG=${RESULTS_TAG:-$(date +%Y-%m-%d)-tails-$(git rev-parse --short HEAD)}
FILES=()
for i in $(seq 1 "$RUNS"); do
  RUN_TAG=$TAG
  if [ "$RUNS" -gt 1 ]; then RUN_TAG=$TAG-r$i; fi
  # The order is a variable of its own: the gateway's S5 p99/p50 is higher when it runs first, right
  # after the mock measured directly (docs/performance.md). The two peers take turns.
  ORDER="gut tornado"
  if [ $((i % 2)) = 0 ]; then ORDER="tornado gut"; fi
  RESULTS_TAG=$RUN_TAG PEERS="direct $ORDER" bench/harness.sh ${ARGS[@]+"${ARGS[@]}"}
  FILES+=("${RESULTS_DIR:-bench/results}/$RUN_TAG-peers.json")
done
python3 bench/tails.py "${FILES[@]}"
