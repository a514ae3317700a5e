//! Waiting for a volume provisioner to run again on a healthy node (see
//! `inspect::provisioners`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::Client;

use crate::plan::ObjectRef;

/// Which pod labelled `selector` in `object`'s namespace has been Ready for
/// `takeover_seconds` on a node other than `lost_node`, if one has.
pub(super) async fn ready_elsewhere(
    client: &Client,
    object: &ObjectRef,
    selector: &BTreeMap<String, String>,
    lost_node: &str,
    takeover_seconds: u64,
) -> Result<Option<String>, String> {
    let ns = object.namespace.as_deref().unwrap_or_default();
    let labels = crate::inspect::provisioners::label_selector(selector);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods.list(&ListParams::default().labels(&labels)).await.map_err(|e| format!("listing pods {labels} in {ns}: {e}"))?;
    let now = Utc::now();
    Ok(list.items.iter().find_map(|pod| {
        let since = ready_since(pod, lost_node)?;
        let ready_for = (now - since).num_seconds();
        (ready_for >= takeover_seconds as i64).then(|| {
            let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
            format!("{ns}/{} is Ready on {node} (for {ready_for}s, past the {takeover_seconds}s its leader Lease takes over in)", pod.metadata.name.as_deref().unwrap_or_default())
        })
    }))
}

/// When the pod became Ready, if it is Ready, not being deleted, and on a
/// node other than `lost_node`.
fn ready_since(pod: &Pod, lost_node: &str) -> Option<DateTime<Utc>> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty() && *n != lost_node)?;
    let ready = pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready" && c.status == "True")?;
    let t = ready.last_transition_time.as_ref()?.0;
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}
