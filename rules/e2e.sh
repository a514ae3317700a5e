#!/usr/bin/env bash
# End-to-end: lifeboat serving the node-loss incident dump, scraped by a real
# Prometheus that evaluates rules/lifeboat.rules.yaml. Asserts through the
# Prometheus HTTP API (/api/v1/alerts) that exactly the alerts this incident
# must raise are active (firing or pending) — an explicit allowlist — and that
# nothing else is; then runs every dashboard query against the same Prometheus
# and fails on any query error.
#
#   rules/e2e.sh
#
# Env:
#   LIFEBOAT_BIN   lifeboat binary (default target/debug/lifeboat; built with
#                  `cargo build` only when missing)
#   PROMETHEUS     prometheus binary (default /usr/bin/prometheus, Debian package `prometheus`)
#   E2E_TIMEOUT    seconds to wait for the expected alerts (default 40)
#   E2E_KEEP=1     keep the temp dir (logs, config) for debugging
#
# Timing: scrape_interval and evaluation_interval are 1s. Every `for:` in the
# rule file (1m .. 24h) is rewritten to 0s in a temp copy of the rules that
# only this test loads, so each alert is active as soon as its expression
# holds. The `for:` timings themselves are covered by the promtool unit tests
# in rules/tests/. Consequence worth knowing: LifeboatVolsyncPaused and
# LifeboatFluxSuspendedTooLong fire here although the dump cannot tell whether
# those objects have been paused/suspended for 24h (teslamate since March: yes;
# radarr: unknown).
#
# The expected set is derived from examples/node-loss/README.md ("What a
# correct analysis must find"); see EXPECTED below for the finding each line
# comes from. Anything else active fails the test, e.g. a
# GarageMetaBackupSidecarRestarted (its restart count is constant at 3 during
# the test) or LifeboatCnpgLastBackupFailed for database/postgres (its backup
# is in progress, not failed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DUMP=examples/node-loss
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
TIMEOUT=${E2E_TIMEOUT:-40}
START=$(date +%s)

