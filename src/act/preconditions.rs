//! Every step's preconditions, re-checked live right before it runs.

use kube::Client;
use serde_json::Value;

use super::nodes::{node_confirmed_gone, node_ready};
use super::objects::get;
use crate::plan::{describe_precondition, ObjectRef, Precondition, Step};

pub(super) async fn check_preconditions(client: &Client, step: &Step) -> Result<(), String> {
    for p in &step.preconditions {
        let holds = match p {
            Precondition::NodeStillLost { node } => !node_ready(client, node).await?,
            Precondition::PodReady { pod } => get(client, pod).await?.is_some_and(|p| {
                // A pod on a dead node keeps its last containerStatuses; the node
                // controller only flips its Ready condition, so that must agree too.
                let ready_condition = p["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
                p["metadata"]["deletionTimestamp"].is_null()
                    && p["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["ready"] == true))
                    && ready_condition.is_none_or(|c| c["status"] == "True")
            }),
            Precondition::CnpgPrimary { cluster, pod, is_primary } => {
                let c = get(client, cluster).await?.ok_or_else(|| format!("{cluster} does not exist"))?;
                let primary = c["status"]["currentPrimary"].as_str() == Some(pod) || c["status"]["targetPrimary"].as_str() == Some(pod);
                primary == *is_primary
            }
            Precondition::Absent { object } => get(client, object).await?.is_none(),
            Precondition::NotPaused { object } => get(client, object).await?.is_some_and(|o| o["spec"]["paused"] != true),
            Precondition::CnpgPrimaryUnchanged { cluster, pod, promote_to } => {
                let c = get(client, cluster).await?.ok_or_else(|| format!("{cluster} does not exist"))?;
                super::cnpg::primary_unchanged(&c["status"], pod) || c["status"]["targetPrimary"].as_str() == Some(promote_to)
            }
            Precondition::KopiaIdentity { destination, source, identity } => {
                let rd = get(client, destination).await?;
                let rs = match source {
                    Some(s) => Some(get(client, s).await?.ok_or_else(|| format!("{s} no longer exists"))?),
                    None => None,
                };
                super::volsync::identity_holds(rd.as_ref(), rs.as_ref(), identity)?
            }
            Precondition::SsaIfNotPresent { object } => get(client, object).await?.is_some_and(|o| super::volsync::ssa_if_not_present(&o)),
            Precondition::VolumeOrphanedOnGoneNode { volume, node } => {
                let pv = get(client, &ObjectRef { api_version: "v1".into(), kind: "PersistentVolume".into(), namespace: None, name: volume.clone() }).await?;
                let unbound = pv.as_ref().is_some_and(|pv| pv["status"]["phase"] != "Bound");
                unbound && node_confirmed_gone(client, node).await?.is_some()
            }
            Precondition::ImageIs { object, pointer, image } => get(client, object).await?.is_some_and(|o| o.pointer(pointer).and_then(Value::as_str) == Some(image.as_str())),
        };
        if !holds {
            return Err(format!("precondition no longer holds: {}", describe_precondition(p)));
        }
    }
    Ok(())
}
