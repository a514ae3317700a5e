//! The name of one Kubernetes object, as plans, steps and the journal refer to it.

use serde::{Deserialize, Serialize};

/// An object a step touches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectRef {
    pub fn namespaced(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self { api_version: api_version.into(), kind: kind.into(), namespace: Some(namespace.into()), name: name.into() }
    }
    pub fn pod(namespace: &str, name: &str) -> Self {
        Self::namespaced("v1", "Pod", namespace, name)
    }
    pub fn pvc(namespace: &str, name: &str) -> Self {
        Self::namespaced("v1", "PersistentVolumeClaim", namespace, name)
    }
    pub fn cnpg_cluster(namespace: &str, name: &str) -> Self {
        Self::namespaced("postgresql.cnpg.io/v1", "Cluster", namespace, name)
    }
    /// `kubectl` resource name, e.g. `cluster.postgresql.cnpg.io`.
    pub fn kubectl_resource(&self) -> String {
        match self.api_version.split_once('/') {
            Some((group, _)) => format!("{}.{group}", self.kind.to_lowercase()),
            None => self.kind.to_lowercase(),
        }
    }
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}
