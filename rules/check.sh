#!/usr/bin/env bash
# Checks the monitoring surface: alert rules, their unit tests, the generated
# PrometheusRule copies, the runbook pages (docs/runbooks/, docs/alerts.md) and the
# Grafana dashboard.
#
#   rules/check.sh
#
# Steps (each prints PASS/FAIL; the script exits non-zero if any failed):
#   1. promtool check rules  rules/lifeboat.rules.yaml, and the `spec` of
#      rules/lifeboat.prometheusrule.yaml and of the Helm chart's copy (promtool
#      does not read the PrometheusRule envelope, so its spec is extracted)
#   2. promtool test rules   rules/tests/*.yaml
#   3. drift: rules/generate.sh --check (regenerate, diff against both copies)
#   4. conventions: every alert has severity (critical|warning|info), a known
#      playbook, summary, description, runbook_url =
#      https://github.com/lifeboat-dev/lifeboat/blob/main/docs/runbooks/<AlertName>.md;
#      every alert is unit-tested both firing and silent; every alert has its
#      page docs/runbooks/<AlertName>.md titled `# <AlertName>` whose Playbook
#      section names its playbook label, every page there is an alert's, and
#      docs/alerts.md has the alert's table row (severity, for, playbook)
#   5. every PromQL expression in the rules and in dashboards/lifeboat.json
#      (panel targets and template-variable queries, after substituting the
#      Grafana variables: $namespace/$cluster -> .*, $__rate_interval -> 5m,
#      $__interval -> 1m, $__range -> 1h; label_values(sel, l) -> sel):
#        a. parses: all of them become recording rules in a temp rule file that
#           `promtool check rules` must accept
#        b. names only metrics that exist: every `lifeboat_[a-z_]+` token and
#           every other bare metric name must be in the catalog
#           (`lifeboat metrics -o json`), or in the allowlist below
#        c. label matchers on lifeboat_* metrics use only labels the catalog
#           declares for that metric (plus job/instance)
#        d. every catalog metric named lifeboat_remediation_*,
#           lifeboat_alertmanager_* or lifeboat_journal_* is used by at least
#           one alert or dashboard query
#      plus dashboard shape: schemaVersion, the ${datasource} variable of type
#      datasource/prometheus, `namespace` and `cluster` variables, every panel
#      and target on ${datasource}.
#
# Metric names allowed besides the catalog (Prometheus-generated series only;
# no kube-state-metrics names are used):
#   up                       scrape health, LifeboatDown and the health row
#   ALERTS                   firing lifeboat alerts on the dashboard
#   scrape_duration_seconds  Prometheus' own scrape time of lifeboat
#
# Env:
#   LIFEBOAT_BIN  a prebuilt lifeboat binary for the catalog (default:
#                 `cargo run -q -- metrics -o json`)
#   PROMTOOL      promtool binary (default: promtool; Debian package `prometheus`)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PROMTOOL=${PROMTOOL:-promtool}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failed=()
start_all=$(date +%s)

step() { # step <name> <command...>
    local name=$1
    shift
    local t0=$SECONDS
    echo "=== $name"
    if "$@"; then
        echo "--- PASS: $name ($((SECONDS - t0))s)"
    else
        echo "--- FAIL: $name ($((SECONDS - t0))s)"
        failed+=("$name")
    fi
}

command -v "$PROMTOOL" >/dev/null || { echo "check.sh: $PROMTOOL not found (apt-get install -y prometheus)" >&2; exit 2; }
python3 -c 'import yaml' 2>/dev/null || { echo "check.sh: python3 needs PyYAML (apt-get install -y python3-yaml)" >&2; exit 2; }

# --- catalog --------------------------------------------------------------------
if [[ -n ${LIFEBOAT_BIN:-} ]]; then
    "$LIFEBOAT_BIN" metrics -o json >"$TMP/catalog.json" || { echo "check.sh: $LIFEBOAT_BIN metrics -o json failed" >&2; exit 2; }
else
    cargo run -q -- metrics -o json >"$TMP/catalog.json" || { echo "check.sh: cargo run -q -- metrics -o json failed" >&2; exit 2; }
fi

