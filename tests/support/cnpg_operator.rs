//! The real CloudNativePG operator (cloudnative-pg v1.30.0, `manager
//! controller`, built by scripts/build-cnpg-operator.sh from its Go module)
//! run out-of-cluster against the test apiserver, once per test binary.
//!
//! What it is given, read from upstream v1.30.0:
//! * flags (`internal/cmd/manager/controller/cmd.go`): leader election off,
//!   metrics off (`--metrics-bind-address=0`), the webhook server on a free port;
//! * env (`internal/configuration/configuration.go`): `OPERATOR_NAMESPACE`;
//!   a kubeconfig (controller-runtime `GetConfigOrDie`) with a token of the
//!   `cnpg-manager` ServiceAccount, bound to upstream's ClusterRole
//!   (`config/rbac`); its CRDs: those the harness lacks come from the
//!   module's `config/crd/bases`;
//! * its PKI as it makes it (`internal/cmd/manager/controller/controller.go`
//!   ensurePKI, `pkg/certs/k8s.go`): it creates `cnpg-ca-secret` and
//!   `cnpg-webhook-cert` in its namespace, then waits until the kubelet has
//!   mounted the latter at the fixed `/run/secrets/cnpg.io/webhook`
//!   (ensureMountedSecretsAreInSync). The operator runs in a private mount
//!   namespace (`unshare -m`) with its own tmpfs on `/run`, and the harness
//!   plays the kubelet's secret volume by writing the secret's keys there
//!   (through `/proc/<pid>/root`), so parallel runs never share the path;
//! * its webhooks: upstream's `config/webhook/manifests.yaml` (kustomized names
//!   `cnpg-{mutating,validating}-webhook-configuration`, service
//!   `cnpg-webhook-service`), registered before it starts; it injects the
//!   caBundle itself (injectPublicKeyInto*Webhook). The apiserver reaches the
//!   service through its EndpointSlice (`--enable-aggregator-routing`,
//!   controlplane.rs) at this machine's first non-loopback address, where the
//!   operator's webhook server listens (it binds every address).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use kube::api::{Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};

use super::controlplane::ControlPlane;
use super::k8s::{api_for, create};
use super::process::Process;

pub const VERSION: &str = "v1.30.0";
pub const MODULE: &str = "github.com/cloudnative-pg/cloudnative-pg";
pub const NAMESPACE: &str = "cnpg-system";
/// `WebhookSecretName` and the mount path (controller.go).
const WEBHOOK_SECRET: &str = "cnpg-webhook-cert";
const WEBHOOK_CERT_DIR: &str = "/run/secrets/cnpg.io/webhook";
const WEBHOOK_SERVICE: &str = "cnpg-webhook-service";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The manager binary: `LIFEBOAT_CNPG_OPERATOR`, else target/cnpg-operator/<version>/manager,
/// built by scripts/build-cnpg-operator.sh when missing. `None` only when Go is
/// missing (the caller skips, loudly); a failed build with Go present panics.
pub fn manager_binary() -> Option<PathBuf> {
    static BINARY: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let path = std::env::var_os("LIFEBOAT_CNPG_OPERATOR").map(PathBuf::from).unwrap_or_else(|| repo().join("target/cnpg-operator").join(VERSION).join("manager"));
            if path.is_file() {
                return Some(path);
            }
            if Command::new("go").arg("version").output().is_err() {
                return None;
            }
            let status = Command::new(repo().join("scripts/build-cnpg-operator.sh")).env("LIFEBOAT_CNPG_OPERATOR", &path).status().expect("scripts/build-cnpg-operator.sh runs");
            assert!(status.success() && path.is_file(), "scripts/build-cnpg-operator.sh failed ({status}): no {}", path.display());
            Some(path)
        })
        .clone()
}

/// The skip message when Go is missing.
pub fn skip_without_go(test: &str) -> bool {
    if manager_binary().is_some() {
        return false;
    }
    eprintln!("\n!!!!!!!! SKIPPED {test}: Go is not installed, so the CloudNativePG operator {VERSION} cannot be built (scripts/build-cnpg-operator.sh) !!!!!!!!\n");
    true
}

/// The running operator of this test binary.
pub struct Operator {
    pub pid: u32,
    pub log: PathBuf,
    /// Ok when its admission webhooks are registered and serve; else why it runs without them.
    pub webhooks: Result<(), String>,
}

