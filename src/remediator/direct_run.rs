//! The checks `lifeboat run` makes before it executes a plan without the
//! journal's approval flow: the same kill switch the leader honours, and no
//! unfinished journaled run on the same target or objects.

use anyhow::bail;

/// `lifeboat run` honours the kill switch like the leader does: the config
/// flag and the cluster's ConfigMap (unreadable counts as engaged).
pub async fn refuse_if_kill_switch(client: &kube::Client, config: &crate::config::RemediationConfig) -> anyhow::Result<()> {
    if config.kill_switch {
        bail!("remediation.killSwitch is set in the config: nothing may run");
    }
    let namespace = config.namespace();
    if crate::act::kill_switch::engaged(client, &namespace).await {
        bail!(
            "the kill switch is engaged (ConfigMap {namespace}/{}, or it cannot be read): nothing may run; `lifeboat kill-switch off` releases it",
            crate::act::kill_switch::NAME
        );
    }
    Ok(())
}

/// `lifeboat run` refuses to run beside an unfinished journaled run on the
/// same target or objects (the check the intake and `submit` make).
pub async fn refuse_if_collides(journal: &crate::journal::Journal, plan: &crate::plan::Plan) -> anyhow::Result<()> {
    let active = match journal.find_active(plan).await {
        Ok(active) => active,
        // No journal in this cluster: nothing can be running from it.
        Err(crate::journal::JournalError::CrdMissing { .. }) => None,
        Err(e) => return Err(anyhow::Error::new(e).context("checking the journal for an unfinished run on the same objects")),
    };
    if let Some(run) = active {
        bail!(
            "run {} ({} for {}) is still {:?} and touches the same target or objects: one active run at a time there (approve, abort or wait for it; `lifeboat runs show {}`)",
            run.id,
            run.spec.playbook,
            run.spec.target,
            run.status.phase,
            run.id
        );
    }
    Ok(())
}
