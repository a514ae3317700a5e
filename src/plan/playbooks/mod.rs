//! Playbooks: (ClusterState, findings, trigger) → Plan. Pure and fast.

pub mod cnpg;
pub mod garage_meta;
pub mod kanidm;
pub mod mariadb;
pub mod node_loss;
pub mod s3_restore;
pub mod stale;
pub mod volsync;
pub mod wal_reset;

use serde::{Deserialize, Serialize};

use super::Plan;
use crate::cluster::ClusterState;
use crate::config::{Config, Route};
use crate::inspect::Findings;

/// What asked for a plan: CLI arguments or an alert's labels. The alert is a
/// hint; playbooks plan from the state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub node: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PlanError {
    #[error("unknown playbook {0:?} (known: {known})", known = PLAYBOOKS.join(", "))]
    UnknownPlaybook(String),
    #[error("{playbook} needs {what}")]
    MissingArgument { playbook: &'static str, what: &'static str },
    #[error("{0} not found in the cluster state")]
    NotFound(String),
}

/// The object named `ns/name` among `objects`, or NotFound naming its kind.
pub(crate) fn find_named<'a, T: crate::cluster::resources::LeanObject>(objects: &'a [std::sync::Arc<T>], kind: &str, ns: &str, wanted: &str) -> Result<&'a T, PlanError> {
    objects
        .iter()
        .find(|o| crate::cluster::namespace(o.metadata()) == ns && crate::cluster::name(o.metadata()) == wanted)
        .map(|o| o.as_ref())
        .ok_or_else(|| PlanError::NotFound(format!("{kind} {ns}/{wanted}")))
}

/// One playbook: what `lifeboat playbooks` lists about it, the alerts that
/// start it unless `remediation.routes` says otherwise, the checks on the
/// config section it owns, and its planner. A playbook built from existing
/// actions is one file implementing this plus its line in [`TABLE`].
pub trait Playbook: Sync {
    /// Its name, the CLI arguments it reads from the trigger (e.g. `-n
    /// NAMESPACE --name CLUSTER`) and what it does.
    fn info(&self) -> PlaybookInfo;
    fn name(&self) -> &'static str {
        self.info().name
    }
    /// The routes for the alerts lifeboat ships that start this playbook.
    fn default_routes(&self) -> Vec<Route> {
        vec![]
    }
    /// Problems in the part of the config this playbook owns.
    fn config_problems(&self, _config: &Config) -> Vec<String> {
        vec![]
    }
    fn plan(&self, state: &ClusterState, findings: &Findings, trigger: &Trigger) -> Result<Plan, PlanError>;
}

/// Every playbook, in the order `lifeboat playbooks` lists them.
pub const TABLE: &[&dyn Playbook] = &[
    &cnpg::InstanceLost,
    &mariadb::InstanceLost,
    &stale::Cleanup,
    &volsync::Restore,
    &wal_reset::ArchiveReset,
    &node_loss::NodeLoss,
    &s3_restore::S3Restore,
    &kanidm::CredentialReset,
    &garage_meta::MetaRestore,
];

/// The playbook called `name`.
pub fn find(name: &str) -> Option<&'static dyn Playbook> {
    TABLE.iter().copied().find(|p| p.name() == name)
}

/// The playbook names, in table order; iterates like a list of names.
pub const PLAYBOOKS: Names = Names;

#[derive(Clone, Copy, Debug)]
pub struct Names;

impl Names {
    pub fn to_vec(&self) -> Vec<&'static str> {
        TABLE.iter().map(|p| p.name()).collect()
    }

    pub fn contains(&self, name: &str) -> bool {
        find(name).is_some()
    }

    pub fn join(&self, separator: &str) -> String {
        self.to_vec().join(separator)
    }
}

impl IntoIterator for Names {
    type Item = &'static str;
    type IntoIter = std::vec::IntoIter<&'static str>;
    fn into_iter(self) -> Self::IntoIter {
        self.to_vec().into_iter()
    }
}

/// The routes of every playbook (the default of `remediation.routes`).
pub fn default_routes() -> Vec<Route> {
    TABLE.iter().flat_map(|p| p.default_routes()).collect()
}

/// Problems in the config that concern playbooks: names in
/// `remediation.modes` and `remediation.routes`, and each playbook's section.
pub fn config_problems(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for playbook in config.remediation.modes.keys() {
        if find(playbook).is_none() {
            problems.push(format!("remediation.modes: unknown playbook {playbook:?} (known: {})", PLAYBOOKS.join(", ")));
        }
    }
    for route in config.remediation.routes.iter() {
        if find(&route.playbook).is_none() {
            problems.push(format!("remediation.routes: alert {:?} routes to unknown playbook {:?}", route.alertname, route.playbook));
        }
    }
    problems.extend(TABLE.iter().flat_map(|p| p.config_problems(config)));
    problems
}

impl Default for crate::config::Routes {
    fn default() -> Self {
        crate::config::Routes(default_routes())
    }
}

/// What `lifeboat playbooks` lists: each playbook's arguments and purpose.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PlaybookInfo {
    pub name: &'static str,
    pub arguments: &'static str,
    pub summary: &'static str,
}

pub fn catalogue() -> Vec<PlaybookInfo> {
    TABLE.iter().map(|p| p.info()).collect()
}

impl Trigger {
    /// `--namespace`, which `playbook` needs.
    pub(crate) fn require_namespace(&self, playbook: &'static str) -> Result<&str, PlanError> {
        self.namespace.as_deref().ok_or(PlanError::MissingArgument { playbook, what: "--namespace" })
    }

    /// `--name`, which `playbook` needs; `what` says what it names, e.g. `--name (the Cluster)`.
    pub(crate) fn require_name(&self, playbook: &'static str, what: &'static str) -> Result<&str, PlanError> {
        self.name.as_deref().ok_or(PlanError::MissingArgument { playbook, what })
    }
}

pub fn plan(playbook: &str, state: &ClusterState, findings: &Findings, trigger: &Trigger) -> Result<Plan, PlanError> {
    let plan = find(playbook).ok_or_else(|| PlanError::UnknownPlaybook(playbook.to_string()))?.plan(state, findings, trigger)?;
    debug_assert!(plan.validate().is_ok(), "{:?}", plan.validate());
    Ok(plan)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalogue_lists_every_playbook_once() {
        let listed: Vec<&str> = super::catalogue().iter().map(|p| p.name).collect();
        assert_eq!(listed, super::PLAYBOOKS.to_vec());
        let mut unique = listed.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), listed.len(), "two playbooks share a name: {listed:?}");
    }
}
