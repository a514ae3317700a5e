//! Plans: what a playbook intends to do, as data. Planning is pure — a
//! function of one `ClusterState` and a trigger — so the same plan comes out
//! of a live cluster and of a dump, and a dry run is just the plan rendered.

pub mod compose;
pub mod job;
pub mod playbooks;
pub mod report;
pub mod shell;

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::cluster::ObjectRef;

impl ObjectRef {
    /// ` -n <namespace>` (quoted), or nothing for a cluster-scoped object.
    pub(crate) fn ns_flag(&self) -> String {
        self.namespace.as_ref().map_or(String::new(), |ns| format!(" -n {}", shell::quote(ns)))
    }
}

/// What a step does. Every action is idempotent: running it again after it
/// succeeded changes nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Action {
    /// `kubectl cnpg promote`: status patch of targetPrimary (no-op if already the target).
    PromoteCnpg { cluster: ObjectRef, pod: String },
    /// DELETE with gracePeriodSeconds=0 (the kubelet on a dead node never confirms).
    ForceDeletePod { pod: ObjectRef },
    /// Delete a PVC whose volume is pinned to `pinned_node`; if it stays
    /// Terminating on `kubernetes.io/pvc-protection` with no pod left using it,
    /// clear its finalizers.
    DeletePvc { pvc: ObjectRef, pinned_node: String },
    /// Delete any object (e.g. an orphaned ReplicationDestination).
    Delete { object: ObjectRef },
    /// Delete a pod so its controller re-creates it (not forced).
    RestartPod { pod: ObjectRef },
    /// Poll until the condition holds or the timeout passes.
    Wait { object: ObjectRef, until: WaitCondition, timeout_seconds: u64 },
    /// `flux suspend`: merge-patch `spec.suspend: true`. Unless
    /// `keep_suspended`, the runner resumes it when the run ends, however it
    /// ends; a kept suspension is reported loudly.
    SuspendFlux {
        object: ObjectRef,
        #[serde(default)]
        keep_suspended: bool,
    },
    /// `flux resume`: merge-patch `spec.suspend: false`.
    ResumeFlux { object: ObjectRef },
    /// Set replicas through the `/scale` subresource.
    Scale { object: ObjectRef, replicas: i32 },
    /// A JSON merge patch naming only the fields it changes.
    MergePatch { object: ObjectRef, patch: serde_json::Value },
    /// A merge patch that must not outlive the run (e.g. mariadb-operator's
    /// `forceClusterBootstrapInPod`, which nothing else ever clears): when the
    /// run ends, however it ends, the runner applies `revert` unless a later
    /// `MergePatch` step with that same patch succeeded. Not on a hand-over
    /// to the next leader, which continues the run.
    TemporaryPatch { object: ObjectRef, patch: serde_json::Value, revert: serde_json::Value },
    /// Create an object from a template (server-side apply; idempotent).
    Apply { object: ObjectRef, manifest: serde_json::Value },
    /// Set one parameter of a CNPG Cluster's `spec.plugins[name == plugin]`,
    /// keeping every other entry and field (the list is rewritten from the
    /// live object under a resourceVersion lock).
    SetCnpgPluginParameter { cluster: ObjectRef, plugin: String, parameter: String, value: String },
    /// Delete a pod (not forced) and wait until its controller has re-created
    /// it (new uid) and it is Ready: a restart that is known to have happened.
    RecreatePod { pod: ObjectRef, timeout_seconds: u64 },
    /// Add a taint to a Node (kept: the other taints are rewritten as they are).
    TaintNode { node: String, key: String, value: String, effect: String },
    /// Create the Job (an existing Complete one of that name counts; a
    /// Failed one is refused), wait for Complete or Failed, read its output
    /// (pods/log, else the container's termination message), require
    /// `success_marker` in it, then take `output` from it (see `act::jobs`).
    RunJob { job: ObjectRef, manifest: serde_json::Value, timeout_seconds: u64, success_marker: String, output: job::JobOutput },
    /// `kubectl rollout restart`: the restartedAt annotation is stamped at
    /// execution, so the plan (and its hash) holds no time.
    RolloutRestart { object: ObjectRef },
    /// Ask the Garage admin API whether the cluster is healthy and lists at
    /// least `min_buckets` buckets (the token is read from `token_file`),
    /// retried until `timeout_seconds`.
    VerifyGarage { admin_url: String, token_file: Option<String>, min_buckets: usize, timeout_seconds: u64 },
    /// Per-phase approval: the run pauses here (awaiting approval again)
    /// until a human approves the same plan hash for this phase.
    ApprovalGate { phase: String },
    /// Delete a PVC whose instance pod still exists on the lost node, before
    /// that pod (CloudNativePG's own order: its PVC group first, so the
    /// operator cannot re-attach a new pod to the dangling claim). Done once
    /// the claim is marked for deletion; `kubernetes.io/pvc-protection` keeps
    /// it until the pod is deleted, and a later `DeletePvc` step sees it gone.
    MarkPvcForDeletion { pvc: ObjectRef, pinned_node: String },
    /// Set `spec.replicaGroups[name == group].replicas` of a kaniop `Kanidm`
    /// (read live, rewritten under a resourceVersion lock): kaniop re-applies
    /// its StatefulSets' replicas from there, so scaling them directly is undone.
    SetKanidmReplicas { kanidm: ObjectRef, group: String, replicas: i32 },
    /// `kubectl exec` into a running pod's container (pods/exec); `pattern`
    /// (see [`job::extract`]) takes a secret value from what the command
    /// printed, and it goes straight into `secret` key `key`. The output is
    /// never shown, logged or journaled.
    ExecToSecret { pod: ObjectRef, container: String, command: Vec<String>, secret: ObjectRef, key: String, pattern: String },
    /// Garage's `garage repair -a --yes tables` through the admin API
    /// (`POST /v2/LaunchRepairOperation?node=*`), token from `token_file`.
    RepairGarageTables { admin_url: String, token_file: Option<String> },
    /// Does nothing: the steps of a phase that would each wait for the same
    /// several steps before it wait for this one instead (see
    /// `compose`), so a plan's `needs` grow with its steps, not their square.
    PhaseStart { phase: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum WaitCondition {
    /// CNPG: currentPrimary == pod.
    CnpgPrimaryIs { pod: String },
    /// CNPG: readyInstances == spec.instances, no dangling PVCs, phase healthy.
    CnpgHealthy,
    /// The Service has at least one ready endpoint (EndpointSlices).
    ServiceHasEndpoints,
    /// `status.conditions[type=condition].status == status` on any object
    /// (e.g. a Pod's Ready, a MariaDB's GaleraReady). An object that does not
    /// exist yet or is being deleted does not match: waiting for a pod that
    /// a controller re-creates is waiting, not an error.
    ConditionIs { condition: String, status: String },
    /// A CNPG `Backup` reached phase `completed` (fails at once on `failed`).
    CnpgBackupCompleted,
    /// Deployment/StatefulSet: `status.readyReplicas >= spec.replicas`.
    WorkloadReady,
    /// A human confirmed the Node is gone for good: annotation
    /// `lifeboat.dev/confirmed-gone=true`, the out-of-service taint, or the
    /// Node object deleted.
    NodeConfirmedGone,
    /// VolSync: `status.lastManualSync == token` first, then
    /// `latestMoverStatus.result` must be Successful (a bare result can be
    /// left from an earlier sync); fails at once if the object is paused.
    VolsyncManualSyncDone { token: String },
    /// No pod scheduled to a node (not even a terminating one) mounts the
    /// PVC, or it is gone (see `act::volsync::claim_users`).
    ClaimUnused,
    /// A scaled-down workload reports no replicas left (`status.replicas` 0).
    NoReplicas,
    /// CNPG finished a failover away from `from`: `currentPrimary` is another
    /// instance and equals `targetPrimary` (not the `pending` marker).
    CnpgFailedOver { from: String },
    /// The Service's EndpointSlices have a ready endpoint whose `targetRef`
    /// is the pod named by the CNPG Cluster's `status.currentPrimary`.
    ServiceRoutesToCnpgPrimary { cluster: String },
    /// The workload's `spec.replicas` is `replicas`: its owner (e.g. kaniop
    /// from a `Kanidm` replica group) has applied the count.
    SpecReplicas { replicas: i32 },
    /// A pod in the object's namespace with all of `selector`'s labels is
    /// Ready on a node other than `lost_node`, and has been for
    /// `takeover_seconds` (a volume provisioner's new leader takes its Lease
    /// over only that long after it starts): see `inspect::provisioners`.
    ProvisionerReadyElsewhere { selector: std::collections::BTreeMap<String, String>, lost_node: String, takeover_seconds: u64 },
}

fn flux_kind(object: &ObjectRef) -> &'static str {
    if object.kind == "HelmRelease" {
        "helmrelease"
    } else {
        "kustomization"
    }
}

