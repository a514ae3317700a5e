//! The Helm chart (deploy/helm/lifeboat) rendered by the real `helm template`
//! and its RBAC and admission policy installed on the test apiserver, so
//! tests act with exactly what the chart ships.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::{json, Value};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Helm as deploy/check.sh finds it: $HELM, $LIFEBOAT_HELM, else
/// target/tools/helm, built by scripts/build-helm.sh when missing.
pub fn helm() -> PathBuf {
    for var in ["HELM", "LIFEBOAT_HELM"] {
        if let Some(path) = std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_file()) {
            return path;
        }
    }
    let built = Path::new(ROOT).join("target/tools/helm");
    if !built.is_file() {
        let ok = Command::new(Path::new(ROOT).join("scripts/build-helm.sh")).status().expect("scripts/build-helm.sh runs");
        assert!(ok.success(), "scripts/build-helm.sh failed: set HELM to a helm binary");
    }
    built
}

/// `helm template <release> deploy/helm/lifeboat --namespace <ns>` with
/// `values` (JSON is YAML), as a list of objects.
pub fn render(release: &str, namespace: &str, values: &Value) -> Vec<Value> {
    let file = tempfile::Builder::new().suffix(".yaml").tempfile().expect("values file");
    std::fs::write(file.path(), serde_json::to_vec(values).unwrap()).unwrap();
    let out =
        Command::new(helm()).args(["template", release, &format!("{ROOT}/deploy/helm/lifeboat"), "--namespace", namespace, "-f"]).arg(file.path()).output().expect("helm runs");
    assert!(out.status.success(), "helm template failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text).filter_map(|d| <Option<Value> as serde::Deserialize>::deserialize(d).expect("helm renders YAML")).collect()
}

/// The kinds that say what lifeboat's ServiceAccount may do.
pub const PERMISSION_KINDS: &[&str] =
    &["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"];

/// Applies (server-side, as admin) every object of `objects` whose kind is
/// in PERMISSION_KINDS.
pub async fn install_permissions(admin: &Client, objects: &[Value]) {
    for object in objects.iter().filter(|o| PERMISSION_KINDS.contains(&o["kind"].as_str().unwrap_or_default())) {
        super::k8s::create(admin, object.clone(), None).await;
    }
}

/// Polls until every rule that `objects` bind to the ServiceAccount of
/// `sa_client` is in effect, asked by SelfSubjectAccessReview as that
/// account (one review per rule, in the binding's namespace or cluster-wide).
/// The RBAC authorizer reads Roles and bindings from informer caches
/// (kubernetes v1.35 plugin/pkg/auth/authorizer/rbac), so a binding just
/// created is not in effect yet and a request made at once can get 403.
/// Panics after 90 s, naming the rules still denied.
pub async fn wait_rbac_effective(sa_client: &Client, objects: &[Value]) {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let mut reviews = vec![];
    for binding in objects.iter().filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding") {
        let role_kind = binding["roleRef"]["kind"].as_str().unwrap_or_default();
        let role_name = &binding["roleRef"]["name"];
        let Some(role) = objects.iter().find(|o| o["kind"] == role_kind && o["metadata"]["name"] == *role_name) else { continue };
        for rule in role["rules"].as_array().into_iter().flatten() {
            let first = |key: &str| rule[key][0].as_str().map(String::from);
            let resource = first("resources").unwrap_or_default();
            let (resource, subresource) = resource.split_once('/').map_or((resource.clone(), None), |(r, s)| (r.to_string(), Some(s.to_string())));
            reviews.push(json!({"spec": {"resourceAttributes": {
                "namespace": binding["metadata"]["namespace"], "group": first("apiGroups"), "resource": resource, "subresource": subresource,
                "verb": first("verbs"), "name": first("resourceNames")}}}));
        }
    }
    let api: Api<SelfSubjectAccessReview> = Api::all(sa_client.clone());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut denied = vec![];
        for review in &reviews {
            let review: SelfSubjectAccessReview = serde_json::from_value(review.clone()).unwrap();
            let answer = api.create(&PostParams::default(), &review).await.expect("SelfSubjectAccessReview");
            if !answer.status.is_some_and(|s| s.allowed) {
                denied.push(serde_json::to_string(&review.spec.resource_attributes).unwrap());
            }
        }
        if denied.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "RBAC not in effect after 90s for:\n{}", denied.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Polls until the apiserver enforces the chart's admission policy for the
/// ServiceAccount (policies are compiled and loaded asynchronously): a
/// ConfigMap other than the kill switch, which RBAC lets it create in its
/// namespace, is refused by the policy. Panics after 90 s.
pub async fn wait_policy_enforced(sa_client: &Client, namespace: &str) {
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(sa_client.clone(), namespace);
    let probe: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({"metadata": {"name": "not-the-kill-switch"}})).unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let params = PostParams { dry_run: true, ..Default::default() };
        let last = match maps.create(&params, &probe).await {
            Err(kube::Error::Api(s)) if s.message.contains("ValidatingAdmissionPolicy") => return,
            other => format!("{other:?}"),
        };
        assert!(Instant::now() < deadline, "the admission policy is not enforced after 90s; last answer: {last}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether `result` is a refusal by the chart's admission policy (not by
/// RBAC, not a schema error), with the policy's message.
pub fn denied_by_policy<T: std::fmt::Debug>(result: &Result<T, kube::Error>) -> Result<String, String> {
    match result {
        Err(kube::Error::Api(s)) if s.message.contains("ValidatingAdmissionPolicy") && s.message.contains("denied request") => Ok(s.message.clone()),
        other => Err(format!("{other:?}")),
    }
}
