//! A real Kubernetes control plane for the tests: upstream etcd and
//! kube-apiserver (built by scripts/build-control-plane.sh), started once per
//! test binary on free loopback ports, with the real upstream CRDs from
//! ../shared/crds (or LIFEBOAT_CRDS_DIR), falling back to tests/crds when
//! neither exists. Tests isolate themselves by namespace.
//!
//! The processes are started from a thread that lives as long as the test
//! binary, with PR_SET_PDEATHSIG, so they die with the binary even when a
//! test panics or the run is interrupted.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

pub const KUBE_VERSION: &str = "v1.35.4";
const ADMIN_TOKEN: &str = "lifeboat-test-admin-token";

pub struct ControlPlane {
    pub url: String,
    /// Where the CRDs came from (upstream or the fallback stand-ins).
    pub crd_source: PathBuf,
    pub held_back: Vec<String>,
    pub dir: PathBuf,
}

static PLANE: OnceLock<ControlPlane> = OnceLock::new();

/// The binary's control plane with every CRD installed.
pub fn control_plane() -> &'static ControlPlane {
    control_plane_holding_back(&[])
}

/// The binary's control plane; the named CRDs (e.g. `mariadbs.k8s.mariadb.com`)
/// are left out so a test can install them later. The first call decides.
pub fn control_plane_holding_back(held_back: &[&str]) -> &'static ControlPlane {
    PLANE.get_or_init(|| {
        let held_back: Vec<String> = held_back.iter().map(|s| s.to_string()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || {
                let started = start(held_back);
                tx.send(started).expect("report control plane");
                // Children die with this thread (PDEATHSIG): keep it alive.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn control-plane thread");
        rx.recv().expect("control plane thread").unwrap_or_else(|e| panic!("starting the control plane: {e}"))
    })
}

pub fn bin_dir() -> PathBuf {
    let root = std::env::var_os("LIFEBOAT_CONTROL_PLANE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/control-plane").join(KUBE_VERSION));
    root.join("bin")
}

/// Upstream CRDs when available, else the project's stand-ins.
pub fn crd_source() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIFEBOAT_CRDS_DIR") {
        return PathBuf::from(dir);
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/crds");
    if shared.is_dir() {
        return shared;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds")
}

/// The data dirs outlive their test binary (it exits without destructors, its
/// processes killed by PDEATHSIG); each run removes those of finished runs.
fn remove_dirs_of_finished_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("lifeboat-cp-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<(), String> {
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(log_file.try_clone().map_err(|e| e.to_string())?).stderr(log_file);
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("starting {}: {e} (run scripts/build-control-plane.sh)", bin.display()))?;
    Ok(())
}

fn start(held_back: Vec<String>) -> Result<ControlPlane, String> {
    let bins = bin_dir();
    for b in ["etcd", "kube-apiserver"] {
        if !bins.join(b).is_file() {
            return Err(format!("{} is missing: run scripts/build-control-plane.sh (scripts/test.sh does)", bins.join(b).display()));
        }
    }
    remove_dirs_of_finished_runs();
    let prefix = format!("lifeboat-cp-{}-", std::process::id());
    let dir = tempfile::Builder::new().prefix(&prefix).tempdir().map_err(|e| e.to_string())?.keep();
    let (client_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    spawn(
        &bins.join("etcd"),
        &[
            "--name=lifeboat-test".into(),
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=lifeboat-test=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ],
        &dir.join("etcd.log"),
    )?;
    let key = dir.join("sa.key");
    let public = dir.join("sa.pub");
    let ok = Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048").stderr(Stdio::null()).status();
    let ok = ok.and_then(|_| Command::new("openssl").args(["rsa", "-pubout", "-in"]).arg(&key).arg("-out").arg(&public).stderr(Stdio::null()).status());
    if !ok.map(|s| s.success()).unwrap_or(false) {
        return Err("openssl could not generate the service-account key".into());
    }
    let tokens = dir.join("tokens.csv");
    std::fs::File::create(&tokens)
        .and_then(|mut f| writeln!(f, "{ADMIN_TOKEN},lifeboat-admin,lifeboat-admin-uid,\"system:masters\""))
        .map_err(|e| e.to_string())?;
    spawn(
        &bins.join("kube-apiserver"),
        &[
            format!("--etcd-servers=http://127.0.0.1:{client_port}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={api_port}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", public.display()),
            format!("--service-account-signing-key-file={}", key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            // No controller-manager creates the default ServiceAccount.
            "--disable-admission-plugins=ServiceAccount".into(),
            "--enable-priority-and-fairness=false".into(),
        ],
        &dir.join("kube-apiserver.log"),
    )?;
    let plane = ControlPlane { url: format!("https://127.0.0.1:{api_port}"), crd_source: crd_source(), held_back, dir };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        plane.wait_ready().await?;
        let client = plane.admin_client();
        for crd in all_crds(&plane.crd_source)? {
            let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if !plane.held_back.contains(&name) {
                apply_crd(&client, crd).await?;
            }
        }
        Ok::<(), String>(())
    })?;
    eprintln!("control plane {KUBE_VERSION} at {} (CRDs from {}, logs in {})", plane.url, plane.crd_source.display(), plane.dir.display());
    Ok(plane)
}

