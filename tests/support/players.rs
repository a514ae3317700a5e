//! The operators and controllers of a cluster shaped like examples/node-loss,
//! played on the test apiserver for every object under one prefix: each
//! writes what the real one would (objects, status through the status
//! subresource), nothing more. Spawned together by [`spawn_all`].
//!
//! * Deployment/ReplicaSet + StatefulSet controllers, scheduler and kubelet:
//!   live pods follow `spec.replicas`; a pod whose claims are all usable
//!   (not on a lost node) runs on a healthy node and is Ready; a pod stuck in
//!   an init container waiting for Postgres starts once `postgres-rw` has an
//!   endpoint; a StatefulSet re-creates its missing claims from its
//!   templates; `readyReplicas` counts Ready pods.
//! * CloudNativePG: see tests/support/cnpg.rs (played stalled: the
//!   example's operator had not failed over by itself).
//! * mariadb-operator: the Galera player in support/galera.rs.
//! * VolSync: a paused source stops its mover (its pods go); a destination
//!   whose manual trigger differs from `lastManualSync` restores into its
//!   destination PVC and reports the token and a Successful result.
//! * The Job controller + kubelet, for the Jobs lifeboat creates: the pod
//!   runs on a healthy node, prints `job_output` (pods/log through the
//!   stand-in kubelet, and the termination message), the Job is Complete.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use kube::Client;
use serde_json::{json, Value};

use super::deadline::{Alarm, Deadline};
use super::example_cluster::ExampleCluster;
use super::k8s::{create, rfc3339, set_status};
use super::kubelet::FakeKubelet;

const TICK: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct Cluster {
    pub client: Client,
    pub prefix: String,
    pub healthy_nodes: Vec<String>,
    pub database_ns: String,
}

impl Cluster {
    pub fn of(client: &Client, example: &ExampleCluster) -> Self {
        Self { client: client.clone(), prefix: example.prefix.clone(), healthy_nodes: example.healthy_nodes(), database_ns: example.ns("database") }
    }

    /// Every object of the kind under this cluster's prefix.
    pub async fn list(&self, api_version: &str, kind: &str) -> Vec<Value> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let Ok((resource, _)) = kube::discovery::pinned_kind(&self.client, &GroupVersionKind::gvk(group, version, kind)).await else { return vec![] };
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &resource);
        let mine = format!("{}-", self.prefix);
        let items = match api.list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(kube::Error::Service(_)) => return vec![], // the test is over: its runtime is shutting down
            Err(e) => panic!("listing {kind}: {e}"),
        };
        items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .filter(|o| o["metadata"]["namespace"].as_str().unwrap_or(o["metadata"]["name"].as_str().unwrap_or("")).starts_with(&mine))
            .collect()
    }

    /// None once the test is over (its runtime shutting down).
    async fn api(&self, api_version: &str, kind: &str, ns: &str) -> Option<Api<DynamicObject>> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let (resource, _): (ApiResource, _) = kube::discovery::pinned_kind(&self.client, &GroupVersionKind::gvk(group, version, kind)).await.ok()?;
        Some(Api::namespaced_with(self.client.clone(), ns, &resource))
    }

    async fn delete_pod(&self, ns: &str, name: &str, now: bool) {
        let params = if now { DeleteParams { grace_period_seconds: Some(0), ..Default::default() } } else { DeleteParams::default() };
        if let Some(api) = self.api("v1", "Pod", ns).await {
            let _ = api.delete(name, &params).await;
        }
    }
}

