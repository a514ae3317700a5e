//! `kanidm-credential-reset`: the fix for kaniop failing to
//! authenticate after a restore. `kanidmd recover-account` talks to the
//! running server's admin socket (kanidm/kanidm v1.x `server/daemon/src/
//! main.rs`: `KanidmdOpt::RecoverAccount` goes through the admin socket of
//! the live kanidmd), so it runs where kaniop runs it: by exec in the running
//! pod (pando85/kaniop v0.12.0 `libs/operator/src/kanidm/reconcile/
//! secret.rs` `recover_password`), for `admin`, then `idm_admin`. Each new
//! password comes back over the exec stream to lifeboat only and goes
//! straight into the `<kanidm>-admin-passwords` Secret: never into a pod
//! log, the journal or a report. Then the OIDC clients are bounced.

use super::PlanError;
use crate::cluster::{name, namespace, ClusterState};
use crate::config::oidc_client;
use crate::inspect::Findings;
use crate::plan::{Action, ObjectRef, Plan, Precondition, Step, WaitCondition};

pub const PLAYBOOK: &str = "kanidm-credential-reset";
/// What `kanidmd recover-account` prints (kaniop's `PASSWORD_REGEX`: `new_password:\s*"([^"]+)"`).
pub const PASSWORD_PATTERN: &str = "new_password: \"{}\"";
/// kaniop's kanidmd container (`reconcile/statefulset.rs`).
const CONTAINER: &str = "kanidm";

pub fn credential_reset(state: &ClusterState, findings: &Findings) -> Result<Plan, PlanError> {
    let config = &findings.config.kanidm;
    let ns = config.namespace.as_str();
    let sts_name = format!("{}-{}", config.name, config.replica_group);
    if !state.stateful_sets.iter().any(|s| namespace(&s.metadata) == ns && name(&s.metadata) == sts_name) {
        return Err(PlanError::NotFound(format!("StatefulSet {ns}/{sts_name} (kanidm.name + kanidm.replicaGroup)")));
    }
    let secret = ObjectRef::namespaced("v1", "Secret", ns, &format!("{}-admin-passwords", config.name));
    let pod = ObjectRef::pod(ns, &format!("{sts_name}-0"));
    let mut plan = Plan::new(PLAYBOOK, format!("Kanidm {ns}/{}", config.name));
    plan.findings.push(format!(
        "new passwords for admin and idm_admin come from `kanidmd recover-account` run by exec in the running {pod} (it talks to the live server) and go straight into {secret} (keys ADMIN_PASSWORD, IDM_ADMIN_PASSWORD); they are never in a pod log and never shown"
    ));
    plan.steps.push(step(
        "wait-running",
        format!("Wait until {pod} runs kanidmd and is Ready"),
        Action::Wait { object: pod.clone(), until: WaitCondition::ConditionIs { condition: "Ready".into(), status: "True".into() }, timeout_seconds: config.timeout.0.as_secs() },
        &[],
    ));
    let mut previous = "wait-running";
    for (id, user, key) in [("recover-admin", "admin", "ADMIN_PASSWORD"), ("recover-idm-admin", "idm_admin", "IDM_ADMIN_PASSWORD")] {
        let mut recover = step(
            id,
            format!("Reset {user}'s password in the running kanidmd (exec) and store it in {secret} key {key}"),
            Action::ExecToSecret {
                pod: pod.clone(),
                container: CONTAINER.into(),
                command: vec!["kanidmd".into(), "recover-account".into(), user.into()],
                secret: secret.clone(),
                key: key.into(),
                pattern: PASSWORD_PATTERN.into(),
            },
            &[previous],
        );
        recover.preconditions = vec![Precondition::PodReady { pod: pod.clone() }];
        plan.steps.push(recover);
        previous = id;
    }
    for client in &config.oidc_clients {
        let Ok((kind, cns, cname)) = oidc_client(client) else { continue };
        let object = ObjectRef::namespaced("apps/v1", kind, cns, cname);
        plan.steps.push(step(
            &format!("restart-{}-{cns}-{cname}", kind.to_lowercase()),
            format!("Bounce OIDC client {object} so it re-reads the identity provider"),
            Action::RolloutRestart { object },
            &[previous],
        ));
    }
    Ok(plan)
}

fn step(id: &str, title: String, action: Action, needs: &[&str]) -> Step {
    Step { id: id.into(), title, action, needs: needs.iter().map(|n| n.to_string()).collect(), preconditions: vec![], recovery_source: None }
}

/// `kanidm-credential-reset`.
pub struct CredentialReset;

impl super::Playbook for CredentialReset {
    fn info(&self) -> super::PlaybookInfo {
        super::PlaybookInfo { name: PLAYBOOK, arguments: "", summary: "reset Kanidm's admin and idm_admin credentials after a restore and bounce its OIDC clients" }
    }

    fn config_problems(&self, config: &crate::config::Config) -> Vec<String> {
        let mut problems = vec![];
        for client in &config.kanidm.oidc_clients {
            if let Err(e) = oidc_client(client) {
                problems.push(format!("kanidm.oidcClients: {e}"));
            }
        }
        if config.kanidm.timeout.0.is_zero() {
            problems.push("kanidm.timeout: must be longer than 0s".into());
        }
        problems
    }

    fn plan(&self, state: &ClusterState, findings: &Findings, _trigger: &super::Trigger) -> Result<Plan, super::PlanError> {
        credential_reset(state, findings)
    }
}
