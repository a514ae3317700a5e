//! A real Kubernetes control plane for the tests: upstream etcd and
//! kube-apiserver (built by scripts/build-control-plane.sh) on free loopback
//! ports, shared by tests that isolate themselves by namespace (and Node/PV
//! names of their namespace's prefix). The CRDs come from the best source for
//! each (tests/support/crds.rs: ../shared/crds, the operators' Go modules,
//! then stand-ins).
//!
//! scripts/test.sh starts one plane for the whole `cargo test` run
//! (tests/control_plane_server.rs, [`run_beside_shared`]) and names it in
//! [`SHARED_PLANE_ENV`]; [`control_plane`] then uses it. Without that
//! variable (`cargo test --test x`), and always for
//! [`control_plane_private`] and [`control_plane_holding_back`], the binary
//! starts a plane of its own, once, shared by its tests.
//!
//! The processes are started from a thread that lives as long as the test
//! binary, with PR_SET_PDEATHSIG, so they die with the binary even when a
//! test panics or the run is interrupted. A start that fails keeps its
//! directory (logs) and the error shows the logs' last lines.
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

use super::crds;

pub const KUBE_VERSION: &str = "v1.35.4";
const ADMIN_TOKEN: &str = "lifeboat-test-admin-token";
/// How long the apiserver may take to answer /readyz. Generous: up to eight
/// test runs share two cores here; a start that exceeds it shows its logs.
const READY_WITHIN: Duration = Duration::from_secs(120);

pub struct ControlPlane {
    pub url: String,
    /// The best CRD source in use (../shared/crds, the module CRDs, or tests/crds
    /// when only stand-ins were found); each CRD's own file is in `crds`.
    pub crd_source: PathBuf,
    /// Installed CRD name -> the file it came from.
    pub crd_origins: std::collections::BTreeMap<String, PathBuf>,
    pub held_back: Vec<String>,
    pub dir: PathBuf,
}

/// Names the file describing the run's shared control plane (written by
/// [`run_beside_shared`]).
pub const SHARED_PLANE_ENV: &str = "LIFEBOAT_TEST_CONTROL_PLANE";
const SHARED_PLANE_FILE: &str = "shared-plane.json";

static PLANE: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

/// A control plane with every CRD installed: the run's shared one when
/// [`SHARED_PLANE_ENV`] names one, else the binary's own.
pub fn control_plane() -> &'static ControlPlane {
    let Some(file) = std::env::var_os(SHARED_PLANE_ENV) else { return control_plane_private() };
    SHARED.get_or_init(|| attach(Path::new(&file))).as_ref().unwrap_or_else(|e| panic!("using the shared control plane: {e}"))
}

/// The binary's own control plane with every CRD installed, for tests that
/// need a cluster no other test binary has written to.
pub fn control_plane_private() -> &'static ControlPlane {
    control_plane_holding_back(&[])
}

/// The binary's own control plane (never the shared one, which has every
/// CRD); the named CRDs (e.g. `mariadbs.k8s.mariadb.com`) are left out so a
/// test can install them later. The first call decides.
/// A failed start fails every test of the binary at once, with the same error.
pub fn control_plane_holding_back(held_back: &[&str]) -> &'static ControlPlane {
    let started = PLANE.get_or_init(|| {
        let held_back: Vec<String> = held_back.iter().map(|s| s.to_string()).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || match start(held_back) {
                Ok((plane, _children)) => {
                    tx.send(Ok(plane)).expect("report control plane");
                    // Children die with this thread (PDEATHSIG): keep it alive.
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => tx.send(Err(e)).expect("report control plane"),
            })
            .expect("spawn control-plane thread");
        rx.recv().expect("control plane thread")
    });
    started.as_ref().unwrap_or_else(|e| panic!("starting the control plane: {e}"))
}

pub fn bin_dir() -> PathBuf {
    let root =
        std::env::var_os("LIFEBOAT_CONTROL_PLANE_DIR").map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/control-plane").join(KUBE_VERSION));
    root.join("bin")
}

