//! The VolSync kopia mover of the perfectra1n fork (perfectra1n/volsync
//! v0.17.11), played for the ReplicationDestinations of one namespace.
//!
//! A destination whose `spec.trigger.manual` differs from
//! `status.lastManualSync` runs one restore (internal/controller/
//! replicationdestination_controller.go + mover/kopia/mover.go): the mover
//! Job mounts `destinationPVC`, so it runs only when
//! * the destination is not paused (mover.go `m.paused`: the Job is kept at
//!   parallelism 0 and never runs);
//! * the claim exists, is not being deleted and is fresh (no volume yet: it
//!   is provisioned where the mover runs; an old volume pinned to a dead
//!   node can never be mounted) — mover.go `ensureJob` with
//!   `configureAffinity`, which follows the pods that use the claim;
//! * no pod mounts the claim (ReadWriteOnce: the app would hold it
//!   elsewhere, or is still writing into it);
//! * the ReplicationSource that backs the claim up is paused: not VolSync's
//!   own rule but the issue's, so a playbook that restores under a running
//!   backup fails here rather than in production.
//!
//! The mover looks snapshots up by `username@hostname`, derived as
//! internal/controller/mover/kopia/builder.go does (re-written here from
//! that file, independently of lifeboat's own derivation). When no source
//! in the namespace with a completed backup writes that identity,
//! mover-kopia/entry.sh `do_restore` prints "No eligible snapshots found",
//! "=== No data will be restored ===" and returns 0: the result is
//! Successful although nothing was restored.

#![allow(dead_code)]

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use super::k8s::{api_for, rfc3339, set_status};

const VS: &str = "volsync.backube/v1alpha1";

/// What the mover logs when it restores.
pub const RESTORED_LOGS: &str = "Selected snapshot with id: kabc123\nSnapshot restore completed successfully";
/// entry.sh's output when the identity has no snapshot.
pub const NO_SNAPSHOT_LOGS: &str = "No eligible snapshots found\n=== No data will be restored ===";

/// Sanitising as builder.go `sanitizeForIdentifier`.
fn clean(input: &str, hostname: bool) -> String {
    let mut out = String::new();
    for c in input.chars() {
        if c.is_ascii_alphanumeric() || c == '-' {
            out.push(c);
        } else if c == '_' {
            out.push(if hostname { '-' } else { '_' });
        } else if c == '.' && hostname {
            out.push(c);
        }
    }
    let trim: &[char] = if hostname { &['-', '.'] } else { &['-', '_'] };
    out.trim_matches(trim).to_string()
}

fn given(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

fn user(name: &str) -> String {
    let u = clean(name, false);
    if u.is_empty() {
        "volsync-default".into()
    } else {
        u.chars().take(50).collect()
    }
}

fn host(namespace: &str, name: &str) -> String {
    [clean(namespace, true), clean(name, true)].into_iter().find(|s| !s.is_empty()).unwrap_or_else(|| "volsync-default".into())
}

/// builder.go `createSourceMover`.
pub fn source_identity(rs: &Value) -> String {
    let (name, ns) = (rs["metadata"]["name"].as_str().unwrap_or(""), rs["metadata"]["namespace"].as_str().unwrap_or(""));
    let u = given(&rs["spec"]["kopia"]["username"]).unwrap_or_else(|| user(name));
    let h = given(&rs["spec"]["kopia"]["hostname"]).unwrap_or_else(|| host(ns, name));
    format!("{u}@{h}")
}

/// builder.go `createDestinationMover`: explicit username/hostname, else
/// `sourceIdentity`, else the destination's own name and namespace.
pub fn destination_identity(rd: &Value) -> String {
    let kopia = &rd["spec"]["kopia"];
    let (name, ns) = (rd["metadata"]["name"].as_str().unwrap_or(""), rd["metadata"]["namespace"].as_str().unwrap_or(""));
    let (from, from_ns) = match given(&kopia["sourceIdentity"]["sourceName"]) {
        Some(source) => (source, given(&kopia["sourceIdentity"]["sourceNamespace"]).unwrap_or_else(|| ns.to_string())),
        None => (name.to_string(), ns.to_string()),
    };
    let u = given(&kopia["username"]).unwrap_or_else(|| user(&from));
    let h = given(&kopia["hostname"]).unwrap_or_else(|| host(&from_ns, &from));
    format!("{u}@{h}")
}

/// Why the mover cannot run yet, if it cannot.
fn blocked(rd: &Value, claim: Option<&Value>, pods: &[Value], sources: &[Value]) -> Option<String> {
    let target = rd["spec"]["kopia"]["destinationPVC"].as_str().unwrap_or_default();
    if rd["spec"]["paused"] == true {
        return Some("destination paused".into());
    }
    let Some(claim) = claim else { return Some(format!("claim {target} missing")) };
    if !claim["metadata"]["deletionTimestamp"].is_null() || !claim["spec"]["volumeName"].is_null() {
        return Some(format!("claim {target} is not fresh"));
    }
    let mounts = |p: &&Value| p["spec"]["volumes"].as_array().is_some_and(|vs| vs.iter().any(|v| v["persistentVolumeClaim"]["claimName"] == target));
    if let Some(p) = pods.iter().find(mounts) {
        return Some(format!("pod {} mounts {target}", p["metadata"]["name"]));
    }
    if let Some(rs) = sources.iter().find(|rs| rs["spec"]["sourcePVC"] == target && rs["spec"]["paused"] != true) {
        return Some(format!("source {} still backs {target} up", rs["metadata"]["name"]));
    }
    None
}

/// One pass over the namespace's destinations; returns what each blocked one waits for.
pub async fn tick(client: &kube::Client, ns: &str) -> Vec<String> {
    let list = |kind: &'static str| async move {
        let api = api_for(client, if kind == "Pod" || kind == "PersistentVolumeClaim" { "v1" } else { VS }, kind, Some(ns)).await;
        api.list(&Default::default()).await.map(|l| l.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect::<Vec<Value>>()).unwrap_or_default()
    };
    let (rds, sources, pods, claims) = (list("ReplicationDestination").await, list("ReplicationSource").await, list("Pod").await, list("PersistentVolumeClaim").await);
    let mut waiting = vec![];
    for rd in rds {
        let manual = rd["spec"]["trigger"]["manual"].as_str().unwrap_or_default().to_string();
        if manual.is_empty() || Some(manual.as_str()) == rd["status"]["lastManualSync"].as_str() {
            continue;
        }
        let target = rd["spec"]["kopia"]["destinationPVC"].as_str().unwrap_or_default();
        let claim = claims.iter().find(|c| c["metadata"]["name"] == target);
        if let Some(why) = blocked(&rd, claim, &pods, &sources) {
            waiting.push(why);
            continue;
        }
        let wanted = destination_identity(&rd);
        let found = sources.iter().any(|rs| !rs["status"]["lastSyncTime"].is_null() && source_identity(rs) == wanted);
        let logs = if found { RESTORED_LOGS } else { NO_SNAPSHOT_LOGS };
        set_status(
            client,
            VS,
            "ReplicationDestination",
            Some(ns),
            rd["metadata"]["name"].as_str().unwrap(),
            json!({
            "lastManualSync": manual, "lastSyncTime": rfc3339(Utc::now()), "lastSyncDuration": "12s",
            "latestMoverStatus": {"result": "Successful", "logs": logs}}),
        )
        .await;
    }
    waiting
}

/// Plays the mover until aborted.
pub async fn play(client: kube::Client, ns: String) {
    loop {
        tick(&client, &ns).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
