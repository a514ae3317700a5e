//! Builders for Kubernetes objects as an operator or kubelet would leave them.
//! Used both for pure fixtures (loaded through the dump path) and, in the
//! control-plane tests, for objects created on a real apiserver.
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use lifeboat::cluster::{dump, ClusterState};

pub fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("RFC3339 time")
}

pub fn state(now: &str, objects: Vec<Value>) -> ClusterState {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    dump::parse_str("fixture", &list.to_string(), at(now)).expect("fixture loads")
}

pub fn meta(ns: Option<&str>, name: &str) -> Value {
    let mut m = json!({"name": name, "uid": format!("uid-{name}"), "creationTimestamp": "2026-01-01T00:00:00Z"});
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m
}

pub fn node(name: &str, ready: &str, since: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node", "metadata": meta(None, name),
        "status": {"conditions": [{"type": "Ready", "status": ready, "reason": if ready == "True" {"KubeletReady"} else {"NodeStatusUnknown"}, "lastTransitionTime": since}]}
    })
}

/// A PV pinned with `key In [node]` (OpenEBS uses kubernetes.io/hostname).
pub fn pv_pinned(name: &str, key: &str, node: &str, claim_ns: &str, claim: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": meta(None, name),
        "spec": {
            "claimRef": {"namespace": claim_ns, "name": claim},
            "storageClassName": "openebs-hostpath",
            "persistentVolumeReclaimPolicy": "Delete",
            "capacity": {"storage": "10Gi"},
            "accessModes": ["ReadWriteOnce"],
            "local": {"path": format!("/var/mnt/local-hostpath/{name}")},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": "In", "values": [node]}]}]}}
        },
        "status": {"phase": "Bound"}
    })
}

pub fn pvc(ns: &str, name: &str, volume: &str, labels: Value) -> Value {
    let mut m = meta(Some(ns), name);
    m["labels"] = labels;
    json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": m,
        "spec": {"volumeName": volume, "storageClassName": "openebs-hostpath", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
        "status": {"phase": "Bound"}
    })
}

pub fn pod(ns: &str, name: &str, node: &str, claims: &[&str], labels: Value, owner: Option<(&str, &str)>) -> Value {
    let mut m = meta(Some(ns), name);
    m["labels"] = labels;
    if let Some((kind, owner_name)) = owner {
        m["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": owner_name, "uid": format!("uid-{owner_name}"), "controller": true}]);
    }
    let volumes: Vec<Value> = claims.iter().map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}})).collect();
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": m,
        "spec": {"nodeName": node, "volumes": volumes, "containers": [{"name": "app", "image": "registry.example/app:1"}]},
        "status": {"phase": "Pending"}
    })
}

pub fn workload(kind: &str, ns: &str, name: &str, replicas: i32, owner: Option<(&str, &str)>) -> Value {
    let mut m = meta(Some(ns), name);
    if let Some((okind, oname)) = owner {
        m["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": okind, "name": oname, "uid": format!("uid-{oname}"), "controller": true}]);
    }
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": m, "spec": {"replicas": replicas}, "status": {"replicas": replicas}})
}

pub fn condition(type_: &str, status: &str, reason: &str, since: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": "", "lastTransitionTime": since})
}

/// A CNPG Cluster backing up through the barman-cloud plugin.
pub fn cnpg_cluster(ns: &str, name: &str, primary: &str, conditions: Vec<Value>, server_name: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": meta(Some(ns), name),
        "spec": {"instances": 3, "plugins": [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": true,
                  "parameters": {"barmanObjectName": "cnpg-garage", "serverName": server_name}}]},
        "status": {"currentPrimary": primary, "targetPrimary": primary, "instances": 3, "readyInstances": 2,
                   "phase": "Cluster in healthy state", "conditions": conditions}
    })
}

pub fn object_store(ns: &str, name: &str, server: &str, first: &str, last: &str) -> Value {
    json!({
        "apiVersion": "barmancloud.cnpg.io/v1", "kind": "ObjectStore", "metadata": meta(Some(ns), name),
        "spec": {"configuration": {"destinationPath": "s3://cnpg/"}},
        "status": {"serverRecoveryWindow": {server: {"firstRecoverabilityPoint": first, "lastSuccessfulBackupTime": last}}}
    })
}

pub fn scheduled_backup(ns: &str, name: &str, cluster: &str, schedule: &str) -> Value {
    json!({
        "apiVersion": "postgresql.cnpg.io/v1", "kind": "ScheduledBackup", "metadata": meta(Some(ns), name),
        "spec": {"schedule": schedule, "cluster": {"name": cluster}, "method": "plugin"}
    })
}

pub fn replication_source(ns: &str, name: &str, pvc: &str, schedule: &str, paused: bool, last_sync: Option<&str>, result: &str) -> Value {
    let mut status = json!({"latestMoverStatus": {"result": result}, "conditions": [condition("Synchronizing", "False", "WaitingForSchedule", "2026-01-01T00:00:00Z")]});
    if let Some(t) = last_sync {
        status["lastSyncTime"] = json!(t);
    }
    json!({
        "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationSource", "metadata": meta(Some(ns), name),
        "spec": {"sourcePVC": pvc, "paused": paused, "trigger": {"schedule": schedule}, "kopia": {"repository": format!("{name}-volsync-secret")}},
        "status": status
    })
}

pub fn replication_destination(ns: &str, name: &str, pvc: Option<&str>) -> Value {
    let mut kopia = json!({"repository": "repo", "capacity": "10Gi", "accessModes": ["ReadWriteOnce"]});
    if let Some(p) = pvc {
        kopia["destinationPVC"] = json!(p);
    }
    json!({
        "apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationDestination", "metadata": meta(Some(ns), name),
        "spec": {"trigger": {"manual": "restore-once"}, "kopia": kopia},
        "status": {"lastManualSync": "restore-once", "lastSyncTime": "2026-01-02T00:00:00Z", "latestMoverStatus": {"result": "Successful"}}
    })
}

pub fn cron_job(ns: &str, name: &str, schedule: &str, last_success: Option<&str>) -> Value {
    let mut status = json!({});
    if let Some(t) = last_success {
        status["lastSuccessfulTime"] = json!(t);
        status["lastScheduleTime"] = json!(t);
    }
    json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta(Some(ns), name),
           "spec": {"schedule": schedule, "jobTemplate": {"spec": {}}}, "status": status})
}

pub fn kustomization(ns: &str, name: &str, suspended: bool, ready: &str) -> Value {
    json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": meta(Some(ns), name),
           "spec": {"suspend": suspended, "interval": "1h", "path": "./", "prune": true, "sourceRef": {"kind": "GitRepository", "name": "flux-system"}},
           "status": {"conditions": [condition("Ready", ready, "ReconciliationSucceeded", "2026-01-01T00:00:00Z")]}})
}
