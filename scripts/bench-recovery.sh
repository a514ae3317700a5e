#!/usr/bin/env bash
# The simulated node-loss recovery's timing: runs the end-to-end test
# (tests/playbook_node_loss.rs, the examples/node-loss cluster on the real
# test apiserver, every operator played) and prints its RECOVERY line: the
# run's wall time (first step started → last step finished), the plan's
# critical path (the longest chain of executed steps along their `needs`,
# each weighted by its measured duration: what unlimited concurrency would
# take), the sum of its steps' durations as if run one after another, and the
# ratios wall/critical path and sum/wall; then the critical path's steps.
# LIFEBOAT_BENCH_CONCURRENCY=N runs it with remediation.concurrency N (default 4).
# Needs the test control plane (scripts/build-control-plane.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export LIFEBOAT_CONTROL_PLANE_DIR="${LIFEBOAT_CONTROL_PLANE_DIR:-$PWD/target/control-plane/v1.35.4}"
runs="${LIFEBOAT_BENCH_RUNS:-1}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for i in $(seq 1 "$runs"); do
    if ! cargo test --test playbook_node_loss recovers_the_whole_node -- --nocapture >"$log" 2>&1; then
        cat "$log" >&2
        echo "bench-recovery: the end-to-end test failed" >&2
        exit 1
    fi
    # grep reads everything (no head: it would SIGPIPE the writer under pipefail).
    line=$(grep -E '^RECOVERY ' "$log" || true)
    if [ -z "$line" ]; then
        echo "bench-recovery: no RECOVERY line in the test output" >&2
        exit 1
    fi
    echo "run $i: $line"
    grep -E '^CRITICAL PATH ' "$log" | sed "s/^/run $i: /" || true
done
echo "commit $(git rev-parse --short HEAD), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