fn ns_of(o: &Value) -> String {
    o["metadata"]["namespace"].as_str().unwrap_or_default().to_string()
}
fn name_of(o: &Value) -> String {
    o["metadata"]["name"].as_str().unwrap_or_default().to_string()
}
fn terminating(o: &Value) -> bool {
    o["metadata"]["deletionTimestamp"].is_string()
}
fn owner(o: &Value, kind: &str) -> Option<String> {
    o["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["kind"] == kind).and_then(|r| r["name"].as_str().map(String::from))
}
fn claims(pod: &Value) -> Vec<String> {
    pod["spec"]["volumes"].as_array().map_or(vec![], |vs| vs.iter().filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str().map(String::from)).collect())
}
pub fn pod_ready(pod: &Value) -> bool {
    !terminating(pod)
        && pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// What the Job controller reports once its one pod succeeded (kubernetes
/// v1.35 `pkg/controller/job/job_controller.go`: SuccessCriteriaMet, then Complete).
pub fn job_complete_status(now: &str) -> Value {
    let cond = |t: &str| json!({"type": t, "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now});
    json!({"startTime": now, "completionTime": now, "succeeded": 1, "ready": 0, "terminating": 0,
           "uncountedTerminatedPods": {}, "conditions": [cond("SuccessCriteriaMet"), cond("Complete")]})
}

/// What a kubelet reports for a pod whose one container ran to its end:
/// Succeeded with exit code 0, Failed otherwise; `output` is the termination
/// message (the Job players' stand-in for the container's log).
/// Upstream: the phase as Kubernetes v1.35 `pkg/kubelet/kubelet_pods.go`
/// `getPhase` sets it for a `restartPolicy: Never` pod whose containers all
/// terminated; the reasons as containerd v2 `internal/cri/server/helpers.go`
/// names them (`completeExitReason` "Completed", `errorExitReason` "Error").
pub fn terminated_status(container: &str, succeeded: bool, output: &str) -> Value {
    let now = rfc3339(Utc::now());
    let (phase, exit_code, reason) = if succeeded { ("Succeeded", 0, "Completed") } else { ("Failed", 1, "Error") };
    let terminated = json!({"exitCode": exit_code, "reason": reason, "message": output, "startedAt": now, "finishedAt": now});
    json!({"phase": phase, "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": "i", "imageID": "", "state": {"terminated": terminated}}]})
}

/// What a kubelet reports for a running, Ready pod.
pub fn running_status(pod: &Value) -> Value {
    let now = rfc3339(Utc::now());
    let containers: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            json!({
        "name": c["name"], "ready": true, "started": true, "restartCount": 0, "image": c["image"], "imageID": "", "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let inits: Vec<Value> = pod["spec"]["initContainers"].as_array().cloned().unwrap_or_default().iter().map(|c| json!({
        "name": c["name"], "ready": true, "restartCount": 0, "image": c["image"], "imageID": "", "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}})).collect();
    let cond = |t: &str| json!({"type": t, "status": "True", "lastProbeTime": null, "lastTransitionTime": now});
    json!({"phase": "Running", "conditions": [cond("Initialized"), cond("ContainersReady"), cond("Ready"), cond("PodScheduled")],
           "containerStatuses": containers, "initContainerStatuses": inits, "startTime": now})
}

/// The state the players share each tick.
struct View {
    nodes_ready: BTreeMap<String, bool>,
    pvs: BTreeMap<String, Value>,
    pvcs: BTreeMap<(String, String), Value>,
    deployments: Vec<Value>,
    replica_sets: Vec<Value>,
    stateful_sets: Vec<Value>,
    pods: Vec<Value>,
}

impl View {
    async fn read(c: &Cluster) -> Self {
        let nodes_ready = c
            .list("v1", "Node")
            .await
            .iter()
            .map(|n| (name_of(n), n["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|x| x["type"] == "Ready" && x["status"] == "True"))))
            .collect();
        let pvs = c.list("v1", "PersistentVolume").await.into_iter().map(|p| (name_of(&p), p)).collect();
        // Workloads before their pods: a pod created before its workload (as a
        // test sets a scene) is then always counted, as a ReplicaSet or
        // StatefulSet controller counts it from its synced pod informer;
        // listed the other way round, a workload could be seen without the
        // pod it owns and get a second one.
        let deployments = c.list("apps/v1", "Deployment").await;
        let replica_sets = c.list("apps/v1", "ReplicaSet").await;
        let stateful_sets = c.list("apps/v1", "StatefulSet").await;
        let pods = c.list("v1", "Pod").await;
        // Claims after pods: a run marks a claim for deletion before it deletes
        // the pod, so a pod seen gone always comes with its claim seen
        // Terminating, and no pod is re-attached to a claim about to vanish.
        let pvcs = c.list("v1", "PersistentVolumeClaim").await.into_iter().map(|p| ((ns_of(&p), name_of(&p)), p)).collect();
        View { nodes_ready, pvs, pvcs, deployments, replica_sets, stateful_sets, pods }
    }

    /// The claim exists, is not being deleted, and its volume (if bound) is
    /// not pinned to a node that is missing or NotReady.
    fn claim_usable(&self, ns: &str, claim: &str) -> bool {
        let Some(pvc) = self.pvcs.get(&(ns.to_string(), claim.to_string())) else { return false };
        if terminating(pvc) {
            return false;
        }
        let Some(volume) = pvc["spec"]["volumeName"].as_str() else { return true };
        let Some(pv) = self.pvs.get(volume) else { return true };
        let pinned: Vec<&str> = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|t| t["matchExpressions"].as_array().into_iter().flatten())
            .flat_map(|e| e["values"].as_array().into_iter().flatten())
            .filter_map(|v| v.as_str())
            .collect();
        pinned.iter().all(|n| self.nodes_ready.get(*n) == Some(&true))
    }

    fn pod_runnable(&self, pod: &Value) -> bool {
        let ns = ns_of(pod);
        claims(pod).iter().all(|c| self.claim_usable(&ns, c))
    }

    fn pods_in(&self, ns: &str) -> impl Iterator<Item = &Value> {
        let ns = ns.to_string();
        self.pods.iter().filter(move |p| ns_of(p) == ns)
    }
}

/// A new pod from a workload's template: on a healthy node and Ready when
/// its claims are usable, else Pending (unschedulable).
async fn start_pod(c: &Cluster, view: &View, ns: &str, name: &str, template: &Value, owner: (&str, &str), node: &str) {
    let mut spec = template["spec"].clone();
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": template["metadata"]["labels"],
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "00000000-0000-4000-8000-000000000001", "controller": true}]},
        "spec": spec.clone()});
    let runnable = view.pod_runnable(&pod);
    if runnable {
        spec["nodeName"] = json!(node);
        pod["spec"] = spec;
        pod["status"] = running_status(&pod);
    }
    create(&c.client, pod, None).await;
}

