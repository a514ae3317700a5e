//! The API primitives every step uses on an object a plan names by
//! [`ObjectRef`]: discover its API, read it, delete it; and how a step fails.

use kube::api::{DeleteParams, DynamicObject};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::Value;

use crate::plan::ObjectRef;

pub(super) enum StepError {
    Refused(String),
    Failed(String),
}

impl From<super::jobs::JobError> for StepError {
    fn from(e: super::jobs::JobError) -> Self {
        match e {
            super::jobs::JobError::Refused(m) => StepError::Refused(m),
            super::jobs::JobError::Failed(m) => StepError::Failed(m),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Refused(m) | StepError::Failed(m) => f.write_str(m),
        }
    }
}

pub(super) async fn api(client: &Client, object: &ObjectRef) -> Result<Api<DynamicObject>, String> {
    let (group, version) = object.api_version.rsplit_once('/').unwrap_or(("", object.api_version.as_str()));
    let gvk = GroupVersionKind::gvk(group, version, &object.kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| format!("discovering {}: {e}", object.kind))?;
    Ok(match &object.namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

pub(super) async fn get(client: &Client, object: &ObjectRef) -> Result<Option<Value>, String> {
    let api = api(client, object).await?;
    match api.get_opt(&object.name).await {
        Ok(found) => Ok(found.map(|o| serde_json::to_value(o).expect("object serializes"))),
        Err(e) => Err(format!("reading {object}: {e}")),
    }
}

pub(super) async fn delete(client: &Client, object: &ObjectRef, params: &DeleteParams) -> Result<String, StepError> {
    let api = api(client, object).await.map_err(StepError::Failed)?;
    match api.delete(&object.name, params).await {
        Ok(_) => Ok(format!("deleted {object}")),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(format!("{object} already gone")),
        Err(e) => Err(StepError::Failed(format!("deleting {object}: {e}"))),
    }
}