/// Checked against the live API immediately before the step runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Precondition {
    /// The node is still missing or not Ready (a node that came back means
    /// its data is reachable again: destructive steps must stop).
    NodeStillLost { node: String },
    /// The pod exists, is not terminating and reports Ready.
    PodReady { pod: ObjectRef },
    /// The CNPG cluster still lists `pod` as its current or target primary
    /// (or, with `is_primary: false`, does not).
    CnpgPrimary { cluster: ObjectRef, pod: String, is_primary: bool },
    /// The object does not exist (e.g. the source of an orphaned destination).
    Absent { object: ObjectRef },
    /// The object exists and its `spec.paused` is not true (a paused kopia
    /// ReplicationDestination "completes" a restore without running it).
    NotPaused { object: ObjectRef },
    /// `pod` is still both `currentPrimary` and `targetPrimary` of the CNPG
    /// cluster (no failover of the operator's own has started), or
    /// `targetPrimary` is already `promote_to` (this plan's own promotion).
    CnpgPrimaryUnchanged { cluster: ObjectRef, pod: String, promote_to: String },
    /// The kopia ReplicationDestination still restores `identity`
    /// (`username@hostname`, derived as the perfectra1n fork does), and the
    /// `source` whose snapshots the plan relies on still writes that same
    /// identity: otherwise the mover finds "No eligible snapshots".
    KopiaIdentity { destination: ObjectRef, source: Option<ObjectRef>, identity: String },
    /// The object carries `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent`
    /// (label or annotation): Flux, resumed, leaves it as it is.
    SsaIfNotPresent { object: ObjectRef },
    /// The PersistentVolume is not bound to a claim and the Node its
    /// required affinity names is gone (no Node object, or a human confirmed
    /// it: see `WaitCondition::NodeConfirmedGone`).
    VolumeOrphanedOnGoneNode { volume: String, node: String },
    /// The object's image at JSON `pointer` (e.g. a kaniop `Kanidm`'s
    /// `/spec/image`) is exactly `image`: a restore must run the version
    /// that wrote the backup and will read the database.
    ImageIs { object: ObjectRef, pointer: String, image: String },
}

