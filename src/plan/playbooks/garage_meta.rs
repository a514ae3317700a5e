//! `garage-meta-restore`: Garage metadata recovery from the backup sidecar's
//! snapshots (each is `snapshots/<RFC3339>/data.mdb`). Scale Garage to
//! 0; if its metadata PVC is pinned to a lost node, delete and re-create it
//! (only when the newest snapshot in the backup is known); run a Job that
//! wipes the PVC and copies the config files, the snapshots and the chosen
//! snapshot's `data.mdb` as the live `db.lmdb/data.mdb`; scale back to 1;
//! verify through the admin API that buckets are back; launch the table
//! repair (`garage repair -a --yes tables`, deuxfleurs-org/garage
//! doc/book/operations/recovering.md); then resume Flux. If the run stops,
//! Flux stays suspended: it would start Garage on a wiped volume.
//!
//! Writes after the snapshot are lost, WAL archives of the CNPG clusters
//! that archive into this Garage included: the plan's follow-ups name them
//! (from their ObjectStore / barmanObjectStore endpoints) and their fresh
//! base backups.

use chrono::DateTime;
use serde_json::json;

use super::s3_restore::{claim_identity, flux_api_version, incident_suffix, workload_flux};
use super::PlanError;
use crate::cluster::{name, namespace, ClusterState};
use crate::config::{kind_and_name, GarageBackupSource};
use crate::inspect::Findings;
use crate::plan::job::JobOutput;
use crate::plan::{Action, ObjectRef, Plan, Precondition, RecoverySource, Step, WaitCondition};

pub const PLAYBOOK: &str = "garage-meta-restore";
pub const SUCCESS_MARKER: &str = "Garage metadata restored from snapshot";
const SCALE_DOWN_TIMEOUT: u64 = 300;
/// How long Garage may take to report healthy after it is scaled back up.
const VERIFY_TIMEOUT: u64 = 300;

