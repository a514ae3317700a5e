#!/usr/bin/env bash
# Build (and cache) kube-state-metrics from its published Go module, for the
# side-by-side scale benchmark (scripts/bench-scale.sh). A no-op once built.
#
#   scripts/build-kube-state-metrics.sh
#
# Output: ${LIFEBOAT_KSM_DIR:-<repo>/target/kube-state-metrics/v2.20.0}/bin/kube-state-metrics
# Env knobs: LIFEBOAT_KSM_REBUILD=1 forces a rebuild; LIFEBOAT_BUILD_JOBS (go build -p);
# GOMODCACHE / GOCACHE / GOPROXY as usual.
set -euo pipefail

KSM_VERSION=v2.20.0
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT_DIR=${LIFEBOAT_KSM_DIR:-$REPO_ROOT/target/kube-state-metrics/$KSM_VERSION}
BIN=$OUT_DIR/bin/kube-state-metrics
JOBS=${LIFEBOAT_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf '[build-kube-state-metrics] %s\n' "$*" >&2; }

if [[ ${LIFEBOAT_KSM_REBUILD:-0} != 1 && -x $BIN ]] && "$BIN" version 2>&1 | grep -q "${KSM_VERSION#v}"; then
    log "$BIN -> $("$BIN" version 2>&1 | head -n1)"
    exit 0
fi
command -v go >/dev/null || { log "ERROR: go not found in PATH"; exit 1; }
mkdir -p "$OUT_DIR/bin"
start=$(date +%s)
log "$(go version); go install k8s.io/kube-state-metrics/v2@$KSM_VERSION (-p $JOBS)"
# The version stamp is what KSM's own Makefile passes (github.com/prometheus/common/version).
CGO_ENABLED=0 GOBIN="$OUT_DIR/bin" GOFLAGS="-buildvcs=false" go install -trimpath -p "$JOBS" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=${KSM_VERSION#v}" \
    "k8s.io/kube-state-metrics/v2@$KSM_VERSION"
mv -f "$OUT_DIR/bin/v2" "$BIN" 2>/dev/null || true
log "built in $(( $(date +%s) - start ))s -> $("$BIN" version 2>&1 | head -n1)"
