#!/usr/bin/env bash
# Smoke check for the binaries built by scripts/build-control-plane.sh:
# start etcd + kube-apiserver on loopback, wait for /readyz, check /version,
# mint a ServiceAccount token via the TokenRequest API, server-side-apply a big
# CRD (with CEL rules) and wait for it to become Established, then tear down.
#
#   scripts/control-plane/smoke.sh [path/to/crd.yaml]   (default: CNPG's Cluster CRD from
#       scripts/fetch-crds.sh, in target/upstream-crds)
#
# Needs: bash, curl, openssl. Env: LIFEBOAT_CONTROL_PLANE_DIR (as the build
# script), SMOKE_KEEP_TMP=1 to keep the temp dir (logs) after exit.
set -euo pipefail

KUBE_VERSION=v1.35.4
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
BIN_DIR=${LIFEBOAT_CONTROL_PLANE_DIR:-$REPO_ROOT/target/control-plane/$KUBE_VERSION}/bin
CRD_FILE=${1:-${LIFEBOAT_MODULE_CRDS_DIR:-$REPO_ROOT/target/upstream-crds}/postgresql.cnpg.io_clusters.yaml}

log() { printf '[smoke] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; dump_logs; exit 1; }

for b in etcd kube-apiserver; do
    [[ -x $BIN_DIR/$b ]] || { log "missing $BIN_DIR/$b; run scripts/build-control-plane.sh"; exit 1; }
done
[[ -f $CRD_FILE ]] || { log "CRD file not found: $CRD_FILE (scripts/fetch-crds.sh writes the default one)"; exit 1; }
# metadata.name of the CRD (first "  name:" line, i.e. indented once).
CRD_NAME=$(sed -n 's/^  name: *//p' "$CRD_FILE" | head -n1)
[[ -n $CRD_NAME ]] || { log "cannot find metadata.name in $CRD_FILE"; exit 1; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-smoke.XXXXXX")
ETCD_PID=
APISERVER_PID=

cleanup() {
    local rc=$?
    for pid in $APISERVER_PID $ETCD_PID; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            # give it 10s to exit, then SIGKILL
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -KILL "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [[ ${SMOKE_KEEP_TMP:-0} == 1 ]]; then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dump_logs() {
    for f in "$TMP/etcd.log" "$TMP/kube-apiserver.log"; do
        [[ -f $f ]] || continue
        log "---- last 30 lines of $f"
        tail -n 30 "$f" >&2 || true
    done
}

# Pick a currently-unused loopback TCP port (racy, but good enough for a smoke test).
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$(( 20000 + RANDOM % 40000 ))
        [[ $USED_PORTS == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    return 1
}

# wait_for <what> <seconds> <command...>: poll until the command succeeds.
wait_for() {
    local what=$1 secs=$2
    shift 2
    local deadline=$(( $(date +%s) + secs ))
    until "$@" >/dev/null 2>&1; do
        (( $(date +%s) < deadline )) || die "timed out after ${secs}s waiting for $what"
        sleep 0.5
    done
}

ETCD_CLIENT_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
SECURE_PORT=$(free_port)
ETCD_URL=http://127.0.0.1:$ETCD_CLIENT_PORT
API=https://127.0.0.1:$SECURE_PORT

# ---- etcd ----------------------------------------------------------------------
log "starting etcd on $ETCD_URL"
"$BIN_DIR/etcd" \
    --name=lifeboat-smoke \
    --data-dir="$TMP/etcd-data" \
    --listen-client-urls="$ETCD_URL" \
    --advertise-client-urls="$ETCD_URL" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="lifeboat-smoke=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync \
    --log-level=warn \
    >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
wait_for "etcd /health" 30 curl -fsS "$ETCD_URL/health"

# ---- credentials ---------------------------------------------------------------
TOKEN=lifeboat-smoke-admin-token
# token,user,uid,"group1,group2"
echo "$TOKEN,lifeboat-admin,lifeboat-admin-uid,\"system:masters\"" >"$TMP/tokens.csv"
openssl genrsa -out "$TMP/sa.key" 2048 2>/dev/null
openssl rsa -in "$TMP/sa.key" -pubout -out "$TMP/sa.pub" 2>/dev/null

# ---- kube-apiserver --------------------------------------------------------------
log "starting kube-apiserver on $API"
"$BIN_DIR/kube-apiserver" \
    --etcd-servers="$ETCD_URL" \
    --bind-address=127.0.0.1 \
    --secure-port="$SECURE_PORT" \
    --cert-dir="$TMP/certs" \
    --token-auth-file="$TMP/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$TMP/sa.pub" \
    --service-account-signing-key-file="$TMP/sa.key" \
    --service-cluster-ip-range=10.0.0.0/24 \
    --disable-admission-plugins=ServiceAccount \
    --enable-priority-and-fairness=false \
    >"$TMP/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!

CURL=(curl -ksS --fail-with-body -H "Authorization: Bearer $TOKEN")
start=$(date +%s)
wait_for "kube-apiserver /readyz" 120 "${CURL[@]}" "$API/readyz"
log "/readyz ok after $(( $(date +%s) - start ))s: $("${CURL[@]}" "$API/readyz")"

version_json=$("${CURL[@]}" "$API/version")
grep -q "\"gitVersion\": *\"$KUBE_VERSION\"" <<<"$version_json" || die "/version: $version_json"
log "/version reports $KUBE_VERSION"

# ---- TokenRequest ------------------------------------------------------------------
# The "default" namespace is created asynchronously by the apiserver itself.
wait_for "namespace default" 60 "${CURL[@]}" "$API/api/v1/namespaces/default"
"${CURL[@]}" -X POST -H 'Content-Type: application/json' \
    "$API/api/v1/namespaces/default/serviceaccounts" \
    -d '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"lifeboat-smoke"}}' >/dev/null \
    || die "creating ServiceAccount failed"
tr_json=$("${CURL[@]}" -X POST -H 'Content-Type: application/json' \
    "$API/api/v1/namespaces/default/serviceaccounts/lifeboat-smoke/token" \
    -d '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}') \
    || die "TokenRequest failed: $tr_json"
SA_TOKEN=$(sed -n 's/.*"token": *"\([^"]*\)".*/\1/p' <<<"$tr_json" | head -n1)
[[ -n $SA_TOKEN ]] || die "no token in TokenRequest response: $tr_json"
# Use the minted token to ask the server who we are.
whoami=$(curl -ksS --fail-with-body -H "Authorization: Bearer $SA_TOKEN" -X POST \
    -H 'Content-Type: application/json' "$API/apis/authentication.k8s.io/v1/selfsubjectreviews" \
    -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}') \
    || die "SelfSubjectReview with SA token failed: $whoami"
grep -q '"username": *"system:serviceaccount:default:lifeboat-smoke"' <<<"$whoami" \
    || die "unexpected SelfSubjectReview: $whoami"
log "TokenRequest ok: minted token authenticates as system:serviceaccount:default:lifeboat-smoke"

# ---- CRD via server-side apply -----------------------------------------------------
start=$(date +%s)
"${CURL[@]}" -X PATCH -H 'Content-Type: application/apply-patch+yaml' \
    "$API/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$CRD_NAME?fieldManager=test&force=true" \
    --data-binary @"$CRD_FILE" -o "$TMP/crd-apply.json" \
    || die "server-side apply of $CRD_FILE failed: $(head -c 2000 "$TMP/crd-apply.json")"
crd_established() {
    "${CURL[@]}" "$API/apis/apiextensions.k8s.io/v1/customresourcedefinitions/$CRD_NAME" \
        | tr -d ' \n' | grep -q '"type":"Established","status":"True"'
}
wait_for "CRD $CRD_NAME Established" 60 crd_established
log "CRD $CRD_NAME applied and Established after $(( $(date +%s) - start ))s"

# ---- CEL at runtime: server-side dry-run of CNPG Cluster objects ---------------------
if [[ $CRD_NAME == clusters.postgresql.cnpg.io ]]; then
    CLUSTERS="$API/apis/postgresql.cnpg.io/v1/namespaces/default/clusters?dryRun=All"
    valid='{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"ok"},"spec":{"instances":1,"storage":{"size":"1Gi"}}}'
    # violates the CEL rule '!(has(self.imageCatalogRef) && has(self.imageName))'
    invalid='{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{"name":"bad"},"spec":{"instances":1,"storage":{"size":"1Gi"},"imageName":"postgres:16","imageCatalogRef":{"apiGroup":"postgresql.cnpg.io","kind":"ImageCatalog","name":"c","major":16}}}'
    # the CR endpoint can 404 for a moment after Established
    wait_for "dry-run create of a valid Cluster" 30 \
        "${CURL[@]}" -X POST -H 'Content-Type: application/json' "$CLUSTERS" -d "$valid"
    code=$(curl -ksS -o "$TMP/invalid.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
        -X POST -H 'Content-Type: application/json' "$CLUSTERS" -d "$invalid")
    if [[ $code != 422 ]] || ! grep -q 'imageName and imageCatalogRef are mutually exclusive' "$TMP/invalid.json"; then
        die "expected 422 from CEL rule, got $code: $(head -c 1000 "$TMP/invalid.json")"
    fi
    log "dry-run: valid Cluster accepted, CEL-invalid Cluster rejected with 422"
fi

log "PASS (etcd $ETCD_URL, kube-apiserver $API)"
