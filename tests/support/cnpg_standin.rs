//! What the real CloudNativePG operator (cnpg_operator.rs) needs around it to
//! reconcile on the test apiserver, played for one namespace: the scheduler,
//! the local-volume provisioner, the kubelets, the Job, EndpointSlice and
//! pvc-protection controllers, and, inside each instance pod, PostgreSQL with
//! CNPG's instance manager. Each part cites what it answers for.
//!
//! * Provisioner + PV controller: a claim without a volume gets a PV pinned
//!   (nodeAffinity `kubernetes.io/hostname`) to the Ready node holding the
//!   fewest of the namespace's volumes (the operator's default preferred pod
//!   anti-affinity spreads instances, `pkg/specs/pods.go`), and is bound.
//! * Scheduler: an instance pod goes to its PGDATA claim's node
//!   (`pods/binding`); while that node is not Ready it stays Pending,
//!   PodScheduled=False/Unschedulable.
//! * Kubelet: a bound pod on a Ready node becomes Running and Ready with a
//!   distinct loopback `status.podIP` (127.x.y.z), where its instance manager
//!   listens. A node that is lost stops answering: its pods are marked
//!   Ready=False (node lifecycle controller, reason NodeNotReady) and their
//!   instance managers stop serving; a pod being deleted on a Ready node is
//!   removed once "stopped".
//! * Job controller and garbage collector: the operator's initdb/join Jobs complete
//!   (`status.succeeded` = completions, what `pkg/utils/job_conditions.go`
//!   JobHasOneCompletion reads, with the Complete/SuccessCriteriaMet
//!   conditions kubernetes v1.35's job status validation asks for); the
//!   foreground deletion of a completed Job (no pods) finishes.
//! * pvc-protection controller: a Terminating claim loses its
//!   `kubernetes.io/pvc-protection` finalizer once no pod uses it.
//! * EndpointSlice controller: every Service with a selector gets a slice of
//!   the matching pods, `ready` as the pod is. The pods' loopback IPs are
//!   refused in EndpointSlices (kubernetes v1.35 `ValidateEndpointIP`), so
//!   the slice carries a TEST-NET-2 address per pod; the targetRef names it.
//! * Instance manager, `/pg/status` on port 8000 over TLS 1.3 (the operator's
//!   client: `pkg/management/postgres/webserver/client/remote/instance.go`,
//!   HTTPS because the pod's postgres command has `--status-port-tls`,
//!   `pkg/specs/pods.go`; it checks the server certificate against the
//!   cluster's server CA only, `pkg/certs/tls.go`): served with the cluster's
//!   `<cluster>-server` certificate, the answer a healthy instance gives
//!   (`pkg/postgres/status.go` PostgresqlStatus: isPrimary, LSNs the test
//!   sets, isWalReceiverActive, timeLineID, a non-empty executableHash).
//!   What it writes to the Cluster (`internal/management/controller/`):
//!   the first primary sets `currentPrimary` (instance_startup.go); the
//!   instance named `targetPrimary` promotes itself once its WAL receiver is
//!   down and sets `currentPrimary` (instance_controller.go reconcilePrimary,
//!   handlePromotion). A replica's WAL receiver is active while the primary
//!   it streams from serves.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::k8s::{api_for, create, rfc3339};

const CNPG: &str = "postgresql.cnpg.io/v1";
/// `url.StatusPort` (`pkg/management/url/url.go`).
const STATUS_PORT: u16 = 8000;
/// `apiv1.PendingFailoverMarker`.
const PENDING: &str = "pending";
const TICK: Duration = Duration::from_millis(200);

/// PostgreSQL as its instance manager reports it.
#[derive(Clone, Debug)]
pub struct Postgres {
    pub primary: bool,
    pub timeline: u32,
    /// Received (replica) or current (primary) WAL position.
    pub lsn: u64,
    pub wal_receiver: bool,
}

struct Instance {
    ns: String,
    pod: String,
    cluster: String,
    node: String,
    ip: Ipv4Addr,
    pg: Postgres,
    server: Option<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct Shared {
    /// By pod uid.
    instances: HashMap<String, Instance>,
    /// Received LSNs the test set, by pod name.
    lsns: HashMap<String, u64>,
    /// While set, the operator gets no answer from any instance (a network
    /// between the operator and the pods that drops its requests).
    unreachable: bool,
}

/// The stand-in for one namespace; stops when dropped.
pub struct StandIn {
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
    run: tokio::task::AbortHandle,
    panicked: Arc<Mutex<Option<String>>>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.run.abort();
        self.task.abort();
        for i in self.shared.lock().unwrap().instances.values() {
            if let Some(s) = &i.server {
                s.abort();
            }
        }
    }
}