impl Operator {
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("----- last lines of the CNPG operator log {}\n{}", self.log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }

    /// Panics with its log if the operator process exited.
    pub fn assert_alive(&self) {
        if !Path::new(&format!("/proc/{}", self.pid)).exists() {
            panic!("the CNPG operator exited\n{}", self.log_tail(60));
        }
    }
}

static OPERATOR: OnceLock<Result<Operator, String>> = OnceLock::new();

/// Starts the operator once (from a thread that lives as long as the test
/// binary: the process dies with it, PR_SET_PDEATHSIG) and waits until it
/// serves its webhooks, or, without webhooks, until it has made its PKI.
pub fn operator(cp: &'static ControlPlane) -> &'static Operator {
    let started = OPERATOR.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("cnpg-operator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                match runtime.block_on(start(cp)) {
                    Ok((process, operator)) => {
                        tx.send(Ok(operator)).expect("report operator");
                        // The process dies with this thread (PDEATHSIG): keep it alive.
                        let _process = process;
                        loop {
                            std::thread::park();
                        }
                    }
                    Err(e) => tx.send(Err(e)).expect("report operator"),
                }
            })
            .expect("spawn operator thread");
        rx.recv().expect("operator thread")
    });
    started.as_ref().unwrap_or_else(|e| panic!("starting the CNPG operator: {e}"))
}

async fn start(cp: &ControlPlane) -> Result<(Process, Operator), String> {
    let manager = manager_binary().ok_or("Go is missing")?;
    let client = cp.admin_client();
    let dir = cp.dir.join("cnpg-operator");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    install_missing_crds(&client, cp).await?;
    create(&client, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}), None).await;
    let token = install_rbac(&client).await?;
    install_deployment(&client).await?;
    let kubeconfig = dir.join("kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "test", "cluster": {"server": cp.url, "insecure-skip-tls-verify": true}}],
        "users": [{"name": "cnpg-manager", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "test", "user": "cnpg-manager"}}],
    });
    std::fs::write(&kubeconfig, serde_json::to_vec_pretty(&config).unwrap()).map_err(|e| e.to_string())?;
    let port = super::process::free_port();
    let webhooks = match local_address() {
        Some(address) => register_webhooks(&client, &address, port).await,
        None => Err("this machine has no non-loopback IPv4 address the apiserver could reach the webhook server at".into()),
    };
    if let Err(why) = &webhooks {
        eprintln!("WARNING: the CNPG operator runs WITHOUT admission webhooks: {why}");
    }
    // The image's layout (Dockerfile: WORKDIR /, the binaries in operator/manager_<arch>):
    // the operator finds the instance manager of each architecture there (pkg/utils/discovery.go).
    let arch = dir.join("operator").join(format!("manager_{}", go_arch()));
    std::fs::create_dir_all(dir.join("operator")).map_err(|e| e.to_string())?;
    if !arch.exists() {
        std::os::unix::fs::symlink(&manager, &arch).map_err(|e| format!("{}: {e}", arch.display()))?;
    }
    let mut command = Command::new("unshare");
    // A private /run: the operator's fixed webhook cert dir is its own.
    command
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("mount -t tmpfs tmpfs /run && mkdir -p {WEBHOOK_CERT_DIR} && exec \"$0\" \"$@\""))
        .arg(&manager)
        .args(["controller", "--leader-elect=false", "--metrics-bind-address=0", &format!("--webhook-port={port}")])
        .current_dir(&dir)
        .env("KUBECONFIG", &kubeconfig)
        .env("OPERATOR_NAMESPACE", NAMESPACE)
        .env("MANAGE_WEBHOOK_CONFIGURATIONS", if webhooks.is_ok() { "true" } else { "false" });
    // The log outlives the control plane's directory (removed once the run ends), for failures.
    let logs = repo().join("target/cnpg-operator/logs");
    std::fs::create_dir_all(&logs).map_err(|e| e.to_string())?;
    let process = Process::spawn("cnpg-operator", command, &logs.join(format!("operator-{}.log", std::process::id())));
    let pid = process.id();
    let operator = Operator { pid, log: process.log.clone(), webhooks };
    mount_webhook_secret(&client, &operator).await?;
    if operator.webhooks.is_ok() {
        wait_webhooks_served(&client, &operator).await?;
    }
    eprintln!("CNPG operator {VERSION} (pid {pid}) running against {}; log {}", cp.url, operator.log.display());
    Ok((process, operator))
}