/// Why deleting data is safe: where the data will come back from, and what
/// was checked about it when the plan was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoverySource {
    pub description: String,
    /// The checks that passed when planning (re-checked by preconditions).
    pub evidence: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub id: String,
    pub title: String,
    pub action: Action,
    /// Steps that must have succeeded first.
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub preconditions: Vec<Precondition>,
    /// Required for every step that deletes data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_source: Option<RecoverySource>,
}

impl Step {
    /// The objects the step changes or reads, for the approver.
    pub fn objects(&self) -> Vec<&ObjectRef> {
        match &self.action {
            Action::PromoteCnpg { cluster, .. } | Action::SetCnpgPluginParameter { cluster, .. } => vec![cluster],
            Action::ForceDeletePod { pod } | Action::RestartPod { pod } | Action::RecreatePod { pod, .. } => vec![pod],
            Action::DeletePvc { pvc, .. } => vec![pvc],
            Action::TaintNode { .. } | Action::VerifyGarage { .. } | Action::ApprovalGate { .. } | Action::PhaseStart { .. } => vec![],
            Action::RunJob { job, .. } => vec![job],
            Action::RolloutRestart { object } => vec![object],
            Action::SetKanidmReplicas { kanidm, .. } => vec![kanidm],
            Action::ExecToSecret { pod, secret, .. } => vec![pod, secret],
            Action::RepairGarageTables { .. } => vec![],
            Action::Delete { object }
            | Action::Wait { object, .. }
            | Action::SuspendFlux { object, .. }
            | Action::ResumeFlux { object }
            | Action::Scale { object, .. }
            | Action::MergePatch { object, .. }
            | Action::TemporaryPatch { object, .. }
            | Action::Apply { object, .. } => vec![object],
            Action::MarkPvcForDeletion { pvc, .. } => vec![pvc],
        }
    }