/// Deployments (through their ReplicaSets) and StatefulSets.
async fn workloads_tick(c: &Cluster, view: &View, serial: &mut u32) {
    {
        let c = c.clone();
        let node = c.healthy_nodes[0].clone();
        let Some(slices) = c.api("discovery.k8s.io/v1", "EndpointSlice", &c.database_ns).await else { return };
        let db_up = slices.get_opt("postgres-rw-1").await.ok().flatten().is_some();
        for d in &view.deployments {
            let (ns, name) = (ns_of(d), name_of(d));
            let sets: Vec<&Value> = view.replica_sets.iter().filter(|r| ns_of(r) == ns && owner(r, "Deployment").as_deref() == Some(name.as_str())).collect();
            let Some(rs) = sets.first() else { continue };
            let set_names: BTreeSet<String> = sets.iter().map(|r| name_of(r)).collect();
            let pods: Vec<&Value> = view.pods_in(&ns).filter(|p| owner(p, "ReplicaSet").is_some_and(|o| set_names.contains(&o))).collect();
            let wanted = d["spec"]["replicas"].as_i64().unwrap_or(1) as usize;
            let mut live: Vec<&Value> = pods.iter().copied().filter(|p| !terminating(p)).collect();
            live.sort_by_key(|p| p["spec"]["nodeName"].is_string()); // unscheduled ones go first
            while live.len() > wanted {
                let p = live.remove(0);
                c.delete_pod(&ns, &name_of(p), true).await;
            }
            for p in &live {
                if p["spec"]["nodeName"].is_null() && view.pod_runnable(p) {
                    // The scheduler places it now its claims are usable: as a fresh pod.
                    c.delete_pod(&ns, &name_of(p), true).await;
                } else if !pod_ready(p) && p["spec"]["nodeName"].is_string() && view.nodes_ready.get(p["spec"]["nodeName"].as_str().unwrap()) == Some(&true) && db_up {
                    set_status(&c.client, "v1", "Pod", Some(&ns), &name_of(p), running_status(p)).await;
                    // its init-db found Postgres
                }
            }
            let live_now = live.iter().filter(|p| !(p["spec"]["nodeName"].is_null() && view.pod_runnable(p))).count();
            for _ in live_now..wanted {
                *serial += 1;
                start_pod(&c, view, &ns, &format!("{}-p{serial}", name_of(rs)), &d["spec"]["template"], ("ReplicaSet", &name_of(rs)), &node).await;
            }
            let ready = live.iter().filter(|p| pod_ready(p)).count() as i64;
            let status = json!({"replicas": live.len(), "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": live.len(), "unavailableReplicas": (wanted as i64 - ready).max(0)});
            if ["replicas", "readyReplicas"].iter().any(|k| d["status"][k].as_i64().unwrap_or(0) != status[k].as_i64().unwrap()) {
                set_status(&c.client, "apps/v1", "Deployment", Some(&ns), &name, status).await;
            }
        }
        for s in &view.stateful_sets {
            let (ns, name) = (ns_of(s), name_of(s));
            let wanted = s["spec"]["replicas"].as_i64().unwrap_or(1);
            let mut ready = 0;
            let mut count = 0;
            for p in view.pods_in(&ns).filter(|p| owner(p, "StatefulSet").as_deref() == Some(name.as_str())) {
                let ordinal: i64 = name_of(p).rsplit('-').next().and_then(|o| o.parse().ok()).unwrap_or(0);
                if ordinal >= wanted && !terminating(p) {
                    c.delete_pod(&ns, &name_of(p), p["spec"]["nodeName"].is_null() || view.nodes_ready.get(p["spec"]["nodeName"].as_str().unwrap()) == Some(&true)).await;
                }
            }
            for i in 0..wanted {
                let pod_name = format!("{name}-{i}");
                let current = view.pods_in(&ns).find(|p| name_of(p) == pod_name);
                if current.is_some_and(terminating) {
                    continue; // the controller waits until the old pod is gone
                }
                // Missing claims come from the templates (before the pod, as the controller does).
                for template in s["spec"]["volumeClaimTemplates"].as_array().cloned().unwrap_or_default() {
                    let claim = format!("{}-{pod_name}", name_of(&template));
                    if !view.pvcs.contains_key(&(ns.clone(), claim.clone())) {
                        create(&c.client, json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": ns, "labels": template["metadata"]["labels"]},
                            "spec": {"accessModes": template["spec"]["accessModes"], "resources": template["spec"]["resources"], "storageClassName": template["spec"]["storageClassName"]}}), None).await;
                    }
                }
                // The controller adds a volume per claim template.
                let mut template = s["spec"]["template"].clone();
                for claim in s["spec"]["volumeClaimTemplates"].as_array().cloned().unwrap_or_default() {
                    let volume = json!({"name": name_of(&claim), "persistentVolumeClaim": {"claimName": format!("{}-{pod_name}", name_of(&claim))}});
                    match template["spec"]["volumes"].as_array_mut() {
                        Some(volumes) => volumes.push(volume),
                        None => template["spec"]["volumes"] = json!([volume]),
                    }
                }
                match current {
                    None => start_pod(&c, view, &ns, &pod_name, &template, ("StatefulSet", &name), &node).await,
                    Some(p) if p["spec"]["nodeName"].is_null() && view.pod_runnable(p) => c.delete_pod(&ns, &pod_name, true).await,
                    Some(p) => {
                        count += 1;
                        ready += pod_ready(p) as i64;
                    }
                }
            }
            if s["status"]["readyReplicas"].as_i64().unwrap_or(0) != ready || s["status"]["replicas"].as_i64().unwrap_or(0) != count {
                set_status(
                    &c.client,
                    "apps/v1",
                    "StatefulSet",
                    Some(&ns),
                    &name,
                    json!({"replicas": count, "readyReplicas": ready, "availableReplicas": ready, "currentReplicas": count, "updatedReplicas": count}),
                )
                .await;
            }
        }
    }
}

