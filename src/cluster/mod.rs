//! What lifeboat reads: lean typed objects, gathered into one immutable
//! [`ClusterState`] snapshot, from live watches or from a dump.

pub mod dump;
pub mod resources;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use resources::*;

/// Calls `$m!` once with the full list of (field, type) pairs. Every place
/// that must cover all kinds (snapshot fields, dump decoding, watches) expands
/// from this one list, so adding a kind is one line.
#[macro_export]
macro_rules! for_each_kind {
    ($m:ident) => {
        $m! {
            nodes: Node,
            persistent_volumes: PersistentVolume,
            persistent_volume_claims: PersistentVolumeClaim,
            pods: Pod,
            deployments: Deployment,
            stateful_sets: StatefulSet,
            replica_sets: ReplicaSet,
            cron_jobs: CronJob,
            jobs: Job,
            cnpg_clusters: CnpgCluster,
            scheduled_backups: ScheduledBackup,
            object_stores: ObjectStore,
            replication_sources: ReplicationSource,
            replication_destinations: ReplicationDestination,
            mariadbs: MariaDb,
            kustomizations: Kustomization,
            helm_releases: HelmRelease,
        }
    };
}

macro_rules! define_state {
    ($($field:ident: $ty:ident),* $(,)?) => {
        /// One consistent, immutable view of the cluster. Everything downstream
        /// (findings, triage, plans) is a pure function of this value.
        #[derive(Clone, Debug, Default)]
        pub struct ClusterState {
            /// The instant findings are evaluated at: wall clock when live, the
            /// capture time for a dump.
            pub now: DateTime<Utc>,
            /// Kinds whose API was listed (CRD installed); absent kinds are
            /// reported, never treated as "zero objects".
            pub listed_kinds: BTreeMap<String, bool>,
            $(pub $field: Vec<Arc<$ty>>,)*
        }

        impl ClusterState {
            /// Every kind lifeboat reads, in a stable order.
            pub fn all_kinds() -> Vec<KindInfo> {
                vec![$(<$ty as LeanObject>::INFO,)*]
            }
            /// Object count per kind label, for self-metrics.
            pub fn object_counts(&self) -> Vec<(String, usize)> {
                vec![$((<$ty as LeanObject>::INFO.label(), self.$field.len()),)*]
            }
            /// Sorts every list by (namespace, name) so outputs are deterministic.
            pub fn sort(&mut self) {
                $(self.$field.sort_by(|a, b| key(a.metadata()).cmp(&key(b.metadata())));)*
            }
        }
    };
}
for_each_kind!(define_state);

fn key(meta: &ObjectMeta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// `namespace/name` (or `name` for cluster-scoped objects).
pub fn display_name(meta: &ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

/// `metadata.creationTimestamp` as a chrono time.
pub fn created_at(meta: &ObjectMeta) -> Option<DateTime<Utc>> {
    let t = meta.creation_timestamp.as_ref()?.0;
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

pub fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

impl ClusterState {
    pub fn kind_listed(&self, info: &KindInfo) -> bool {
        self.listed_kinds.get(&info.label()).copied().unwrap_or(false)
    }

    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes.iter().find(|n| self::name(&n.metadata) == name)
    }

    pub fn pvc(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.persistent_volume_claims
            .iter()
            .find(|p| namespace(&p.metadata) == ns && self::name(&p.metadata) == name)
    }

    pub fn pods_using_claim<'a>(&'a self, ns: &'a str, claim: &'a str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        self.pods.iter().filter(move |p| {
            namespace(&p.metadata) == ns
                && p.spec
                    .volumes
                    .iter()
                    .any(|v| v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim))
        })
    }

    /// Follows controller owner references from a pod to its top workload
    /// (ReplicaSet → Deployment; StatefulSet; or the pod's direct owner).
    pub fn workload_of(&self, pod: &Pod) -> Option<WorkloadRef> {
        let ns = namespace(&pod.metadata);
        let owner = controller_owner(&pod.metadata)?;
        if owner.kind == "ReplicaSet" {
            let rs = self
                .replica_sets
                .iter()
                .find(|r| namespace(&r.metadata) == ns && name(&r.metadata) == owner.name);
            if let Some(deploy) = rs.and_then(|r| controller_owner(&r.metadata)) {
                return Some(WorkloadRef { namespace: ns.to_string(), kind: deploy.kind.clone(), name: deploy.name.clone() });
            }
        }
        Some(WorkloadRef { namespace: ns.to_string(), kind: owner.kind.clone(), name: owner.name.clone() })
    }
}

/// A workload identified by kind and name, e.g. `Deployment utils/forgejo`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct WorkloadRef {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

pub fn controller_owner(meta: &ObjectMeta) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let owners = meta.owner_references.as_ref()?;
    owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())
}

/// The Flux object that applied `meta`, from the labels kustomize-controller
/// and helm-controller stamp on everything they manage.
pub fn flux_owner(meta: &ObjectMeta) -> Option<FluxRef> {
    if let (Some(name), Some(ns)) = (
        label(meta, "kustomize.toolkit.fluxcd.io/name"),
        label(meta, "kustomize.toolkit.fluxcd.io/namespace"),
    ) {
        return Some(FluxRef { kind: "Kustomization".into(), namespace: ns.into(), name: name.into() });
    }
    if let (Some(name), Some(ns)) = (label(meta, "helm.toolkit.fluxcd.io/name"), label(meta, "helm.toolkit.fluxcd.io/namespace")) {
        return Some(FluxRef { kind: "HelmRelease".into(), namespace: ns.into(), name: name.into() });
    }
    None
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct FluxRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}
