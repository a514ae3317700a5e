//! What lifeboat reads: lean typed objects, gathered into one immutable
//! [`ClusterState`] snapshot, from live watches or from a dump.

pub mod capture;
pub mod connect;
pub mod dump;
pub mod intern;
pub mod marks;
pub mod meta;
mod object_ref;
pub mod pod_references;
pub mod resources;
pub mod watch;
pub mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use object_ref::ObjectRef;
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
            /// Lookups built by [`ClusterState::finish`].
            pub index: StateIndex,
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
            /// Sorts every list by (namespace, name) so outputs are
            /// deterministic, and builds the lookup index. Call once after
            /// filling the lists.
            pub fn finish(&mut self) {
                $(self.$field.sort_by(|a, b| key(a.metadata()).cmp(&key(b.metadata())));)*
                self.index = StateIndex::build(self);
            }
        }
    };
}
for_each_kind!(define_state);

fn key(meta: &Meta) -> (&str, &str) {
    (meta.namespace.as_deref().unwrap_or(""), meta.name.as_deref().unwrap_or(""))
}

/// `namespace/name` (or `name` for cluster-scoped objects).
pub fn display_name(meta: &Meta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => name(meta).to_string(),
    }
}

pub fn name(meta: &Meta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &Meta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

/// `metadata.creationTimestamp` as a chrono time.
pub fn created_at(meta: &Meta) -> Option<DateTime<Utc>> {
    let t = meta.creation_timestamp.as_ref()?.0;
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32)
}

pub fn label<'a>(meta: &'a Meta, key: &str) -> Option<&'a str> {
    meta.labels.as_ref()?.get(key)
}

impl ClusterState {
    pub fn kind_listed(&self, info: &KindInfo) -> bool {
        self.listed_kinds.get(&info.label()).copied().unwrap_or(false)
    }

    pub fn node(&self, name: &str) -> Option<&Arc<Node>> {
        find_sorted(&self.nodes, ("", name))
    }

    pub fn pvc(&self, ns: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        find_sorted(&self.persistent_volume_claims, (ns, name))
    }

    pub fn pods_using_claim<'a>(&'a self, ns: &str, claim: &str) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
        let claims = &self.index.pods_by_claim;
        let claim_of = |&(pod, volume): &(u32, u32)| self.pod_claim(pod, volume);
        let start = claims.partition_point(|entry| claim_of(entry) < (ns, claim));
        let end = start + claims[start..].partition_point(|entry| claim_of(entry) == (ns, claim));
        claims[start..end].iter().map(|&(pod, _)| &self.pods[pod as usize])
    }

    /// (namespace, claim name) of a pod's `volume`-th volume (a claim).
    fn pod_claim(&self, pod: u32, volume: u32) -> (&str, &str) {
        let pod = &self.pods[pod as usize];
        let claim = pod.spec.volumes[volume as usize].persistent_volume_claim.as_ref().map_or("", |c| c.claim_name.as_str());
        (namespace(&pod.metadata), claim)
    }

    /// Follows controller owner references from a pod to its top workload
    /// (ReplicaSet → Deployment; StatefulSet; or the pod's direct owner).
    pub fn workload_of(&self, pod: &Pod) -> Option<WorkloadRef> {
        let ns = namespace(&pod.metadata);
        let owner = controller_owner(&pod.metadata)?;
        if owner.kind == "ReplicaSet" {
            let rs = self.replica_sets.iter().find(|r| namespace(&r.metadata) == ns && name(&r.metadata) == owner.name);
            if let Some(deploy) = rs.and_then(|r| controller_owner(&r.metadata)) {
                return Some(WorkloadRef { namespace: ns.to_string(), kind: deploy.kind.to_string(), name: deploy.name.to_string() });
            }
        }
        Some(WorkloadRef { namespace: ns.to_string(), kind: owner.kind.to_string(), name: owner.name.to_string() })
    }
}

/// The object named `key` in a list [`ClusterState::finish`] sorted.
fn find_sorted<'a, K: LeanObject>(objects: &'a [Arc<K>], wanted: (&str, &str)) -> Option<&'a Arc<K>> {
    objects.binary_search_by(|o| key(o.metadata()).cmp(&wanted)).ok().map(|i| &objects[i])
}

/// Lookups over a snapshot's lists, so findings stay linear on clusters with
/// tens of thousands of objects. Nodes and claims are found by binary search
/// in their sorted lists; pods by the claims they mount need this one table
/// of positions (no copies of names).
#[derive(Clone, Debug, Default)]
pub struct StateIndex {
    /// (pod, volume) positions of every claim a pod mounts, sorted by
    /// (namespace, claim name).
    pods_by_claim: Vec<(u32, u32)>,
}

impl StateIndex {
    fn build(state: &ClusterState) -> Self {
        let mut pods_by_claim: Vec<(u32, u32)> = Vec::new();
        for (i, pod) in state.pods.iter().enumerate() {
            for (v, volume) in pod.spec.volumes.iter().enumerate() {
                if volume.persistent_volume_claim.is_some() {
                    pods_by_claim.push((i as u32, v as u32));
                }
            }
        }
        // Stable: pods mounting one claim stay in list order.
        pods_by_claim.sort_by(|&(p1, v1), &(p2, v2)| state.pod_claim(p1, v1).cmp(&state.pod_claim(p2, v2)));
        StateIndex { pods_by_claim }
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

pub fn controller_owner(meta: &Meta) -> Option<&Owner> {
    let owners = meta.owner_references.as_ref()?;
    owners.iter().find(|o| o.controller == Some(true)).or_else(|| owners.first())
}

/// The Flux object that applied `meta`, from the labels kustomize-controller
/// and helm-controller stamp on everything they manage.
pub fn flux_owner(meta: &Meta) -> Option<FluxRef> {
    if let (Some(name), Some(ns)) = (label(meta, "kustomize.toolkit.fluxcd.io/name"), label(meta, "kustomize.toolkit.fluxcd.io/namespace")) {
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

impl FluxRef {
    pub fn object_ref(&self) -> ObjectRef {
        let api_version = if self.kind == "HelmRelease" { "helm.toolkit.fluxcd.io/v2" } else { "kustomize.toolkit.fluxcd.io/v1" };
        ObjectRef::namespaced(api_version, &self.kind, &self.namespace, &self.name)
    }
}
