//! Partial typed views of the Kubernetes objects lifeboat reads.
//!
//! Each struct holds only the fields some finding or playbook uses; serde drops
//! everything else while decoding, so the watch caches stay small. Values that
//! repeat across objects (condition types, phases) decode interned. Each kind
//! is generic over its metadata: `Pod<ObjectMeta>` is what watches and dumps
//! decode, `Pod` (with the compact [`Meta`]) what the cache holds. Field names
//! follow upstream (each type names its CRD); every field is optional or defaulted because
//! operators fill status in lazily.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

pub use super::intern::Atom;
pub use super::meta::{InternedMap, Meta, Owner, KEPT_ANNOTATIONS};

pub type Time = DateTime<Utc>;

/// A `metav1.Condition` or core-style condition (both share these fields).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: Atom,
    pub status: Atom,
    #[serde(default)]
    pub reason: Option<Atom>,
    #[serde(default)]
    pub message: Option<Box<str>>,
    #[serde(default)]
    pub last_transition_time: Option<Time>,
}

/// A list decoded to exactly its length. serde_json gives no length for a
/// JSON array, so a decoded `Vec` grows by doubling and keeps up to 4× the
/// room it needs (one container or volume in room for four); the cache holds
/// these lists for every object, so the slack was a third of its heap.
pub fn exact_vec<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    let mut list = Vec::<T>::deserialize(d)?;
    list.shrink_to_fit();
    Ok(list)
}

pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Which API a kind is served from, and whether it is an optional (CRD) kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KindInfo {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Provided by a CRD that may be absent (operator not installed).
    pub optional: bool,
}

impl KindInfo {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Label value used in metrics, e.g. `cnpg.Cluster` / `core.Pod`.
    pub fn label(&self) -> String {
        let short = match self.group {
            "" => "core",
            "apps" => "apps",
            "batch" => "batch",
            "postgresql.cnpg.io" => "cnpg",
            "barmancloud.cnpg.io" => "barmancloud",
            "volsync.backube" => "volsync",
            "k8s.mariadb.com" => "mariadb",
            "kustomize.toolkit.fluxcd.io" => "flux",
            "helm.toolkit.fluxcd.io" => "flux",
            other => other,
        };
        format!("{short}.{}", self.kind)
    }
}

/// Implemented by every lean object type (with the cache's [`Meta`]); ties it
/// to its API coordinates and to the form watch events and dumps decode.
pub trait LeanObject: Clone + std::fmt::Debug + Send + Sync + 'static {
    const INFO: KindInfo;
    /// The same object with `k8s_openapi`'s full `ObjectMeta`: what the
    /// watcher decodes (it needs each object's resourceVersion).
    type Wire: kube::Resource<DynamicType = ()> + serde::de::DeserializeOwned + Clone + std::fmt::Debug + Send + 'static;
    fn metadata(&self) -> &Meta;
    /// Keeps what the cache holds of a decoded object.
    fn from_wire(wire: Self::Wire) -> Self;
}

macro_rules! lean_scope {
    (true) => {
        k8s_openapi::NamespaceResourceScope
    };
    (false) => {
        k8s_openapi::ClusterResourceScope
    };
}

