//! Pure inspection: `ClusterState` (+ config, + background probe results) →
//! `Findings`. One module per concern; no I/O anywhere below here.

pub mod cnpg;
pub mod cnpg_instances;
pub mod coverage;
pub mod cronjobs;
pub mod flux;
pub mod garage;
pub mod mariadb;
pub mod nodes;
pub mod provisioners;
pub mod volsync;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cluster::{name, namespace, ClusterState};
use crate::config::Config;

/// Shared lookups for the inspectors, computed once per snapshot.
pub struct Context<'a> {
    pub state: &'a ClusterState,
    pub config: &'a Config,
    /// PV name → the one node it is pinned to.
    pub pinned: BTreeMap<String, String>,
    pub lost: BTreeSet<String>,
}

impl Context<'_> {
    pub fn is_lost(&self, node: &str) -> bool {
        self.lost.contains(node)
    }

    /// The node a claim's volume is pinned to, if it is node-local.
    pub fn pvc_node(&self, ns: &str, pvc: &str) -> Option<&str> {
        let claim = self.state.pvc(ns, pvc)?;
        let pv = claim.spec.volume_name.as_deref()?;
        self.pinned.get(pv).map(String::as_str)
    }

    /// Where a database instance lives: its pod's node, else the node its
    /// same-named PVC is pinned to (CNPG instance PVC name = pod name).
    pub fn instance_node(&self, ns: &str, pod: &str) -> Option<String> {
        let from_pod = self.state.pods.iter().find(|p| namespace(&p.metadata) == ns && name(&p.metadata) == pod).and_then(|p| p.spec.node_name.clone());
        from_pod.or_else(|| self.pvc_node(ns, pod).map(str::to_string))
    }
}

/// Backup configuration that cannot deliver what it appears to.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ConfigProblem {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub problem: String,
    pub message: String,
}

impl ConfigProblem {
    pub fn new(kind: &str, namespace: &str, name: &str, problem: &str, message: String) -> Self {
        Self { kind: kind.into(), namespace: namespace.into(), name: name.into(), problem: problem.into(), message }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Findings {
    pub nodes: Vec<nodes::NodeFinding>,
    pub lost_volumes: Vec<nodes::PinnedVolume>,
    pub blocked_pods: Vec<nodes::BlockedPod>,
    pub cnpg: Vec<cnpg::CnpgFinding>,
    pub mariadb: Vec<mariadb::MariaDbFinding>,
    pub volsync: Vec<volsync::VolsyncFinding>,
    pub garage: garage::GarageFinding,
    pub flux: Vec<flux::FluxFinding>,
    pub backup_cronjobs: Vec<cronjobs::CronJobFinding>,
    /// Sorted by namespace and claim: look one up with `protection_of`.
    pub protection: Vec<coverage::PvcProtection>,
    pub config_problems: Vec<ConfigProblem>,
    /// The configuration these findings were made with; playbooks read
    /// their settings (restore templates, names) from it.
    #[serde(skip)]
    pub config: std::sync::Arc<Config>,
}

impl Findings {
    pub fn lost_nodes(&self) -> impl Iterator<Item = &nodes::NodeFinding> {
        self.nodes.iter().filter(|n| n.lost)
    }

    /// How claim `namespace/pvc` is protected (a binary search: planning
    /// asks this for every claim of a lost node).
    pub fn protection_of(&self, namespace: &str, pvc: &str) -> Option<&coverage::PvcProtection> {
        let index = self.protection.binary_search_by(|p| (p.namespace.as_str(), p.pvc.as_str()).cmp(&(namespace, pvc))).ok()?;
        Some(&self.protection[index])
    }
}

pub fn inspect(state: &ClusterState, config: &Config, garage_probe: &garage::GarageProbe) -> Findings {
    let pinned = nodes::pinned_nodes(state);
    let node_findings = nodes::node_findings(state, config, &pinned);
    let lost: BTreeSet<String> = node_findings.iter().filter(|n| n.lost).map(|n| n.node.clone()).collect();
    let ctx = Context { state, config, pinned, lost };

    let mut problems = Vec::new();
    let lost_volumes = nodes::pinned_volumes_on(state, &ctx.pinned, &ctx.lost);
    let blocked_pods = nodes::blocked_pods(state, &lost_volumes);
    let cnpg = cnpg::inspect(&ctx, &mut problems);
    let mariadb = mariadb::inspect(&ctx);
    let volsync = volsync::inspect(&ctx, &mut problems);
    let garage = garage::inspect(&ctx, garage_probe);
    let flux = flux::inspect(&ctx);
    let backup_cronjobs = cronjobs::inspect(&ctx, &mut problems);
    let protection = coverage::inspect(&ctx, &coverage::Sources { cnpg: &cnpg, mariadb: &mariadb, volsync: &volsync, cronjobs: &backup_cronjobs, garage: &garage });
    problems.sort_by(|a, b| (&a.namespace, &a.name, &a.problem).cmp(&(&b.namespace, &b.name, &b.problem)));
    Findings {
        nodes: node_findings,
        lost_volumes,
        blocked_pods,
        cnpg,
        mariadb,
        volsync,
        garage,
        flux,
        backup_cronjobs,
        protection,
        config_problems: problems,
        config: std::sync::Arc::new(config.clone()),
    }
}
