#!/usr/bin/env bash
# Build (and cache) the real upstream kube-apiserver and etcd binaries used by
# lifeboat's integration tests. Both come from published Go modules, through
# the wrapper modules in scripts/control-plane/{apiserver,etcd}.
#
#   scripts/build-control-plane.sh            # build whatever is missing/stale
#   LIFEBOAT_CONTROL_PLANE_REBUILD=1 scripts/build-control-plane.sh   # force
#
# Output: ${LIFEBOAT_CONTROL_PLANE_DIR:-<repo>/target/control-plane/v1.35.4}/bin/{kube-apiserver,etcd}
# If both binaries already exist and report the pinned versions, this is a
# no-op that prints the versions and exits 0.
#
# Env knobs:
#   LIFEBOAT_CONTROL_PLANE_DIR      output dir (binaries go in $DIR/bin)
#   LIFEBOAT_CONTROL_PLANE_REBUILD  1 = rebuild even if the binaries look fine
#   LIFEBOAT_BUILD_JOBS             go build -p value (default: nproc)
#   GOMODCACHE / GOCACHE / GOPROXY  honoured as usual by the go tool
set -euo pipefail

# Pinned versions. They must agree with the wrapper go.mod files; checked below.
KUBE_VERSION=v1.35.4
KUBE_STAGING_VERSION=v0.35.4
ETCD_VERSION=v3.6.16
# Kubernetes version stamping (what hack/lib/version.sh would set).
# The module proxy carries no git metadata, so the commit cannot be
# derived here; override with KUBE_GIT_COMMIT if you know it.
KUBE_GIT_COMMIT=${KUBE_GIT_COMMIT:-unknown-built-from-go-module-k8s.io/kubernetes@${KUBE_VERSION}}
# Fixed build date (publication time of k8s.io/kubernetes v1.35.4 on the
# module proxy) so builds are reproducible.
KUBE_BUILD_DATE=${KUBE_BUILD_DATE:-2026-04-15T18:01:22Z}
ETCD_GIT_SHA=${ETCD_GIT_SHA:-go-module-go.etcd.io/etcd/server/v3@${ETCD_VERSION}}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
MODULES_DIR=$SCRIPT_DIR/control-plane
OUT_DIR=${LIFEBOAT_CONTROL_PLANE_DIR:-$REPO_ROOT/target/control-plane/$KUBE_VERSION}
BIN_DIR=$OUT_DIR/bin
JOBS=${LIFEBOAT_BUILD_JOBS:-$(nproc 2>/dev/null || echo 2)}

log() { printf '[build-control-plane] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# --- version probes -----------------------------------------------------------
# `kube-apiserver --version` prints exactly "Kubernetes v1.35.4".
apiserver_version() { "$BIN_DIR/kube-apiserver" --version 2>/dev/null | sed -n 1p || true; }
# `etcd --version` prints "etcd Version: 3.6.16" on its first line.
etcd_version() { "$BIN_DIR/etcd" --version 2>/dev/null | sed -n 1p || true; }

apiserver_ok() {
    [[ -x $BIN_DIR/kube-apiserver ]] && [[ "$(apiserver_version)" == "Kubernetes $KUBE_VERSION" ]]
}
etcd_ok() {
    [[ -x $BIN_DIR/etcd ]] && [[ "$(etcd_version)" == "etcd Version: ${ETCD_VERSION#v}" ]]
}

print_versions() {
    log "kube-apiserver: $BIN_DIR/kube-apiserver -> $(apiserver_version)"
    log "etcd:           $BIN_DIR/etcd -> $(etcd_version)"
}

if [[ ${LIFEBOAT_CONTROL_PLANE_REBUILD:-0} != 1 ]] && apiserver_ok && etcd_ok; then
    print_versions
    exit 0
fi

# --- preflight ----------------------------------------------------------------
command -v go >/dev/null || die "go not found in PATH (Go >= 1.26 required: etcd $ETCD_VERSION needs go 1.26)"
grep -q "^require k8s.io/kubernetes $KUBE_VERSION\$\|^[[:space:]]k8s.io/kubernetes $KUBE_VERSION\( \|\$\)" \
    "$MODULES_DIR/apiserver/go.mod" || die "apiserver/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION"
grep -q "=> k8s.io/apiserver $KUBE_STAGING_VERSION\$" "$MODULES_DIR/apiserver/go.mod" \
    || die "apiserver/go.mod does not replace staging repos with $KUBE_STAGING_VERSION"
grep -q "^[[:space:]]go.etcd.io/etcd/server/v3 $ETCD_VERSION\( \|\$\)\|^require go.etcd.io/etcd/server/v3 $ETCD_VERSION\$" \
    "$MODULES_DIR/etcd/go.mod" || die "etcd/go.mod does not pin go.etcd.io/etcd/server/v3 $ETCD_VERSION"

mkdir -p "$BIN_DIR"
log "$(go version); building with -p $JOBS into $BIN_DIR"

# Common build settings: static, path-independent, stripped binaries.
export CGO_ENABLED=0
# go.mod/go.sum are committed; never let the build rewrite them.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly -buildvcs=false"

# go_build <module dir> <package> <output name> <ldflags...>
go_build() {
    local moddir=$1 pkg=$2 name=$3
    shift 3
    local start end tmp
    tmp="$BIN_DIR/.$name.tmp.$$"
    start=$(date +%s)
    log "building $name from $pkg (module dir ${moddir#"$REPO_ROOT"/}) ..."
    (cd "$moddir" && go build -trimpath -p "$JOBS" -ldflags "-s -w $*" -o "$tmp" "$pkg") \
        || { rm -f "$tmp"; die "build of $name failed"; }
    mv -f "$tmp" "$BIN_DIR/$name"
    end=$(date +%s)
    log "built $name in $((end - start))s (incl. module download) -> $(du -h "$BIN_DIR/$name" | cut -f1)"
}

total_start=$(date +%s)

if [[ ${LIFEBOAT_CONTROL_PLANE_REBUILD:-0} == 1 ]] || ! etcd_ok; then
    go_build "$MODULES_DIR/etcd" go.etcd.io/etcd/server/v3 etcd \
        "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_GIT_SHA"
    etcd_ok || die "built etcd reports '$(etcd_version)', expected 'etcd Version: ${ETCD_VERSION#v}'"
fi

if [[ ${LIFEBOAT_CONTROL_PLANE_REBUILD:-0} == 1 ]] || ! apiserver_ok; then
    major=${KUBE_VERSION#v}; major=${major%%.*}
    minor=${KUBE_VERSION#v*.}; minor=${minor%%.*}
    kube_ldflags=()
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        kube_ldflags+=(
            "-X $p.gitVersion=$KUBE_VERSION"
            "-X $p.gitMajor=$major"
            "-X $p.gitMinor=$minor"
            "-X $p.gitCommit=$KUBE_GIT_COMMIT"
            "-X $p.gitTreeState=clean"
            "-X $p.buildDate=$KUBE_BUILD_DATE"
        )
    done
    go_build "$MODULES_DIR/apiserver" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver \
        "${kube_ldflags[@]}"
    apiserver_ok || die "built kube-apiserver reports '$(apiserver_version)', expected 'Kubernetes $KUBE_VERSION'"
fi

log "total build time: $(( $(date +%s) - total_start ))s"
print_versions