macro_rules! lean_kind {
    ($ty:ident { $($field:ident),* }, $group:literal, $version:literal, $kind:literal, $plural:literal, namespaced = $ns:tt, optional = $opt:literal) => {
        impl LeanObject for $ty {
            const INFO: KindInfo = KindInfo { group: $group, version: $version, kind: $kind, plural: $plural, namespaced: $ns, optional: $opt };
            type Wire = $ty<ObjectMeta>;
            fn metadata(&self) -> &Meta {
                &self.metadata
            }
            fn from_wire(wire: $ty<ObjectMeta>) -> Self {
                $ty { metadata: Meta::from(wire.metadata), $($field: wire.$field),* }
            }
        }
        impl kube::Resource for $ty<ObjectMeta> {
            type DynamicType = ();
            type Scope = lean_scope!($ns);
            fn kind(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($group)
            }
            fn version(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($version)
            }
            fn plural(_: &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

// ---------------------------------------------------------------- core kinds

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: NodeSpec,
    #[serde(default)]
    pub status: NodeStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpec {
    #[serde(default, deserialize_with = "exact_vec")]
    pub taints: Vec<Taint>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default)]
    pub effect: String,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
}
lean_kind!(Node { spec, status }, "", "v1", "Node", "nodes", namespaced = false, optional = false);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolume<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: PvSpec,
    #[serde(default)]
    pub status: PhaseStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PvSpec {
    #[serde(default)]
    pub claim_ref: Option<ClaimRef>,
    #[serde(default)]
    pub storage_class_name: Option<Atom>,
    #[serde(default)]
    pub node_affinity: Option<VolumeNodeAffinity>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimRef {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct VolumeNodeAffinity {
    #[serde(default)]
    pub required: Option<NodeSelector>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelector {
    #[serde(default, deserialize_with = "exact_vec")]
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    #[serde(default, deserialize_with = "exact_vec")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, deserialize_with = "exact_vec")]
    pub values: Vec<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PhaseStatus {
    #[serde(default)]
    pub phase: Option<Atom>,
}
lean_kind!(PersistentVolume { spec, status }, "", "v1", "PersistentVolume", "persistentvolumes", namespaced = false, optional = false);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersistentVolumeClaim<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: PvcSpec,
    #[serde(default)]
    pub status: PhaseStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PvcSpec {
    #[serde(default)]
    pub volume_name: Option<String>,
    #[serde(default)]
    pub storage_class_name: Option<Atom>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub access_modes: Vec<Atom>,
    #[serde(default)]
    pub resources: PvcResources,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PvcResources {
    #[serde(default)]
    pub requests: InternedMap,
}
lean_kind!(PersistentVolumeClaim { spec, status }, "", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", namespaced = true, optional = false);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Pod<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: PodSpec,
    #[serde(default)]
    pub status: PodStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub volumes: Vec<PodVolume>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub containers: Vec<NamedContainer>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub init_containers: Vec<NamedContainer>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodVolume {
    pub name: String,
    #[serde(default)]
    pub persistent_volume_claim: Option<ClaimSource>,
    #[serde(default)]
    pub secret: Option<SecretVolumeSource>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVolumeSource {
    #[serde(default)]
    pub secret_name: String,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClaimSource {
    pub claim_name: String,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NamedContainer {
    pub name: String,
    /// Only the hosts and Secrets `env` names (see `pod_references`).
    #[serde(default, with = "super::pod_references::env")]
    pub env: super::pod_references::EnvReferences,
    /// Only the Secrets `envFrom` names.
    #[serde(default, rename = "envFrom", with = "super::pod_references::env_from")]
    pub env_from_secrets: Vec<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<Atom>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatus {
    pub name: Atom,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub restart_count: i64,
    #[serde(default)]
    pub state: ContainerState,
    #[serde(default)]
    pub last_state: ContainerState,
}
/// Boxed: a pod carries two per container and at most one is set in each.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ContainerState {
    #[serde(default)]
    pub running: Option<Box<RunningState>>,
    #[serde(default)]
    pub waiting: Option<Box<StateReason>>,
    #[serde(default)]
    pub terminated: Option<Box<StateReason>>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningState {
    #[serde(default)]
    pub started_at: Option<Time>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateReason {
    #[serde(default)]
    pub reason: Option<Atom>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub finished_at: Option<Time>,
}
lean_kind!(Pod { spec, status }, "", "v1", "Pod", "pods", namespaced = true, optional = false);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    #[serde(default)]
    pub replicas: Option<i32>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub ready_replicas: Option<i32>,
}

/// Defines a kind whose fields are exactly `Workload`'s (the apps/v1 controllers).
macro_rules! workload_kind {
    ($ty:ident, $kind:literal, $plural:literal) => {
        #[derive(Clone, Debug, Default, Deserialize, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $ty<M = Meta> {
            pub metadata: M,
            #[serde(default)]
            pub spec: WorkloadSpec,
            #[serde(default)]
            pub status: WorkloadStatus,
        }
        lean_kind!($ty { spec, status }, "apps", "v1", $kind, $plural, namespaced = true, optional = false);
    };
}
workload_kind!(Deployment, "Deployment", "deployments");
workload_kind!(StatefulSet, "StatefulSet", "statefulsets");
workload_kind!(ReplicaSet, "ReplicaSet", "replicasets");

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJob<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: CronJobSpec,
    #[serde(default)]
    pub status: CronJobStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobSpec {
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub suspend: Option<bool>,
    #[serde(default)]
    pub time_zone: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CronJobStatus {
    #[serde(default)]
    pub last_schedule_time: Option<Time>,
    #[serde(default)]
    pub last_successful_time: Option<Time>,
}
lean_kind!(CronJob { spec, status }, "batch", "v1", "CronJob", "cronjobs", namespaced = true, optional = false);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub status: JobStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub start_time: Option<Time>,
    #[serde(default)]
    pub completion_time: Option<Time>,
}
lean_kind!(Job { status }, "batch", "v1", "Job", "jobs", namespaced = true, optional = false);

// ---------------------------------------------------------------- CloudNativePG

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgCluster<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: CnpgClusterSpec,
    #[serde(default)]
    pub status: CnpgClusterStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgClusterSpec {
    #[serde(default)]
    pub instances: Option<i32>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub plugins: Vec<CnpgPlugin>,
    #[serde(default)]
    pub backup: Option<CnpgBackupSpec>,
    /// Seconds CNPG waits before it fails over on its own.
    #[serde(default)]
    pub failover_delay: Option<i64>,
    #[serde(default)]
    pub postgresql: Option<CnpgPostgresql>,
    #[serde(default)]
    pub image_name: Option<String>,
    #[serde(default)]
    pub storage: Option<serde_json::Value>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgPostgresql {
    #[serde(default)]
    pub synchronous: Option<CnpgSynchronous>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgSynchronous {
    #[serde(default)]
    pub failover_quorum: Option<bool>,
}
/// One instance in `status.instancesReportedState`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgReportedState {
    #[serde(default)]
    pub is_primary: bool,
    #[serde(default, rename = "timeLineID")]
    pub timeline_id: Option<i64>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgPlugin {
    pub name: String,
    #[serde(default, rename = "isWALArchiver")]
    pub is_wal_archiver: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgBackupSpec {
    #[serde(default)]
    pub barman_object_store: Option<serde_json::Value>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CnpgClusterStatus {
    #[serde(default)]
    pub current_primary: Option<String>,
    #[serde(default)]
    pub target_primary: Option<String>,
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub instances: Option<i32>,
    #[serde(default)]
    pub ready_instances: Option<i32>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub instance_names: Vec<String>,
    #[serde(default, rename = "danglingPVC", deserialize_with = "exact_vec")]
    pub dangling_pvc: Vec<String>,
    #[serde(default, rename = "healthyPVC", deserialize_with = "exact_vec")]
    pub healthy_pvc: Vec<String>,
    #[serde(default, rename = "timelineID")]
    pub timeline_id: Option<i64>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub first_recoverability_point: Option<Time>,
    #[serde(default)]
    pub last_successful_backup: Option<Time>,
    #[serde(default)]
    pub last_failed_backup: Option<Time>,
    /// Pod names by health (`healthy`, `replicating`, `failed`).
    #[serde(default)]
    pub instances_status: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub instances_reported_state: BTreeMap<String, CnpgReportedState>,
}
lean_kind!(CnpgCluster { spec, status }, "postgresql.cnpg.io", "v1", "Cluster", "clusters", namespaced = true, optional = true);

pub const BARMAN_CLOUD_PLUGIN: &str = "barman-cloud.cloudnative-pg.io";

impl CnpgCluster {
    /// The barman-cloud plugin entry that archives WAL, if the cluster uses one.
    pub fn wal_archiver_plugin(&self) -> Option<&CnpgPlugin> {
        self.spec.plugins.iter().find(|p| p.name == BARMAN_CLOUD_PLUGIN && p.is_wal_archiver.unwrap_or(false) && p.enabled.unwrap_or(true))
    }
    /// (ObjectStore name, serverName) when backups go through the plugin.
    pub fn plugin_object_store(&self) -> Option<(String, String)> {
        let plugin = self.wal_archiver_plugin()?;
        let store = plugin.parameters.get("barmanObjectName")?.clone();
        let server = plugin.parameters.get("serverName").cloned().unwrap_or_else(|| crate::cluster::name(&self.metadata).to_string());
        Some((store, server))
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBackup<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: ScheduledBackupSpec,
    #[serde(default)]
    pub status: ScheduledBackupStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBackupSpec {
    #[serde(default)]
    pub schedule: String,
    #[serde(default)]
    pub suspend: Option<bool>,
    #[serde(default)]
    pub cluster: NameRef,
    #[serde(default)]
    pub method: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct NameRef {
    #[serde(default)]
    pub name: String,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledBackupStatus {
    #[serde(default)]
    pub last_schedule_time: Option<Time>,
    #[serde(default)]
    pub next_schedule_time: Option<Time>,
}
lean_kind!(ScheduledBackup { spec, status }, "postgresql.cnpg.io", "v1", "ScheduledBackup", "scheduledbackups", namespaced = true, optional = true);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStore<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: ObjectStoreSpec,
    #[serde(default)]
    pub status: ObjectStoreStatus,
}
/// barman-cloud plugin `ObjectStore.spec.configuration` (the
/// `BarmanObjectStoreConfiguration` of CNPG's barman-cloud API).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ObjectStoreSpec {
    #[serde(default)]
    pub configuration: serde_json::Value,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreStatus {
    #[serde(default)]
    pub server_recovery_window: BTreeMap<String, RecoveryWindow>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecoveryWindow {
    #[serde(default)]
    pub first_recoverability_point: Option<Time>,
    #[serde(default)]
    pub last_successful_backup_time: Option<Time>,
    #[serde(default)]
    pub last_failed_backup_time: Option<Time>,
}
lean_kind!(ObjectStore { spec, status }, "barmancloud.cnpg.io", "v1", "ObjectStore", "objectstores", namespaced = true, optional = true);

// ---------------------------------------------------------------- VolSync

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolsyncTrigger {
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub manual: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct MoverStatus {
    #[serde(default)]
    pub result: Option<String>,
    /// The mover's filtered log lines (VolSync keeps a short excerpt).
    #[serde(default)]
    pub logs: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VolsyncStatus {
    #[serde(default)]
    pub last_sync_time: Option<Time>,
    #[serde(default)]
    pub last_sync_start_time: Option<Time>,
    #[serde(default)]
    pub next_sync_time: Option<Time>,
    #[serde(default)]
    pub last_manual_sync: Option<String>,
    #[serde(default)]
    pub latest_mover_status: Option<MoverStatus>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSource<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: ReplicationSourceSpec,
    #[serde(default)]
    pub status: VolsyncStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSourceSpec {
    #[serde(default, rename = "sourcePVC")]
    pub source_pvc: Option<String>,
    #[serde(default)]
    pub trigger: Option<VolsyncTrigger>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub kopia: Option<KopiaSource>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KopiaSource {
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}
lean_kind!(ReplicationSource { spec, status }, "volsync.backube", "v1alpha1", "ReplicationSource", "replicationsources", namespaced = true, optional = true);

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestination<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: ReplicationDestinationSpec,
    #[serde(default)]
    pub status: VolsyncStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationDestinationSpec {
    #[serde(default)]
    pub trigger: Option<VolsyncTrigger>,
    #[serde(default)]
    pub paused: Option<bool>,
    #[serde(default)]
    pub kopia: Option<KopiaDestination>,
    #[serde(default)]
    pub restic: Option<KopiaDestination>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KopiaDestination {
    #[serde(default)]
    pub repository: Option<String>,
    #[serde(default, rename = "destinationPVC")]
    pub destination_pvc: Option<String>,
    #[serde(default)]
    pub capacity: Option<String>,
    #[serde(default)]
    pub storage_class_name: Option<String>,
    #[serde(default, deserialize_with = "exact_vec")]
    pub access_modes: Vec<String>,
    #[serde(default)]
    pub restore_as_of: Option<String>,
    #[serde(default)]
    pub source_identity: Option<SourceIdentity>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub hostname: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceIdentity {
    #[serde(default)]
    pub source_name: Option<String>,
    #[serde(default)]
    pub source_namespace: Option<String>,
    #[serde(default, rename = "sourcePVCName")]
    pub source_pvc_name: Option<String>,
}
lean_kind!(ReplicationDestination { spec, status }, "volsync.backube", "v1alpha1", "ReplicationDestination", "replicationdestinations", namespaced = true, optional = true);

impl ReplicationDestination {
    pub fn mover(&self) -> Option<&KopiaDestination> {
        self.spec.kopia.as_ref().or(self.spec.restic.as_ref())
    }
}

// ---------------------------------------------------------------- mariadb-operator

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MariaDb<M = Meta> {
    pub metadata: M,
    #[serde(default)]
    pub spec: MariaDbSpec,
    #[serde(default)]
    pub status: MariaDbStatus,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MariaDbSpec {
    #[serde(default)]
    pub replicas: Option<i32>,
    #[serde(default)]
    pub suspend: Option<bool>,
    #[serde(default)]
    pub galera: Option<GaleraSpec>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraSpec {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub recovery: Option<GaleraRecovery>,
    #[serde(default)]
    pub primary: Option<GaleraPrimary>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraPrimary {
    #[serde(default)]
    pub pod_index: Option<i32>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraRecovery {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub force_cluster_bootstrap_in_pod: Option<String>,
    /// Go durations (`10m`); unset means mariadb-operator's defaults.
    #[serde(default)]
    pub cluster_healthy_timeout: Option<String>,
    #[serde(default)]
    pub cluster_bootstrap_timeout: Option<String>,
    #[serde(default)]
    pub pod_recovery_timeout: Option<String>,
    #[serde(default)]
    pub pod_sync_timeout: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MariaDbStatus {
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub current_primary: Option<String>,
    #[serde(default)]
    pub galera_recovery: Option<GaleraRecoveryStatus>,
}
/// `status.galeraRecovery`: per pod, the position recovered with
/// `--wsrep-recover` (`recovered`) and the `grastate.dat` contents (`state`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraRecoveryStatus {
    #[serde(default)]
    pub recovered: BTreeMap<String, GaleraPosition>,
    #[serde(default)]
    pub state: BTreeMap<String, GaleraPosition>,
    /// When and in which pod the operator started bootstrapping.
    #[serde(default)]
    pub bootstrap: Option<GaleraBootstrapStatus>,
    #[serde(default)]
    pub pods_restarted: Option<bool>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraBootstrapStatus {
    #[serde(default)]
    pub time: Option<Time>,
    #[serde(default)]
    pub pod: Option<String>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GaleraPosition {
    #[serde(default)]
    pub seqno: i64,
    #[serde(default)]
    pub uuid: String,
    #[serde(default)]
    pub safe_to_bootstrap: Option<bool>,
}
lean_kind!(MariaDb { spec, status }, "k8s.mariadb.com", "v1alpha1", "MariaDB", "mariadbs", namespaced = true, optional = true);

// ---------------------------------------------------------------- Flux

/// Defines a Flux kind; Kustomization and HelmRelease share what we read.
macro_rules! flux_kind {
    ($ty:ident, $group:literal, $version:literal, $kind:literal, $plural:literal) => {
        #[derive(Clone, Debug, Default, Deserialize, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $ty<M = Meta> {
            pub metadata: M,
            #[serde(default)]
            pub spec: FluxSpec,
            #[serde(default)]
            pub status: FluxStatus,
        }
        lean_kind!($ty { spec, status }, $group, $version, $kind, $plural, namespaced = true, optional = true);
    };
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct FluxSpec {
    #[serde(default)]
    pub suspend: Option<bool>,
}
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FluxStatus {
    #[serde(default, deserialize_with = "exact_vec")]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub last_handled_reconcile_at: Option<String>,
}

flux_kind!(Kustomization, "kustomize.toolkit.fluxcd.io", "v1", "Kustomization", "kustomizations");
flux_kind!(HelmRelease, "helm.toolkit.fluxcd.io", "v2", "HelmRelease", "helmreleases");

#[cfg(test)]
mod tests {
    use super::*;

    /// What the watcher does: decode the JSON text of a list page's item.
    fn decode<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn lists_decoded_from_json_text_hold_no_room_beyond_their_items() {
        let pod: Pod<ObjectMeta> = decode(
            r#"{"metadata": {"name": "p", "namespace": "n"},
                "spec": {"nodeName": "n1", "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}],
                         "containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "s"}}],
                                         "env": [{"name": "DB_HOST", "value": "pg-rw"}, {"name": "P", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k"}}}]}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
                           "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0}]}}"#,
        );
        let pod = Pod::from_wire(pod);
        assert_eq!((pod.spec.volumes.len(), pod.spec.volumes.capacity()), (1, 1));
        assert_eq!((pod.spec.containers.len(), pod.spec.containers.capacity()), (1, 1));
        let container = &pod.spec.containers[0];
        assert_eq!((container.env_from_secrets.len(), container.env_from_secrets.capacity()), (1, 1));
        assert_eq!((container.env.hosts.len(), container.env.hosts.capacity()), (1, 1));
        assert_eq!((container.env.secrets.len(), container.env.secrets.capacity()), (1, 1));
        assert_eq!((pod.status.conditions.len(), pod.status.conditions.capacity()), (2, 2));
        assert_eq!((pod.status.container_statuses.len(), pod.status.container_statuses.capacity()), (1, 1));

        let pv: PersistentVolume<ObjectMeta> = decode(
            r#"{"metadata": {"name": "pv"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}"#,
        );
        let terms = &pv.spec.node_affinity.as_ref().unwrap().required.as_ref().unwrap().node_selector_terms;
        assert_eq!((terms.len(), terms.capacity()), (1, 1));
        assert_eq!((terms[0].match_expressions.len(), terms[0].match_expressions.capacity()), (1, 1));
        assert_eq!((terms[0].match_expressions[0].values.len(), terms[0].match_expressions[0].values.capacity()), (1, 1));

        let pvc: PersistentVolumeClaim<ObjectMeta> = decode(r#"{"metadata": {"name": "c", "namespace": "n"}, "spec": {"accessModes": ["ReadWriteOnce"]}}"#);
        assert_eq!((pvc.spec.access_modes.len(), pvc.spec.access_modes.capacity()), (1, 1));
    }
}
