//! The cluster-wide kill switch: while the ConfigMap `lifeboat-kill-switch`
//! exists in lifeboat's namespace (or `remediation.killSwitch` is set), no
//! remediation step starts, on any replica. A ConfigMap because it is what an
//! operator can create in a panic with plain kubectl, and it survives restarts.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

pub const NAME: &str = "lifeboat-kill-switch";

/// Whether the switch is engaged. An API error counts as engaged: fail closed.
pub async fn engaged(client: &Client, namespace: &str) -> bool {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match maps.get_opt(NAME).await {
        Ok(found) => found.is_some(),
        Err(error) => {
            tracing::warn!(%error, "cannot read the kill switch; treating it as engaged");
            true
        }
    }
}

pub async fn engage(client: &Client, namespace: &str, by: &str, reason: &str) -> Result<(), kube::Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/managed-by": "lifeboat"}},
        "data": {"engagedBy": by, "reason": reason, "engagedAt": chrono::Utc::now().to_rfc3339()}
    }))
    .expect("ConfigMap literal");
    match maps.create(&PostParams::default(), &map).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn release(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    match maps.delete(NAME, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