    pub fn destroys_data(&self) -> bool {
        matches!(self.action, Action::DeletePvc { .. } | Action::MarkPvcForDeletion { .. })
    }

    /// The equivalent command a human would run. Every interpolated value
    /// is shell-quoted ([`shell::quote`]).
    pub fn command(&self) -> String {
        use shell::quote as q;
        match &self.action {
            Action::PromoteCnpg { cluster, pod } => format!("kubectl cnpg promote {}{} {}", q(&cluster.name), cluster.ns_flag(), q(pod)),
            Action::ForceDeletePod { pod } => format!("kubectl delete pod {}{} --force --grace-period=0", q(&pod.name), pod.ns_flag()),
            Action::DeletePvc { pvc, .. } => format!(
                "kubectl delete pvc {name}{ns} --wait=false && kubectl patch pvc {name}{ns} --type=merge -p '{{\"metadata\":{{\"finalizers\":null}}}}'  # the patch only if it stays Terminating",
                name = q(&pvc.name),
                ns = pvc.ns_flag()
            ),
            Action::Delete { object } => format!("kubectl delete {} {}{}", q(&object.kubectl_resource()), q(&object.name), object.ns_flag()),
            Action::RestartPod { pod } => format!("kubectl delete pod {}{}", q(&pod.name), pod.ns_flag()),
            Action::SuspendFlux { object, .. } => format!("flux suspend {} {}{}", flux_kind(object), q(&object.name), object.ns_flag()),
            Action::ResumeFlux { object } => format!("flux resume {} {}{}", flux_kind(object), q(&object.name), object.ns_flag()),
            Action::Scale { object, replicas } => {
                format!("kubectl scale {} {}{} --replicas={replicas}", q(&object.kubectl_resource()), q(&object.name), object.ns_flag())
            }
            Action::MergePatch { object, patch } => {
                format!("kubectl patch {} {}{} --type=merge -p {}", q(&object.kubectl_resource()), q(&object.name), object.ns_flag(), q(&patch.to_string()))
            }
            // The revert is named in a comment, where only comment quoting holds.
            Action::TemporaryPatch { object, patch, revert } => format!(
                "kubectl patch {res} {name}{ns} --type=merge -p {patch}  # undone when the run ends: kubectl patch {c_res} {c_name}{c_ns} --type=merge -p {revert}",
                res = q(&object.kubectl_resource()),
                name = q(&object.name),
                ns = object.ns_flag(),
                patch = q(&patch.to_string()),
                c_res = shell::comment(&object.kubectl_resource()),
                c_name = shell::comment(&object.name),
                c_ns = object.namespace.as_deref().map_or(String::new(), |ns| format!(" -n {}", shell::comment(ns))),
                revert = shell::comment(&revert.to_string()),
            ),
            Action::Apply { manifest, .. } => {
                let yaml = serde_yaml::to_string(manifest).unwrap_or_default();
                let end = shell::heredoc_delimiter(&yaml);
                format!("kubectl apply --server-side --field-manager=lifeboat -f - <<'{end}'\n{yaml}{end}")
            }
            Action::SetCnpgPluginParameter { cluster, plugin, parameter, value } => format!(
                "kubectl edit {} {}{}  # spec.plugins[name={}].parameters.{}: {}",
                q(&cluster.kubectl_resource()),
                q(&cluster.name),
                cluster.ns_flag(),
                shell::comment(plugin),
                shell::comment(parameter),
                shell::comment(value)
            ),
            Action::TaintNode { node, key, value, effect } => format!("kubectl taint node {} {}", q(node), q(&format!("{key}={value}:{effect}"))),
            Action::ApprovalGate { phase } => format!("lifeboat approve RUN --hash PLAN_HASH  # lets phase {} start", shell::comment(phase)),
            Action::RecreatePod { pod, timeout_seconds } => format!(
                "kubectl delete pod {name}{ns} && kubectl wait pod {name}{ns} --for=condition=Ready --timeout={timeout_seconds}s",
                name = q(&pod.name),
                ns = pod.ns_flag()
            ),
            Action::RunJob { job, manifest, timeout_seconds, success_marker, output } => {
                job::run_job_command(job, manifest, *timeout_seconds, success_marker, output)
            }
            Action::RolloutRestart { object } => job::rollout_restart_command(object),
            Action::SetKanidmReplicas { kanidm, group, replicas } => format!(
                "kubectl edit {} {}{}  # spec.replicaGroups[name={}].replicas: {replicas}",
                q(&kanidm.kubectl_resource()),
                q(&kanidm.name),
                kanidm.ns_flag(),
                shell::comment(group)
            ),
            Action::ExecToSecret { pod, container, command, secret, key, pattern } => job::exec_to_secret_command(pod, container, command, secret, key, pattern),
            Action::RepairGarageTables { admin_url, .. } => format!(
                "curl -fsS -X POST -H \"Authorization: Bearer $GARAGE_ADMIN_TOKEN\" -d '{{\"repairType\":\"tables\"}}' {}  # = garage repair -a --yes tables",
                q(&format!("{}/v2/LaunchRepairOperation?node=*", admin_url.trim_end_matches('/')))
            ),
            Action::PhaseStart { phase } => format!("# phase {} starts: every step it waits for is done", shell::comment(phase)),
            Action::VerifyGarage { admin_url, min_buckets, .. } => {
                let url = admin_url.trim_end_matches('/');
                format!(
                    "curl -fsS -H \"Authorization: Bearer $GARAGE_ADMIN_TOKEN\" {} && curl -fsS -H \"Authorization: Bearer $GARAGE_ADMIN_TOKEN\" {}  # healthy, at least {min_buckets} bucket(s)",
                    q(&format!("{url}/v2/GetClusterHealth")),
                    q(&format!("{url}/v2/ListBuckets"))
                )
            }
            Action::Wait { object, until, timeout_seconds } => {
                let (res, name, ns) = (q(&object.kubectl_resource()).into_owned(), q(&object.name), object.ns_flag());
                match until {
                    WaitCondition::WorkloadReady => {
                        format!("kubectl rollout status {} {name}{ns} --timeout={timeout_seconds}s", q(&object.kind.to_lowercase()))
                    }
                    WaitCondition::NodeConfirmedGone => format!(
                        "kubectl annotate node {name} lifeboat.dev/confirmed-gone=true  # a human, once the node is known to be gone for good (waits {timeout_seconds}s)"
                    ),
                    WaitCondition::CnpgBackupCompleted => {
                        format!("kubectl wait {res} {name}{ns} --for=jsonpath='{{.status.phase}}'=completed --timeout={timeout_seconds}s")
                    }
                    WaitCondition::CnpgPrimaryIs { pod } => {
                        format!("kubectl wait {res} {name}{ns} --for=jsonpath='{{.status.currentPrimary}}'={} --timeout={timeout_seconds}s", q(pod))
                    }
                    WaitCondition::ServiceHasEndpoints => format!(
                        "kubectl get endpointslices{ns} -l {}  # until an endpoint is ready (timeout {timeout_seconds}s)",
                        q(&format!("kubernetes.io/service-name={}", object.name))
                    ),
                    WaitCondition::ConditionIs { condition, status } => {
                        format!("kubectl wait {res} {name}{ns} {} --timeout={timeout_seconds}s", q(&format!("--for=condition={condition}={status}")))
                    }
                    WaitCondition::VolsyncManualSyncDone { token } => format!(
                        "kubectl wait {res} {name}{ns} --for=jsonpath='{{.status.lastManualSync}}'={} --timeout={timeout_seconds}s && kubectl get {res} {name}{ns} -o jsonpath='{{.status.latestMoverStatus.result}}'  # must be Successful",
                        q(token)
                    ),
                    WaitCondition::ClaimUnused => format!(
                        "kubectl get pods{ns} -o {}  # until no pod has a node after = (an unscheduled pod mounts nothing; timeout {timeout_seconds}s)",
                        q(&format!(
                            "jsonpath={{range .items[?(@.spec.volumes[*].persistentVolumeClaim.claimName==\"{}\")]}}{{.metadata.name}}={{.spec.nodeName}} {{end}}",
                            object.name
                        ))
                    ),
                    WaitCondition::NoReplicas => {
                        format!("kubectl wait {res} {name}{ns} --for=jsonpath='{{.status.replicas}}'=0 --timeout={timeout_seconds}s")
                    }
                    WaitCondition::SpecReplicas { replicas } => {
                        format!("kubectl wait {res} {name}{ns} --for=jsonpath='{{.spec.replicas}}'={replicas} --timeout={timeout_seconds}s")
                    }
                    WaitCondition::CnpgHealthy => format!("kubectl wait {res} {name}{ns} --for=condition=Ready --timeout={timeout_seconds}s"),
                    WaitCondition::CnpgFailedOver { from } => format!(
                        "kubectl get {res} {name}{ns} -o jsonpath='{{.status.currentPrimary}} {{.status.targetPrimary}}'  # until both name the same instance other than {} (timeout {timeout_seconds}s)",
                        shell::comment(from)
                    ),
                    WaitCondition::ServiceRoutesToCnpgPrimary { cluster } => format!(
                        "kubectl get endpointslices{ns} -l {} -o wide  # until a ready endpoint's targetRef is the currentPrimary of Cluster {} (timeout {timeout_seconds}s)",
                        q(&format!("kubernetes.io/service-name={}", object.name)),
                        shell::comment(cluster)
                    ),
                    WaitCondition::ProvisionerReadyElsewhere { selector, lost_node, takeover_seconds } => format!(
                        "kubectl wait pods{ns} -l {} --for=condition=Ready --timeout={timeout_seconds}s  # one on a node other than {}, Ready for {takeover_seconds}s (its leader Lease taken over)",
                        q(&crate::inspect::provisioners::label_selector(selector)),
                        shell::comment(lost_node)
                    ),
                }
            }
            Action::MarkPvcForDeletion { pvc, .. } => {
                format!("kubectl delete pvc {}{} --wait=false  # stays Terminating until its pod is deleted", q(&pvc.name), pvc.ns_flag())
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub playbook: String,
    /// What the plan is about, e.g. `Cluster database/postgres`.
    pub target: String,
    /// What the planner saw and decided, for the human approving it.
    pub findings: Vec<String>,
    pub steps: Vec<Step>,
    /// What a human must still do after the run succeeds (e.g. commit a
    /// changed field to Git, then resume Flux). Part of the hash: approving
    /// a plan is agreeing to these too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow_ups: Vec<String>,
    /// Named groups of steps in order (composed plans); presentation only,
    /// the dependencies are in the steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<compose::PlanPhase>,
}

impl Plan {
    pub fn new(playbook: &str, target: impl Into<String>) -> Self {
        Self { playbook: playbook.into(), target: target.into(), findings: vec![], steps: vec![], follow_ups: vec![], phases: vec![] }
    }

    /// Stable hash of the playbook, target and steps: an approval names it,
    /// and a plan rebuilt later that hashes differently needs a new approval.
    /// Findings (free text with ages) are deliberately not part of it.
    pub fn hash(&self) -> String {
        let canonical = if self.follow_ups.is_empty() {
            serde_json::to_vec(&(&self.playbook, &self.target, &self.steps))
        } else {
            serde_json::to_vec(&(&self.playbook, &self.target, &self.steps, &self.follow_ups))
        }
        .expect("plan serializes");
        let digest = Sha256::digest(&canonical);
        digest.iter().take(12).fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// The phase a step belongs to, if the plan has phases.
    pub fn phase_of(&self, step_id: &str) -> Option<&compose::PlanPhase> {
        self.phases.iter().find(|p| p.steps.iter().any(|s| s == step_id))
    }

    /// Objects some step changes (waits only read).
    pub fn changed_objects(&self) -> std::collections::BTreeSet<&ObjectRef> {
        self.steps.iter().filter(|s| !matches!(s.action, Action::Wait { .. })).flat_map(|s| s.objects()).collect()
    }

    /// Both plans change at least one same object.
    pub fn overlaps(&self, other: &Plan) -> bool {
        let mine = self.changed_objects();
        other.changed_objects().iter().any(|o| mine.contains(o))
    }

    pub fn nothing_to_do(&self) -> bool {
        self.steps.is_empty()
    }

    /// Structural checks every plan must pass before anyone may approve it.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for step in &self.steps {
            if !seen.insert(step.id.as_str()) {
                return Err(format!("duplicate step id {}", step.id));
            }
            if let Some(missing) = step.needs.iter().find(|n| !seen.contains(n.as_str())) {
                return Err(format!("step {} needs {missing}, which does not come before it", step.id));
            }
            if step.destroys_data() && step.recovery_source.is_none() {
                return Err(format!("step {} deletes data without naming its recovery source", step.id));
            }
        }
        Ok(())
    }

    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "playbook {} for {} (plan {})", self.playbook, self.target, self.hash());
        for f in &self.findings {
            let _ = writeln!(out, "  - {f}");
        }
        if self.nothing_to_do() {
            let _ = writeln!(out, "\nnothing to do");
            return out;
        }
        for (i, step) in self.steps.iter().enumerate() {
            if let Some(phase) = self.phases.iter().find(|p| p.steps.first() == Some(&step.id)) {
                let _ = writeln!(out, "\n== phase {}: {}", phase.name, phase.title);
            }
            let _ = writeln!(out, "\n{}. [{}] {}", i + 1, step.id, step.title);
            if !step.needs.is_empty() {
                let _ = writeln!(out, "   after:    {}", step.needs.join(", "));
            }
            for p in &step.preconditions {
                let _ = writeln!(out, "   requires: {}", describe_precondition(p));
            }
            if let Some(source) = &step.recovery_source {
                let _ = writeln!(out, "   recovery: {} ({})", source.description, source.evidence.join("; "));
            }
            let _ = writeln!(out, "   $ {}", step.command());
        }
        if !self.follow_ups.is_empty() {
            let _ = writeln!(out, "\nafterwards, by hand:");
            for f in &self.follow_ups {
                let _ = writeln!(out, "  - {f}");
            }
        }
        out
    }
}

