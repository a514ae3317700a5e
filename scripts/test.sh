#!/usr/bin/env bash
# The one command that runs every test lifeboat has, from a fresh machine:
# installs the Debian packages the tests use, builds (or reuses) the real
# kube-apiserver/etcd and helm, then runs the rule/chart checks, the
# Prometheus end-to-end run and the Rust test suite (unit, fixture and
# real-apiserver integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test dependencies"
scripts/install-test-deps.sh

step "prometheus and alertmanager (rules/e2e.sh, tests/alert_e2e.rs)"
export PROMETHEUS="${PROMETHEUS:-/usr/bin/prometheus}" ALERTMANAGER="${ALERTMANAGER:-/usr/bin/prometheus-alertmanager}"
for bin in "$PROMETHEUS" "$ALERTMANAGER"; do
    if [ ! -x "$bin" ]; then
        echo "missing $bin: install the Debian packages prometheus and prometheus-alertmanager (or set PROMETHEUS / ALERTMANAGER)" >&2
        exit 1
    fi
    # sed reads everything: `head` would SIGPIPE the writer and fail under pipefail.
    "$bin" --version 2>&1 | sed -n 1p
done

step "control plane (kube-apiserver + etcd from upstream Go modules; cached)"
scripts/build-control-plane.sh
"target/control-plane/v1.35.4/bin/kube-apiserver" --version
# sed reads everything: `head` would SIGPIPE the writer and fail under pipefail.
"target/control-plane/v1.35.4/bin/etcd" --version | sed -n 1p

if [ -d ../shared/crds ]; then
    echo "CRDs: upstream, from ../shared/crds"
else
    echo "CRDs: ../shared/crds absent; using the stand-ins in tests/crds"
fi

step "build"
cargo build --locked --bins
export LIFEBOAT_BIN="$PWD/target/debug/lifeboat"

if [ -x scripts/build-helm.sh ]; then
    step "helm (from its Go module; cached)"
    scripts/build-helm.sh
fi
for check in rules/check.sh deploy/check.sh rules/e2e.sh; do
    if [ -x "$check" ]; then
        step "$check"
        "$check"
    fi
done

step "cargo test"
cargo test --locked