# --- 1. promtool check rules ----------------------------------------------------
extract_spec() { # extract_spec <PrometheusRule file> <out rule file>
    python3 - "$1" "$2" <<'PY'
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
assert doc.get("kind") == "PrometheusRule", f"{sys.argv[1]}: kind is {doc.get('kind')!r}, not PrometheusRule"
yaml.safe_dump(doc["spec"], open(sys.argv[2], "w"), sort_keys=False)
PY
}
check_rules() {
    local ok=0
    "$PROMTOOL" check rules rules/lifeboat.rules.yaml || ok=1
    for f in rules/lifeboat.prometheusrule.yaml deploy/helm/lifeboat/files/lifeboat.prometheusrule.yaml; do
        if [[ ! -f $f ]]; then echo "missing $f (run rules/generate.sh)"; ok=1; continue; fi
        local spec="$TMP/$(basename "$(dirname "$f")")-$(basename "$f" .yaml).spec.yaml"
        echo "($f: checking its .spec as $spec)"
        extract_spec "$f" "$spec" && "$PROMTOOL" check rules "$spec" || ok=1
    done
    return $ok
}
step "promtool check rules (source, PrometheusRule, Helm copy)" check_rules

# --- 2. unit tests --------------------------------------------------------------
step "promtool test rules rules/tests/*.yaml" "$PROMTOOL" test rules rules/tests/*.yaml

# --- 3. drift -------------------------------------------------------------------
step "generated PrometheusRule is up to date (rules/generate.sh --check)" rules/generate.sh --check

# --- 4 + 5. conventions, expressions, dashboard -----------------------------------
cat >"$TMP/lint.py" <<'PY'
import glob, json, os, re, subprocess, sys, yaml

root, catalog_file, tmp, promtool = sys.argv[1:5]
mode = sys.argv[5]
catalog = {m["name"]: set(m["labels"]) for m in json.load(open(catalog_file))}
ALLOWED = {"up": None, "ALERTS": None, "scrape_duration_seconds": None}
MUST_BE_SHOWN = ("lifeboat_remediation_", "lifeboat_alertmanager_", "lifeboat_journal_")
SEVERITIES = {"critical", "warning", "info"}
PLAYBOOKS = {"node-loss", "cnpg-instance-lost", "wal-archive-reset", "volsync-restore", "garage-meta-restore",
             "stale-cleanup", "mariadb-instance-lost", "none"}
RUNBOOK = "https://github.com/lifeboat-dev/lifeboat/blob/main/docs/runbooks/"
errors = []

def err(where, what):
    errors.append(f"{where}: {what}")

rules_file = "rules/lifeboat.rules.yaml"
rules = yaml.safe_load(open(f"{root}/{rules_file}"))
alerts = []
for group in rules["groups"]:
    for i, rule in enumerate(group["rules"]):
        if "alert" in rule:
            alerts.append((group["name"], i, rule))

if mode == "conventions":
    names = [r["alert"] for _, _, r in alerts]
    for n in sorted({n for n in names if names.count(n) > 1}):
        err(rules_file, f"alert {n} defined more than once")
    for g, i, r in alerts:
        where = f"{rules_file}: group {g}, alert {r['alert']}"
        labels, ann = r.get("labels", {}), r.get("annotations", {})
        if not re.fullmatch(r"[A-Z][A-Za-z0-9]+", r["alert"]):
            err(where, "alert name is not CamelCase")
        if labels.get("severity") not in SEVERITIES:
            err(where, f"labels.severity {labels.get('severity')!r} not in {sorted(SEVERITIES)}")
        if labels.get("playbook") not in PLAYBOOKS:
            err(where, f"labels.playbook {labels.get('playbook')!r} not in {sorted(PLAYBOOKS)}")
        for key in ("summary", "description"):
            if not str(ann.get(key, "")).strip():
                err(where, f"annotations.{key} missing")
        if ann.get("runbook_url") != RUNBOOK + r["alert"] + ".md":
            err(where, f"annotations.runbook_url is {ann.get('runbook_url')!r}, want {RUNBOOK + r['alert'] + '.md'!r}")
    # Unit-test coverage: each alert fires in some test and is expected silent in some test.
    fires, silent = {}, {}
    for path in sorted(glob.glob(f"{root}/rules/tests/*.yaml")):
        doc = yaml.safe_load(open(path))
        for t in doc.get("tests", []):
            for case in t.get("alert_rule_test", []):
                target = fires if case.get("exp_alerts") else silent
                target.setdefault(case["alertname"], []).append(path)
    for n in names:
        if n not in fires:
            err("rules/tests", f"alert {n} has no test where it fires")
        if n not in silent:
            err("rules/tests", f"alert {n} has no test where it must stay silent (near miss / before `for`)")
    for n in sorted(set(fires) | set(silent)):
        if n not in names:
            err("rules/tests", f"tests name alert {n}, which rules/lifeboat.rules.yaml does not define")
    # Runbook pages: docs/runbooks/<AlertName>.md per alert, titled `# <AlertName>`, with a
    # `## Playbook` section naming the alert's playbook label; no page without an alert.
    runbooks = f"{root}/docs/runbooks"
    pages = {os.path.basename(p)[:-3] for p in glob.glob(f"{runbooks}/*.md")}
    for g, i, r in alerts:
        n = r["alert"]
        if n not in pages:
            err("docs/runbooks", f"alert {n} has no page docs/runbooks/{n}.md")
            continue
        page = open(f"{runbooks}/{n}.md").read()
        if not page.startswith(f"# {n}\n"):
            err(f"docs/runbooks/{n}.md", f"the title must be `# {n}`")
        section = page.split("\n## Playbook\n", 1)[1] if "\n## Playbook\n" in page else ""
        playbook = r["labels"].get("playbook")
        if not section or f"`{playbook}`" not in section.split("\n## ", 1)[0]:
            err(f"docs/runbooks/{n}.md", f"needs a `## Playbook` section naming `{playbook}`")
    for p in sorted(pages - set(names)):
        err(f"docs/runbooks/{p}.md", f"is not an alert in {rules_file}")
    # The summary table in docs/alerts.md: | [Name](runbooks/Name.md) | severity | for | playbook |
    try:
        md = open(f"{root}/docs/alerts.md").read()
        rows = {m[0]: m[1:] for m in re.findall(r"^\| \[(\w+)\]\(runbooks/(\w+)\.md\) \| (\w+) \| (\w+) \| ([\w-]+) \|$", md, re.M)}
        for g, i, r in alerts:
            n = r["alert"]
            want = (n, r["labels"].get("severity"), str(r.get("for", "0s")), r["labels"].get("playbook"))
            if rows.get(n) != want:
                err("docs/alerts.md", f"table row for {n} is {rows.get(n)}, want (page, severity, for, playbook) = {want}")
        for n in sorted(set(rows) - set(names)):
            err("docs/alerts.md", f"table row {n} is not an alert in {rules_file}")
    except FileNotFoundError:
        err("docs/alerts.md", "missing")

# ---------------------------------------------------------------------------------
GRAFANA_VARS = [
    (r"\$\{?__rate_interval\}?", "5m"), (r"\$\{?__interval\}?", "1m"), (r"\$\{?__range\}?", "1h"),
    (r"\$\{?namespace(?::\w+)?\}?", ".*"), (r"\$\{?cluster(?::\w+)?\}?", ".*"),
]
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "offset", "Inf", "NaN", "inf", "nan", "atan2"}
STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'

def metric_names(expr):
    """Bare metric names in a PromQL expression (heuristic tokenizer)."""
    e = re.sub(STRING, '""', expr)
    e = re.sub(r"\{[^{}]*\}", " ", e)
    e = re.sub(r"\[[^\[\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.:])([a-zA-Z_:][\w:]*)", e):
        tok = m.group(1)
        rest = e[m.end():].lstrip()
        if tok in KEYWORDS or rest.startswith("("):
            continue
        names.add(tok)
    return names

def matcher_labels(expr):
    """(metric, {label names}) for every `metric{...}` selector."""
    e = re.sub(STRING, '""', expr)
    out = []
    for m in re.finditer(r"(?<![\w:])([a-zA-Z_:][\w:]*)\s*\{([^{}]*)\}", e):
        labels = set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", m.group(2)))
        out.append((m.group(1), labels))
    return out

def check_expr(where, expr):
    for tok in sorted(set(re.findall(r"lifeboat_[a-z_]+", expr))):
        if tok not in catalog:
            err(where, f"unknown lifeboat metric {tok!r} (not in `lifeboat metrics -o json`)")
    for name in sorted(metric_names(expr)):
        if name not in catalog and name not in ALLOWED:
            err(where, f"metric {name!r} is neither in the catalog nor in the allowlist {sorted(ALLOWED)}")
    for metric, labels in matcher_labels(expr):
        if metric in catalog:
            bad = labels - catalog[metric] - {"job", "instance", "__name__"}
            if bad:
                err(where, f"{metric} has no label(s) {sorted(bad)} (catalog: {sorted(catalog[metric])})")

exprs = []  # (where, expr) for the promtool parse check
for g, i, r in alerts:
    exprs.append((f"{rules_file}: group {g}, alert {r['alert']}", r["expr"]))
for group in rules["groups"]:
    for r in group["rules"]:
        if "record" in r:
            exprs.append((f"{rules_file}: group {group['name']}, record {r['record']}", r["expr"]))

if mode == "conventions":
    for e in errors:
        print("ERROR", e)
    sys.exit(1 if errors else 0)

dash_file = "dashboards/lifeboat.json"
try:
    dash = json.load(open(f"{root}/{dash_file}"))
except Exception as e:
    err(dash_file, f"cannot load: {e}")
    dash = {"panels": [], "templating": {"list": []}}

def substitute(where, expr):
    for pat, val in GRAFANA_VARS:
        expr = re.sub(pat, val, expr)
    left = re.findall(r"\$\{?([A-Za-z_]\w*)", expr)
    if left:
        err(where, f"Grafana variable(s) {sorted(set(left))} not substituted by check.sh; add them to GRAFANA_VARS")
    return expr

if dash.get("schemaVersion", 0) < 36:
    err(dash_file, f"schemaVersion {dash.get('schemaVersion')} is older than 36")
variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
ds = variables.get("datasource")
if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
    err(dash_file, "needs a template variable `datasource` of type datasource with query prometheus")
for name in ("namespace", "cluster"):
    if name not in variables:
        err(dash_file, f"needs a template variable `{name}`")
for name, v in variables.items():
    if v.get("type") != "query":
        continue
    where = f"{dash_file}: variable {name}"
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("datasource", {}).get("uid") != "${datasource}":
        err(where, "datasource is not ${datasource}")
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q or "", re.S)
    if m:
        exprs.append((where, substitute(where, m.group(1))))
    elif re.fullmatch(r"\s*label_values\(\s*\w+\s*\)\s*", q or ""):
        pass
    elif re.fullmatch(r"\s*query_result\((.*)\)\s*", q or "", re.S):
        exprs.append((where, substitute(where, re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S).group(1))))
    else:
        err(where, f"unsupported variable query {q!r}")

def walk(panels):
    for p in panels:
        yield p
        yield from walk(p.get("panels", []))

ids = set()
for p in walk(dash.get("panels", [])):
    where = f"{dash_file}: panel {p.get('id')} {p.get('title')!r}"
    if p.get("id") in ids:
        err(where, "duplicate panel id")
    ids.add(p.get("id"))
    if p.get("type") == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${datasource}":
        err(where, "panel datasource is not ${datasource}")
    if not p.get("targets"):
        err(where, "panel has no targets")
    for t in p.get("targets", []):
        tw = f"{where} target {t.get('refId')}"
        if t.get("datasource", {}).get("uid") != "${datasource}":
            err(tw, "target datasource is not ${datasource}")
        if not t.get("expr", "").strip():
            err(tw, "empty expr")
            continue
        exprs.append((tw, substitute(tw, t["expr"])))

if mode == "exprs":
    for where, expr in exprs:
        check_expr(where, expr)
    # Remediation and the Alertmanager intake are watched only through these:
    # each of their metrics must be used by an alert or a dashboard panel.
    used = {tok for _, expr in exprs for tok in re.findall(r"lifeboat_[a-z_]+", expr)}
    for name in sorted(catalog):
        if name.startswith(MUST_BE_SHOWN) and name not in used:
            err(dash_file, f"{name} is used by no alert in {rules_file} and no panel; every {'/'.join(p + '*' for p in MUST_BE_SHOWN)} metric must be")
    # Every expression as a recording rule, one group each so promtool names the origin.
    groups = [{"name": where, "rules": [{"record": f"check:expr_{i}", "expr": expr}]}
              for i, (where, expr) in enumerate(exprs)]
    path = f"{tmp}/all-exprs.rules.yaml"
    yaml.safe_dump({"groups": groups}, open(path, "w"), sort_keys=False, width=1 << 20)
    r = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True)
    if r.returncode != 0:
        err(path, "promtool check rules failed:\n" + r.stdout + r.stderr)
    else:
        print(f"promtool parsed {len(exprs)} expressions ({len(alerts)} alert rules, "
              f"{len(exprs) - len(alerts)} dashboard/variable queries); "
              f"metric names checked against {len(catalog)} catalog entries + allowlist {sorted(ALLOWED)}")
    if "--dump" in sys.argv:
        json.dump([{"where": w, "expr": e} for w, e in exprs], open(f"{tmp}/exprs.json", "w"), indent=1)

for e in errors:
    print("ERROR", e)
sys.exit(1 if errors else 0)
PY

step "conventions: labels, annotations, runbook_url, test coverage, runbook pages" \
    python3 "$TMP/lint.py" "$ROOT" "$TMP/catalog.json" "$TMP" "$PROMTOOL" conventions
step "every PromQL expression (rules + dashboard) parses and names only catalog metrics; dashboard shape" \
    python3 "$TMP/lint.py" "$ROOT" "$TMP/catalog.json" "$TMP" "$PROMTOOL" exprs

echo
if ((${#failed[@]})); then
    printf 'rules/check.sh: FAILED (%ss): %s\n' "$(($(date +%s) - start_all))" "$(IFS=';'; echo "${failed[*]}")"
    exit 1
fi
echo "rules/check.sh: all checks passed ($(($(date +%s) - start_all))s)"
