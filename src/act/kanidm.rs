//! Writes to a kaniop-managed Kanidm: its replicas through the `Kanidm`
//! resource, and secrets taken from `kanidmd` by exec in the running pod.
//!
//! kaniop (pando85/kaniop v0.12.0, `libs/operator/src/kanidm/reconcile/
//! statefulset.rs` `create_statefulset`) builds each StatefulSet with
//! `replicas: replica_group.replicas` and server-side applies it on every
//! reconcile (`reconcile/mod.rs`), so a direct `kubectl scale` is undone; the
//! replica count lives in `spec.replicaGroups[].replicas` of the `Kanidm`.

use kube::api::{AttachParams, DynamicObject};
use kube::{Api, Client};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::jobs::JobError;
use crate::cluster::write::{patch_locked_or_refuse, LockedPatch};
use crate::plan::job::extract;
use crate::plan::ObjectRef;

type Result<T> = std::result::Result<T, JobError>;

/// The merge patch setting `replicas` of the replica group `group`,
/// rewriting `spec.replicaGroups` whole (a merge patch replaces lists) from
/// `current` so every other group and field stays as it is. `Ok(None)` when
/// it already has that count; an error when there is no such group.
pub fn replica_group_patch(current: &Value, group: &str, replicas: i32) -> std::result::Result<Option<Value>, String> {
    let mut groups = current["spec"]["replicaGroups"].as_array().cloned().unwrap_or_default();
    let entry = groups.iter_mut().find(|g| g["name"] == group).ok_or_else(|| format!("spec.replicaGroups has no group named {group}"))?;
    if entry["replicas"] == replicas {
        return Ok(None);
    }
    entry["replicas"] = json!(replicas);
    Ok(Some(json!({"spec": {"replicaGroups": groups}})))
}

pub async fn set_replicas(client: &Client, kanidm: &ObjectRef, group: &str, replicas: i32) -> Result<String> {
    let api: Api<DynamicObject> = super::runner::api(client, kanidm).await.map_err(JobError::Failed)?;
    match patch_locked_or_refuse(&api, &kanidm.name, |current| replica_group_patch(current, group, replicas)).await.map_err(|e| JobError::Failed(e.to_string()))? {
        LockedPatch::Patched => Ok(format!("{kanidm}: replica group {group} set to {replicas} (kaniop scales its StatefulSet)")),
        LockedPatch::AlreadySo => Ok(format!("{kanidm}: replica group {group} already had {replicas}")),
        LockedPatch::Refused(reason) => Err(JobError::Refused(format!("{kanidm}: {reason}"))),
    }
}

/// How much of an exec's output is read.
const EXEC_OUTPUT_LIMIT: u64 = 1 << 20;

/// Runs `command` in the running container (pods/exec, as kaniop runs
/// `kanidmd recover-account` in `reconcile/secret.rs` `recover_password`),
/// takes the value matching `pattern` from its stdout and writes it into
/// `secret` key `key`. The output travels only over the exec stream to this
/// process: it is never in a pod log, and never shown here either.
pub async fn exec_to_secret(client: &Client, pod: &ObjectRef, container: &str, command: &[String], secret: &ObjectRef, key: &str, pattern: &str) -> Result<String> {
    let ns = pod.namespace.as_deref().unwrap_or_default();
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let params = AttachParams::default().container(container).stdin(false).stdout(true).stderr(false);
    let mut process = pods.exec(&pod.name, command.to_vec(), &params).await.map_err(|e| JobError::Failed(format!("exec into {pod} container {container}: {e}")))?;
    let status = process.take_status();
    let mut output = String::new();
    if let Some(stdout) = process.stdout() {
        stdout
            .take(EXEC_OUTPUT_LIMIT)
            .read_to_string(&mut output)
            .await
            .map_err(|e| JobError::Failed(format!("reading the output of exec in {pod} (output not shown: it holds a secret): {e}")))?;
    }
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    let _ = process.join().await;
    let shown_command = command.join(" ");
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => {}
        Some(s) => {
            let why = s.message.or(s.reason).unwrap_or_default();
            return Err(JobError::Failed(format!("`{shown_command}` in {pod} failed: {why} (output not shown: it holds a secret)")));
        }
        None => return Err(JobError::Failed(format!("`{shown_command}` in {pod}: the exec stream ended without a status"))),
    }
    let Some(value) = extract(&output, pattern) else {
        return Err(JobError::Failed(format!("`{shown_command}` in {pod} printed no value matching {pattern:?} (output not shown: it holds a secret)")));
    };
    super::jobs::write_secret_key(client, secret, key, value).await?;
    Ok(format!("ran `{shown_command}` in {pod}: {key} updated in {secret} (value not shown, never in a log)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_group_patch_keeps_the_other_groups_and_fields() {
        let current = json!({"spec": {"replicaGroups": [
            {"name": "default", "replicas": 2, "primaryNode": true},
            {"name": "read", "replicas": 1, "role": "ReadReplica"},
        ]}});
        let patch = replica_group_patch(&current, "default", 0).unwrap().unwrap();
        assert_eq!(patch["spec"]["replicaGroups"], json!([{"name": "default", "replicas": 0, "primaryNode": true}, {"name": "read", "replicas": 1, "role": "ReadReplica"}]));
        assert_eq!(replica_group_patch(&current, "read", 1), Ok(None));
        assert!(replica_group_patch(&current, "gone", 0).unwrap_err().contains("no group named gone"));
    }
}