impl StandIn {
    /// Plays namespace `ns`, placing volumes on `nodes`.
    pub fn spawn(client: Client, ns: &str, nodes: Vec<String>, executable_hash: String) -> Self {
        let shared: Arc<Mutex<Shared>> = Arc::default();
        let panicked: Arc<Mutex<Option<String>>> = Arc::default();
        let world = World { client, ns: ns.to_string(), nodes, shared: shared.clone(), executable_hash: Arc::new(executable_hash) };
        let flag = panicked.clone();
        let run = tokio::spawn(async move {
            loop {
                world.tick().await;
                tokio::time::sleep(TICK).await;
            }
        });
        let run_abort = run.abort_handle();
        let task = tokio::spawn(async move {
            if let Err(e) = run.await {
                if e.is_panic() {
                    *flag.lock().unwrap() = Some(format!("{e:?}"));
                }
            }
        });
        StandIn { shared, task, run: run_abort, panicked }
    }

    pub fn assert_alive(&self) {
        if let Some(p) = self.panicked.lock().unwrap().as_ref() {
            panic!("the CNPG stand-in panicked: {p}");
        }
    }

    /// What `pod`'s instance manager reports as its received WAL position.
    pub fn set_lsn(&self, pod: &str, lsn: u64) {
        let mut shared = self.shared.lock().unwrap();
        shared.lsns.insert(pod.to_string(), lsn);
        for i in shared.instances.values_mut().filter(|i| i.pod == pod) {
            i.pg.lsn = lsn;
        }
    }

    /// Whether the operator's requests to the instance managers get answered.
    pub fn set_operator_reachable(&self, reachable: bool) {
        self.shared.lock().unwrap().unreachable = !reachable;
    }

    /// The reported state of the instance pod `pod`, if it runs.
    pub fn postgres(&self, pod: &str) -> Option<Postgres> {
        self.shared.lock().unwrap().instances.values().find(|i| i.pod == pod && i.server.is_some()).map(|i| i.pg.clone())
    }
}

#[derive(Clone)]
struct World {
    client: Client,
    ns: String,
    nodes: Vec<String>,
    shared: Arc<Mutex<Shared>>,
    executable_hash: Arc<String>,
}

