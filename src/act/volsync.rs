//! VolSync checks the runner makes while a restore runs: when a manual sync
//! is really done, and whether anything still mounts a claim.

use kube::{Api, Client};
use serde_json::Value;

pub use crate::cluster::marks::{ssa_if_not_present, NOTHING_RESTORED_MARKERS, SSA_IF_NOT_PRESENT, SSA_KEY};
use crate::inspect::volsync::kopia_identity;
use crate::plan::ObjectRef;

/// Lines of mover logs kept in a step's detail or error.
const LOG_EXCERPT_LINES: usize = 6;

/// The outcome of a manual sync triggered with `token`, read from the live
/// ReplicationSource/Destination: `Ok(None)` while it has not completed,
/// `Ok(Some(detail))` once it succeeded, `Err(reason)` when it failed or
/// cannot be trusted. Completion is `status.lastManualSync == token`; only
/// then is `latestMoverStatus.result` read, because a result alone can be
/// left from an earlier sync. A paused object is never trusted: the kopia
/// fork reports a paused sync as complete without running the mover.
pub fn manual_sync_outcome(object: &Value, token: &str) -> Result<Option<String>, String> {
    if object["spec"]["paused"] == true {
        return Err("spec.paused is true: a paused kopia mover reports completion without running, so no restore result can be trusted; unpause it and trigger again".into());
    }
    let status = &object["status"];
    if status["lastManualSync"].as_str() != Some(token) {
        return Ok(None);
    }
    let result = status["latestMoverStatus"]["result"].as_str().unwrap_or("(none)");
    let logs = status["latestMoverStatus"]["logs"].as_str().unwrap_or("");
    let excerpt = log_excerpt(logs);
    if result != "Successful" {
        return Err(format!("the mover finished with result {result}; mover logs: {excerpt}"));
    }
    if NOTHING_RESTORED_MARKERS.iter().any(|m| logs.contains(m)) {
        return Err(format!("the mover found no snapshot to restore (nothing was restored; the volume may be empty); mover logs: {excerpt}"));
    }
    let at = status["lastSyncTime"].as_str().unwrap_or("?");
    Ok(Some(format!("restore {token} completed at {at}: Successful; mover logs: {excerpt}")))
}

/// The last few log lines, on one line.
pub fn log_excerpt(logs: &str) -> String {
    let lines: Vec<&str> = logs.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let tail = &lines[lines.len().saturating_sub(LOG_EXCERPT_LINES)..];
    if tail.is_empty() {
        "(none)".into()
    } else {
        tail.join(" | ")
    }
}

/// The kopia identity a live ReplicationDestination restores.
pub fn destination_identity(rd: &Value) -> Option<String> {
    let kopia = rd["spec"]["kopia"].as_object()?;
    let field = |k: &str| kopia.get(k).and_then(Value::as_str);
    let identity = &rd["spec"]["kopia"]["sourceIdentity"];
    Some(kopia_identity::of_destination(
        rd["metadata"]["name"].as_str().unwrap_or_default(),
        rd["metadata"]["namespace"].as_str().unwrap_or_default(),
        field("username"),
        field("hostname"),
        identity["sourceName"].as_str(),
        identity["sourceNamespace"].as_str(),
    ))
}

/// The kopia identity a live ReplicationSource backs up as.
pub fn source_identity(rs: &Value) -> String {
    kopia_identity::of_source(
        rs["metadata"]["name"].as_str().unwrap_or_default(),
        rs["metadata"]["namespace"].as_str().unwrap_or_default(),
        rs["spec"]["kopia"]["username"].as_str(),
        rs["spec"]["kopia"]["hostname"].as_str(),
    )
}

/// Whether the live destination still restores the planned identity and
/// the source still writes it; `Err` says what changed.
pub fn identity_holds(rd: Option<&Value>, rs: Option<&Value>, planned: &str) -> Result<bool, String> {
    let rd = rd.ok_or("the ReplicationDestination no longer exists")?;
    let restores = destination_identity(rd).ok_or("the ReplicationDestination no longer has a kopia section")?;
    if restores != planned {
        return Err(format!("the ReplicationDestination now restores kopia identity {restores}, not the planned {planned}: the mover would find \"No eligible snapshots\""));
    }
    if let Some(writes) = rs.map(source_identity).filter(|w| w != planned) {
        return Err(format!("the ReplicationSource now backs up as {writes}, not {planned}: its snapshots are not the ones the plan verified"));
    }
    Ok(true)
}