/// `snapshot`: a requested `snapshots/<RFC3339>` name; the newest otherwise.
pub fn meta_restore(state: &ClusterState, findings: &Findings, snapshot: Option<&str>) -> Result<Plan, PlanError> {
    let garage = &findings.config.garage;
    let config = &garage.restore;
    let ns = garage.namespace.as_str();
    let (kind, wname) = kind_and_name(&config.workload).map_err(|_| PlanError::NotFound(format!("garage.restore.workload {:?}", config.workload)))?;
    let workload_replicas = match kind {
        "Deployment" => state.deployments.iter().find(|d| namespace(&d.metadata) == ns && name(&d.metadata) == wname).map(|d| d.spec.replicas),
        _ => state.stateful_sets.iter().find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == wname).map(|s| s.spec.replicas),
    };
    if workload_replicas.is_none() {
        return Err(PlanError::NotFound(format!("{kind} {ns}/{wname} (garage.restore.workload)")));
    }
    let workload = ObjectRef::namespaced("apps/v1", kind, ns, wname);
    let pvc_ref = ObjectRef::pvc(ns, &config.meta_pvc);
    let mut plan = Plan::new(PLAYBOOK, pvc_ref.to_string());
    if let Some(s) = snapshot {
        if DateTime::parse_from_rfc3339(s).is_err() {
            return Err(PlanError::MissingArgument {
                playbook: "garage-meta-restore",
                what: "--name as an RFC3339 snapshot timestamp (snapshots/<RFC3339>), or no --name for the newest",
            });
        }
    }
    let Some(backup) = &config.backup else {
        plan.findings.push("garage.restore.backup is not configured (nfs or pvc): nowhere to restore from; nothing to do".into());
        return Ok(plan);
    };
    let which = snapshot.map_or("the newest snapshot".to_string(), |s| format!("snapshot {s}"));
    match (findings.garage.newest_snapshot, &findings.garage.snapshot_error) {
        (Some(t), _) => plan.findings.push(format!("newest metadata snapshot in garage.backupDir: {}", snapshot_name(t))),
        (None, Some(e)) => plan.findings.push(format!("garage.backupDir unreadable: {e}")),
        (None, None) => plan.findings.push("garage.backupDir not configured: the snapshot is only checked by the restore Job".into()),
    }
    let pvc = state.pvc(ns, &config.meta_pvc);
    let lost = findings.lost_volumes.iter().find(|v| v.claim_namespace.as_deref() == Some(ns) && v.claim_name.as_deref() == Some(config.meta_pvc.as_str()));
    let flux = workload_flux(state, ns, &(kind.to_string(), wname.to_string(), 1)).map(|f| ObjectRef::namespaced(flux_api_version(&f.kind), &f.kind, &f.namespace, &f.name));
    let still_lost = lost.map(|l| Precondition::NodeStillLost { node: l.node.clone() });

    let mut last: Vec<String> = vec![];
    if let Some(f) = &flux {
        plan.steps.push(step(
            "suspend-flux",
            format!("Suspend {f}"),
            Action::SuspendFlux { object: f.clone(), keep_suspended: false },
            &last,
            still_lost.iter().cloned().collect(),
        ));
        last = vec!["suspend-flux".into()];
    }
    plan.steps.push(step(
        "scale-down",
        format!("Scale {workload} to 0 so nothing writes during the restore"),
        Action::Scale { object: workload.clone(), replicas: 0 },
        &last,
        still_lost.iter().cloned().collect(),
    ));
    last = vec!["scale-down".into()];
    if let Some(l) = lost {
        plan.findings.push(format!("{pvc_ref} is pinned to lost node {}: it is deleted and re-created empty before the restore", l.node));
        for pod in state.pods_using_claim(ns, &config.meta_pvc).filter(|p| p.spec.node_name.as_deref() == Some(l.node.as_str())) {
            let pod_name = name(&pod.metadata);
            let id = format!("delete-pod-{pod_name}");
            plan.steps.push(step(
                &id,
                format!("Force-delete pod {pod_name} (its node {} is gone)", l.node),
                Action::ForceDeletePod { pod: ObjectRef::pod(ns, pod_name) },
                &["scale-down".to_string()],
                still_lost.iter().cloned().collect(),
            ));
            last.push(id);
        }
    }
    plan.steps.push(step(
        "wait-scaled-down",
        format!("Wait until {workload} has no pods"),
        Action::Wait { object: workload.clone(), until: WaitCondition::NoReplicas, timeout_seconds: SCALE_DOWN_TIMEOUT },
        &last,
        vec![],
    ));
    last = vec!["wait-scaled-down".into()];
    if let Some(f) = &flux {
        // The restore Job wipes the volume; a PVC on a lost node is deleted first.
        plan.steps.push(super::s3_restore::hold_flux(f, "wait-scaled-down", still_lost.iter().cloned().collect()));
        last = vec!["hold-flux".into()];
    }
    if let (Some(l), Some(pvc)) = (lost, pvc) {
        let Some(newest) = findings.garage.newest_snapshot else {
            plan.steps.clear();
            plan.findings
                .push(format!("refusing to delete {pvc_ref}: no metadata snapshot is known (mount the backup into lifeboat and set garage.backupDir); nothing will be deleted"));
            return Ok(plan);
        };
        let mut delete = step(
            "delete-pvc",
            format!("Delete {pvc_ref} pinned to {}", l.node),
            Action::DeletePvc { pvc: pvc_ref.clone(), pinned_node: l.node.clone() },
            &last,
            still_lost.iter().cloned().collect(),
        );
        delete.recovery_source = Some(RecoverySource {
            description: format!("Garage metadata backup ({}), restored from {which}", describe(backup)),
            evidence: vec![format!("snapshots/{}/data.mdb present in garage.backupDir", snapshot_name(newest))],
        });
        plan.steps.push(delete);
        let mut manifest = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": config.meta_pvc, "namespace": ns},
            "spec": {"accessModes": pvc.spec.access_modes, "resources": {"requests": pvc.spec.resources.requests}},
        });
        if let Some(class) = &pvc.spec.storage_class_name {
            manifest["spec"]["storageClassName"] = json!(class);
        }
        plan.steps.push(step("create-pvc", format!("Re-create {pvc_ref} empty"), Action::Apply { object: pvc_ref.clone(), manifest }, &["delete-pvc".to_string()], vec![]));
        last = vec!["create-pvc".into()];
    }
    let uid = pvc.map(|p| claim_identity(p)).unwrap_or_default();
    let pinned = snapshot.map(str::to_string).or(findings.garage.newest_snapshot.map(snapshot_name)).unwrap_or_default();
    let job = format!("garage-meta-restore-{}", incident_suffix(&format!("{uid}/{pinned}")));
    plan.steps.push(step(
        "restore",
        format!("Restore {pvc_ref} from {which} (Job {job})"),
        Action::RunJob {
            job: ObjectRef::namespaced("batch/v1", "Job", ns, &job),
            manifest: restore_job(garage, backup, &job, snapshot),
            timeout_seconds: config.timeout.0.as_secs(),
            success_marker: SUCCESS_MARKER.into(),
            output: JobOutput::Capture { label: "snapshot".into(), pattern: format!("{SUCCESS_MARKER} {{}}") },
        },
        &last,
        vec![],
    ));
    plan.steps.push(step(
        "scale-up",
        format!("Scale {workload} back to 1 (Garage runs single-replica)"),
        Action::Scale { object: workload, replicas: 1 },
        &["restore".to_string()],
        vec![],
    ));
    let mut after = "scale-up".to_string();
    let min_buckets = findings.garage.bucket_count.unwrap_or(1);
    match (&garage.admin_url, findings.garage.bucket_count) {
        (Some(_), Some(n)) => plan.findings.push(format!("the admin API last listed {n} bucket(s): the restore must bring them all back")),
        (Some(_), None) => plan.findings.push("no bucket count on record (needs garage.adminTokenFile): at least one bucket must come back".into()),
        (None, _) => {}
    }
    match &garage.admin_url {
        Some(url) => plan.steps.push(step(
            "verify",
            format!("Verify through the Garage admin API: cluster healthy, at least {min_buckets} bucket(s) listed"),
            Action::VerifyGarage {
                admin_url: url.clone(),
                token_file: garage.admin_token_file.as_ref().map(|p| p.display().to_string()),
                min_buckets,
                timeout_seconds: VERIFY_TIMEOUT,
            },
            &[after.clone()],
            vec![],
        )),
        None => plan.findings.push("garage.adminUrl not set: check `garage bucket list` by hand afterwards".into()),
    }
    match &garage.admin_url {
        Some(url) => {
            let needs = if plan.steps.iter().any(|s| s.id == "verify") { "verify".to_string() } else { after };
            plan.steps.push(step(
                "repair-tables",
                "Launch Garage's table repair on every node (garage repair -a --yes tables): the restored metadata re-syncs with the other nodes".into(),
                Action::RepairGarageTables { admin_url: url.clone(), token_file: garage.admin_token_file.as_ref().map(|p| p.display().to_string()) },
                &[needs],
                vec![],
            ));
            after = "repair-tables".into();
        }
        None => plan.follow_ups.push(format!("run `garage repair -a --yes tables` in the Garage pod ({ns}): the restored metadata must re-sync with the other nodes")),
    }
    if let Some(f) = flux {
        plan.steps.push(step("resume-flux", format!("Resume {f}"), Action::ResumeFlux { object: f }, &[after], vec![]));
    }
    let lost_since = format!("everything written to Garage after {which} is lost");
    for (cluster, via) in clusters_archiving_into(state, garage) {
        plan.follow_ups.push(format!(
            "{lost_since}, WAL archives and base backups of CNPG Cluster {cluster} included ({via}): take a fresh base backup now (`kubectl cnpg backup {}{}`) and check its ContinuousArchiving condition",
            cluster.name,
            cluster.namespace.as_deref().map_or(String::new(), |n| format!(" -n {n}"))
        ));
    }
    Ok(plan)
}

