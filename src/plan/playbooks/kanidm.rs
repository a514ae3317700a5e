//! `kanidm-credential-reset`: the runbook's fix for kaniop failing to
//! authenticate after a restore. With Kanidm stopped, `kanidmd
//! recover-account` runs offline for `admin`, then `idm_admin` (one at a time:
//! the database is RWO); each new password goes from the Job's log straight
//! into the `<kanidm>-admin-passwords` Secret (never into a log, the journal
//! or a report), then Kanidm comes back and the OIDC clients are bounced.

use serde_json::json;

use super::s3_restore::flux_api_version;
use super::PlanError;
use crate::cluster::{name, namespace, ClusterState};
use crate::config::{flux_kind_and_name, oidc_client, KanidmConfig};
use crate::inspect::Findings;
use crate::plan::job::JobOutput;
use crate::plan::{Action, ObjectRef, Plan, Step, WaitCondition};

pub const PLAYBOOK: &str = "kanidm-credential-reset";
/// What `kanidmd recover-account` prints.
pub const PASSWORD_PATTERN: &str = "new_password: \"{}\"";
const SCALE_DOWN_TIMEOUT: u64 = 300;

pub fn credential_reset(state: &ClusterState, findings: &Findings) -> Result<Plan, PlanError> {
    let config = &findings.config.kanidm;
    let ns = config.namespace.as_str();
    let sts_name = format!("{}-{}", config.name, config.replica_group);
    let sts = state
        .stateful_sets
        .iter()
        .find(|s| namespace(&s.metadata) == ns && name(&s.metadata) == sts_name)
        .ok_or_else(|| PlanError::NotFound(format!("StatefulSet {ns}/{sts_name} (kanidm.name + kanidm.replicaGroup)")))?;
    let sts_ref = ObjectRef::namespaced("apps/v1", "StatefulSet", ns, &sts_name);
    let secret = ObjectRef::namespaced("v1", "Secret", ns, &format!("{}-admin-passwords", config.name));
    let mut plan = Plan::new(PLAYBOOK, format!("Kanidm {ns}/{}", config.name));
    let Some(domain) = config.domain.as_deref() else {
        plan.findings.push("kanidm.domain is not set: the recover-account Jobs need KANIDM_DOMAIN; nothing to do".into());
        return Ok(plan);
    };
    let replicas = sts.spec.replicas.unwrap_or(1).max(1);
    let pvc = format!("kanidm-data-{sts_name}-0");
    plan.findings.push(format!("new passwords for admin and idm_admin go from the Jobs' logs into {secret} (keys ADMIN_PASSWORD, IDM_ADMIN_PASSWORD); they are never shown"));

    let flux = config.flux.as_deref().and_then(|f| flux_kind_and_name(f).ok()).map(|(kind, fname)| ObjectRef::namespaced(flux_api_version(kind), kind, ns, fname));
    let flux = flux.filter(|f| {
        let exists = match f.kind.as_str() {
            "HelmRelease" => state.helm_releases.iter().any(|h| namespace(&h.metadata) == ns && name(&h.metadata) == f.name),
            _ => state.kustomizations.iter().any(|k| namespace(&k.metadata) == ns && name(&k.metadata) == f.name),
        };
        if !exists {
            plan.findings.push(format!("{f} (kanidm.flux) not found: nothing to suspend"));
        }
        exists
    });
    let mut last = vec![];
    if let Some(f) = &flux {
        plan.steps.push(step("suspend-flux", format!("Suspend {f}"), Action::SuspendFlux { object: f.clone(), keep_suspended: false }, &[]));
        last = vec!["suspend-flux"];
    }
    plan.steps.push(step("scale-down", format!("Scale {sts_ref} to 0 (recover-account needs kanidmd stopped)"), Action::Scale { object: sts_ref.clone(), replicas: 0 }, &last));
    plan.steps.push(step(
        "wait-scaled-down",
        format!("Wait until {sts_ref} has no pods"),
        Action::Wait { object: sts_ref.clone(), until: WaitCondition::NoReplicas, timeout_seconds: SCALE_DOWN_TIMEOUT },
        &["scale-down"],
    ));
    let mut previous = "wait-scaled-down";
    for (id, user, key) in [("recover-admin", "admin", "ADMIN_PASSWORD"), ("recover-idm-admin", "idm_admin", "IDM_ADMIN_PASSWORD")] {
        // Not the runbook's Job names: a Job someone ran by hand is never taken for ours.
        let job = format!("{}-lifeboat-{id}", config.name);
        plan.steps.push(step(
            id,
            format!("Reset {user}'s password offline (Job {job}) and store it in {secret} key {key}"),
            Action::RunJob {
                job: ObjectRef::namespaced("batch/v1", "Job", ns, &job),
                manifest: recover_job(config, domain, &job, user, &pvc),
                timeout_seconds: config.timeout.0.as_secs(),
                success_marker: "new_password".into(),
                output: JobOutput::SecretKey { secret: secret.clone(), key: key.into(), pattern: PASSWORD_PATTERN.into() },
            },
            &[previous],
        ));
        previous = id;
    }
    plan.steps.push(step("scale-up", format!("Scale {sts_ref} back to {replicas}"), Action::Scale { object: sts_ref, replicas }, &[previous]));
    let mut after = "scale-up";
    if let Some(f) = flux {
        plan.steps.push(step("resume-flux", format!("Resume {f}"), Action::ResumeFlux { object: f }, &["scale-up"]));
        after = "resume-flux";
    }
    for client in &config.oidc_clients {
        let Ok((kind, cns, cname)) = oidc_client(client) else { continue };
        let object = ObjectRef::namespaced("apps/v1", kind, cns, cname);
        plan.steps.push(step(
            &format!("restart-{}-{cns}-{cname}", kind.to_lowercase()),
            format!("Bounce OIDC client {object} so it re-reads the identity provider"),
            Action::RolloutRestart { object },
            &[after],
        ));
    }
    Ok(plan)
}