fn name(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or_default().to_string()
}
fn terminating(o: &Value) -> bool {
    o["metadata"]["deletionTimestamp"].is_string()
}
fn condition_true(o: &Value, kind: &str) -> bool {
    o["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}
fn claims(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"].as_array().map_or(vec![], |vs| vs.iter().filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(String::from)).collect())
}
fn pinned_node(pv: &Value) -> Option<String> {
    pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0].as_str().map(String::from)
}
/// `pgTime.GetCurrentTimestamp()` format (machinery `pkg/postgres/time`).
fn pg_timestamp() -> String {
    Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

struct View {
    nodes_ready: BTreeMap<String, bool>,
    pvs: Vec<Value>,
    pvcs: Vec<Value>,
    pods: Vec<Value>,
    jobs: Vec<Value>,
    services: Vec<Value>,
    clusters: Vec<Value>,
}

impl World {
    async fn list(&self, api_version: &str, kind: &str, namespaced: bool) -> Vec<Value> {
        let api = api_for(&self.client, api_version, kind, namespaced.then_some(self.ns.as_str())).await;
        api.list(&Default::default()).await.map(|l| l.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect()).unwrap_or_default()
    }

    async fn view(&self) -> View {
        let nodes = self.list("v1", "Node", false).await;
        let nodes_ready = nodes.iter().map(|n| (name(n), condition_true(n, "Ready"))).collect();
        View {
            nodes_ready,
            pvs: self.list("v1", "PersistentVolume", false).await,
            pvcs: self.list("v1", "PersistentVolumeClaim", true).await,
            pods: self.list("v1", "Pod", true).await,
            jobs: self.list("batch/v1", "Job", true).await,
            services: self.list("v1", "Service", true).await,
            clusters: self.list(CNPG, "Cluster", true).await,
        }
    }

    async fn tick(&self) {
        let view = self.view().await;
        self.provision(&view).await;
        self.protect_pvcs(&view).await;
        self.complete_jobs(&view).await;
        self.run_pods(&view).await;
        self.publish_endpoints(&view).await;
        self.instance_managers(&view).await;
    }

    async fn provision(&self, view: &View) {
        let claims_api = api_for(&self.client, "v1", "PersistentVolumeClaim", Some(&self.ns)).await;
        for claim in view.pvcs.iter().filter(|c| c["spec"]["volumeName"].as_str().is_none_or(str::is_empty) && !terminating(c)) {
            let live: HashSet<String> = view.pvcs.iter().map(name).collect();
            let mut load: BTreeMap<&String, usize> = self.nodes.iter().filter(|n| view.nodes_ready.get(*n) == Some(&true)).map(|n| (n, 0)).collect();
            for pv in
                view.pvs.iter().filter(|pv| pv["spec"]["claimRef"]["namespace"] == self.ns.as_str() && pv["spec"]["claimRef"]["name"].as_str().is_some_and(|c| live.contains(c)))
            {
                if let Some(count) = pinned_node(pv).and_then(|n| load.keys().find(|k| ***k == n).copied()).and_then(|k| load.get_mut(k)) {
                    *count += 1;
                }
            }
            let Some(node) = load.iter().min_by_key(|(n, c)| (**c, (**n).clone())).map(|(n, _)| (*n).clone()) else { continue };
            let (claim_name, uid) = (name(claim), claim["metadata"]["uid"].as_str().unwrap_or_default().to_string());
            let size = if claim["spec"]["resources"]["requests"]["storage"].is_null() { json!("1Gi") } else { claim["spec"]["resources"]["requests"]["storage"].clone() };
            let volume = format!("pvc-{uid}");
            create(
                &self.client,
                json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                "spec": {"capacity": {"storage": size}, "accessModes": claim["spec"]["accessModes"], "persistentVolumeReclaimPolicy": "Delete",
                         "local": {"path": format!("/var/local/{volume}")},
                         "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": self.ns, "name": claim_name, "uid": uid},
                         "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                "status": {"phase": "Bound"}}),
                None,
            )
            .await;
            let bind = json!({"metadata": {"annotations": {"pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/selected-node": node}}, "spec": {"volumeName": volume}});
            if claims_api.patch(&claim_name, &PatchParams::default(), &Patch::Merge(&bind)).await.is_ok() {
                let status = json!({"status": {"phase": "Bound", "accessModes": claim["spec"]["accessModes"], "capacity": {"storage": size}}});
                let _ = claims_api.patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(&status)).await;
            }
            return; // one per tick: the next sees this one's load
        }
    }

    async fn protect_pvcs(&self, view: &View) {
        let claims_api = api_for(&self.client, "v1", "PersistentVolumeClaim", Some(&self.ns)).await;
        for claim in view.pvcs.iter().filter(|c| terminating(c)) {
            let used = view.pods.iter().any(|p| claims(p).contains(&name(claim)));
            let finalizers: Vec<Value> = claim["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if used || !finalizers.iter().any(|f| f == "kubernetes.io/pvc-protection") {
                continue;
            }
            let rest: Vec<Value> = finalizers.into_iter().filter(|f| f != "kubernetes.io/pvc-protection").collect();
            let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": claim["metadata"]["resourceVersion"]}});
            let _ = claims_api.patch(&name(claim), &PatchParams::default(), &Patch::Merge(&patch)).await;
        }
    }

    async fn complete_jobs(&self, view: &View) {
        let jobs_api = api_for(&self.client, "batch/v1", "Job", Some(&self.ns)).await;
        // The garbage collector finishes the foreground deletion the operator asks for
        // (cluster_cleanup.go cleanupCompletedJobs): these Jobs have no pods left.
        for job in view.jobs.iter().filter(|j| terminating(j)) {
            let finalizers: Vec<Value> = job["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if finalizers.iter().any(|f| f == "foregroundDeletion") {
                let rest: Vec<Value> = finalizers.into_iter().filter(|f| f != "foregroundDeletion").collect();
                let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": job["metadata"]["resourceVersion"]}});
                let _ = jobs_api.patch(&name(job), &PatchParams::default(), &Patch::Merge(&patch)).await;
            }
        }
        for job in view.jobs.iter().filter(|j| !terminating(j) && !condition_true(j, "Complete")) {
            let started = job["metadata"]["creationTimestamp"].clone();
            let now = rfc3339(Utc::now());
            let cond = |t: &str, reason: &str| json!({"type": t, "status": "True", "reason": reason, "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now});
            let status = json!({"status": {"startTime": started, "completionTime": now, "succeeded": job["spec"]["completions"].as_i64().unwrap_or(1), "active": 0, "ready": 0, "terminating": 0,
                "uncountedTerminatedPods": {}, "conditions": [cond("SuccessCriteriaMet", "CompletionsReached"), cond("Complete", "CompletionsReached")]}});
            if let Err(e) = jobs_api.patch_status(&name(job), &PatchParams::default(), &Patch::Merge(&status)).await {
                eprintln!("stand-in: completing Job {}: {e}", name(job));
            }
        }
    }

    fn pod_node(&self, view: &View, pod: &Value) -> Option<String> {
        let claim = claims(pod).into_iter().find(|c| *c == name(pod))?;
        let volume = view.pvcs.iter().find(|c| name(c) == claim)?["spec"]["volumeName"].as_str()?.to_string();
        pinned_node(view.pvs.iter().find(|pv| name(pv) == volume)?)
    }

    async fn run_pods(&self, view: &View) {
        let pods_api = api_for(&self.client, "v1", "Pod", Some(&self.ns)).await;
        let live: HashSet<String> = view.pods.iter().filter_map(|p| p["metadata"]["uid"].as_str().map(String::from)).collect();
        {
            let mut shared = self.shared.lock().unwrap();
            let gone: Vec<String> = shared.instances.keys().filter(|uid| !live.contains(*uid)).cloned().collect();
            for uid in gone {
                if let Some(s) = shared.instances.remove(&uid).and_then(|i| i.server) {
                    s.abort();
                }
            }
        }
        for pod in view.pods.iter().filter(|p| p["metadata"]["labels"]["cnpg.io/podRole"] == "instance") {
            let (pod_name, uid) = (name(pod), pod["metadata"]["uid"].as_str().unwrap_or_default().to_string());
            let node = pod["spec"]["nodeName"].as_str().map(String::from);
            let node_ready = node.as_ref().is_some_and(|n| view.nodes_ready.get(n) == Some(&true));
            if terminating(pod) {
                // The kubelet stops the containers and removes the pod; a lost node's kubelet does nothing.
                if node_ready || node.is_none() {
                    self.stop(&uid);
                    let _ = pods_api.delete(&pod_name, &kube::api::DeleteParams::default().grace_period(0)).await;
                }
                continue;
            }
            let Some(node) = node else {
                match self.pod_node(view, pod) {
                    Some(target) if view.nodes_ready.get(&target) == Some(&true) => {
                        let binding =
                            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod_name}, "target": {"apiVersion": "v1", "kind": "Node", "name": target}});
                        let request = http::Request::post(format!("/api/v1/namespaces/{}/pods/{pod_name}/binding", self.ns))
                            .header("content-type", "application/json")
                            .body(serde_json::to_vec(&binding).unwrap())
                            .unwrap();
                        if let Err(e) = self.client.request_text(request).await {
                            eprintln!("stand-in: binding pod {pod_name} to {target}: {e}");
                        }
                    }
                    Some(_) if pod["status"]["phase"] != "Pending" => {
                        let now = rfc3339(Utc::now());
                        let status = json!({"status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available: 1 node(s) had volume node affinity conflict.", "lastTransitionTime": now, "lastProbeTime": null}]}});
                        let _ = pods_api.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&status)).await;
                    }
                    _ => {}
                }
                continue;
            };
            if !node_ready {
                self.stop(&uid);
                if condition_true(pod, "Ready") {
                    let mut conditions: Vec<Value> = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
                    let now = rfc3339(Utc::now());
                    for c in conditions.iter_mut().filter(|c| c["type"] == "Ready" || c["type"] == "ContainersReady") {
                        *c = json!({"type": c["type"], "status": "False", "reason": "NodeNotReady", "lastTransitionTime": now, "lastProbeTime": null});
                    }
                    let _ = pods_api.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&json!({"status": {"conditions": conditions}}))).await;
                }
                continue;
            }
            let known = self.shared.lock().unwrap().instances.contains_key(&uid);
            if !known {
                let cluster = pod["metadata"]["labels"]["cnpg.io/cluster"].as_str().unwrap_or_default().to_string();
                let ip = next_ip();
                let lsn = self.shared.lock().unwrap().lsns.get(&pod_name).copied().unwrap_or(0x300_0000);
                let pg = Postgres { primary: false, timeline: 1, lsn, wal_receiver: false };
                self.shared
                    .lock()
                    .unwrap()
                    .instances
                    .insert(uid.clone(), Instance { ns: self.ns.clone(), pod: pod_name.clone(), cluster, node: node.clone(), ip, pg, server: None });
            }
            self.ensure_serving(&uid, view).await;
            if pod["status"]["podIP"].is_null() || !condition_true(pod, "Ready") {
                let ip = self.shared.lock().unwrap().instances[&uid].ip;
                let mut status = super::players::running_status(pod);
                status["podIP"] = json!(ip.to_string());
                status["podIPs"] = json!([{"ip": ip.to_string()}]);
                if let Err(e) = pods_api.patch_status(&pod_name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await {
                    eprintln!("stand-in: pod {pod_name} status: {e}");
                }
            }
        }
    }

    fn stop(&self, uid: &str) {
        if let Some(i) = self.shared.lock().unwrap().instances.get_mut(uid) {
            if let Some(s) = i.server.take() {
                s.abort();
            }
        }
    }

    /// Starts the instance manager's status server once the cluster's server certificate exists.
    async fn ensure_serving(&self, uid: &str, view: &View) {
        let (cluster, ip) = {
            let shared = self.shared.lock().unwrap();
            let i = &shared.instances[uid];
            if i.server.is_some() {
                return;
            }
            (i.cluster.clone(), i.ip)
        };
        let secret_name = view
            .clusters
            .iter()
            .find(|c| name(c) == cluster)
            .and_then(|c| c["status"]["certificates"]["serverTLSSecret"].as_str().map(String::from))
            .unwrap_or_else(|| format!("{cluster}-server"));
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(self.client.clone(), &self.ns);
        let Ok(Some(secret)) = secrets.get_opt(&secret_name).await else { return };
        let data = secret.data.unwrap_or_default();
        let (Some(cert), Some(key)) = (data.get("tls.crt"), data.get("tls.key")) else { return };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert.0).filter_map(Result::ok).collect();
        let key = PrivateKeyDer::from_pem_slice(&key.0).expect("server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        let listener = match tokio::net::TcpListener::bind((ip, STATUS_PORT)).await {
            Ok(l) => l,
            Err(e) => panic!("the instance manager stand-in cannot listen on {ip}:{STATUS_PORT}: {e}"),
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (shared, uid_owned, hash) = (self.shared.clone(), uid.to_string(), self.executable_hash.clone());
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, shared, uid, hash) = (acceptor.clone(), shared.clone(), uid_owned.clone(), hash.clone());
                tokio::spawn(async move {
                    if shared.lock().unwrap().unreachable {
                        return; // dropped: the operator sees no answer
                    }
                    let Ok(mut tls) = acceptor.accept(stream).await else { return };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_string();
                    let (code, body) = if line.starts_with("GET /pg/status ") {
                        match status_json(&shared, &uid, &hash) {
                            Some(body) => ("200 OK", body),
                            None => ("503 Service Unavailable", "{}".to_string()),
                        }
                    } else {
                        ("404 Not Found", "{}".to_string())
                    };
                    let response = format!("HTTP/1.1 {code}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        if let Some(i) = self.shared.lock().unwrap().instances.get_mut(uid) {
            i.server = Some(server.abort_handle());
        } else {
            server.abort();
        }
    }

    async fn publish_endpoints(&self, view: &View) {
        let slices = api_for(&self.client, "discovery.k8s.io/v1", "EndpointSlice", Some(&self.ns)).await;
        for svc in &view.services {
            let Some(selector) = svc["spec"]["selector"].as_object() else { continue };
            let svc_name = name(svc);
            let mut endpoints: Vec<Value> = view
                .pods
                .iter()
                .filter(|p| selector.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v))
                .filter(|p| p["status"]["podIP"].is_string())
                .map(|p| {
                    let ready = condition_true(p, "Ready") && !terminating(p);
                    let last = p["status"]["podIP"].as_str().and_then(|ip| ip.rsplit('.').next()).unwrap_or("1").to_string();
                    json!({"addresses": [format!("198.51.100.{last}")], "conditions": {"ready": ready, "serving": ready, "terminating": terminating(p)},
                           "targetRef": {"kind": "Pod", "name": name(p), "namespace": self.ns, "uid": p["metadata"]["uid"]}})
                })
                .collect();
            endpoints.sort_by_key(|e| e["targetRef"]["name"].as_str().unwrap_or_default().to_string());
            let slice_name = format!("{svc_name}-standin");
            let existing = slices.get_opt(&slice_name).await.ok().flatten().map(|s| serde_json::to_value(s).unwrap());
            if existing.as_ref().is_some_and(|s| s["endpoints"].as_array().cloned().unwrap_or_default() == endpoints) {
                continue;
            }
            let ports: Vec<Value> = svc["spec"]["ports"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| json!({"name": p["name"].as_str().unwrap_or(""), "port": p["targetPort"].as_i64().or(p["port"].as_i64()), "protocol": "TCP"}))
                .collect();
            create(&self.client, json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": slice_name, "namespace": self.ns, "labels": {"kubernetes.io/service-name": svc_name, "endpointslice.kubernetes.io/managed-by": "lifeboat-test-standin"}},
                "addressType": "IPv4", "ports": ports, "endpoints": endpoints}), None).await;
        }
    }

    /// The instance managers' own decisions, from the Cluster status.
    async fn instance_managers(&self, view: &View) {
        let clusters_api = api_for(&self.client, CNPG, "Cluster", Some(&self.ns)).await;
        for cluster in &view.clusters {
            let cluster_name = name(cluster);
            let current = cluster["status"]["currentPrimary"].as_str().unwrap_or_default().to_string();
            let target = cluster["status"]["targetPrimary"].as_str().unwrap_or_default().to_string();
            let mut write = None;
            {
                let mut shared = self.shared.lock().unwrap();
                let serving = |i: &Instance| i.server.is_some() && i.cluster == cluster_name;
                let primary_up = shared.instances.values().any(|i| serving(i) && i.pod == current && i.pg.primary);
                for i in shared.instances.values_mut().filter(|i| serving(i)) {
                    if i.pod == target && current.is_empty() {
                        // instance_startup.go: the first primary marks itself.
                        i.pg.primary = true;
                        write = Some(json!({"status": {"currentPrimary": i.pod, "currentPrimaryTimestamp": pg_timestamp()}}));
                    } else if i.pod == target && i.pod != current && target != PENDING && !i.pg.wal_receiver {
                        // handlePromotion: WAL receiver down, promote (a new timeline), then currentPrimary.
                        i.pg.primary = true;
                        i.pg.timeline += 1;
                        write = Some(json!({"status": {"currentPrimary": i.pod, "currentPrimaryTimestamp": pg_timestamp()}}));
                    } else if i.pod == current && i.pod == target && !i.pg.primary {
                        i.pg.primary = true;
                    } else if !i.pg.primary {
                        i.pg.wal_receiver = primary_up;
                    }
                }
            }
            if let Some(patch) = write {
                if let Err(e) = clusters_api.patch_status(&cluster_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    eprintln!("stand-in: instance manager status write on {cluster_name}: {e}");
                }
            }
        }
    }
}

