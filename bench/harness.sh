#!/usr/bin/env bash
# Runs the shared speed harness (../shared/bench/run_peers.sh, see its README) against this gateway:
# the mock upstream directly ("direct", the floor) and through the gateway ("gut") in the same run,
# with every gateway feature on (auth, memory rate limits with a key whose limits are high enough
# not to refuse the load, SSE parsing, accounting, the access log). Results: bench/results/.
#
#   bench/harness.sh --quick                 # a 2-minute smoke run
#   bench/harness.sh                         # the full run (S1..S5)
#   bench/harness.sh --scenarios "S1 S4"     # some scenarios
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
HARNESS=${HARNESS:-$ROOT/../shared/bench/run_peers.sh}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
KEY=$(python3 run.py keys add bench --keys-file "$WORK/keys.json" --rpm 100000000 --concurrency 1000000)
export XAI_API_KEY=bench-upstream-key
export GUT_KEY=$KEY
export GUT_CMD="exec python3 $ROOT/run.py --port \$GUT_PORT --upstream-url \$MOCK_BASE --keys-file $WORK/keys.json"
export GUT_NAME="tornado_grok $(git rev-parse --short HEAD)"
export RESULTS_DIR=${RESULTS_DIR:-$ROOT/bench/results}
"$HARNESS" --peers "${PEERS:-direct gut}" "$@"
