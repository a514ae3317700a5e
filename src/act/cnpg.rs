//! CloudNativePG writes, as `kubectl cnpg promote` performs them (see FACTS).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// The status merge patch that asks CNPG to promote `pod`: `targetPrimary`
/// (never `currentPrimary`: the operator sets that once promotion happened),
/// its timestamp, the switchover phase, and Ready=False. None when `pod` is
/// already the target (promote is idempotent). The caller sends it with
/// [`super::write::patch_status_locked`], which adds the resourceVersion lock.
pub fn promote_status_patch(current: &Value, pod: &str, now: DateTime<Utc>) -> Option<Value> {
    let status = &current["status"];
    if status["targetPrimary"].as_str() == Some(pod) {
        return None;
    }
    let stamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // A merge patch replaces lists whole: rewrite Ready, keep the others as they are.
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "Ready");
    conditions.push(json!({
        "type": "Ready",
        "status": "False",
        "reason": "ClusterIsNotReady",
        "message": "Cluster Is Not Ready",
        "lastTransitionTime": stamp,
    }));
    Some(json!({
        "status": {
            "targetPrimary": pod,
            "targetPrimaryTimestamp": stamp,
            "phase": "Switchover in progress",
            "phaseReason": format!("Switching over to {pod}"),
            "conditions": conditions,
        }
    }))
}
