#!/usr/bin/env bash
# Side-by-side scale benchmark of lifeboat and kube-state-metrics on the real
# test control plane (see benches/scale.rs for what it measures).
#
#   scripts/bench-scale.sh                      # 1k nodes, 20k pods, 10k PV+PVC, 500 CRs
#   scripts/bench-scale.sh --scale 0.1          # a tenth of that
#   scripts/bench-scale.sh --churn-rate 50 --churn-seconds 60 --scrapes 50 --tools lifeboat,kube-state-metrics
#
# Builds what is missing first: the control plane (scripts/build-control-plane.sh),
# kube-state-metrics v2.20.0 (scripts/build-kube-state-metrics.sh) and lifeboat
# (release). LIFEBOAT_BENCH_PROFILE=dev uses debug builds instead (quicker to
# build, slower to run: figures not comparable with release ones).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LIFEBOAT_CONTROL_PLANE_DIR=${LIFEBOAT_CONTROL_PLANE_DIR:-$PWD/target/control-plane/v1.35.4}
scripts/build-control-plane.sh
scripts/build-kube-state-metrics.sh
export KSM_BIN=${KSM_BIN:-$PWD/target/kube-state-metrics/v2.20.0/bin/kube-state-metrics}
if [[ ${LIFEBOAT_BENCH_PROFILE:-release} == dev ]]; then
    cargo build --locked --bin lifeboat
    export LIFEBOAT_BIN=${LIFEBOAT_BIN:-$PWD/target/debug/lifeboat}
    exec cargo test --locked --bench scale -- "$@"
fi
cargo build --locked --release --bin lifeboat
export LIFEBOAT_BIN=${LIFEBOAT_BIN:-$PWD/target/release/lifeboat}
exec cargo bench --locked --bench scale -- "$@"
