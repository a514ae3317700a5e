//! Flux Kustomizations and HelmReleases: suspended (a suspended object keeps
//! its old Ready condition, so `spec.suspend` is read separately) and Ready.

use serde::Serialize;

use super::Context;
use crate::cluster::resources::*;
use crate::cluster::{name, namespace};

#[derive(Clone, Debug, Serialize)]
pub struct FluxFinding {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub suspended: bool,
    /// None when no Ready condition was ever written.
    pub ready: Option<bool>,
    pub reason: Option<String>,
    /// Why a remediation run left it suspended on purpose (the
    /// `lifeboat.dev/kept-suspended` annotation), while it is suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_suspended: Option<String>,
}

pub fn inspect(ctx: &Context) -> Vec<FluxFinding> {
    let ks = ctx.state.kustomizations.iter().map(|k| finding("Kustomization", &k.metadata, &k.spec, &k.status));
    let hr = ctx.state.helm_releases.iter().map(|h| finding("HelmRelease", &h.metadata, &h.spec, &h.status));
    ks.chain(hr).collect()
}

fn finding(kind: &'static str, meta: &crate::cluster::meta::Meta, spec: &FluxSpec, status: &FluxStatus) -> FluxFinding {
    let ready = find_condition(&status.conditions, "Ready");
    let suspended = spec.suspend.unwrap_or(false);
    let kept = meta.annotations.as_ref().and_then(|a| a.get(crate::cluster::marks::KEPT_SUSPENDED_ANNOTATION));
    FluxFinding {
        kind,
        namespace: namespace(meta).to_string(),
        name: name(meta).to_string(),
        suspended,
        ready: ready.map(|c| c.status == "True"),
        reason: ready.and_then(|c| c.reason.as_deref().map(String::from)),
        // Resumed by hand: no longer held, though the annotation stays
        // (`flux resume` only sets spec.suspend false and updates the object
        // as read: fluxcd/flux2 cmd/flux/resume.go, resumeCommand.run).
        kept_suspended: kept.filter(|_| suspended).map(String::from),
    }
}
