#!/usr/bin/env bash
# Checks the Helm chart (deploy/helm/lifeboat) and the plain manifests
# (deploy/manifests).
#
#   deploy/check.sh
#
# Steps (each prints PASS/FAIL/SKIP; exit non-zero if any failed):
#   1. Helm from scripts/build-helm.sh (a no-op when target/tools/helm exists)
#   2. helm lint --strict, with the default values and with every
#      ci/*-values.yaml (values.schema.json validates each)
#   3. helm template with each; templates that must refuse bad values do
#      (a token Secret without adminUrl, an unknown disabledAlerts entry,
#      config.garage.adminTokenFile or config.discord.*File set by hand,
#      Discord without remediation.enabled or with an unknown mode, typos
#      caught by the schema, config.remediation.execute contradicting
#      remediation.enabled, the Discord Ingress/HTTPRoute without bot mode,
#      its own port (config.discord.listen), a host or parentRefs)
#   4. assertions on the rendered objects: pod and container security
#      (non-root, read-only root fs, no capabilities, seccomp RuntimeDefault,
#      no privilege escalation), resources, args, port 9847 named
#      http-metrics; the read ClusterRole grants exactly get/list/watch on
#      exactly the watched kinds; no write verb exists unless
#      remediation.enabled; nothing grants Secrets (but patch of the Secrets
#      named in remediation.secrets by -remediate), wildcards, pods
#      create or nodes writes (but patch by -remediate-nodes), no
#      persistentvolumes writes (but delete by -remediate-volumes), no
#      pods/exec but on the pods named in remediation.execPods; the write
#      rules are bound exactly in remediation.namespaces; the admission policy
#      and its binding exist with remediation (fail closed, matching lifeboat's
#      ServiceAccount); no Secret object and no inline secret value;
#      the PrometheusRule equals rules/lifeboat.rules.yaml (minus
#      disabledAlerts, plus additionalRuleLabels); for the default and every
#      ci/ render: config.remediation.execute follows remediation.enabled,
#      replicas (2 with remediation by default), podAntiAffinity on
#      kubernetes.io/hostname and a PodDisruptionBudget with more than one,
#      POD_NAME from the downward API, terminationGracePeriodSeconds >= 30,
#      the extra* values, the Discord port on the Service only with
#      config.discord.listen, Ingress/HTTPRoute routing exactly
#      /discord/interactions (Exact) to it, the dashboard ConfigMap (labels,
#      JSON = dashboards/lifeboat.json), the runbook_url base
#   5. `lifeboat check-config` accepts every rendered config.yaml
#   6. drift: deploy/generate.sh --check (deploy/manifests vs the chart, the
#      chart's CRD and dashboard copies), deploy/chart-readme.sh --check (the
#      chart README vs values.yaml)
#   7. against a real kube-apiserver (scripts/build-control-plane.sh binaries;
#      SKIP when absent, or with DEPLOY_CHECK_APISERVER=0): the prometheus-
#      operator CRDs from ../shared/crds are installed, every object of
#      deploy/manifests and of every chart render is created with
#      server-side dry-run (schema, CRD validation; the Gateway API HTTPRoute
#      CRD from its Go module, see gateway_api_crd); every Deployment's pod is
#      created (dry-run) in a namespace enforcing the restricted Pod Security
#      Standard, and a non-compliant pod is refused there; then the RBAC is created
#      for real and SubjectAccessReviews prove what each ServiceAccount can and
#      cannot do (read-only install vs remediation enabled)
#
# Env: HELM (default target/tools/helm), LIFEBOAT_BIN (default
# target/debug/lifeboat, built with cargo when missing), CRDS_DIR (default
# ../shared/crds), DEPLOY_CHECK_APISERVER=0 to skip step 7.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CHART=deploy/helm/lifeboat
HELM=${HELM:-$ROOT/target/tools/helm}
# Upstream CRDs beside the checkout (as CI lays them out), else the test stand-ins.
if [[ -z ${CRDS_DIR:-} ]]; then
    if [[ -n ${LIFEBOAT_CRDS_DIR:-} ]]; then CRDS_DIR=$LIFEBOAT_CRDS_DIR
    elif [[ -d ../shared/crds ]]; then CRDS_DIR=$(cd ../shared/crds && pwd)
    else CRDS_DIR=$PWD/tests/crds
    fi
fi
CP_BIN=${LIFEBOAT_CONTROL_PLANE_DIR:-$ROOT/target/control-plane/v1.35.4}/bin
TMP=$(mktemp -d)
PIDS=()
failed=()
skipped=()
start_all=$(date +%s)

cleanup() {
    local rc=$?
    # Reverse order (kube-apiserver before etcd); SIGKILL after 5 s.
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 1 25); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { # step <name> <command...>
    local name=$1
    shift
    local t0=$SECONDS rc
    echo "=== $name"
    "$@"
    rc=$?
    if ((rc == 0)); then
        echo "--- PASS: $name ($((SECONDS - t0))s)"
    elif ((rc == 77)); then
        echo "--- SKIP: $name"
        skipped+=("$name")
    else
        echo "--- FAIL: $name ($((SECONDS - t0))s)"
        failed+=("$name")
    fi
}

python3 -c 'import yaml' 2>/dev/null || { echo "deploy/check.sh: python3 needs PyYAML (apt-get install -y python3-yaml)" >&2; exit 2; }

# --- 1. helm ------------------------------------------------------------------------
step "helm $( [[ -x $HELM ]] && echo present || echo build) (scripts/build-helm.sh)" scripts/build-helm.sh
[[ -x $HELM ]] || { echo "deploy/check.sh: no helm at $HELM" >&2; exit 1; }

