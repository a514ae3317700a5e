//! Flux's kustomize-controller, played for one Kustomization and the
//! manifests its Git source renders ("desired" objects).
//!
//! One reconcile ([`reconcile`]) does what fluxcd/kustomize-controller
//! internal/controller/kustomization_controller.go (v1.9.0, `apply`, where the selectors are set) does with
//! fluxcd/pkg ssa (ssa v0.77.0, manager_apply.go `ApplyAllStaged` →
//! `Apply`):
//! * a suspended Kustomization (`spec.suspend: true`) is not reconciled;
//! * every desired object is server-side applied with field manager
//!   `kustomize-controller` and `client.ForceOwnership` (manager_apply.go
//!   `apply`: conflicts taken over), so a field a
//!   run changed that Git also sets — e.g. a ReplicationDestination's
//!   `spec.trigger.manual` — is set back to Git's value;
//! * except, per manager_apply.go `shouldSkipApply` and ssa/utils/meta.go
//!   `AnyInMetadata` (label *or* annotation, value compared
//!   case-insensitively): an object whose desired manifest carries
//!   `kustomize.toolkit.fluxcd.io/ssa: IfNotPresent` is skipped once it
//!   exists, and one whose desired or live metadata carries
//!   `kustomize.toolkit.fluxcd.io/reconcile: disabled` (or `ssa: Ignore`) is
//!   always skipped.
#![allow(dead_code)]

use kube::api::{Patch, PatchParams};
use kube::Client;
use serde_json::Value;

use super::k8s::{api_for, get};

const KS: &str = "kustomize.toolkit.fluxcd.io/v1";

fn any_in_metadata(object: &Value, key: &str, value: &str) -> bool {
    ["labels", "annotations"].iter().any(|m| object["metadata"][m][key].as_str().is_some_and(|v| !v.is_empty() && v.eq_ignore_ascii_case(value)))
}

fn excluded(object: &Value) -> bool {
    any_in_metadata(object, "kustomize.toolkit.fluxcd.io/reconcile", "disabled") || any_in_metadata(object, "kustomize.toolkit.fluxcd.io/ssa", "Ignore")
}

/// What one reconcile did to each desired object.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Suspended,
    Written(String),
    Skipped(String),
}

/// One reconcile of Kustomization `ns/name` over `desired`.
pub async fn reconcile(client: &Client, ns: &str, name: &str, desired: &[Value]) -> Vec<Applied> {
    let ks = get(client, KS, "Kustomization", Some(ns), name).await;
    if ks["spec"]["suspend"] == true {
        return vec![Applied::Suspended];
    }
    let mut out = vec![];
    for object in desired {
        let (api_version, kind) = (object["apiVersion"].as_str().unwrap(), object["kind"].as_str().unwrap());
        let object_name = object["metadata"]["name"].as_str().unwrap();
        let api = api_for(client, api_version, kind, object["metadata"]["namespace"].as_str()).await;
        let live = api.get_opt(object_name).await.unwrap().map(|o| serde_json::to_value(o).unwrap());
        let id = format!("{kind}/{object_name}");
        let if_not_present = live.is_some() && any_in_metadata(object, "kustomize.toolkit.fluxcd.io/ssa", "IfNotPresent");
        if excluded(object) || live.as_ref().is_some_and(excluded) || if_not_present {
            out.push(Applied::Skipped(id));
            continue;
        }
        api.patch(object_name, &PatchParams::apply("kustomize-controller").force(), &Patch::Apply(object)).await.unwrap();
        out.push(Applied::Written(id));
    }
    out
}