/// The CNPG clusters whose WAL archive endpoint is this Garage: the
/// barman-cloud plugin's ObjectStore `spec.configuration.endpointURL`, or
/// the in-tree `spec.backup.barmanObjectStore.endpointURL`, naming the
/// Garage admin URL's host, or a Service host in Garage's namespace whose
/// name contains "garage" (`garage.<ns>.svc.cluster.local`).
fn clusters_archiving_into(state: &ClusterState, garage: &crate::config::GarageConfig) -> Vec<(ObjectRef, String)> {
    let admin_host = garage.admin_url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()).and_then(|u| u.host_str().map(String::from));
    let is_garage = |endpoint: &str| {
        let Some(host) = reqwest::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(String::from)) else { return false };
        if admin_host.as_deref() == Some(host.as_str()) {
            return true;
        }
        let labels: Vec<&str> = host.split('.').collect();
        labels.len() >= 2 && labels[0].contains("garage") && labels[1] == garage.namespace
    };
    let mut out = vec![];
    for cluster in &state.cnpg_clusters {
        let (ns, cname) = (namespace(&cluster.metadata), name(&cluster.metadata));
        let via = match cluster.plugin_object_store() {
            Some((store, _)) => state
                .object_stores
                .iter()
                .find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == store)
                .and_then(|s| s.spec.configuration["endpointURL"].as_str().filter(|e| is_garage(e)).map(|e| format!("ObjectStore {ns}/{store} endpointURL {e}"))),
            None => cluster
                .spec
                .backup
                .as_ref()
                .and_then(|b| b.barman_object_store.as_ref())
                .and_then(|b| b["endpointURL"].as_str().filter(|e| is_garage(e)).map(|e| format!("barmanObjectStore endpointURL {e}"))),
        };
        if let Some(via) = via {
            out.push((ObjectRef::cnpg_cluster(ns, cname), via));
        }
    }
    out
}

