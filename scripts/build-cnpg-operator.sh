#!/usr/bin/env bash
# Build (and cache) the real CloudNativePG operator's manager binary used by
# tests/cnpg_operator.rs, from its published Go module
# (github.com/cloudnative-pg/cloudnative-pg, cmd/manager) through the Go module
# proxy. The version is the one of the CRDs the tests install.
#
#   scripts/build-cnpg-operator.sh                             # build if missing/stale
#   LIFEBOAT_CNPG_OPERATOR_REBUILD=1 scripts/build-cnpg-operator.sh  # force
#
# Output: ${LIFEBOAT_CNPG_OPERATOR:-<repo>/target/cnpg-operator/v1.30.0/manager}.
# If it exists and reports the pinned version, this is a no-op that prints the
# version and exits 0.
#
# Env knobs:
#   LIFEBOAT_CNPG_OPERATOR          output path of the binary
#   LIFEBOAT_CNPG_OPERATOR_REBUILD  1 = rebuild even if the binary looks fine
#   LIFEBOAT_BUILD_JOBS             go build -p value (default: nproc)
#   GOMODCACHE / GOCACHE / GOPROXY  honoured as usual by the go tool
set -euo pipefail

CNPG_VERSION=v1.30.0
MODULE=github.com/cloudnative-pg/cloudnative-pg
# What upstream's Makefile stamps into pkg/versions (the module proxy carries
# no git metadata, so the commit is named by the module version instead).
CNPG_COMMIT=${CNPG_COMMIT:-go-module-$MODULE@$CNPG_VERSION}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT=${LIFEBOAT_CNPG_OPERATOR:-$REPO_ROOT/target/cnpg-operator/$CNPG_VERSION/manager}
JOBS=${LIFEBOAT_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf '[build-cnpg-operator] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# `manager version` prints "Build: {Version:1.30.0 Commit:... Date:...}".
operator_version() { "$OUT" version 2>/dev/null | sed -n 's/.*Version:\([^ ]*\) .*/\1/p' || true; }
operator_ok() { [[ -x $OUT ]] && [[ "$(operator_version)" == "${CNPG_VERSION#v}" ]]; }

if [[ ${LIFEBOAT_CNPG_OPERATOR_REBUILD:-0} != 1 ]] && operator_ok; then
    log "$OUT -> $(operator_version)"
    exit 0
fi

command -v go >/dev/null || die "go not found in PATH (Go >= 1.26.4 required by $MODULE $CNPG_VERSION)"
mkdir -p "$(dirname "$OUT")"
gobin=$(mktemp -d "$(dirname "$OUT")/.manager-build.XXXXXX")
trap 'rm -rf "$gobin"' EXIT

# GOTOOLCHAIN=local: never download another Go toolchain behind our back.
export GOTOOLCHAIN=local CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -buildvcs=false"
start=$(date +%s)
# The module is fetched at its exact version (verified against sum.golang.org)
# and built as the main module from its own go.mod/go.sum, as upstream's
# Makefile does. (`go install pkg@version` would also ask the proxy for the
# module's version list, which this proxy refuses.)
moddir=$(go mod download -json "$MODULE@$CNPG_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d $moddir ]] || die "go mod download $MODULE@$CNPG_VERSION gave no module directory"
log "$(go version); building $moddir/cmd/manager with -p $JOBS -> $OUT"
ldflags=(
    "-s" "-w"
    "-X $MODULE/pkg/versions.buildVersion=${CNPG_VERSION#v}"
    "-X $MODULE/pkg/versions.buildCommit=$CNPG_COMMIT"
)
go build -C "$moddir" -trimpath -p "$JOBS" -ldflags "${ldflags[*]}" -o "$gobin/manager" ./cmd/manager \
    || die "go build of $MODULE/cmd/manager@$CNPG_VERSION failed"
mv -f "$gobin/manager" "$OUT"
operator_ok || die "built manager reports '$(operator_version)', expected '${CNPG_VERSION#v}'"
log "built in $(( $(date +%s) - start ))s -> $OUT ($(du -h "$OUT" | cut -f1)), $(operator_version)"