log() { printf '[e2e %3ds] %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ -d $DUMP ]] || die "$DUMP not found"
[[ -x $PROMETHEUS ]] || die "$PROMETHEUS not found (apt-get install -y prometheus)"
python3 -c 'import yaml' 2>/dev/null || die "python3 needs PyYAML (apt-get install -y python3-yaml)"

BIN=${LIFEBOAT_BIN:-$ROOT/target/debug/lifeboat}
if [[ ! -x $BIN ]]; then
    [[ -z ${LIFEBOAT_BIN:-} ]] || die "LIFEBOAT_BIN=$LIFEBOAT_BIN is not executable"
    log "building lifeboat (target/debug/lifeboat missing)"
    cargo build -q --bin lifeboat
fi

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if ((rc != 0)); then
        for f in lifeboat.log prometheus.log; do
            [[ -f $TMP/$f ]] && { echo "----- last lines of $f" >&2; tail -n 15 "$TMP/$f" >&2; }
        done
    fi
    if [[ ${E2E_KEEP:-0} == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
LB_PORT=$(free_port)
PROM_PORT=$(free_port)
while [[ $PROM_PORT == "$LB_PORT" ]]; do PROM_PORT=$(free_port); done

# --- lifeboat ---------------------------------------------------------------------
log "lifeboat serve --from-dump $DUMP on 127.0.0.1:$LB_PORT ($BIN)"
"$BIN" serve --from-dump "$DUMP" --listen "127.0.0.1:$LB_PORT" >"$TMP/lifeboat.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$LB_PORT/metrics" -o /dev/null 2>/dev/null && break
    kill -0 "${PIDS[0]}" 2>/dev/null || die "lifeboat exited"
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$LB_PORT/metrics" -o "$TMP/metrics.txt" || die "lifeboat /metrics not answering"

# --- Prometheus -------------------------------------------------------------------
# Rules copy with every `for:` set to 0s (see the header).
python3 - rules/lifeboat.rules.yaml "$TMP/e2e.rules.yaml" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for g in doc["groups"]:
    for r in g["rules"]:
        if "for" in r:
            r["for"] = "0s"
yaml.safe_dump(doc, open(sys.argv[2], "w"), sort_keys=False)
PY
cat >"$TMP/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $TMP/e2e.rules.yaml
scrape_configs:
  - job_name: lifeboat
    static_configs:
      - targets: ["127.0.0.1:$LB_PORT"]
EOF
log "prometheus on 127.0.0.1:$PROM_PORT ($("$PROMETHEUS" --version 2>&1 | sed -n 1p))"
"$PROMETHEUS" --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --log.level=warn >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" -o /dev/null 2>/dev/null && break
    kill -0 "${PIDS[1]}" 2>/dev/null || die "prometheus exited"
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$PROM_PORT/-/ready" -o /dev/null || die "prometheus not ready"

# --- assertions -------------------------------------------------------------------
# EXPECTED: one line per active alert: <alertname> <label>=<value>... ; the
# labels are the alert's labels minus job, instance, severity and playbook,
# and must match exactly.
cat >"$TMP/expected.txt" <<'EOF'
# Lost node node-01-pve (Ready Unknown 40 min > 5m grace), 8 PVs pinned; node-04-pve has no Node object, 1 PV pinned.
LifeboatNodeLostWithPinnedVolumes node=node-01-pve reason=not_ready
LifeboatNodeLostWithPinnedVolumes node=node-04-pve reason=missing
# Pods (evicted originals, Pending replacements, mover/backup Jobs) mounting claims pinned to lost nodes.
LifeboatPodBlockedOnLostVolume namespace=database pod=mariadb-0 persistentvolumeclaim=galera-mariadb-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=database pod=mariadb-0 persistentvolumeclaim=storage-mariadb-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=database pod=postgres-1 persistentvolumeclaim=postgres-1 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=identity pod=kanidm-default-0 persistentvolumeclaim=kanidm-data-kanidm-default-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=identity pod=kanidm-backup-sync-29926770-2b64h persistentvolumeclaim=kanidm-data-kanidm-default-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=radarr-wcd74nqpz6-rqckd persistentvolumeclaim=radarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=radarr-wcd74nqpz6-kmq66 persistentvolumeclaim=radarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=sonarr-kgkqn4dq82-v9btt persistentvolumeclaim=sonarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=sonarr-kgkqn4dq82-px6hd persistentvolumeclaim=sonarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=volsync-src-sonarr-2w5qs persistentvolumeclaim=sonarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=volsync-src-sonarr-hjdzc persistentvolumeclaim=sonarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=utils pod=forgejo-nbsgpqpvcq-p7mn4 persistentvolumeclaim=forgejo node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=utils pod=forgejo-nbsgpqpvcq-w42mk persistentvolumeclaim=forgejo node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=utils pod=volsync-dst-oldapp-dst-n6qzr persistentvolumeclaim=volsync-dst-oldapp-dst-cache node=node-04-pve
# CNPG database/postgres: currentPrimary postgres-1 is on node-01-pve.
LifeboatCnpgPrimaryOnLostNode namespace=database cluster=postgres pod=postgres-1 node=node-01-pve
# MariaDB database/mariadb: mariadb-0's storage is on node-01-pve (GaleraReady stays True: no GaleraNotReady).
LifeboatMariadbInstanceOnLostNode namespace=database name=mariadb
# RS utils/forgejo's kopia cache is on node-01-pve (oldapp-dst's cache on node-04-pve is left to the orphan alert).
LifeboatVolsyncCachePvcOnLostNode namespace=utils name=forgejo role=source persistentvolumeclaim=volsync-src-forgejo-cache node=node-01-pve
# CNPG media/immich-postgres: ContinuousArchiving False since 2026-10-29, LastBackupFailed, last base backup 28 d old.
LifeboatCnpgWalArchivingFailing namespace=media cluster=immich-postgres
LifeboatCnpgBackupStale namespace=media cluster=immich-postgres
LifeboatCnpgLastBackupFailed namespace=media cluster=immich-postgres state=failed
# VolSync: sonarr stale (3 d, sync hung since 2026-11-22), bazarr failing (mover Failed, 4 h on hourly);
# radarr paused (its fresh lastSyncTime is a kopia artefact: paused, not "stale").
LifeboatVolsyncSourceStale namespace=media name=sonarr
LifeboatVolsyncSourceStale namespace=media name=bazarr
LifeboatVolsyncSyncStuck namespace=media name=sonarr role=source
LifeboatVolsyncMoverFailing namespace=media name=bazarr role=source
LifeboatVolsyncPaused namespace=media name=radarr role=source
# Stale / removed: RD utils/oldapp-dst (its failing, stuck mover is not reported separately).
LifeboatVolsyncDestinationOrphaned namespace=utils name=oldapp-dst
# Failing backup CronJob database/mariadb-backup (last success 9 d ago, every 6 h). kanidm-backup-sync is fine.
LifeboatBackupCronJobStale namespace=database cronjob=mariadb-backup
# Unprotected node-pinned PVC default/librespeed on node-02-pve.
LifeboatPvcUnprotected namespace=default persistentvolumeclaim=librespeed node=node-02-pve
# RS database/dbgate has no ReplicationDestination anywhere.
LifeboatBackupConfigProblem kind=ReplicationSource namespace=database name=dbgate problem=no_destination
# Kustomization observability/teslamate suspended since 2026-03-22.
LifeboatFluxSuspendedTooLong kind=Kustomization namespace=observability name=teslamate
EOF

python3 - "$PROM_PORT" "$TMP/expected.txt" "$TIMEOUT" "$ROOT/dashboards/lifeboat.json" <<'PY'
import json, re, sys, time, urllib.parse, urllib.request

port, expected_file, timeout, dashboard = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
base = f"http://127.0.0.1:{port}"
IGNORED = {"job", "instance", "severity", "playbook"}

def get(path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)

def key(alertname, labels):
    return (alertname, tuple(sorted(labels.items())))

def show(k):
    return k[0] + " " + " ".join(f"{a}={b}" for a, b in k[1])

expected = set()
for line in open(expected_file):
    line = line.strip()
    if not line or line.startswith("#"):
        continue
    name, *pairs = line.split()
    expected.add(key(name, dict(p.split("=", 1) for p in pairs)))

def active():
    alerts = get("/api/v1/alerts")["data"]["alerts"]
    got = {}
    for a in alerts:
        labels = {k: v for k, v in a["labels"].items() if k not in IGNORED and k != "alertname"}
        got[key(a["labels"]["alertname"], labels)] = a["state"]
    return got

t0 = time.time()
deadline = t0 + timeout
stable = 0
got = {}
while time.time() < deadline:
    try:
        got = active()
    except Exception as e:  # not up yet
        time.sleep(0.5)
        continue
    firing = {k for k, s in got.items() if s == "firing"}
    if expected <= firing and set(got) == expected:
        stable += 1
        if stable >= 3:  # three consecutive polls, 1 s apart (3 rule evaluations)
            break
    else:
        stable = 0
    time.sleep(1)

missing = sorted(expected - {k for k, s in got.items() if s == "firing"})
unexpected = sorted(set(got) - expected)
print(f"[e2e] {len(got)} active alerts after {time.time() - t0:.0f}s; expected {len(expected)}", file=sys.stderr)
ok = True
for k in missing:
    print(f"[e2e] MISSING (expected firing, is {got.get(k, 'inactive')}): {show(k)}", file=sys.stderr)
    ok = False
for k in unexpected:
    print(f"[e2e] UNEXPECTED ({got[k]}): {show(k)}", file=sys.stderr)
    ok = False
if ok:
    by_name = {}
    for k in expected:
        by_name[k[0]] = by_name.get(k[0], 0) + 1
    for n in sorted(by_name):
        print(f"[e2e]   firing {by_name[n]:2d} x {n}", file=sys.stderr)

# Every rule loaded and healthy.
groups = get("/api/v1/rules")["data"]["groups"]
for g in groups:
    for r in g["rules"]:
        if r.get("health") != "ok":
            print(f"[e2e] RULE {r['name']} health {r.get('health')}: {r.get('lastError')}", file=sys.stderr)
            ok = False

# Every dashboard query evaluates without error against this Prometheus.
dash = json.load(open(dashboard))
subst = [(r"\$\{?__rate_interval\}?", "1m"), (r"\$\{?__interval\}?", "1s"), (r"\$\{?__range\}?", "1h"),
         (r"\$\{?namespace(?::\w+)?\}?", ".*"), (r"\$\{?cluster(?::\w+)?\}?", ".*")]
queries = []
def walk(ps):
    for p in ps:
        yield p
        yield from walk(p.get("panels", []))
for p in walk(dash["panels"]):
    for t in p.get("targets", []):
        queries.append((f"panel {p['id']} {p['title']!r} target {t['refId']}", t["expr"]))
empty = []
for where, q in queries:
    for pat, val in subst:
        q = re.sub(pat, val, q)
    try:
        res = get("/api/v1/query", query=q)
        if not res["data"]["result"]:
            empty.append(where)
    except urllib.error.HTTPError as e:
        print(f"[e2e] DASHBOARD QUERY ERROR {where}: {e.read().decode()[:300]}", file=sys.stderr)
        ok = False
print(f"[e2e] {len(queries)} dashboard queries evaluated; {len(empty)} empty for this dump"
      + (": " + "; ".join(empty) if empty else ""), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
log "PASS"