fn step(id: &str, title: String, action: Action, needs: &[&str]) -> Step {
    Step { id: id.into(), title, action, needs: needs.iter().map(|n| n.to_string()).collect(), preconditions: vec![], recovery_source: None }
}

/// The runbook's recover-account Job (the kanidm image has no shell:
/// kanidmd is invoked directly). No TTL: lifeboat deletes it once the
/// password is in the Secret, since its log holds the password.
fn recover_job(config: &KanidmConfig, domain: &str, job: &str, user: &str, pvc: &str) -> serde_json::Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": job, "namespace": config.namespace, "labels": {"app.kubernetes.io/managed-by": "lifeboat"}},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "securityContext": {"fsGroup": 999, "runAsUser": 999, "runAsGroup": 999},
                "containers": [{
                    "name": "recover",
                    "image": config.image,
                    "command": ["kanidmd"],
                    "args": ["recover-account", user],
                    "env": [
                        {"name": "KANIDM_DOMAIN", "value": domain},
                        {"name": "KANIDM_ORIGIN", "value": format!("https://{domain}")},
                        {"name": "KANIDM_DB_PATH", "value": "/data/kanidm.db"},
                        {"name": "KANIDM_TLS_CHAIN", "value": "/etc/kanidm/tls/tls.crt"},
                        {"name": "KANIDM_TLS_KEY", "value": "/etc/kanidm/tls/tls.key"},
                    ],
                    "volumeMounts": [
                        {"name": "kanidm-data", "mountPath": "/data"},
                        {"name": "kanidm-certs", "mountPath": "/etc/kanidm/tls", "readOnly": true},
                    ],
                }],
                "volumes": [
                    {"name": "kanidm-data", "persistentVolumeClaim": {"claimName": pvc}},
                    {"name": "kanidm-certs", "secret": {"secretName": config.tls_secret}},
                ],
            }},
        },
    })
}