/// CloudNativePG, played by tests/support/cnpg.rs. The example cluster's
/// operator did not fail over by itself (its Cluster still names the lost
/// primary), so it is played stalled.
async fn cnpg_tick(c: &Cluster, view: &View) {
    let world = super::cnpg::World {
        pods: view.pods.iter().collect(),
        pvcs: view.pvcs.values().collect(),
        pvs: view.pvs.values().collect(),
        nodes_ready: &view.nodes_ready,
        healthy_node: &c.healthy_nodes[0],
    };
    for cluster in c.list("postgresql.cnpg.io/v1", "Cluster").await {
        super::cnpg::reconcile(&c.client, &cluster, &world, super::cnpg::Failover::Stalled).await;
    }
}

/// mariadb-operator: the Galera player (support/galera.rs), one MariaDB at a time.
async fn mariadb_tick(c: &Cluster, view: &View) {
    for m in c.list(super::galera::MDB, "MariaDB").await {
        let ns = ns_of(&m);
        let pods: Vec<Value> = view.pods_in(&ns).cloned().collect();
        let claims: BTreeMap<String, String> =
            view.pvcs.iter().filter(|((n, _), _)| *n == ns).filter_map(|((_, claim), pvc)| Some((claim.clone(), pvc["spec"]["volumeName"].as_str()?.to_string()))).collect();
        let galera_view = super::galera::View { pods: &pods, claims: &claims, nodes_ready: &view.nodes_ready };
        super::galera::Galera::default().tick(&c.client, &m, &galera_view).await;
    }
}