/// Upstream's RBAC (config/rbac/role.yaml and role_binding.yaml with
/// config/default's `cnpg-` prefix): the ClusterRole bound to the
/// `cnpg-manager` ServiceAccount the operator's Deployment runs as. Returns a
/// token of that account: the operator acts with exactly these rights.
async fn install_rbac(client: &Client) -> Result<String, String> {
    let file = module_dir().ok_or("the operator's Go module is not in the module cache")?.join("config/rbac/role.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut role: Value = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    role["metadata"]["name"] = json!("cnpg-manager");
    let roles = api_for(client, "rbac.authorization.k8s.io/v1", "ClusterRole", None).await;
    roles.patch("cnpg-manager", &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&role)).await.map_err(|e| format!("ClusterRole cnpg-manager: {e}"))?;
    create(client, json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "cnpg-manager", "namespace": NAMESPACE}}), None).await;
    create(
        client,
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "cnpg-manager-rolebinding"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cnpg-manager"},
        "subjects": [{"kind": "ServiceAccount", "name": "cnpg-manager", "namespace": NAMESPACE}]}),
        None,
    )
    .await;
    let accounts: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let request: k8s_openapi::api::authentication::v1::TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 86400}})).unwrap();
    let token = accounts.create_token_request("cnpg-manager", &Default::default(), &request).await.map_err(|e| format!("TokenRequest for cnpg-manager: {e}"))?;
    Ok(token.status.ok_or("no token")?.token)
}

/// The operator's Deployment (config/manager/manager.yaml, `cnpg-` prefixed):
/// nothing runs its pods here (the operator is this harness's process), but
/// the operator looks it up by `app.kubernetes.io/name=cloudnative-pg` to own
/// its CA secret (`pkg/certs/operator_deployment.go`) and fails without it.
async fn install_deployment(client: &Client) -> Result<(), String> {
    let file = module_dir().ok_or("the operator's Go module is not in the module cache")?.join("config/manager/manager.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut object: Value = serde::Deserialize::deserialize(doc).map_err(|e| format!("{}: {e}", file.display()))?;
        if object["kind"] != "Deployment" {
            continue;
        }
        object["metadata"]["name"] = json!(format!("cnpg-{}", object["metadata"]["name"].as_str().unwrap_or_default()));
        object["metadata"]["namespace"] = json!(NAMESPACE);
        object["spec"]["template"]["spec"]["serviceAccountName"] = json!("cnpg-manager");
        create(client, object, None).await;
        return Ok(());
    }
    Err(format!("no Deployment in {}", file.display()))
}

/// The operator watches every kind of its group (Pooler, Database,
/// DatabaseRole, ImageCatalog, ...), and the harness installs only those
/// lifeboat reads: the rest come from the module's `config/crd/bases`.
async fn install_missing_crds(client: &Client, cp: &ControlPlane) -> Result<(), String> {
    let bases = module_dir().ok_or("the operator's Go module is not in the module cache")?.join("config/crd/bases");
    let crds = api_for(client, "apiextensions.k8s.io/v1", "CustomResourceDefinition", None).await;
    let missing: Vec<super::crds::Crd> = super::crds::load(&bases)?.into_iter().filter(|c| !cp.crd_origins.contains_key(&c.name)).collect();
    for crd in &missing {
        crds.patch(&crd.name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&crd.manifest)).await.map_err(|e| format!("applying CRD {}: {e}", crd.name))?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for crd in &missing {
        loop {
            let current = serde_json::to_value(crds.get(&crd.name).await.map_err(|e| e.to_string())?).unwrap();
            if current["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True")) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!("CRD {} not established after 60s", crd.name));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// GOARCH of this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The first non-loopback IPv4 address of this machine (`hostname -I`).
fn local_address() -> Option<String> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout).split_whitespace().find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback() && !ip.is_link_local())).map(String::from)
}

/// The upstream module's directory in the Go module cache (the build downloaded it).
pub fn module_dir() -> Option<PathBuf> {
    let out = Command::new("go").args(["env", "GOMODCACHE"]).output().ok()?;
    let cache = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let dir = Path::new(&cache).join(format!("{MODULE}@{VERSION}"));
    dir.is_dir().then_some(dir)
}

