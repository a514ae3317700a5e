#!/usr/bin/env bash
# Assemble the operators' upstream CustomResourceDefinitions for the test
# harness from their published Go modules (through the Go module proxy, the
# checksum database verifying every zip), at pinned versions. Nothing here is
# shipped; Go is only the download client.
#
#   scripts/fetch-crds.sh               # fetch whatever is missing or stale
#   LIFEBOAT_CRDS_REFETCH=1 scripts/fetch-crds.sh   # force
#
# Output: ${LIFEBOAT_MODULE_CRDS_DIR:-<repo>/target/upstream-crds}/*.yaml, one
# CRD per file, byte for byte as in the module, plus SOURCES (module, version,
# go.sum hash, path) and PINS (the list below, to detect a stale cache).
#
# The harness (tests/support/crds.rs) prefers ../shared/crds, then these,
# then the stand-ins in tests/crds for kinds no served module carries.
set -euo pipefail

# module version path-inside-the-module
PINS=$(cat <<'EOF'
github.com/cloudnative-pg/cloudnative-pg v1.30.0 config/crd/bases/postgresql.cnpg.io_clusters.yaml
github.com/cloudnative-pg/cloudnative-pg v1.30.0 config/crd/bases/postgresql.cnpg.io_backups.yaml
github.com/cloudnative-pg/cloudnative-pg v1.30.0 config/crd/bases/postgresql.cnpg.io_scheduledbackups.yaml
github.com/cloudnative-pg/plugin-barman-cloud v0.14.0 config/crd/bases/barmancloud.cnpg.io_objectstores.yaml
github.com/mariadb-operator/mariadb-operator/v25 v25.10.4 config/crd/bases/k8s.mariadb.com_mariadbs.yaml
github.com/mariadb-operator/mariadb-operator/v25 v25.10.4 config/crd/bases/k8s.mariadb.com_backups.yaml
github.com/fluxcd/kustomize-controller v1.9.4 config/crd/bases/kustomize.toolkit.fluxcd.io_kustomizations.yaml
github.com/fluxcd/helm-controller v1.6.3 config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml
github.com/prometheus-operator/prometheus-operator v0.93.0 example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml
github.com/prometheus-operator/prometheus-operator v0.93.0 example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
EOF
)

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT=${LIFEBOAT_MODULE_CRDS_DIR:-$REPO_ROOT/target/upstream-crds}

log() { printf '[fetch-crds] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cached() {
    [[ -f $OUT/PINS ]] && [[ "$(cat "$OUT/PINS")" == "$PINS" ]] || return 1
    local _module _version path
    while read -r _module _version path; do
        [[ -s $OUT/$(basename "$path") ]] || return 1
    done <<<"$PINS"
}

mkdir -p "$(dirname "$OUT")"
# Test binaries started side by side may both find the cache missing.
exec 9>"$OUT.lock"
flock 9

if [[ ${LIFEBOAT_CRDS_REFETCH:-0} != 1 ]] && cached; then
    log "cached in $OUT"
    exit 0
fi

command -v go >/dev/null || die "go not found in PATH (needed to download the operators' Go modules)"
command -v python3 >/dev/null || die "python3 not found in PATH (reads go's JSON)"
work=$(mktemp -d "$(dirname "$OUT")/.upstream-crds.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/crds" "$work/gomod"

# Outside any module, so the repository's own go.mod files are not involved;
# GOTOOLCHAIN=local: a module asking for a newer Go must not fetch a toolchain.
download() {
    (cd "$work/gomod" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$1@$2")
}

declare -A dirs sums
while read -r module version path; do
    key="$module@$version"
    if [[ -z ${dirs[$key]:-} ]]; then
        log "downloading $key"
        json=$(download "$module" "$version") || die "go mod download $key failed: $(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("Error",""))' 2>/dev/null)"
        dirs[$key]=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
        sums[$key]=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Sum"])')
    fi
    src="${dirs[$key]}/$path"
    [[ -f $src ]] || die "$key carries no $path"
    cp "$src" "$work/crds/"
    chmod u+w "$work/crds/$(basename "$path")"
    printf '%s %s %s %s\n' "$module" "$version" "${sums[$key]}" "$path" >>"$work/crds/SOURCES"
done <<<"$PINS"
printf '%s\n' "$PINS" >"$work/crds/PINS"

rm -rf "$OUT.old"
[[ -e $OUT ]] && mv "$OUT" "$OUT.old"
mv "$work/crds" "$OUT"
rm -rf "$OUT.old"
log "$(grep -c . "$OUT/SOURCES") CRDs from $(cut -d' ' -f1,2 "$OUT/SOURCES" | sort -u | wc -l) modules in $OUT"
