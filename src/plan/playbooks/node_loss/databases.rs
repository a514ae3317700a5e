//! Which database an app uses, from what its pods name: a database Service
//! as a host in an env value, or a database's Secret in `secretKeyRef`,
//! `envFrom.secretRef` or a secret volume. The node-loss plan makes the app
//! wait for that database's recovery, and only for that one.

use std::collections::BTreeSet;

use crate::cluster::resources::Pod;
use crate::cluster::{name, namespace, ClusterState};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Database {
    Cnpg { namespace: String, name: String },
    Mariadb { namespace: String, name: String },
}

impl Database {
    /// The playbook that recovers a lost instance of it: its part in the node-loss plan.
    pub fn playbook(&self) -> &'static str {
        match self {
            Database::Cnpg { .. } => "cnpg-instance-lost",
            Database::Mariadb { .. } => "mariadb-instance-lost",
        }
    }

    pub fn namespace(&self) -> &str {
        match self {
            Database::Cnpg { namespace, .. } | Database::Mariadb { namespace, .. } => namespace,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Database::Cnpg { name, .. } | Database::Mariadb { name, .. } => name,
        }
    }

    /// The Services the operator creates for it.
    fn services(&self) -> Vec<String> {
        let n = self.name();
        match self {
            // CloudNativePG v1.30.0 api/v1/cluster_types.go (ServiceReadWriteSuffix "-rw",
            // ServiceReadSuffix "-r", ServiceReadOnlySuffix "-ro") and cluster_funcs.go
            // (GetServiceReadWriteName etc.: the Cluster's name + suffix).
            Database::Cnpg { .. } => vec![format!("{n}-rw"), format!("{n}-r"), format!("{n}-ro")],
            // mariadb-operator v25.10.4 internal/controller/mariadb_controller.go reconcileService:
            // the default Service has the MariaDB's own name, the headless one
            // `<name>-internal` (api/v1alpha1/mariadb_keys.go InternalServiceName), and with
            // HA (Galera or replication) `<name>-primary` / `<name>-secondary` (PrimaryServiceKey,
            // SecondaryServiceKey).
            Database::Mariadb { .. } => vec![n.to_string(), format!("{n}-primary"), format!("{n}-secondary"), format!("{n}-internal")],
        }
    }

    /// The Secrets the operator creates for its clients by default.
    fn secrets(&self) -> Vec<String> {
        let n = self.name();
        match self {
            // CloudNativePG v1.30.0 api/v1/cluster_types.go ApplicationUserSecretSuffix "-app",
            // SuperUserSecretSuffix "-superuser" (cluster_funcs.go GetApplicationSecretName /
            // GetSuperuserSecretName, unless spec.bootstrap.*.secret / spec.superuserSecret name another).
            Database::Cnpg { .. } => vec![format!("{n}-app"), format!("{n}-superuser")],
            // mariadb-operator v25.10.4 api/v1alpha1/mariadb_keys.go RootPasswordSecretKeyRef
            // (`<name>-root`) and PasswordSecretKeyRef (`<name>-password`), the generated defaults.
            Database::Mariadb { .. } => vec![format!("{n}-root"), format!("{n}-password")],
        }
    }

    /// `host` (as a pod in `pod_namespace` resolves it) is one of its Services
    /// (`svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`) or a pod behind one (`pod.svc.ns…`).
    fn serves(&self, host: &str, pod_namespace: &str) -> bool {
        let labels: Vec<&str> = host.split('.').collect();
        let as_service = (labels[0], labels.get(1).copied().unwrap_or(pod_namespace));
        let as_pod_of_service = (labels.len() >= 3).then(|| (labels[1], labels[2]));
        let services = self.services();
        [Some(as_service), as_pod_of_service].into_iter().flatten().any(|(service, ns)| ns == self.namespace() && services.iter().any(|s| s == service))
    }

    /// A Secret is read from the pod's own namespace.
    fn owns_secret(&self, secret: &str, pod_namespace: &str) -> bool {
        pod_namespace == self.namespace() && self.secrets().iter().any(|s| s == secret)
    }
}

/// The databases in `state` that the pods of `workload` (`Deployment forgejo`,
/// `StatefulSet x`, `Pod y`, as triage names them) in `ns` reference.
pub fn used_by(state: &ClusterState, ns: &str, workload: &str) -> BTreeSet<Database> {
    let Some((kind, workload_name)) = workload.split_once(' ') else { return BTreeSet::new() };
    let databases: Vec<Database> = state
        .cnpg_clusters
        .iter()
        .map(|c| Database::Cnpg { namespace: namespace(&c.metadata).into(), name: name(&c.metadata).into() })
        .chain(state.mariadbs.iter().map(|m| Database::Mariadb { namespace: namespace(&m.metadata).into(), name: name(&m.metadata).into() }))
        .collect();
    let pods = state.pods.iter().filter(|p| {
        namespace(&p.metadata) == ns
            && if kind == "Pod" { name(&p.metadata) == workload_name } else { state.workload_of(p).is_some_and(|w| w.kind == kind && w.name == workload_name) }
    });
    let mut used = BTreeSet::new();
    for pod in pods {
        let (hosts, secrets) = references(pod);
        used.extend(databases.iter().filter(|db| hosts.iter().any(|h| db.serves(h, ns)) || secrets.iter().any(|s| db.owns_secret(s, ns))).cloned());
    }
    used
}