/// `pod`'s `/pg/status` answer.
fn status_json(shared: &Mutex<Shared>, uid: &str, hash: &str) -> Option<String> {
    let shared = shared.lock().unwrap();
    let i = shared.instances.get(uid)?;
    let pg = &i.pg;
    let lsn = lsn_text(pg.lsn);
    let mut status = json!({
        "systemID": "7400000000000000001", "isPrimary": pg.primary, "replayPaused": false, "pendingRestart": false, "pendingRestartForDecrease": false,
        "isWalReceiverActive": pg.wal_receiver, "isPgRewindRunning": false, "mightBeUnavailable": false, "isArchivingWAL": pg.primary,
        "node": i.node, "pod": null, "timeLineID": pg.timeline, "executableHash": hash, "instanceManagerVersion": "1.30.0",
        "instanceArch": super::cnpg_operator::go_arch(), "isInstanceManagerUpgrading": false, "sessionID": format!("standin-{uid}"), "isPodReady": false,
    });
    if pg.primary {
        status["currentLsn"] = json!(lsn);
    } else {
        status["receivedLsn"] = json!(lsn);
        status["replayLsn"] = json!(lsn);
    }
    Some(status.to_string())
}

/// A distinct loopback address per instance pod, per test binary.
fn next_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(127, 100 + (std::process::id() % 100) as u8, (n / 200) as u8, 2 + (n % 200) as u8)
}

/// The sha256 of the manager binary: what its instance manager reports as `executableHash`.
pub fn executable_hash(manager: &std::path::Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(manager).expect("manager binary")))
}

/// `count` Ready nodes named `<ns>-node-<i>`.
pub async fn nodes(client: &Client, ns: &str, count: usize) -> Vec<String> {
    let mut names = vec![];
    for i in 1..=count {
        let node = format!("{ns}-node-{i}");
        super::k8s::node_ready(client, &node).await;
        names.push(node);
    }
    names
}