/// The data dirs outlive their test binary (it exits without destructors, its
/// processes killed by PDEATHSIG); each run removes those of finished runs,
/// except the ones of failed starts (marked [`FAILED_MARK`]), kept for their logs.
fn remove_dirs_of_finished_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("lifeboat-cp-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() && !entry.path().join(FAILED_MARK).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

const FAILED_MARK: &str = "FAILED-START";
/// Starts whose etcd or apiserver exits at once (a port taken between choosing
/// it and binding it) are retried on new ports this many times.
const ATTEMPTS: usize = 3;

/// A free loopback port below the kernel's ephemeral range
/// (/proc/sys/net/ipv4/ip_local_port_range starts at 32768): a port from
/// `bind(:0)` is an ephemeral one, and once released any outgoing connection
/// on this busy machine may take it before etcd or the apiserver binds it.
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20000 + (h.finish() % 12000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `n` distinct free ports.
fn free_ports<const N: usize>() -> [u16; N] {
    let mut ports = [0; N];
    for i in 0..N {
        ports[i] = loop {
            let p = free_port();
            if !ports[..i].contains(&p) {
                break p;
            }
        };
    }
    ports
}

/// A child killed when dropped (a failed start leaves nothing running).
struct Child(std::process::Child, &'static str);

impl Child {
    fn exited(&mut self) -> Option<String> {
        self.0.try_wait().ok().flatten().map(|status| format!("{} exited ({status})", self.1))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &'static str, bin: &Path, args: &[String], log: &Path) -> Result<Child, String> {
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
    let child = cmd.spawn().map_err(|e| format!("starting {}: {e} (run scripts/build-control-plane.sh)", bin.display()))?;
    Ok(Child(child, name))
}

/// A running control plane and its processes (they stop when this is dropped).
pub struct Started {
    pub plane: ControlPlane,
    children: Vec<Child>,
}

fn start(held_back: Vec<String>) -> Result<(ControlPlane, Vec<Child>), String> {
    let bins = bin_dir();
    for b in ["etcd", "kube-apiserver"] {
        if !bins.join(b).is_file() {
            return Err(format!("{} is missing: run scripts/build-control-plane.sh (scripts/test.sh does)", bins.join(b).display()));
        }
    }
    remove_dirs_of_finished_runs();
    let mut failures = vec![];
    for attempt in 1..=ATTEMPTS {
        let prefix = format!("lifeboat-cp-{}-", std::process::id());
        let dir = tempfile::Builder::new().prefix(&prefix).tempdir().map_err(|e| e.to_string())?.keep();
        match start_in(&dir, free_ports(), held_back.clone()) {
            Ok(started) => return Ok((started.plane, started.children)),
            // A process that exited at once: most likely a port taken meanwhile.
            Err(e) if e.starts_with(EXITED) && attempt < ATTEMPTS => failures.push(e),
            Err(e) => {
                failures.push(e);
                break;
            }
        }
    }
    Err(failures.join("\n\nand before that:\n"))
}

const EXITED: &str = "exited early: ";

/// Starts etcd and kube-apiserver in `dir` on `[etcd client, etcd peer,
/// apiserver]` ports and installs the CRDs. A failure leaves `dir` (marked
/// failed, kept by later runs) and says what failed with the logs' last lines.
pub fn start_in(dir: &Path, ports: [u16; 3], held_back: Vec<String>) -> Result<Started, String> {
    launch(&bin_dir(), dir, ports, held_back).map_err(|e| {
        let _ = std::fs::write(dir.join(FAILED_MARK), &e);
        format!("{e}\n{}\n(the directory {} is kept)", log_tails(dir), dir.display())
    })
}

/// The last lines of etcd's and the apiserver's logs in `dir`.
fn log_tails(dir: &Path) -> String {
    format!("{}\n{}", log_tail(&dir.join("etcd.log"), 20), log_tail(&dir.join("kube-apiserver.log"), 40))
}

/// The last `lines` lines of a log, headed by its path.
fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    format!("----- last lines of {}\n{}", log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
}

fn launch(bins: &Path, dir: &Path, [client_port, peer_port, api_port]: [u16; 3], held_back: Vec<String>) -> Result<Started, String> {
    let began = Instant::now();
    let etcd = spawn(
        "etcd",
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
    std::fs::File::create(&tokens).and_then(|mut f| writeln!(f, "{ADMIN_TOKEN},lifeboat-admin,lifeboat-admin-uid,\"system:masters\"")).map_err(|e| e.to_string())?;
    let keys_made = began.elapsed();
    let apiserver = spawn(
        "kube-apiserver",
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
            // Webhook services are reached at their EndpointSlice (the CNPG operator's, cnpg_operator.rs).
            "--enable-aggregator-routing=true".into(),
            "--profiling=false".into(),
        ],
        &dir.join("kube-apiserver.log"),
    )?;
    let mut children = vec![etcd, apiserver];
    let crds = crds::all()?;
    let stand_ins: Vec<String> = crds::stand_ins(&crds).into_iter().map(String::from).collect();
    let plane = ControlPlane::new(format!("https://127.0.0.1:{api_port}"), &crds, held_back, dir);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let (apiserver_ready, crds_ready) = runtime.block_on(async {
        plane.wait_ready(&mut children).await?;
        let apiserver_ready = began.elapsed();
        let client = plane.admin_client();
        let install: Vec<Value> = crds.into_iter().filter(|c| !plane.held_back.contains(&c.name)).map(|c| c.manifest).collect();
        apply_crds(&client, install).await?;
        Ok::<_, String>((apiserver_ready, began.elapsed()))
    })?;
    eprintln!(
        "control plane {KUBE_VERSION} at {} ready in {:.1}s (keys {:.1}s, apiserver ready at {:.1}s, CRDs established at {:.1}s); CRDs from {}{}; logs in {}",
        plane.url,
        crds_ready.as_secs_f64(),
        keys_made.as_secs_f64(),
        apiserver_ready.as_secs_f64(),
        crds_ready.as_secs_f64(),
        plane.crd_source.display(),
        if stand_ins.is_empty() { String::new() } else { format!(", stand-ins for {}", stand_ins.join(", ")) },
        plane.dir.display()
    );
    Ok(Started { plane, children })
}

impl ControlPlane {
    fn new(url: String, crds: &[crds::Crd], held_back: Vec<String>, dir: &Path) -> ControlPlane {
        let crd_source = crds::upstream_dirs().into_iter().next().unwrap_or_else(crds::stand_in_dir);
        let crd_origins = crds.iter().map(|c| (c.name.clone(), c.origin.clone())).collect();
        ControlPlane { url, crd_source, crd_origins, held_back, dir: dir.to_path_buf() }
    }

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

    /// Until /readyz answers ok, then makes sure `default` exists: the
    /// apiserver's system-namespaces controller creates it once at start and
    /// retries only every minute (kubernetes v1.35.4,
    /// pkg/controlplane/controller/systemnamespaces), so a first attempt lost
    /// to a loaded machine would cost a minute. Fails at once, naming it, if
    /// etcd or the apiserver exits.
    async fn wait_ready(&self, children: &mut [Child]) -> Result<(), String> {
        let client = self.admin_client();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(exited) = children.iter_mut().find_map(Child::exited) {
                return Err(format!("{EXITED}{exited} before the apiserver was ready"));
            }
            if readyz(&client).await.is_ok_and(|body| body.trim() == "ok") {
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let default: Namespace = serde_json::from_value(json!({"metadata": {"name": "default"}})).unwrap();
                match namespaces.create(&PostParams::default(), &default).await {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 409 => return Ok(()),
                    Err(_) => {}
                }
            }
            if Instant::now() > deadline {
                return Err(format!("kube-apiserver not ready after {}s", READY_WITHIN.as_secs()));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Installs one CRD (by name) from the CRD source, e.g. a held-back one.
    pub async fn install_crd(&self, client: &Client, name: &str) {
        let crd = crds::all().expect("CRDs load").into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no CRD {name} in any CRD source"));
        apply_crds(client, vec![crd.manifest]).await.expect("CRD installs");
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

async fn readyz(client: &Client) -> Result<String, kube::Error> {
    client.request_text(http::Request::get("/readyz").body(Vec::new()).unwrap()).await
}

/// The process group [`run_beside_shared`] runs its command in while it
/// runs (0 otherwise), for a signal handler to pass signals on.
pub static COMMAND_GROUP: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// Starts a control plane with every CRD, describes it in a file that
/// [`SHARED_PLANE_ENV`] names to `command`, runs `command` to its end (in a
/// process group of its own, [`COMMAND_GROUP`]) and stops the plane.
/// `command` gets SIGTERM if this thread ends first.
pub fn run_beside_shared(command: &mut Command) -> Result<std::process::ExitStatus, String> {
    let (plane, children) = start(vec![])?;
    let file = plane.dir.join(SHARED_PLANE_FILE);
    let description = json!({"url": plane.url, "dir": plane.dir, "pids": children.iter().map(|c| c.0.id()).collect::<Vec<_>>()});
    std::fs::write(&file, serde_json::to_vec_pretty(&description).unwrap()).map_err(|e| format!("{}: {e}", file.display()))?;
    eprintln!("shared control plane at {}, described in {}", plane.url, file.display());
    // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let status = command.env(SHARED_PLANE_ENV, &file).process_group(0).spawn().and_then(|mut child| {
        COMMAND_GROUP.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
        let status = child.wait();
        COMMAND_GROUP.store(0, std::sync::atomic::Ordering::SeqCst);
        status
    });
    drop(children);
    status.map_err(|e| format!("running {command:?}: {e}"))
}

/// The shared control plane `file` describes, once it answers /readyz;
/// else an error with its logs' last lines.
pub fn attach(file: &Path) -> Result<ControlPlane, String> {
    let named = format!("{} (named by {SHARED_PLANE_ENV})", file.display());
    let text = std::fs::read_to_string(file).map_err(|e| format!("{named}: {e}"))?;
    let description: Value = serde_json::from_str(&text).map_err(|e| format!("{named}: {e}"))?;
    let (Some(url), Some(dir)) = (description["url"].as_str(), description["dir"].as_str()) else {
        return Err(format!("{named} gives no url and dir: {text}"));
    };
    let plane = ControlPlane::new(url.to_string(), &crds::all()?, vec![], Path::new(dir));
    // Its own runtime on its own thread: the caller may be inside a runtime.
    let ready = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                runtime.block_on(async {
                    // A loaded apiserver may answer "not ready" for a while; no answer at all is a dead one.
                    let (client, deadline) = (plane.admin_client(), Instant::now() + READY_WITHIN);
                    loop {
                        match readyz(&client).await {
                            Ok(body) if body.trim() == "ok" => return true,
                            Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
                            _ => return false,
                        }
                    }
                })
            })
            .join()
            .expect("readiness check")
    });
    if !ready {
        return Err(format!("the shared control plane at {url} ({named}) does not answer /readyz\n{}", log_tails(&plane.dir)));
    }
    Ok(plane)
}

/// Server-side applies every CRD (several upstream CRDs exceed the
/// client-side last-applied annotation limit), then waits until all are
/// Established and served, all at once: one apiserver round of OpenAPI
/// rebuilding instead of one per CRD.
async fn apply_crds(client: &Client, crds: Vec<Value>) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in &crds {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default();
        api.patch(name, &PatchParams::apply("lifeboat-tests").force(), &Patch::Apply(crd)).await.map_err(|e| format!("applying CRD {name}: {e}"))?;
    }
    futures::future::try_join_all(crds.iter().map(|crd| wait_served(client, crd))).await?;
    Ok(())
}

async fn wait_served(client: &Client, crd: &Value) -> Result<(), String> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default();
    let versions: Vec<&str> = crd["spec"]["versions"].as_array().map(|v| v.iter().filter(|v| v["served"] == true).filter_map(|v| v["name"].as_str()).collect()).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let established =
            api.get(name).await.ok().and_then(|c| c.status).and_then(|s| s.conditions).is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
        let mut served = established;
        for v in &versions {
            served &= client.list_api_group_resources(&format!("{group}/{v}")).await.is_ok_and(|l| l.resources.iter().any(|r| r.name == plural));
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
