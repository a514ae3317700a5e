//! The node-loss phase for a volume provisioner that was on the lost node:
//! every claim the later phases re-create (and every claim an operator
//! re-creates after a plan deleted one) stays Pending until the provisioner
//! runs elsewhere. So its stranded pod is force-deleted once the node is
//! confirmed gone (its controller then re-creates it on a Ready node), and
//! the phase ends only once a pod of it is Ready off the lost node and has
//! had the time to take its leader Lease over; the phases after it start
//! only then (see `plan::compose`).

use crate::inspect::provisioners::StrandedProvisioner;
use crate::plan::compose::{slug, Part};
use crate::plan::{Action, ObjectRef, Plan, Precondition, Step, WaitCondition};

use super::PLAYBOOK;

/// How long the run waits for the replacement to be Ready and leading.
const PROVISIONER_TIMEOUT_SECONDS: u64 = 600;

pub(super) fn reschedule(node: &str, stranded: &[StrandedProvisioner]) -> Vec<Part> {
    stranded
        .iter()
        .map(|p| {
            let mut plan = Plan::new(PLAYBOOK, format!("{} provisioner {}/{}", p.provisioner, p.namespace, p.pod));
            if !p.blocks_provisioning() {
                plan.findings.push(format!(
                    "its pod {} on lost node {node} is stranded, but {} already provisions new claims: not touched",
                    p.pod,
                    p.ready_elsewhere.join(", ")
                ));
                return Part { key: slug(&format!("provisioner {} {}", p.namespace, p.pod)), plan };
            }
            let controller = p.controller.as_ref().map_or("its controller".to_string(), |(kind, name)| format!("{kind} {name}"));
            plan.findings.push(format!(
                "the volume provisioner ran only on lost node {node}: every PVC this plan re-creates would stay Pending. Its pod is force-deleted so {controller} re-creates it on another node, and nothing is re-created until that pod is Ready and has taken the provisioner's leader Lease over ({}s)",
                p.takeover_seconds
            ));
            let pod = ObjectRef::pod(&p.namespace, &p.pod);
            let watched = match &p.controller {
                Some((kind, name)) if kind == "Deployment" => ObjectRef::namespaced("apps/v1", kind, &p.namespace, name),
                _ => pod.clone(),
            };
            plan.steps.push(Step {
                id: "force-delete".into(),
                title: format!("Force-delete provisioner pod {}/{} stranded on {node} so {controller} re-creates it on a Ready node", p.namespace, p.pod),
                action: Action::ForceDeletePod { pod },
                needs: vec![],
                preconditions: vec![Precondition::NodeStillLost { node: node.into() }],
                recovery_source: None,
            });
            plan.steps.push(Step {
                id: "ready-elsewhere".into(),
                title: format!(
                    "Wait until a {} provisioner pod ({}) is Ready on a node other than {node} and has led for {}s: PVCs are re-created only after this",
                    p.provisioner,
                    p.selector_text(),
                    p.takeover_seconds
                ),
                action: Action::Wait {
                    object: watched,
                    until: WaitCondition::ProvisionerReadyElsewhere { selector: p.selector.clone(), lost_node: node.into(), takeover_seconds: p.takeover_seconds },
                    timeout_seconds: PROVISIONER_TIMEOUT_SECONDS,
                },
                needs: vec!["force-delete".into()],
                preconditions: vec![],
                recovery_source: None,
            });
            Part { key: slug(&format!("provisioner {} {}", p.namespace, p.pod)), plan }
        })
        .collect()
}
