#!/usr/bin/env bash
# The tails figures in one command: one run of the shared harness with the mock direct, this gateway
# (every feature on, bench/harness.sh) and the bare Tornado+pycurl relay, then bench/tails.py on it:
# the gateway's p99s and CPU as ratios to the relay's, beside their targets.
#
#   ../shared/bench/setup_peers.sh         # once: installs the bare relay (and the other peers)
#   bench/tails.sh                         # S1..S5, about 4 minutes; results in bench/results/
#   bench/tails.sh --scenarios "S2 S4"     # some scenarios
set -euo pipefail
cd "$(dirname "$0")/.."
export RESULTS_TAG=${RESULTS_TAG:-$(date +%Y-%m-%d)-tails-$(git rev-parse --short HEAD)}
PEERS="direct gut tornado" bench/harness.sh "$@"
python3 bench/tails.py "${RESULTS_DIR:-bench/results}/$RESULTS_TAG-peers.json"
