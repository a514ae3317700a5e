#!/usr/bin/env bash
# Build (and cache) the Helm CLI used by deploy/check.sh and deploy/generate.sh,
# from its published Go module (helm.sh/helm/v3, cmd/helm) through the Go
# module proxy. No downloads of release tarballs.
#
#   scripts/build-helm.sh                        # build if missing/stale
#   LIFEBOAT_HELM_REBUILD=1 scripts/build-helm.sh # force
#
# Output: ${LIFEBOAT_HELM:-<repo>/target/tools/helm}. If it exists and reports
# the pinned version, this is a no-op that prints the version and exits 0.
#
# Env knobs:
#   LIFEBOAT_HELM          output path of the binary
#   LIFEBOAT_HELM_REBUILD  1 = rebuild even if the binary looks fine
#   LIFEBOAT_BUILD_JOBS    go build -p value (default: 1, the machine is shared)
#   GOMODCACHE / GOCACHE / GOPROXY  honoured as usual by the go tool
set -euo pipefail

# Pinned version. Helm v3.19.5 builds against k8s.io/client-go v0.34.2, so the
# Kubernetes version Helm assumes offline (.Capabilities.KubeVersion, lint
# deprecation checks) is stamped 1.34 — what upstream's Makefile does.
HELM_VERSION=v3.19.5
K8S_MAJOR=1
K8S_MINOR=34

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT=${LIFEBOAT_HELM:-$REPO_ROOT/target/tools/helm}
JOBS=${LIFEBOAT_BUILD_JOBS:-1}

log() { printf '[build-helm] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

helm_version() { "$OUT" version --template '{{.Version}}' 2>/dev/null || true; }
helm_ok() { [[ -x $OUT ]] && [[ "$(helm_version)" == "$HELM_VERSION" ]]; }

if [[ ${LIFEBOAT_HELM_REBUILD:-0} != 1 ]] && helm_ok; then
    log "$OUT -> $(helm_version)"
    exit 0
fi

command -v go >/dev/null || die "go not found in PATH (Go >= 1.24 required by helm $HELM_VERSION)"
mkdir -p "$(dirname "$OUT")"
gobin=$(mktemp -d "$(dirname "$OUT")/.helm-build.XXXXXX")
trap 'rm -rf "$gobin"' EXIT

log "$(go version); building helm $HELM_VERSION with -p $JOBS -> $OUT"
start=$(date +%s)
ldflags=(
    "-s" "-w"
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    "-X helm.sh/helm/v3/internal/version.gitCommit=go-module-helm.sh/helm/v3@$HELM_VERSION"
    "-X helm.sh/helm/v3/internal/version.gitTreeState=clean"
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$K8S_MAJOR"
    "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR"
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$K8S_MAJOR"
    "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR"
)
# `go install pkg@version` builds in module mode from the module's own
# go.mod/go.sum (verified against sum.golang.org), outside this repository.
CGO_ENABLED=0 GOBIN="$gobin" GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false" \
    go install -trimpath -p "$JOBS" -ldflags "${ldflags[*]}" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" \
    || die "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION failed"
mv -f "$gobin/helm" "$OUT"
helm_ok || die "built helm reports '$(helm_version)', expected '$HELM_VERSION'"
log "built in $(( $(date +%s) - start ))s -> $OUT ($(du -h "$OUT" | cut -f1)), $(helm_version)"