# --- 2. lint ------------------------------------------------------------------------
CI_FILES=("$CHART"/ci/*-values.yaml)
lint() {
    local f
    "$HELM" lint --strict "$CHART" || return 1
    for f in "${CI_FILES[@]}"; do
        "$HELM" lint --strict "$CHART" -f "$f" || return 1
    done
}
step "helm lint --strict (default values, every ci/*-values.yaml; values.schema.json)" lint

# --- 3. template ----------------------------------------------------------------------
template() {
    "$HELM" template lifeboat "$CHART" --namespace lifeboat >"$TMP/default.yaml" || return 1
    "$HELM" template lb "$CHART" --namespace monitoring -f "$CHART/ci/all-features-values.yaml" >"$TMP/full.yaml" || return 1
    local f
    mkdir -p "$TMP/ci"
    for f in "${CI_FILES[@]}"; do
        "$HELM" template lb "$CHART" --namespace monitoring -f "$f" >"$TMP/ci/$(basename "$f" -values.yaml).yaml" || return 1
    done
    local ok=0
    must_fail() { # must_fail <expected message part> <helm args...>
        local want=$1
        shift
        if "$HELM" template lifeboat "$CHART" "$@" >"$TMP/neg.out" 2>&1; then
            echo "expected helm template $* to fail ($want), it rendered"
            ok=1
        elif ! grep -q -- "$want" "$TMP/neg.out"; then
            echo "helm template $* failed without '$want':"
            cat "$TMP/neg.out"
            ok=1
        else
            echo "refused as expected: $*"
        fi
    }
    must_fail "needs config.garage.adminUrl" --set secrets.garageAdminToken.existingSecret=tok
    must_fail "is not a lifeboat alert" --set prometheusRule.enabled=true --set 'prometheusRule.disabledAlerts={NoSuchAlert}'
    must_fail "is set by the chart" --set config.garage.adminTokenFile=/token --set config.garage.adminUrl=http://g:3903
    must_fail "is set by the chart" --set config.discord.botTokenFile=/token
    must_fail "needs remediation.enabled" --set secrets.discord.existingSecret=discord
    must_fail "use secrets.apiToken.existingSecret" --set config.remediation.apiTokenFile=/token
    must_fail "use secrets.webhookCredentials.existingSecret" --set config.remediation.webhookCredentialsFile=/creds
    must_fail "value must be one of 'bot', 'webhook'" --set secrets.discord.existingSecret=discord --set remediation.enabled=true --set secrets.discord.mode=chat
    # values.schema.json: typos at the top level and in the sections.
    must_fail "additional properties 'replicas' not allowed" --set replicas=2
    must_fail "additional properties 'enable' not allowed" --set remediation.enable=true
    must_fail "additional properties 'nodeLostGrce' not allowed" --set config.nodeLostGrce=10m
    must_fail "additional properties 'existingSecrets' not allowed" --set secrets.apiToken.existingSecrets=tok
    must_fail "minimum: got 10, want 30" --set terminationGracePeriodSeconds=10
    # One switch for remediation: config.remediation.execute may not contradict it.
    must_fail "remediation.enabled alone turns execution on" --set config.remediation.execute=true
    must_fail "remediation.enabled alone turns execution on" --set remediation.enabled=true --set config.remediation.execute=false
    # Discord's endpoint is exposed only in bot mode, only on its own port.
    local bot=(--set remediation.enabled=true --set secrets.discord.existingSecret=discord)
    must_fail "discord.ingress needs config.discord.listen" "${bot[@]}" --set discord.ingress.enabled=true --set discord.ingress.host=lb.example.com
    must_fail "discord.httpRoute needs config.discord.listen" "${bot[@]}" --set discord.httpRoute.enabled=true
    must_fail "discord.ingress exposes Discord's interactions endpoint: it needs bot mode" --set remediation.enabled=true \
        --set secrets.discord.existingSecret=discord --set secrets.discord.mode=webhook --set config.discord.listen=0.0.0.0:9848 --set discord.ingress.enabled=true
    must_fail "config.discord.listen: only bot mode receives interactions" --set config.discord.listen=0.0.0.0:9848
    must_fail "config.discord.listen: only bot mode receives interactions" --set remediation.enabled=true \
        --set secrets.discord.existingSecret=discord --set secrets.discord.mode=webhook --set config.discord.listen=0.0.0.0:9848
    must_fail "set config.discord.transport: http" "${bot[@]}" --set config.discord.listen=0.0.0.0:9848
    local http=("${bot[@]}" --set config.discord.transport=http)
    must_fail "discord.httpRoute.parentRefs is required" "${http[@]}" --set config.discord.listen=0.0.0.0:9848 --set discord.httpRoute.enabled=true
    must_fail "discord.ingress.host is required" "${http[@]}" --set config.discord.listen=0.0.0.0:9848 --set discord.ingress.enabled=true
    # The public key is mounted into the config only for the HTTP transport.
    "$HELM" template lifeboat "$CHART" "${bot[@]}" >"$TMP/gateway.yaml" || return 1
    "$HELM" template lifeboat "$CHART" "${http[@]}" >"$TMP/http.yaml" || return 1
    if grep -q publicKeyFile "$TMP/gateway.yaml" || ! grep -q publicKeyFile "$TMP/http.yaml"; then
        echo "publicKeyFile must be rendered with config.discord.transport: http only"
        ok=1
    fi
    return $ok
}
step "helm template (default, all features; bad values refused)" template

# --- 4. assertions --------------------------------------------------------------------
cat >"$TMP/assert.py" <<'PY'
import glob, json, os, sys, yaml

root, default_file, full_file = sys.argv[1:4]
errors = []

def err(where, what):
    errors.append(f"{where}: {what}")

def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]

def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]

READ = {
    "": {"nodes", "persistentvolumes", "persistentvolumeclaims", "pods"},
    "apps": {"deployments", "statefulsets", "replicasets"},
    "batch": {"cronjobs", "jobs"},
    "postgresql.cnpg.io": {"clusters", "scheduledbackups"},
    "barmancloud.cnpg.io": {"objectstores"},
    "volsync.backube": {"replicationsources", "replicationdestinations"},
    "k8s.mariadb.com": {"mariadbs"},
    "kustomize.toolkit.fluxcd.io": {"kustomizations"},
    "helm.toolkit.fluxcd.io": {"helmreleases"},
}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "approve", "sign"}

def named_secret_patch(role):
    """The one Secret grant allowed: the -remediate ClusterRole patching named Secrets."""
    rules = [r for r in role.get("rules", []) if "secrets" in r.get("resources", [])]
    return role["kind"] == "ClusterRole" and role["metadata"]["name"].endswith("-remediate") and all(
        r.get("resources") == ["secrets"] and r.get("verbs") == ["patch"] and r.get("resourceNames") for r in rules)

def grants(rules):
    out = set()
    for r in rules:
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                for v in r.get("verbs", []):
                    out.add((g, res, v))
    return out

def check_render(name, docs, remediation, expect_rule, remediation_namespaces=()):
    where = name
    kinds = sorted(d["kind"] for d in docs)
    if by_kind(docs, "Secret"):
        err(where, "renders a Secret: secrets must be referenced (existingSecret), never created")
    deps = by_kind(docs, "Deployment")
    if len(deps) != 1:
        err(where, f"expected one Deployment, got {len(deps)}")
        return
    dep = deps[0]
    pod = dep["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    if psc.get("runAsNonRoot") is not True:
        err(where, "pod securityContext.runAsNonRoot is not true")
    if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        err(where, "pod seccompProfile is not RuntimeDefault")
    if not isinstance(psc.get("runAsUser"), int) or psc["runAsUser"] == 0:
        err(where, "pod runAsUser must be a non-zero uid")
    c = pod["containers"][0]
    sc = c.get("securityContext", {})
    for key, want in [("readOnlyRootFilesystem", True), ("allowPrivilegeEscalation", False), ("runAsNonRoot", True)]:
        if sc.get(key) is not want:
            err(where, f"container securityContext.{key} is not {want}")
    if sc.get("capabilities", {}).get("drop") != ["ALL"] or sc.get("capabilities", {}).get("add"):
        err(where, "container must drop ALL capabilities and add none")
    if sc.get("privileged"):
        err(where, "container is privileged")
    res = c.get("resources", {})
    if res.get("requests", {}).get("memory") != "64Mi" or res.get("requests", {}).get("cpu") != "50m" \
            or res.get("limits", {}).get("memory") != "128Mi":
        err(where, f"resources are {res}, want requests 64Mi/50m, limit 128Mi")
    if c.get("args") != ["serve", "--config", "/etc/lifeboat/config.yaml"]:
        err(where, f"args are {c.get('args')}")
    ports = c.get("ports", [])
    if not any(p.get("name") == "http-metrics" and p.get("containerPort") == 9847 for p in ports):
        err(where, f"container port 9847 named http-metrics missing: {ports}")
    for e in c.get("env", []):
        if "value" in e and any(s in e["name"].upper() for s in ("TOKEN", "PASSWORD", "SECRET", "KEY")):
            err(where, f"env {e['name']} carries a literal value; secrets are mounted files")
    for v in pod.get("volumes", []):
        if "secret" in v and not v["secret"].get("secretName"):
            err(where, f"secret volume {v['name']} without secretName")
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    if "/etc/lifeboat/config.yaml" not in mounts:
        err(where, "config.yaml is not mounted at /etc/lifeboat/config.yaml")
    for path, m in mounts.items():
        if path.startswith("/etc/lifeboat/secrets/") and not m.get("readOnly"):
            err(where, f"secret mount {path} is not readOnly")
    cfg = yaml.safe_load(next((d for d in docs if d["kind"] == "ConfigMap" and "config.yaml" in d.get("data", {})), {}).get("data", {}).get("config.yaml", "{}")) or {}
    for key in ("apiTokenFile", "webhookCredentialsFile"):
        path = (cfg.get("remediation") or {}).get(key)
        if path and not any(path.startswith(m + "/") and mounts[m].get("readOnly") for m in mounts):
            err(where, f"config.remediation.{key} {path} is not inside a read-only mount")
    svc = by_kind(docs, "Service")
    if len(svc) != 1 or not any(p.get("name") == "http-metrics" and p.get("port") == 9847 for p in svc[0]["spec"]["ports"]):
        err(where, "Service with port 9847 named http-metrics missing")
    cms = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {})]
    if len(cms) != 1:
        err(where, "ConfigMap with config.yaml missing")
    else:
        open(f"{sys.argv[4]}/{name}.config.yaml", "w").write(cms[0]["data"]["config.yaml"])

    # RBAC.
    roles = by_kind(docs, "ClusterRole") + by_kind(docs, "Role")
    read = [r for r in by_kind(docs, "ClusterRole") if r["metadata"]["name"].endswith("-read")]
    if len(read) != 1:
        err(where, "expected exactly one ClusterRole <fullname>-read")
    else:
        want = {(g, res, v) for g, rs in READ.items() for res in rs for v in ("get", "list", "watch")}
        got = grants(read[0]["rules"])
        if got != want:
            err(where, f"{read[0]['metadata']['name']}: extra {sorted(got - want)}, missing {sorted(want - got)}")
    for role in roles:
        rw = f"{where}: {role['kind']} {role['metadata']['name']}"
        for g, res, v in grants(role.get("rules", [])):
            if "*" in (g, res, v):
                err(rw, f"wildcard in ({g!r}, {res!r}, {v!r})")
            if g == "" and res in ("secrets", "secrets/*") and not named_secret_patch(role):
                err(rw, "grants access to Secrets (only -remediate may patch Secrets named in remediation.secrets)")
            if g == "" and res == "pods" and v == "create":
                err(rw, "grants pods create")
            if g == "" and res.startswith("nodes") and v in WRITE_VERBS and not (
                    role["metadata"]["name"].endswith("-remediate-nodes") and (res, v) == ("nodes", "patch")):
                err(rw, f"grants {v} on {res} (only -remediate-nodes may patch nodes, for the out-of-service taint)")
            if g == "" and res == "persistentvolumes" and v in WRITE_VERBS and not (
                    role["metadata"]["name"].endswith("-remediate-volumes") and v == "delete"):
                err(rw, f"grants {v} on persistentvolumes (only -remediate-volumes may delete them, for stale-cleanup)")
            if v in WRITE_VERBS and not remediation:
                err(rw, f"write verb {v} on {g}/{res} although remediation.enabled is false")
    rem = [r for r in roles if r["metadata"]["name"].endswith("-remediate")]
    if remediation and len(rem) != 2:
        err(where, f"remediation.enabled: want ClusterRole and Role <fullname>-remediate, got {[r['kind'] for r in rem]}")
    nodes = [r for r in roles if r["metadata"]["name"].endswith("-remediate-nodes")]
    for r in nodes:
        if grants(r["rules"]) != {("", "nodes", "patch")}:
            err(where, f"{r['metadata']['name']} grants more than patch on nodes: {sorted(grants(r['rules']))}")
    volumes = [r for r in roles if r["metadata"]["name"].endswith("-remediate-volumes")]
    if remediation and len(volumes) != 1:
        err(where, "remediation.enabled: want one ClusterRole <fullname>-remediate-volumes")
    for r in volumes:
        if grants(r["rules"]) != {("", "persistentvolumes", "delete")}:
            err(where, f"{r['metadata']['name']} grants more than delete on persistentvolumes: {sorted(grants(r['rules']))}")
    for r in roles:
        for rule in r.get("rules", []):
            if "pods/exec" in rule.get("resources", []) and not (r["metadata"]["name"].endswith("-remediate") and rule.get("resourceNames")
                                                                   and rule.get("resources") == ["pods/exec"]):
                err(where, f"{r['kind']} {r['metadata']['name']} grants pods/exec beyond the pods named in remediation.execPods: {rule}")
    # The write ClusterRole is bound per namespace (remediation.namespaces).
    for b in by_kind(docs, "ClusterRoleBinding"):
        if remediation_namespaces and b["roleRef"]["name"].endswith("-remediate"):
            err(where, f"ClusterRoleBinding {b['metadata']['name']} binds the write rules cluster-wide although remediation.namespaces is set")
    bound = sorted(b["metadata"]["namespace"] for b in by_kind(docs, "RoleBinding")
                   if b["roleRef"]["kind"] == "ClusterRole" and b["roleRef"]["name"].endswith("-remediate"))
    if bound != sorted(remediation_namespaces):
        err(where, f"the write rules are bound in {bound}, want exactly remediation.namespaces {sorted(remediation_namespaces)}")
    # The admission policy narrows every write of lifeboat's ServiceAccount.
    vaps = by_kind(docs, "ValidatingAdmissionPolicy")
    vapbs = by_kind(docs, "ValidatingAdmissionPolicyBinding")
    if not remediation and (vaps or vapbs):
        err(where, "admission policy rendered although remediation.enabled is false")
    if remediation:
        sa = by_kind(docs, "ServiceAccount")[0]["metadata"]
        user = f"system:serviceaccount:{sa['namespace']}:{sa['name']}"
        if len(vaps) != 1 or len(vapbs) != 1:
            err(where, "remediation.enabled: want one ValidatingAdmissionPolicy and one binding")
        else:
            spec = vaps[0]["spec"]
            if spec.get("failurePolicy") != "Fail":
                err(where, "the admission policy must fail closed (failurePolicy: Fail)")
            if not any(user in c["expression"] for c in spec.get("matchConditions", [])):
                err(where, f"the admission policy does not match {user}")
            if vapbs[0]["spec"].get("policyName") != vaps[0]["metadata"]["name"] or vapbs[0]["spec"].get("validationActions") != ["Deny"]:
                err(where, f"the binding must Deny with policy {vaps[0]['metadata']['name']}: {vapbs[0]['spec']}")
    if not remediation and rem:
        err(where, "remediation disabled but a -remediate role is rendered")
    for r in rem:
        if r["kind"] == "Role":
            got = {(g, res) for g, res, _ in grants(r["rules"])}
            if not got <= {("coordination.k8s.io", "leases"), ("lifeboat.dev", "remediationruns"), ("lifeboat.dev", "remediationruns/status"), ("", "configmaps")}:
                err(where, f"namespaced Role grants more than leases, remediationruns and the kill-switch ConfigMap: {sorted(got)}")
            for rule in r["rules"]:
                # create cannot be limited by resourceNames: the admission policy names it.
                named = rule.get("resourceNames") == ["lifeboat-kill-switch"] and set(rule.get("verbs")) <= {"get", "delete"}
                if "configmaps" in rule.get("resources", []) and not (named or (rule.get("verbs") == ["create"] and vaps)):
                    err(where, f"the Role may only get/delete/create the ConfigMap lifeboat-kill-switch, not {rule}")
    for b in by_kind(docs, "ClusterRoleBinding") + by_kind(docs, "RoleBinding"):
        sa = by_kind(docs, "ServiceAccount")
        for s in b["subjects"]:
            if s["kind"] != "ServiceAccount" or not sa or s["name"] != sa[0]["metadata"]["name"] \
                    or s.get("namespace") != sa[0]["metadata"]["namespace"]:
                err(where, f"{b['kind']} {b['metadata']['name']} binds {s}, not lifeboat's ServiceAccount")

    # PrometheusRule: the rule source, semantically.
    prs = by_kind(docs, "PrometheusRule")
    if expect_rule is None:
        if prs:
            err(where, "PrometheusRule rendered although prometheusRule.enabled is false")
    else:
        disabled, extra = expect_rule
        source = yaml.safe_load(open(f"{root}/rules/lifeboat.rules.yaml"))["groups"]
        want = []
        for g in source:
            rules = []
            for r in g["rules"]:
                if r.get("alert") in disabled:
                    continue
                r = dict(r)
                r["labels"] = {**extra, **r.get("labels", {})}
                rules.append(r)
            want.append({"name": g["name"], "rules": rules})
        if len(prs) != 1:
            err(where, "PrometheusRule missing")
        elif prs[0]["spec"]["groups"] != want:
            err(where, "PrometheusRule spec differs from rules/lifeboat.rules.yaml (run rules/generate.sh?)")

def check_install(name, docs, values):
    """HA, Discord exposure, dashboard, runbook links and extras, against the values that rendered them."""
    where = name
    get = lambda path, default=None: _get(values, path, default)
    dep = by_kind(docs, "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    remediation = bool(get("remediation.enabled"))
    cfg = yaml.safe_load(next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))["data"]["config.yaml"]) or {}
    if bool((cfg.get("remediation") or {}).get("execute")) != remediation:
        err(where, f"config remediation.execute is {(cfg.get('remediation') or {}).get('execute')}, remediation.enabled is {remediation}")
    # HA: replicas, spread across nodes, a PDB, identity, time to step down.
    replicas = get("replicaCount")
    want_replicas = replicas if replicas is not None else (2 if remediation else 1)
    if dep["spec"]["replicas"] != want_replicas:
        err(where, f"replicas {dep['spec']['replicas']}, want {want_replicas}")
    anti = (pod.get("affinity") or {}).get("podAntiAffinity") or {}
    pdbs = by_kind(docs, "PodDisruptionBudget")
    if want_replicas > 1:
        mode = get("podAntiAffinity", "required")
        selector = dep["spec"]["selector"]["matchLabels"]
        if mode == "none":
            terms = [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}]  # the user's choice
        elif mode == "required":
            terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
        else:
            terms = [t["podAffinityTerm"] for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution") or []]
        if not any(t.get("topologyKey") == "kubernetes.io/hostname" and t.get("labelSelector", {}).get("matchLabels") == selector for t in terms):
            err(where, f"{want_replicas} replicas without {mode} podAntiAffinity on kubernetes.io/hostname over the pod's labels: {anti}")
        if len(pdbs) != 1 or pdbs[0]["spec"].get("selector", {}).get("matchLabels") != selector or pdbs[0]["spec"].get("maxUnavailable") != 1:
            err(where, f"{want_replicas} replicas: want one PodDisruptionBudget maxUnavailable 1 over the pod's labels, got {pdbs}")
    else:
        if anti:
            err(where, "one replica with a podAntiAffinity")
        if pdbs:
            err(where, "one replica with a PodDisruptionBudget (it could only block drains)")
    if (pod.get("terminationGracePeriodSeconds") or 0) < 30:
        err(where, f"terminationGracePeriodSeconds {pod.get('terminationGracePeriodSeconds')} < 30: no time to step down")
    env = {e["name"]: e for e in c.get("env", [])}
    if env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        err(where, "POD_NAME (the leader identity) is not the downward API's metadata.name")
    # Extras.
    if c["args"][3:] != [str(a) for a in get("extraArgs", [])]:
        err(where, f"args {c['args']} do not end with extraArgs")
    for e in get("extraEnv", []):
        if env.get(e["name"]) != e:
            err(where, f"extraEnv {e['name']} missing")
    for v in get("extraVolumes", []):
        if v not in pod.get("volumes", []):
            err(where, f"extraVolume {v['name']} missing")
    for m in get("extraVolumeMounts", []):
        if m not in c.get("volumeMounts", []):
            err(where, f"extraVolumeMount {m['name']} missing")
    # Discord: its own port on the Service only when config.discord.listen is set;
    # Ingress and HTTPRoute route exactly /discord/interactions to it.
    svc = by_kind(docs, "Service")[0]
    listen = (get("config.discord") or {}).get("listen")
    discord_ports = [p for p in svc["spec"]["ports"] if p["name"] == "http-discord"]
    want_port = int(listen.rsplit(":", 1)[1]) if listen else None
    if [p["port"] for p in discord_ports] != ([want_port] if listen else []):
        err(where, f"Service http-discord ports {discord_ports}, config.discord.listen {listen}")
    ingresses = by_kind(docs, "Ingress")
    if bool(ingresses) != bool(get("discord.ingress.enabled")):
        err(where, f"{len(ingresses)} Ingresses, discord.ingress.enabled {get('discord.ingress.enabled')}")
    for ing in ingresses:
        paths = [p for r in ing["spec"]["rules"] for p in r["http"]["paths"]]
        want = [{"path": "/discord/interactions", "pathType": "Exact",
                 "backend": {"service": {"name": svc["metadata"]["name"], "port": {"name": "http-discord"}}}}]
        if paths != want or ing["spec"].get("defaultBackend"):
            err(where, f"Ingress {ing['metadata']['name']} routes {paths}, want only {want}")
    routes = by_kind(docs, "HTTPRoute")
    if bool(routes) != bool(get("discord.httpRoute.enabled")):
        err(where, f"{len(routes)} HTTPRoutes, discord.httpRoute.enabled {get('discord.httpRoute.enabled')}")
    for route in routes:
        want = [{"matches": [{"path": {"type": "Exact", "value": "/discord/interactions"}, "method": "POST"}],
                 "backendRefs": [{"name": svc["metadata"]["name"], "port": want_port}]}]
        if route["spec"]["rules"] != want:
            err(where, f"HTTPRoute {route['metadata']['name']} rules {route['spec']['rules']}, want only {want}")
    # Grafana dashboard: the repository's JSON, labelled for the sidecar.
    dashboards = [d for d in by_kind(docs, "ConfigMap") if "lifeboat.json" in d.get("data", {})]
    if bool(dashboards) != bool(get("dashboard.enabled")):
        err(where, f"{len(dashboards)} dashboard ConfigMaps, dashboard.enabled {get('dashboard.enabled')}")
    for d in dashboards:
        want_labels = get("dashboard.labels", {"grafana_dashboard": "1"})
        if any(d["metadata"]["labels"].get(k) != v for k, v in want_labels.items()):
            err(where, f"dashboard ConfigMap labels {d['metadata']['labels']}, want {want_labels}")
        if get("dashboard.namespace") and d["metadata"]["namespace"] != get("dashboard.namespace"):
            err(where, f"dashboard ConfigMap in {d['metadata']['namespace']}, want {get('dashboard.namespace')}")
        if json.loads(d["data"]["lifeboat.json"]) != json.load(open(f"{root}/dashboards/lifeboat.json")):
            err(where, "dashboard ConfigMap differs from dashboards/lifeboat.json")
    # Runbook links.
    base = get("prometheusRule.runbookUrlBase", "https://github.com/lifeboat-dev/lifeboat/blob/main/docs/runbooks/")
    for pr in by_kind(docs, "PrometheusRule"):
        for g in pr["spec"]["groups"]:
            for r in g["rules"]:
                if r.get("alert") and r.get("annotations", {}).get("runbook_url") != base + r["alert"] + ".md":
                    err(where, f"{r['alert']} runbook_url {r.get('annotations', {}).get('runbook_url')}, want {base}{r['alert']}.md")

def _get(values, path, default=None):
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return default
        values = values[part]
    return values

default = load(default_file)
full = load(full_file)
check_install("default", default, {})
for path in sorted(glob.glob(f"{sys.argv[4]}/ci/*.yaml")):
    name = os.path.basename(path)[:-len(".yaml")]
    values = yaml.safe_load(open(f"{root}/deploy/helm/lifeboat/ci/{name}-values.yaml")) or {}
    docs = load(path)
    check_install(f"ci/{name}", docs, values)
    open(f"{sys.argv[4]}/ci-{name}.config.yaml", "w").write(
        next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))["data"]["config.yaml"])
check_render("default", default, remediation=False, expect_rule=None)
check_render("all-features", full, remediation=True, expect_rule=({"LifeboatWatchDown"}, {"team": "homelab"}),
             remediation_namespaces=yaml.safe_load(open(f"{root}/deploy/helm/lifeboat/ci/all-features-values.yaml"))["remediation"]["namespaces"])
if not by_kind(full, "ServiceMonitor"):
    err("all-features", "ServiceMonitor missing")
if by_kind(default, "ServiceMonitor"):
    err("default", "ServiceMonitor rendered although serviceMonitor.enabled is false")
for e in errors:
    print("ERROR", e)
print(f"checked {len(default)} default and {len(full)} all-features objects")
sys.exit(1 if errors else 0)
PY
step "rendered objects: security, resources, RBAC least privilege, secrets by reference, PrometheusRule" \
    python3 "$TMP/assert.py" "$ROOT" "$TMP/default.yaml" "$TMP/full.yaml" "$TMP"

# --- 5. check-config ------------------------------------------------------------------
check_config() {
    local bin=${LIFEBOAT_BIN:-$ROOT/target/debug/lifeboat} ok=0
    if [[ ! -x $bin ]]; then
        [[ -z ${LIFEBOAT_BIN:-} ]] || { echo "LIFEBOAT_BIN=$LIFEBOAT_BIN is not executable"; return 1; }
        cargo build -q --bin lifeboat || return 1
    fi
    for cfg in "$TMP"/*.config.yaml; do
        if "$bin" check-config --config "$cfg" >"$TMP/check-config.out" 2>&1; then
            echo "accepted: $(basename "$cfg")"
        else
            echo "lifeboat check-config rejected $(basename "$cfg"):"
            cat "$TMP/check-config.out"
            ok=1
        fi
    done
    return $ok
}
step "lifeboat check-config accepts every rendered config.yaml" check_config

# --- 6. drift -------------------------------------------------------------------------
step "plain manifests up to date (deploy/generate.sh --check)" env HELM="$HELM" deploy/generate.sh --check
step "chart README up to date with values.yaml (deploy/chart-readme.sh --check)" deploy/chart-readme.sh --check

# --- 7. kube-apiserver ------------------------------------------------------------------
# The HTTPRoute CRD (Gateway API, standard channel) from its Go module
# sigs.k8s.io/gateway-api, fetched through the Go module proxy as
# scripts/fetch-crds.sh fetches the operators' CRDs (the checksum database
# verifies the zip); cached in target/deploy-crds. Prints the file's path.
GATEWAY_API=sigs.k8s.io/gateway-api
GATEWAY_API_VERSION=v1.6.3
gateway_api_crd() {
    local file=gateway.networking.k8s.io_httproutes.yaml
    local found
    found=$(grep -l "name: httproutes.gateway.networking.k8s.io" "$CRDS_DIR"/*.yaml 2>/dev/null | head -n1)
    [[ -n $found ]] && { echo "$found"; return 0; }
    local dir=$ROOT/target/deploy-crds/gateway-api-$GATEWAY_API_VERSION
    if [[ ! -s $dir/$file ]]; then
        command -v go >/dev/null || { echo "no HTTPRoute CRD in $CRDS_DIR and no go to download $GATEWAY_API" >&2; return 1; }
        local work json moddir
        work=$(mktemp -d)
        json=$(cd "$work" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "$GATEWAY_API@$GATEWAY_API_VERSION") ||
            { echo "go mod download $GATEWAY_API@$GATEWAY_API_VERSION failed: $json" >&2; rm -rf "$work"; return 1; }
        rm -rf "$work"
        moddir=$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
        mkdir -p "$dir"
        cp "$moddir/config/crd/standard/$file" "$dir/$file" && chmod u+w "$dir/$file" || return 1
        printf '%s\n' "$json" >"$dir/SOURCE.json"
    fi
    echo "$dir/$file"
}

apiserver() {
    if [[ ${DEPLOY_CHECK_APISERVER:-1} == 0 ]]; then
        echo "DEPLOY_CHECK_APISERVER=0"
        return 77
    fi
    if [[ ! -x $CP_BIN/kube-apiserver || ! -x $CP_BIN/etcd ]]; then
        echo "no control-plane binaries in $CP_BIN (scripts/build-control-plane.sh builds them)"
        return 77
    fi
    [[ -d $CRDS_DIR ]] || { echo "no CRD directory $CRDS_DIR"; return 1; }
    free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
    local etcd_port peer_port api_port
    etcd_port=$(free_port)
    peer_port=$(free_port)
    api_port=$(free_port)
    "$CP_BIN/etcd" --name=deploy-check --data-dir="$TMP/etcd" \
        --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
        --listen-peer-urls="http://127.0.0.1:$peer_port" --initial-advertise-peer-urls="http://127.0.0.1:$peer_port" \
        --initial-cluster="deploy-check=http://127.0.0.1:$peer_port" --unsafe-no-fsync --log-level=warn \
        >"$TMP/etcd.log" 2>&1 &
    PIDS+=($!)
    echo "deploy-check-admin-token,deploy-check-admin,deploy-check-admin,\"system:masters\"" >"$TMP/tokens.csv"
    openssl genrsa -out "$TMP/sa.key" 2048 2>/dev/null && openssl rsa -in "$TMP/sa.key" -pubout -out "$TMP/sa.pub" 2>/dev/null || return 1
    for _ in $(seq 1 60); do curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break; sleep 0.25; done
    "$CP_BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" --bind-address=127.0.0.1 \
        --secure-port="$api_port" --cert-dir="$TMP/certs" --token-auth-file="$TMP/tokens.csv" \
        --authorization-mode=RBAC --service-account-issuer=https://kubernetes.default.svc \
        --service-account-key-file="$TMP/sa.pub" --service-account-signing-key-file="$TMP/sa.key" \
        --service-cluster-ip-range=10.0.0.0/24 --disable-admission-plugins=ServiceAccount \
        --enable-priority-and-fairness=false >"$TMP/kube-apiserver.log" 2>&1 &
    PIDS+=($!)
    local httproute_crd
    httproute_crd=$(gateway_api_crd) || return 1
    python3 - "https://127.0.0.1:$api_port" deploy-check-admin-token "$CRDS_DIR" "$TMP/full.yaml" deploy/manifests "$httproute_crd" "$TMP/ci" <<'PY'
import glob, json, ssl, sys, time, urllib.error, urllib.request, yaml

api, token, crds_dir, full_file, manifests, httproute_crd, ci_dir = sys.argv[1:8]
ctx = ssl._create_unverified_context()
errors = []

def call(method, path, body=None, ctype="application/json"):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(api + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            raw = r.read()
            try:
                out = json.loads(raw or b"{}")
            except ValueError:
                out = {"text": raw.decode(errors="replace")}
            if isinstance(out, dict):
                out["_warnings"] = r.headers.get_all("Warning") or []
            return r.status, out
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, {"message": raw.decode(errors="replace")}
    except (urllib.error.URLError, ConnectionError, OSError) as e:
        return 0, {"message": str(e)}

def wait(what, fn, secs=90):
    deadline = time.time() + secs
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.5)
    errors.append(f"timed out waiting for {what}")
    return False

t0 = time.time()
if not wait("kube-apiserver /readyz", lambda: call("GET", "/readyz")[0] == 200, 120):
    print("\n".join(errors)); sys.exit(1)
wait("namespace default", lambda: call("GET", "/api/v1/namespaces/default")[0] == 200)
print(f"kube-apiserver ready after {time.time() - t0:.0f}s")

# prometheus-operator CRDs (ServiceMonitor, PrometheusRule) by server-side apply.
# From the upstream files, or from the stand-ins' multi-document file.
import glob
wanted = {"servicemonitors.monitoring.coreos.com", "prometheusrules.monitoring.coreos.com"}
found = {}
for path in sorted(glob.glob(f"{crds_dir}/*.yaml")):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "CustomResourceDefinition" and doc["metadata"]["name"] in wanted:
            found[doc["metadata"]["name"]] = doc
missing = wanted - set(found)
if missing:
    print(f"CRDs {sorted(missing)} not found in {crds_dir}"); sys.exit(1)
print(f"prometheus-operator CRDs from {crds_dir}, Gateway API HTTPRoute from {httproute_crd}")
for doc in yaml.safe_load_all(open(httproute_crd)):
    if doc and doc.get("kind") == "CustomResourceDefinition":
        found[doc["metadata"]["name"]] = doc
for name, crd in sorted(found.items()):
    code, body = call("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}?fieldManager=deploy-check&force=true",
                      json.dumps(crd).encode(), "application/apply-patch+yaml")
    if code not in (200, 201):
        errors.append(f"apply CRD {name}: {code} {body.get('message')}")
        continue
    wait(f"CRD {name} Established", lambda: any(
        c["type"] == "Established" and c["status"] == "True"
        for c in call("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")[1].get("status", {}).get("conditions") or []))

RESOURCES = {
    "Namespace": ("/api/v1", "namespaces", False), "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "ConfigMap": ("/api/v1", "configmaps", True), "Service": ("/api/v1", "services", True),
    "Deployment": ("/apis/apps/v1", "deployments", True),
    "Pod": ("/api/v1", "pods", True),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets", True),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses", True),
    "HTTPRoute": ("/apis/gateway.networking.k8s.io/v1", "httproutes", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors", True),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules", True),
    "CustomResourceDefinition": ("/apis/apiextensions.k8s.io/v1", "customresourcedefinitions", False),
    "ValidatingAdmissionPolicy": ("/apis/admissionregistration.k8s.io/v1", "validatingadmissionpolicies", False),
    "ValidatingAdmissionPolicyBinding": ("/apis/admissionregistration.k8s.io/v1", "validatingadmissionpolicybindings", False),
}

def path_of(obj):
    base, plural, namespaced = RESOURCES[obj["kind"]]
    if namespaced:
        return f"{base}/namespaces/{obj['metadata']['namespace']}/{plural}"
    return f"{base}/{plural}"

def create(obj, source, dry_run, expect_refusal=False):
    """POSTs obj; returns the apiserver's Warning headers. With expect_refusal, a refusal is the success."""
    if obj["kind"] not in RESOURCES:
        errors.append(f"{source}: {obj['kind']} {obj['metadata']['name']}: kind not known to deploy/check.sh")
        return []
    path = path_of(obj) + ("?dryRun=All&fieldValidation=Strict" if dry_run else "?fieldValidation=Strict")
    for _ in range(20):  # a fresh CRD's endpoint can 404 for a moment
        code, body = call("POST", path, obj)
        if code != 404:
            break
        time.sleep(0.5)
    what = f"{source}: {'dry-run ' if dry_run else ''}create {obj['kind']} {obj['metadata']['name']}"
    if expect_refusal:
        if code in (200, 201):
            errors.append(f"{what}: accepted, want refused")
    elif code not in (200, 201):
        errors.append(f"{what}: {code} {body.get('message')}")
    return body.get("_warnings", []) if isinstance(body, dict) else []

def docs(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]

for ns in ("lifeboat", "monitoring", "database", "identity", "media"):
    create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}, "setup", dry_run=False)

manifest_files = sorted(glob.glob(f"{manifests}/*.yaml") + glob.glob(f"{manifests}/optional/*.yaml"))
count = 0
for f in manifest_files:
    if f.endswith("kustomization.yaml"):
        continue
    for obj in docs(f):
        if obj["kind"] == "Namespace":
            continue  # created above
        create(obj, f, dry_run=True)
        count += 1
full = docs(full_file)
for obj in full:
    create(obj, "all-features render", dry_run=True)
    count += 1
ci_renders = sorted(glob.glob(f"{ci_dir}/*.yaml"))
for path in ci_renders:
    for obj in docs(path):
        create(obj, f"ci render {path.rsplit('/', 1)[1]}", dry_run=True)
        count += 1
print(f"server-side dry-run: {count} objects from {len(manifest_files) - 1} manifest files, the all-features render "
      f"and {len(ci_renders)} ci/ renders")

# Pod Security Standard "restricted": every Deployment's pods, created (dry-run)
# in a namespace that enforces it. Enforcement applies to Pods; for the
# Deployment itself the apiserver only warns, so a warning counts as a failure.
RESTRICTED = "pss-restricted"
create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RESTRICTED, "labels": {
    "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}},
    "setup", dry_run=False)

def in_restricted(obj):
    obj = json.loads(json.dumps(obj))
    obj["metadata"]["namespace"] = RESTRICTED
    return obj

def pod_of(dep):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": dep["metadata"]["name"] + "-pss", "namespace": RESTRICTED,
            "labels": dep["spec"]["template"]["metadata"].get("labels", {})}, "spec": dep["spec"]["template"]["spec"]}

pss = 0
for source, path in [("plain manifests", f"{manifests}/lifeboat.yaml"), ("all-features render", full_file)] + \
        [(f"ci render {p.rsplit('/', 1)[1]}", p) for p in ci_renders]:
    for dep in [d for d in docs(path) if d["kind"] == "Deployment"]:
        warnings = create(in_restricted(dep), f"{source} (restricted namespace)", dry_run=True)
        for w in warnings:
            if "PodSecurity" in w:
                errors.append(f"{source}: Deployment {dep['metadata']['name']} in a restricted namespace: {w}")
        create(pod_of(dep), f"{source} (restricted namespace)", dry_run=True)
        pss += 1
# The check can fail: the same pod without seccompProfile is refused.
bad = pod_of(next(d for d in docs(full_file) if d["kind"] == "Deployment"))
bad["spec"]["securityContext"].pop("seccompProfile", None)
for c in bad["spec"]["containers"]:
    c["securityContext"].pop("seccompProfile", None)
create(bad, "negative control: pod without seccompProfile (restricted namespace)", dry_run=True, expect_refusal=True)
print(f"restricted Pod Security Standard: {pss} Deployments' pods admitted in namespace {RESTRICTED}, one non-compliant pod refused")

# RBAC for real: the plain manifests' read-only install (namespace lifeboat)
# and the all-features release (namespace monitoring, remediation enabled).
for f in [f"{manifests}/lifeboat.yaml"]:
    for obj in docs(f):
        if obj["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
            create(obj, f, dry_run=False)
for obj in full:
    if obj["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        create(obj, "all-features render", dry_run=False)

def sa_of(objs, ns):
    return [o["metadata"]["name"] for o in objs if o["kind"] == "ServiceAccount" and o["metadata"]["namespace"] == ns][0]

READONLY = ("lifeboat", sa_of(docs(f"{manifests}/lifeboat.yaml"), "lifeboat"))
REMEDIATE = ("monitoring", sa_of(full, "monitoring"))

def can(who, verb, resource, group="", namespace=None, sub=None, name=None):
    ns, sa = who
    attrs = {"verb": verb, "resource": resource, "group": group}
    if name:
        attrs["name"] = name
    if namespace:
        attrs["namespace"] = namespace
    if sub:
        attrs["subresource"] = sub
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": f"system:serviceaccount:{ns}:{sa}",
                       "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"],
                       "resourceAttributes": attrs}}
    code, body = call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review)
    if code != 201:
        errors.append(f"SubjectAccessReview {attrs}: {code} {body.get('message')}")
        return None
    return body["status"].get("allowed", False)

# Wait for the RBAC authorizer to see the new bindings.
wait("RBAC bindings active", lambda: can(READONLY, "list", "pods") and can(REMEDIATE, "delete", "persistentvolumeclaims", namespace="database"), 30)

READS = [("", r) for r in ("nodes", "persistentvolumes", "persistentvolumeclaims", "pods")] + \
    [("apps", r) for r in ("deployments", "statefulsets", "replicasets")] + [("batch", r) for r in ("cronjobs", "jobs")] + \
    [("postgresql.cnpg.io", "clusters"), ("postgresql.cnpg.io", "scheduledbackups"), ("barmancloud.cnpg.io", "objectstores"),
     ("volsync.backube", "replicationsources"), ("volsync.backube", "replicationdestinations"), ("k8s.mariadb.com", "mariadbs"),
     ("kustomize.toolkit.fluxcd.io", "kustomizations"), ("helm.toolkit.fluxcd.io", "helmreleases")]
# (who, verb, resource, group, namespace, subresource, expected)
cases = []
for who in (READONLY, REMEDIATE):
    for g, r in READS:
        for v in ("get", "list", "watch"):
            cases.append((who, v, r, g, None, None, True))
    cases += [
        (who, "get", "secrets", "", "database", None, False),
        (who, "list", "secrets", "", None, None, False),
        (who, "list", "configmaps", "", None, None, False),
        (who, "create", "pods", "", "database", None, False),
        (who, "delete", "nodes", "", None, None, False),
        (who, "delete", "deployments", "apps", "database", None, False),
        (who, "update", "deployments", "apps", "database", None, False),
        (who, "update", "persistentvolumes", "", None, None, False),
        (who, "patch", "persistentvolumes", "", None, None, False),
        (who, "delete", "clusters", "postgresql.cnpg.io", "database", None, False),
        (who, "create", "clusterrolebindings", "rbac.authorization.k8s.io", None, None, False),
        (who, "get", "leases", "coordination.k8s.io", "database", None, False),
        (who, "create", "pods", "", "database", "exec", False),
    ]
WRITES = [
    ("patch", "nodes", "", None), ("get", "backups", "postgresql.cnpg.io", None), ("patch", "backups", "postgresql.cnpg.io", None),
    ("delete", "persistentvolumeclaims", "", None), ("patch", "persistentvolumeclaims", "", None),
    ("create", "persistentvolumeclaims", "", None), ("delete", "pods", "", None), ("get", "pods", "", "log"),
    ("patch", "deployments", "apps", "scale"), ("patch", "statefulsets", "apps", "scale"),
    ("create", "jobs", "batch", None), ("patch", "clusters", "postgresql.cnpg.io", "status"),
    ("patch", "clusters", "postgresql.cnpg.io", "scale"), ("create", "backups", "postgresql.cnpg.io", None),
    ("patch", "mariadbs", "k8s.mariadb.com", None), ("patch", "mariadbs", "k8s.mariadb.com", "scale"),
    ("patch", "kustomizations", "kustomize.toolkit.fluxcd.io", None), ("patch", "helmreleases", "helm.toolkit.fluxcd.io", None),
    ("patch", "replicationsources", "volsync.backube", None), ("patch", "replicationdestinations", "volsync.backube", None),
    ("delete", "replicationdestinations", "volsync.backube", None),
    ("patch", "deployments", "apps", None), ("patch", "statefulsets", "apps", None), ("delete", "jobs", "batch", None),
    ("get", "kanidms", "kaniop.rs", None), ("patch", "kanidms", "kaniop.rs", None),
]
for v, r, g, sub in WRITES:
    cases.append((REMEDIATE, v, r, g, "database", sub, True))
    cases.append((READONLY, v, r, g, "database", sub, False))
for v in ("get", "create", "update"):
    cases.append((REMEDIATE, v, "leases", "coordination.k8s.io", "monitoring", None, True))
    cases.append((READONLY, v, "leases", "coordination.k8s.io", "lifeboat", None, False))
cases += [
    (REMEDIATE, "delete", "leases", "coordination.k8s.io", "monitoring", None, False),
    # Writes only in remediation.namespaces (database, identity), not in media.
    (REMEDIATE, "delete", "persistentvolumeclaims", "", "identity", None, True),
    (REMEDIATE, "delete", "persistentvolumeclaims", "", "media", None, False),
    (REMEDIATE, "create", "jobs", "batch", "media", None, False),
    (REMEDIATE, "patch", "kustomizations", "kustomize.toolkit.fluxcd.io", "media", None, False),
    (REMEDIATE, "delete", "nodes", "", None, None, False),
    (REMEDIATE, "update", "nodes", "", None, None, False),
    # The kill switch (create is narrowed to its name by the admission policy).
    (REMEDIATE, "create", "configmaps", "", "monitoring", None, True),
    (REMEDIATE, "create", "configmaps", "", "database", None, False),
    (REMEDIATE, "create", "remediationruns", "lifeboat.dev", "monitoring", None, True),
    (REMEDIATE, "patch", "remediationruns", "lifeboat.dev", "monitoring", "status", True),
    (REMEDIATE, "create", "remediationruns", "lifeboat.dev", "database", None, False),
    (REMEDIATE, "update", "jobs", "batch", "database", None, False),
    (REMEDIATE, "patch", "clusters", "postgresql.cnpg.io", "database", None, True),
    (REMEDIATE, "delete", "replicationsources", "volsync.backube", "database", None, False),
    (READONLY, "create", "remediationruns", "lifeboat.dev", "lifeboat", None, False),
    # stale-cleanup deletes PersistentVolumes (cluster-scoped; the policy narrows it).
    (REMEDIATE, "delete", "persistentvolumes", "", None, None, True),
    (READONLY, "delete", "persistentvolumes", "", None, None, False),
    (REMEDIATE, "delete", "kanidms", "kaniop.rs", "identity", None, False),
    (REMEDIATE, "patch", "kanidms", "kaniop.rs", "media", None, False),
]
# (who, verb, resource, group, namespace, subresource, expected, name)
named = [
    (REMEDIATE, "patch", "secrets", "", "identity", None, True, "kanidm-admin-passwords"),
    (REMEDIATE, "get", "secrets", "", "identity", None, False, "kanidm-admin-passwords"),
    (REMEDIATE, "patch", "secrets", "", "identity", None, False, "kanidm-tls"),
    (REMEDIATE, "get", "configmaps", "", "monitoring", None, True, "lifeboat-kill-switch"),
    (REMEDIATE, "delete", "configmaps", "", "monitoring", None, True, "lifeboat-kill-switch"),
    (REMEDIATE, "delete", "configmaps", "", "monitoring", None, False, "lb-lifeboat"),
    (REMEDIATE, "patch", "secrets", "", "media", None, False, "kanidm-admin-passwords"),
    (READONLY, "patch", "secrets", "", "identity", None, False, "kanidm-admin-passwords"),
    # kanidm-credential-reset: exec only into remediation.execPods.
    (REMEDIATE, "create", "pods", "", "identity", "exec", True, "kanidm-default-0"),
    (REMEDIATE, "get", "pods", "", "identity", "exec", True, "kanidm-default-0"),
    (REMEDIATE, "create", "pods", "", "identity", "exec", False, "kanidm-default-1"),
    (REMEDIATE, "create", "pods", "", "media", "exec", False, "kanidm-default-0"),
    (READONLY, "create", "pods", "", "identity", "exec", False, "kanidm-default-0"),
]
wrong = 0
for who, verb, res, group, ns, sub, want, name in [c + (None,) for c in cases] + named:
    got = can(who, verb, res, group, ns, sub, name)
    if got is not None and got != want:
        wrong += 1
        what = f"{verb} {group + '/' if group else ''}{res}{'/' + sub if sub else ''}{' ' + name if name else ''}{' in ' + ns if ns else ' (cluster-wide)'}"
        errors.append(f"{'read-only' if who == READONLY else 'remediation'} ServiceAccount {who[0]}/{who[1]}: "
                      f"{what} is {'ALLOWED' if got else 'denied'}, want {'allowed' if want else 'denied'}")
print(f"SubjectAccessReview: {len(cases) + len(named)} permission checks, {wrong} wrong")
for e in errors:
    print("ERROR", e)
sys.exit(1 if errors else 0)
PY
}
step "kube-apiserver: server-side dry-run of every object, RBAC least privilege via SubjectAccessReview" apiserver

echo
if ((${#failed[@]})); then
    printf 'deploy/check.sh: FAILED (%ss): %s\n' "$(($(date +%s) - start_all))" "$(IFS=';'; echo "${failed[*]}")"
    exit 1
fi
echo "deploy/check.sh: all checks passed ($(($(date +%s) - start_all))s)${skipped:+; skipped: ${skipped[*]}}"