fn step(id: &str, title: String, action: Action, needs: &[String], preconditions: Vec<Precondition>) -> Step {
    Step { id: id.into(), title, action, needs: needs.to_vec(), preconditions, recovery_source: None }
}

/// Garage names snapshot directories by RFC3339 time in seconds, `Z`-suffixed.
fn snapshot_name(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn describe(backup: &GarageBackupSource) -> String {
    match backup {
        GarageBackupSource::Nfs { server, path } => format!("nfs {server}:{path}"),
        GarageBackupSource::Pvc { claim_name } => format!("PVC {claim_name}"),
    }
}

/// The restore script for that snapshot layout; the chosen snapshot
/// is printed and written to the termination message.
const SCRIPT: &str = r#"set -eu
LATEST="${REQUESTED:-}"
if [ -z "$LATEST" ]; then
  for d in $(ls -1 /backup/snapshots 2>/dev/null | sort -r); do
    if [ -f "/backup/snapshots/$d/data.mdb" ]; then LATEST="$d"; break; fi
  done
fi
if [ -z "$LATEST" ] || [ ! -f "/backup/snapshots/$LATEST/data.mdb" ]; then
  echo "FATAL: no snapshots/${LATEST:-<timestamp>}/data.mdb in the backup" | tee /dev/termination-log
  exit 1
fi
echo "Restoring from snapshot: $LATEST"
find /dst -mindepth 1 -delete
for f in cluster_layout data_layout node_key node_key.pub peer_list lifecycle_worker_state scrub_info; do
  if [ -e "/backup/$f" ]; then cp "/backup/$f" "/dst/$f"; fi
done
if [ -e /dst/node_key ]; then chmod 600 /dst/node_key; fi
mkdir -p /dst/snapshots /dst/db.lmdb
cp -r /backup/snapshots/. /dst/snapshots/
cp "/backup/snapshots/$LATEST/data.mdb" /dst/db.lmdb/data.mdb
echo "Garage metadata restored from snapshot $LATEST" | tee /dev/termination-log
"#;

fn restore_job(garage: &crate::config::GarageConfig, backup: &GarageBackupSource, job: &str, snapshot: Option<&str>) -> serde_json::Value {
    let config = &garage.restore;
    let backup_volume = match backup {
        GarageBackupSource::Nfs { server, path } => json!({"name": "backup", "nfs": {"server": server, "path": path, "readOnly": true}}),
        GarageBackupSource::Pvc { claim_name } => json!({"name": "backup", "persistentVolumeClaim": {"claimName": claim_name, "readOnly": true}}),
    };
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "namespace": garage.namespace, "labels": {"app.kubernetes.io/managed-by": "lifeboat"}},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {"spec": {
                "restartPolicy": "Never",
                "securityContext": {"fsGroup": config.run_as, "runAsUser": config.run_as, "runAsGroup": config.run_as},
                "containers": [{
                    "name": "restore",
                    "image": config.image,
                    "command": ["sh", "-c"],
                    "args": [SCRIPT],
                    "env": [{"name": "REQUESTED", "value": snapshot.unwrap_or_default()}],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                    "volumeMounts": [{"name": "backup", "mountPath": "/backup", "readOnly": true}, {"name": "dst", "mountPath": "/dst"}],
                }],
                "volumes": [backup_volume, {"name": "dst", "persistentVolumeClaim": {"claimName": config.meta_pvc}}],
            }},
        },
    })
}

/// `garage-meta-restore`.
pub struct MetaRestore;

impl super::Playbook for MetaRestore {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo { name: PLAYBOOK, arguments: "[--name SNAPSHOT]", summary: "restore Garage's metadata database from its newest (or the named) snapshot" }
    }

    fn config_problems(&self, config: &crate::config::Config) -> Vec<String> {
        let mut problems = vec![];
        if let Err(e) = kind_and_name(&config.garage.restore.workload) {
            problems.push(format!("garage.restore.workload: {e}"));
        }
        if config.garage.restore.timeout.0.is_zero() {
            problems.push("garage.restore.timeout: must be longer than 0s".into());
        }
        problems
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        meta_restore(state, findings, trigger.name.as_deref())
    }
}