/// Names of the pods (terminating ones included) that mount the claim:
/// those scheduled to a node, as the PVC protection controller counts them
/// (kubernetes v1.35.4 `pkg/controller/volume/pvcprotection/
/// pvc_protection_controller.go` `podUsesPVC`). A pod with no node yet, such
/// as a backup CronJob's pod Pending on the lost node's claim, mounts nothing,
/// and the kubelet never starts a pod whose claim is being deleted.
pub async fn claim_users(client: &Client, pvc: &ObjectRef) -> Result<Vec<String>, String> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), pvc.namespace.as_deref().unwrap_or_default());
    let list = pods.list(&Default::default()).await.map_err(|e| format!("listing pods: {e}"))?;
    Ok(list
        .items
        .iter()
        .filter(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.node_name.as_deref().is_some_and(|n| !n.is_empty())
                    && s.volumes.iter().flatten().any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == pvc.name))
            })
        })
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rd(paused: bool, last: &str, result: &str, logs: &str) -> Value {
        json!({"spec": {"paused": paused, "trigger": {"manual": "t-2"}},
               "status": {"lastManualSync": last, "lastSyncTime": "2026-11-25T12:30:00Z", "latestMoverStatus": {"result": result, "logs": logs}}})
    }

    #[test]
    fn completion_is_the_token_then_the_result() {
        assert_eq!(manual_sync_outcome(&rd(false, "t-1", "Successful", "ok"), "t-2"), Ok(None), "an earlier sync's success is not ours");
        assert_eq!(manual_sync_outcome(&rd(false, "t-1", "Failed", "boom"), "t-2"), Ok(None), "nor its failure");
        let done = manual_sync_outcome(&rd(false, "t-2", "Successful", "Snapshot restore completed successfully"), "t-2").unwrap().unwrap();
        assert!(done.contains("completed at 2026-11-25T12:30:00Z") && done.contains("restore completed"), "{done}");
        let failed = manual_sync_outcome(&rd(false, "t-2", "Failed", "a\nb\nERROR: Failed to restore snapshot: k1\n"), "t-2").unwrap_err();
        assert!(failed.contains("result Failed") && failed.contains("a | b | ERROR: Failed to restore snapshot: k1"), "{failed}");
    }

    #[test]
    fn a_paused_object_or_an_empty_repository_is_never_success() {
        let paused = manual_sync_outcome(&rd(true, "t-2", "Successful", "ok"), "t-2").unwrap_err();
        assert!(paused.contains("paused"), "{paused}");
        let empty = manual_sync_outcome(&rd(false, "t-2", "Successful", "No eligible snapshots found\n=== No data will be restored ==="), "t-2").unwrap_err();
        assert!(empty.contains("no snapshot"), "{empty}");
    }

    #[test]
    fn the_ssa_marker_counts_as_a_label_or_an_annotation_in_any_case() {
        assert!(ssa_if_not_present(&json!({"metadata": {"labels": {SSA_KEY: "IfNotPresent"}}})));
        assert!(ssa_if_not_present(&json!({"metadata": {"annotations": {SSA_KEY: "ifnotpresent"}}})));
        assert!(!ssa_if_not_present(&json!({"metadata": {"labels": {SSA_KEY: "Ignore"}}})));
        assert!(!ssa_if_not_present(&json!({"metadata": {"labels": {"kustomize.toolkit.fluxcd.io/name": "app"}}})));
    }

    #[test]
    fn a_changed_identity_on_either_side_is_named() {
        let rd = |identity: Value| json!({"metadata": {"name": "app-dst", "namespace": "media"}, "spec": {"kopia": {"sourceIdentity": identity}}});
        let rs = |user: Option<&str>| json!({"metadata": {"name": "app", "namespace": "media"}, "spec": {"kopia": {"username": user, "hostname": user.map(|_| "nas")}}});
        assert_eq!(identity_holds(Some(&rd(json!({"sourceName": "app"}))), Some(&rs(None)), "app@media"), Ok(true));
        let dropped = identity_holds(Some(&rd(Value::Null)), Some(&rs(None)), "app@media").unwrap_err();
        assert!(dropped.contains("app-dst@media") && dropped.contains("No eligible snapshots"), "{dropped}");
        let moved = identity_holds(Some(&rd(json!({"sourceName": "app"}))), Some(&rs(Some("svc"))), "app@media").unwrap_err();
        assert!(moved.contains("svc@nas"), "{moved}");
        assert!(identity_holds(None, None, "app@media").is_err());
    }

    #[test]
    fn excerpts_keep_the_last_lines() {
        let logs: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        assert_eq!(log_excerpt(&logs), "line 5 | line 6 | line 7 | line 8 | line 9 | line 10");
        assert_eq!(log_excerpt(""), "(none)");
    }
}