impl ControlPlane {
    fn config(&self, token: &str) -> kube::Config {
        let mut config = kube::Config::new(self.url.parse().expect("url"));
        config.accept_invalid_certs = true; // self-signed serving cert on loopback
        config.auth_info.token = Some(secrecy::SecretString::from(token.to_string()));
        config.read_timeout = Some(Duration::from_secs(60));
        config
    }

    /// A client in group system:masters. Create it inside the test's runtime.
    pub fn admin_client(&self) -> Client {
        Client::try_from(self.config(ADMIN_TOKEN)).expect("admin client")
    }

    /// Writes a kubeconfig for the admin user (group system:masters) to
    /// `path`, for a lifeboat process started by a test (`KUBECONFIG=path`).
    pub fn write_admin_kubeconfig(&self, path: &Path) {
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "insecure-skip-tls-verify": true}}],
            "users": [{"name": "admin", "user": {"token": ADMIN_TOKEN}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        });
        std::fs::write(path, serde_json::to_vec_pretty(&kubeconfig).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// A client authenticated as `system:serviceaccount:<ns>:<name>` (the
    /// ServiceAccount is created if needed), for least-privilege tests.
    pub async fn service_account_client(&self, ns: &str, name: &str) -> Client {
        let admin = self.admin_client();
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, ns);
        let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        match accounts.create(&PostParams::default(), &sa).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("creating ServiceAccount {ns}/{name}: {e}"),
        }
        let request: TokenRequest = serde_json::from_value(json!({"spec": {"audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3600}})).unwrap();
        let token = accounts.create_token_request(name, &PostParams::default(), &request).await.expect("TokenRequest");
        let token = token.status.expect("token status").token;
        Client::try_from(self.config(&token)).expect("service account client")
    }

    async fn wait_ready(&self) -> Result<(), String> {
        let client = self.admin_client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let request = http::Request::get("/readyz").body(Vec::new()).unwrap();
            if let Ok(body) = client.request_text(request).await {
                if body.trim() == "ok" {
                    let namespaces: Api<Namespace> = Api::all(client.clone());
                    if namespaces.get("default").await.is_ok() {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(format!("kube-apiserver not ready after 90s; see {}", self.dir.join("kube-apiserver.log").display()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Installs one CRD (by name) from the CRD source, e.g. a held-back one.
    pub async fn install_crd(&self, client: &Client, name: &str) {
        let crd = all_crds(&self.crd_source)
            .expect("CRDs load")
            .into_iter()
            .find(|c| c["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no CRD {name} in {}", self.crd_source.display()));
        apply_crd(client, crd).await.expect("CRD installs");
    }

    /// A fresh namespace named `<prefix>-<n>`.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("namespace");
        name
    }
}

/// The operators' CRDs from `source` plus lifeboat's own (deploy/crds).
fn all_crds(source: &Path) -> Result<Vec<Value>, String> {
    let mut crds = load_crds(source)?;
    crds.extend(load_crds(&Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/crds"))?);
    Ok(crds)
}

fn load_crds(source: &Path) -> Result<Vec<Value>, String> {
    let files: Vec<PathBuf> = if source.is_dir() {
        let mut f: Vec<PathBuf> = std::fs::read_dir(source)
            .map_err(|e| format!("{}: {e}", source.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        f.sort();
        f
    } else {
        vec![source.to_path_buf()]
    };
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).map_err(|e| format!("{}: {e}", file.display()))?;
            if value["kind"] == "CustomResourceDefinition" {
                out.push(value);
            }
        }
    }
    Ok(out)
}

/// Server-side apply (several upstream CRDs exceed the client-side
/// last-applied annotation limit), then wait until Established and served.
async fn apply_crd(client: &Client, crd: Value) -> Result<(), String> {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(&name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(&crd))
        .await
        .map_err(|e| format!("applying CRD {name}: {e}"))?;
    let group = crd["spec"]["group"].as_str().unwrap_or_default().to_string();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
    let versions: Vec<String> = crd["spec"]["versions"]
        .as_array()
        .map(|v| v.iter().filter(|v| v["served"] == true).filter_map(|v| v["name"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let established = api
            .get(&name)
            .await
            .ok()
            .and_then(|c| c.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        let mut served = established;
        for v in &versions {
            served &= client
                .list_api_group_resources(&format!("{group}/{v}"))
                .await
                .is_ok_and(|l| l.resources.iter().any(|r| r.name == plural));
        }
        if served {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("CRD {name} not established/served after 60s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