/// Registers upstream's webhook configurations (config/webhook/manifests.yaml
/// with config/default's `cnpg-` name prefix and `cnpg-system` namespace), the
/// webhook Service (config/webhook/service.yaml: port 443 to the webhook
/// port) and, as the EndpointSlice controller would for the operator's pod,
/// its EndpointSlice at `address`.
async fn register_webhooks(client: &Client, address: &str, port: u16) -> Result<(), String> {
    let manifests = module_dir().ok_or("the operator's Go module is not in the module cache")?.join("config/webhook/manifests.yaml");
    let text = std::fs::read_to_string(&manifests).map_err(|e| format!("{}: {e}", manifests.display()))?;
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let mut config: Value = serde::Deserialize::deserialize(doc).map_err(|e| format!("{}: {e}", manifests.display()))?;
        let name = format!("cnpg-{}", config["metadata"]["name"].as_str().unwrap_or_default());
        config["metadata"]["name"] = json!(name);
        for hook in config["webhooks"].as_array_mut().into_iter().flatten() {
            hook["clientConfig"]["service"]["name"] = json!(WEBHOOK_SERVICE);
            hook["clientConfig"]["service"]["namespace"] = json!(NAMESPACE);
        }
        let kind = config["kind"].as_str().unwrap_or_default().to_string();
        let api = api_for(client, "admissionregistration.k8s.io/v1", &kind, None).await;
        api.patch(&name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&config)).await.map_err(|e| format!("registering {kind} {name}: {e}"))?;
    }
    create(
        client,
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": WEBHOOK_SERVICE, "namespace": NAMESPACE},
        "spec": {"ports": [{"port": 443, "targetPort": port, "name": "webhook-server"}], "selector": {"app.kubernetes.io/name": "cloudnative-pg"}}}),
        None,
    )
    .await;
    create(
        client,
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{WEBHOOK_SERVICE}-1"), "namespace": NAMESPACE, "labels": {"kubernetes.io/service-name": WEBHOOK_SERVICE}},
        "addressType": "IPv4", "ports": [{"name": "webhook-server", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {"ready": true, "serving": true, "terminating": false}}]}),
        None,
    )
    .await;
    Ok(())
}

/// Plays the kubelet's secret volume: once the operator made `cnpg-webhook-cert`,
/// its keys become files in the operator's webhook cert dir.
async fn mount_webhook_secret(client: &Client, operator: &Operator) -> Result<(), String> {
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client.clone(), NAMESPACE);
    let dir = PathBuf::from(format!("/proc/{}/root{WEBHOOK_CERT_DIR}", operator.pid));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if !Path::new(&format!("/proc/{}", operator.pid)).exists() {
            return Err(format!("the operator exited before its webhook certificate was made\n{}", operator.log_tail(40)));
        }
        if let Some(secret) = secrets.get_opt(WEBHOOK_SECRET).await.map_err(|e| e.to_string())? {
            if dir.is_dir() {
                for (key, value) in secret.data.unwrap_or_default() {
                    std::fs::write(dir.join(&key), value.0).map_err(|e| format!("{}: {e}", dir.join(&key).display()))?;
                }
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("no {WEBHOOK_SECRET} secret after 120s\n{}", operator.log_tail(40)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Until a dry-run Cluster is admitted through the webhooks (the mutating one defaults it).
async fn wait_webhooks_served(client: &Client, operator: &Operator) -> Result<(), String> {
    let clusters = api_for(client, "postgresql.cnpg.io/v1", "Cluster", Some(NAMESPACE)).await;
    let probe = json!({"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "webhook-probe", "namespace": NAMESPACE},
        "spec": {"instances": 1, "storage": {"size": "1Gi"}}});
    let params = kube::api::PostParams { dry_run: true, ..Default::default() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let object: kube::api::DynamicObject = serde_json::from_value(probe.clone()).unwrap();
        match clusters.create(&params, &object).await {
            Ok(admitted) => {
                let admitted = serde_json::to_value(admitted).unwrap();
                if admitted["spec"]["imageName"].is_string() || admitted["spec"]["postgresUID"].is_number() {
                    return Ok(());
                }
                return Err(format!("a Cluster was admitted without the mutating webhook's defaults: {admitted}"));
            }
            Err(e) if tokio::time::Instant::now() > deadline => return Err(format!("the webhooks never admitted a Cluster: {e}\n{}", operator.log_tail(40))),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
        if !Path::new(&format!("/proc/{}", operator.pid)).exists() {
            return Err(format!("the operator exited\n{}", operator.log_tail(40)));
        }
    }
}