/// The hosts and Secrets a pod's containers (init containers too) and volumes name.
fn references(pod: &Pod) -> (Vec<&str>, Vec<&str>) {
    let containers = pod.spec.containers.iter().chain(&pod.spec.init_containers);
    let hosts = containers.clone().flat_map(|c| &c.env.hosts).map(String::as_str).collect();
    let secrets = containers
        .flat_map(|c| c.env.secrets.iter().chain(&c.env_from_secrets))
        .chain(pod.spec.volumes.iter().filter_map(|v| v.secret.as_ref()).map(|s| &s.secret_name))
        .map(String::as_str)
        .collect();
    (hosts, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object<T: serde::de::DeserializeOwned>(ns: &str, name: &str) -> T {
        serde_json::from_value(json!({"metadata": {"namespace": ns, "name": name}})).unwrap()
    }

    fn state(pods: Vec<serde_json::Value>) -> ClusterState {
        ClusterState {
            cnpg_clusters: vec![object("db", "pg"), object("apps", "local")],
            mariadbs: vec![object("db", "maria")],
            pods: pods.into_iter().map(|p| serde_json::from_value(p).unwrap()).collect(),
            ..ClusterState::default()
        }
    }

    fn pod(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
        json!({"metadata": {"namespace": ns, "name": name}, "spec": spec})
    }

    fn cnpg(ns: &str, name: &str) -> Database {
        Database::Cnpg { namespace: ns.into(), name: name.into() }
    }
    fn mariadb(ns: &str, name: &str) -> Database {
        Database::Mariadb { namespace: ns.into(), name: name.into() }
    }

    #[test]
    fn hosts_name_the_operators_services_in_any_namespace() {
        let s = state(vec![
            pod("web", "a", json!({"containers": [{"name": "app", "env": [{"name": "DB", "value": "postgres://u:p@pg-rw.db.svc.cluster.local:5432/a"}]}]})),
            pod("web", "b", json!({"initContainers": [{"name": "init", "env": [{"name": "H", "value": "maria-primary.db"}]}], "containers": [{"name": "app"}]})),
            pod("web", "c", json!({"containers": [{"name": "app", "env": [{"name": "R", "value": "pg-ro.db:5432"}, {"name": "M", "value": "maria-0.maria-internal.db.svc"}]}]})),
            // `pg-rw` without a namespace resolves in the pod's own: no Cluster pg there.
            pod("web", "d", json!({"containers": [{"name": "app", "env": [{"name": "H", "value": "pg-rw"}, {"name": "X", "value": "pg-rw.other"}]}]})),
            pod("db", "e", json!({"containers": [{"name": "app", "env": [{"name": "H", "value": "pg-rw"}, {"name": "MYSQL_HOST", "value": "maria"}]}]})),
            // A bare word is a host only in a variable named for one.
            pod("db", "f", json!({"containers": [{"name": "app", "env": [{"name": "FLAVOUR", "value": "maria"}]}]})),
        ]);
        assert_eq!(used_by(&s, "web", "Pod a"), BTreeSet::from([cnpg("db", "pg")]));
        assert_eq!(used_by(&s, "web", "Pod b"), BTreeSet::from([mariadb("db", "maria")]));
        assert_eq!(used_by(&s, "web", "Pod c"), BTreeSet::from([cnpg("db", "pg"), mariadb("db", "maria")]));
        assert_eq!(used_by(&s, "web", "Pod d"), BTreeSet::new());
        assert_eq!(used_by(&s, "db", "Pod e"), BTreeSet::from([cnpg("db", "pg"), mariadb("db", "maria")]));
        assert_eq!(used_by(&s, "db", "Pod f"), BTreeSet::new());
    }

    #[test]
    fn secrets_name_the_operators_secrets_in_the_pods_own_namespace() {
        let s = state(vec![
            pod("apps", "a", json!({"containers": [{"name": "app", "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "local-app", "key": "password"}}}]}]})),
            pod("apps", "b", json!({"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "local-superuser"}}]}]})),
            pod("apps", "c", json!({"containers": [{"name": "app"}], "volumes": [{"name": "creds", "secret": {"secretName": "local-app"}}]})),
            // db's Secrets, read from another namespace, are another namespace's Secrets.
            pod("apps", "d", json!({"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "pg-app"}}, {"secretRef": {"name": "maria-root"}}]}]})),
            pod("db", "e", json!({"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "maria-password"}}]}]})),
            pod("apps", "f", json!({"containers": [{"name": "app", "envFrom": [{"secretRef": {"name": "unrelated"}}]}]})),
        ]);
        assert_eq!(used_by(&s, "apps", "Pod a"), BTreeSet::from([cnpg("apps", "local")]));
        assert_eq!(used_by(&s, "apps", "Pod b"), BTreeSet::from([cnpg("apps", "local")]));
        assert_eq!(used_by(&s, "apps", "Pod c"), BTreeSet::from([cnpg("apps", "local")]));
        assert_eq!(used_by(&s, "apps", "Pod d"), BTreeSet::new());
        assert_eq!(used_by(&s, "db", "Pod e"), BTreeSet::from([mariadb("db", "maria")]));
        assert_eq!(used_by(&s, "apps", "Pod f"), BTreeSet::new());
        assert_eq!(used_by(&s, "apps", "nonsense"), BTreeSet::new());
    }
}