pub fn describe_precondition(p: &Precondition) -> String {
    match p {
        Precondition::NodeStillLost { node } => format!("node {node} is still missing or not Ready"),
        Precondition::PodReady { pod } => format!("{pod} is Ready"),
        Precondition::CnpgPrimary { cluster, pod, is_primary: true } => format!("{cluster} still has {pod} as primary"),
        Precondition::CnpgPrimary { cluster, pod, is_primary: false } => format!("{pod} is no longer primary of {cluster}"),
        Precondition::Absent { object } => format!("{object} does not exist"),
        Precondition::NotPaused { object } => format!("{object} exists and is not paused"),
        Precondition::CnpgPrimaryUnchanged { cluster, pod, promote_to } => {
            format!("{pod} is still both current and target primary of {cluster} (no failover started), or {promote_to} is already the target")
        }
        Precondition::KopiaIdentity { destination, source: Some(source), identity } => {
            format!("{destination} restores kopia identity {identity}, the identity {source} backs up as")
        }
        Precondition::KopiaIdentity { destination, source: None, identity } => format!("{destination} still restores kopia identity {identity}"),
        Precondition::SsaIfNotPresent { object } => format!("{object} carries kustomize.toolkit.fluxcd.io/ssa: IfNotPresent (Flux will not re-apply it)"),
        Precondition::VolumeOrphanedOnGoneNode { volume, node } => format!("PersistentVolume {volume} is unbound and node {node} is gone"),
        Precondition::ImageIs { object, pointer, image } => format!("{object} runs image {image} ({pointer}), the restore's image"),
    }
}
