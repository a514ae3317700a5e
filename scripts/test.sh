#!/usr/bin/env bash
# The one command that runs every test lifeboat has, from a fresh machine:
# installs the Debian packages the tests use, builds (or reuses) the real
# kube-apiserver/etcd and helm, then runs the rule/chart checks, the
# Prometheus end-to-end run and the Rust test suite (unit, fixture and
# real-apiserver integration tests).
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step prints the seconds since the script started: where CI time goes.
step() { printf '\n==> [%ss] %s\n' "$SECONDS" "$*"; }

# Every check this script runs must exist: a missing one is a broken
# checkout, not something to skip.
for script in scripts/install-test-deps.sh scripts/build-control-plane.sh scripts/build-cnpg-operator.sh scripts/fetch-crds.sh scripts/build-helm.sh \
    scripts/build-image.sh rules/check.sh deploy/check.sh rules/e2e.sh; do
    if [ ! -x "$script" ]; then
        echo "missing or not executable: $script (scripts/test.sh runs it)" >&2
        exit 1
    fi
done

step "format (cargo fmt --check; rustfmt.toml)"
cargo fmt --all --check

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
control_plane="${LIFEBOAT_CONTROL_PLANE_DIR:-target/control-plane/v1.35.4}"
"$control_plane/bin/kube-apiserver" --version
# sed reads everything: `head` would SIGPIPE the writer and fail under pipefail.
"$control_plane/bin/etcd" --version | sed -n 1p

step "CloudNativePG operator (from its Go module; cached; tests/cnpg_operator.rs)"
scripts/build-cnpg-operator.sh

step "upstream CRDs (from the operators' Go modules; cached)"
scripts/fetch-crds.sh
if [ -d ../shared/crds ]; then
    echo "CRDs: ../shared/crds first, then target/upstream-crds, then stand-ins (tests/support/crds.rs)"
else
    echo "CRDs: target/upstream-crds, then stand-ins for kinds no served module carries (docs/development.md)"
fi

step "build"
cargo build --locked --bins

step "lints (cargo clippy --all-targets -D warnings)"
cargo clippy --locked --all-targets -- -D warnings
export LIFEBOAT_BIN="$PWD/target/debug/lifeboat"

step "helm (from its Go module; cached)"
# LIFEBOAT_HELM points both the build (its output) and the chart check at one binary.
export HELM="${HELM:-${LIFEBOAT_HELM:-$PWD/target/tools/helm}}"
export LIFEBOAT_HELM="$HELM"
scripts/build-helm.sh
for check in rules/check.sh deploy/check.sh rules/e2e.sh; do
    step "$check"
    "$check"
done

step "container image (static release binary + umoci; tests/image.rs runs it)"
export LIFEBOAT_IMAGE_ARCHIVE="$PWD/$(scripts/build-image.sh | tail -n1)"

step "cargo test (one control plane shared by the test binaries)"
cargo test --locked --no-run
# The server runs `cargo test` beside one control plane that every test
# binary able to share it uses (docs/testing-control-plane.md), stops it when
# cargo ends and dies with this script, so no plane outlives the run.
server=$(cargo test --locked --no-run --test control_plane_server --message-format=json | sed -n 's/.*"executable":"\([^"]*\/control_plane_server-[^"]*\)".*/\1/p')
if [ ! -x "$server" ]; then
    echo "cargo named no executable for tests/control_plane_server.rs" >&2
    exit 1
fi
# Every test binary runs even after one fails: CI reports all failures at once.
"$server" with-shared-plane cargo test --locked --no-fail-fast
step "done"