const VS: &str = "volsync.backube/v1alpha1";

async fn volsync_tick(c: &Cluster, view: &View) {
    {
        for rs in c.list(VS, "ReplicationSource").await {
            if rs["spec"]["paused"] != true {
                continue;
            }
            // Paused: the mover Job stops (parallelism 0), its pods go.
            let (ns, job) = (ns_of(&rs), format!("volsync-src-{}", name_of(&rs)));
            for p in view.pods_in(&ns).filter(|p| owner(p, "Job").as_deref() == Some(job.as_str()) && !terminating(p)) {
                c.delete_pod(&ns, &name_of(p), true).await;
            }
        }
        for rd in c.list(VS, "ReplicationDestination").await {
            let (ns, name) = (ns_of(&rd), name_of(&rd));
            let manual = rd["spec"]["trigger"]["manual"].as_str().unwrap_or_default().to_string();
            let target = rd["spec"]["kopia"]["destinationPVC"].as_str().or(rd["spec"]["restic"]["destinationPVC"].as_str()).unwrap_or_default().to_string();
            let pvc_ready = view.pvcs.get(&(ns.clone(), target.clone())).is_some_and(|p| !terminating(p));
            if manual.is_empty() || rd["spec"]["paused"] == true || Some(manual.as_str()) == rd["status"]["lastManualSync"].as_str() || !pvc_ready {
                continue;
            }
            let logs = format!("Selected snapshot with id: k{:x}\nRestoring into /data ({target})\nSnapshot restore completed successfully", manual.len() * 7919);
            set_status(
                &c.client,
                VS,
                "ReplicationDestination",
                Some(&ns),
                &name,
                json!({
                "lastManualSync": manual, "lastSyncTime": rfc3339(Utc::now()), "lastSyncDuration": "1s",
                "latestMoverStatus": {"result": "Successful", "logs": logs}}),
            )
            .await;
        }
    }
}

