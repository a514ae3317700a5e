//! How lifeboat writes: JSON merge patches that name only the fields being
//! changed, on untyped objects. Never a read-modify-replace through the lean
//! typed structs — they hold a fraction of each object, and a PUT of one
//! would erase every field they do not know.

use std::time::Duration;

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::Api;
use serde_json::{json, Value};

pub const FIELD_MANAGER: &str = "lifeboat";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{what}: {source}")]
    Api { what: String, source: kube::Error },
    #[error("{what}: still conflicting after {attempts} attempts")]
    Conflict { what: String, attempts: u32 },
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

/// Merge-patches the object; only the keys in `patch` change.
pub async fn merge_patch(api: &Api<DynamicObject>, name: &str, patch: &Value) -> Result<DynamicObject, WriteError> {
    api.patch(name, &params(), &Patch::Merge(patch)).await.map_err(|source| WriteError::Api { what: format!("patching {name}"), source })
}

/// Merge-patches the status subresource under optimistic concurrency: the
/// patch carries the resourceVersion it was computed from, so a concurrent
/// writer makes it fail with 409, and it is recomputed from the new state and
/// retried. `build` returns None when the current state needs no change.
pub async fn patch_status_locked<F>(api: &Api<DynamicObject>, name: &str, attempts: u32, build: F) -> Result<Option<DynamicObject>, WriteError>
where
    F: FnMut(&DynamicObject) -> Option<Value>,
{
    patch_locked_at(api, name, attempts, true, build).await
}

/// [`patch_status_locked`] for the object itself (spec or metadata): for
/// patches that must rewrite a whole list (a merge patch replaces lists), so
/// the list is rebuilt from exactly the version being replaced.
pub async fn patch_locked<F>(api: &Api<DynamicObject>, name: &str, attempts: u32, build: F) -> Result<Option<DynamicObject>, WriteError>
where
    F: FnMut(&DynamicObject) -> Option<Value>,
{
    patch_locked_at(api, name, attempts, false, build).await
}

/// What [`patch_locked_or_refuse`] did.
pub enum LockedPatch {
    Patched,
    /// `build` found nothing to change.
    AlreadySo,
    /// `build` refused: the object is not as the plan expects (the reason).
    Refused(String),
}

/// [`patch_locked`] whose `build` may refuse, reading the object as JSON.
pub async fn patch_locked_or_refuse<F>(api: &Api<DynamicObject>, name: &str, mut build: F) -> Result<LockedPatch, WriteError>
where
    F: FnMut(&Value) -> Result<Option<Value>, String>,
{
    let mut refused = None;
    let result = patch_locked(api, name, 5, |current| {
        build(&serde_json::to_value(current).expect("a DynamicObject serializes")).unwrap_or_else(|reason| {
            refused = Some(reason);
            None
        })
    })
    .await?;
    Ok(match (refused, result) {
        (Some(reason), _) => LockedPatch::Refused(reason),
        (None, Some(_)) => LockedPatch::Patched,
        (None, None) => LockedPatch::AlreadySo,
    })
}

async fn patch_locked_at<F>(api: &Api<DynamicObject>, name: &str, attempts: u32, status: bool, mut build: F) -> Result<Option<DynamicObject>, WriteError>
where
    F: FnMut(&DynamicObject) -> Option<Value>,
{
    let what = if status { format!("patching status of {name}") } else { format!("patching {name}") };
    for attempt in 1..=attempts {
        let current = api.get(name).await.map_err(|source| WriteError::Api { what: format!("reading {name}"), source })?;
        let Some(mut patch) = build(&current) else { return Ok(None) };
        patch["metadata"]["resourceVersion"] = json!(current.metadata.resource_version);
        let result = if status { api.patch_status(name, &params(), &Patch::Merge(&patch)).await } else { api.patch(name, &params(), &Patch::Merge(&patch)).await };
        match result {
            Ok(updated) => return Ok(Some(updated)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tracing::debug!(name, attempt, "patch conflicted; re-reading");
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(source) => return Err(WriteError::Api { what, source }),
        }
    }
    Err(WriteError::Conflict { what, attempts })
}