/// Jobs lifeboat creates (label app.kubernetes.io/managed-by: lifeboat).
async fn jobs_tick(c: &Cluster, kubelet: &FakeKubelet, job_output: &JobOutput) {
    {
        for job in c.list("batch/v1", "Job").await {
            let done = job["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|x| x["type"] == "Complete" || x["type"] == "Failed"));
            if done || terminating(&job) || job["metadata"]["labels"]["app.kubernetes.io/managed-by"] != "lifeboat" {
                continue;
            }
            let (ns, name) = (ns_of(&job), name_of(&job));
            let template = &job["spec"]["template"];
            let container = template["spec"]["containers"][0]["name"].as_str().unwrap().to_string();
            let output = job_output(&name);
            let mut spec = template["spec"].clone();
            spec["nodeName"] = json!(c.healthy_nodes[0]);
            let pod_name = format!("{name}-x7k2p");
            kubelet.set_log(&ns, &pod_name, &container, &output);
            create(
                &c.client,
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": ns, "labels": template["metadata"]["labels"],
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job["metadata"]["uid"], "controller": true}]}, "spec": spec}),
                None,
            )
            .await;
            let now = rfc3339(Utc::now());
            set_status(
                &c.client,
                "v1",
                "Pod",
                Some(&ns),
                &pod_name,
                json!({"phase": "Succeeded",
                "containerStatuses": [{"name": container, "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed", "message": output, "startedAt": now, "finishedAt": now}}}]}),
            )
            .await;
            set_status(&c.client, "batch/v1", "Job", Some(&ns), &name, job_complete_status(&now)).await;
        }
    }
}

pub type JobOutput = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// The running players. A player that panics (e.g. a write the apiserver
/// refused) fails the test: [`Players::assert_alive`], [`Players::stop`] and
/// dropping them report its panic, and the test's [`Deadline`] (the players
/// carry one) ends a test that keeps waiting on the dead player.
pub struct Players {
    handle: tokio::task::JoinHandle<()>,
    panicked: Arc<std::sync::Mutex<Option<String>>>,
    _deadline: Deadline,
}

impl Players {
    /// Fails the test if a player died.
    pub fn assert_alive(&self) {
        if let Some(what) = self.panicked.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            panic!("a player panicked: {what}");
        }
        assert!(!self.handle.is_finished(), "the players stopped");
    }

    /// Stops the players before the test's runtime goes away; fails the test
    /// if one had panicked.
    pub async fn stop(&mut self) {
        self.handle.abort();
        let _ = (&mut self.handle).await;
        self.assert_alive_or_stopped();
    }

    fn assert_alive_or_stopped(&self) {
        if let Some(what) = self.panicked.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            panic!("a player panicked: {what}");
        }
    }
}

impl Drop for Players {
    fn drop(&mut self) {
        self.handle.abort();
        if !std::thread::panicking() {
            self.assert_alive_or_stopped();
        }
    }
}

/// Every player above, one after the other each tick (one read of the
/// cluster per tick), until the returned value is dropped.
pub fn spawn_all(c: &Cluster, kubelet: Arc<FakeKubelet>, job_output: JobOutput) -> Players {
    let c = c.clone();
    let deadline = Deadline::for_this_test();
    let (alarm, panicked) = (deadline.alarm(), Arc::new(std::sync::Mutex::new(None)));
    let players = async move {
        let mut serial = 0;
        loop {
            let view = View::read(&c).await;
            workloads_tick(&c, &view, &mut serial).await;
            cnpg_tick(&c, &view).await;
            mariadb_tick(&c, &view).await;
            volsync_tick(&c, &view).await;
            jobs_tick(&c, &kubelet, &job_output).await;
            tokio::time::sleep(TICK).await;
        }
    };
    let handle = tokio::spawn(report_panic(players, alarm, panicked.clone()));
    Players { handle, panicked, _deadline: deadline }
}

/// Runs `task`; if it panics, records the panic's message and raises the alarm.
pub async fn report_panic(task: impl std::future::Future<Output = ()>, alarm: Alarm, panicked: Arc<std::sync::Mutex<Option<String>>>) {
    use futures::FutureExt;
    if let Err(payload) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
        let what = payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "(no message)".into());
        alarm.raise(&format!("a player panicked: {what}"));
        *panicked.lock().unwrap_or_else(|e| e.into_inner()) = Some(what);
    }
}
