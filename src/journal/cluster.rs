//! The journal as RemediationRun custom resources, through untyped
//! `DynamicObject`s (like every lifeboat write: JSON merge patches naming only
//! the fields they change; status through the status subresource under
//! optimistic concurrency, see `cluster::write::patch_status_locked`).

use std::collections::BTreeMap;

use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::{
    sort_newest_first, status_merge_patch, JournalError, Listing, RunRecord, RunSpec, RunStatus, ALERT_FINGERPRINT_LABEL, GROUP, KIND, PLURAL, RUN_FINISHED_LABEL, VERSION,
};
use crate::cluster::write::{patch_status_locked, WriteError, FIELD_MANAGER};

/// Attempts of a status write that keeps conflicting (409) before giving up.
const STATUS_ATTEMPTS: u32 = 5;

/// `lifeboat.dev/v1alpha1` `RemediationRun` (plural `remediationruns`).
pub fn api_resource() -> ApiResource {
    ApiResource { group: GROUP.into(), version: VERSION.into(), api_version: format!("{GROUP}/{VERSION}"), kind: KIND.into(), plural: PLURAL.into() }
}

/// RemediationRuns in one namespace (lifeboat's own).
#[derive(Clone)]
pub struct ClusterJournal {
    pub client: Client,
    pub namespace: String,
}

impl std::fmt::Debug for ClusterJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterJournal").field("namespace", &self.namespace).finish_non_exhaustive()
    }
}

impl ClusterJournal {
    pub fn new(client: Client, namespace: impl Into<String>) -> Self {
        Self { client, namespace: namespace.into() }
    }

    pub fn location(&self) -> String {
        format!("namespace {} ({})", self.namespace, super::CRD_NAME)
    }

    fn api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &api_resource())
    }

    fn params() -> PatchParams {
        PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
    }

    /// A 404 is either the object or the whole resource: the CRD is missing
    /// when the API group does not serve `remediationruns`.
    async fn crd_missing(&self) -> bool {
        match self.client.list_api_group_resources(&format!("{GROUP}/{VERSION}")).await {
            Ok(list) => !list.resources.iter().any(|r| r.name == PLURAL),
            Err(kube::Error::Api(s)) => s.code == 404,
            Err(_) => false,
        }
    }

    /// Maps an API error; a 404 becomes CrdMissing when the CRD is absent, else `not_found`.
    async fn map_error(&self, action: String, source: kube::Error, not_found: Option<JournalError>) -> JournalError {
        if let kube::Error::Api(s) = &source {
            if s.code == 404 {
                if self.crd_missing().await {
                    return JournalError::CrdMissing { namespace: self.namespace.clone() };
                }
                if let Some(e) = not_found {
                    return e;
                }
            }
        }
        JournalError::api(action, self.location(), source)
    }

    fn decode(&self, obj: DynamicObject) -> Result<RunRecord, JournalError> {
        let id = obj.metadata.name.clone().unwrap_or_default();
        let corrupt = |reason: String| JournalError::Corrupt { id: id.clone(), location: self.location(), reason };
        let spec: RunSpec = serde_json::from_value(obj.data.get("spec").cloned().unwrap_or(Value::Null)).map_err(|e| corrupt(format!("spec: {e}")))?;
        let status = match obj.data.get("status") {
            Some(v) if !v.is_null() => serde_json::from_value(v.clone()).map_err(|e| corrupt(format!("status: {e}")))?,
            // Created, but the status write never happened: nothing ran, and
            // nothing runs without a (new) approval.
            _ => RunStatus { message: Some("no status was recorded (creation interrupted?): approve again to run".into()), ..RunStatus::initial(&spec.plan) },
        };
        Ok(RunRecord { id, namespace: obj.metadata.namespace.clone(), spec, status })
    }

    pub async fn create(&self, record: &RunRecord) -> Result<RunRecord, JournalError> {
        super::check_id(&record.id)?;
        let api = self.api();
        let mut obj = DynamicObject::new(&record.id, &api_resource()).within(&self.namespace).data(json!({ "spec": record.spec }));
        let mut labels = BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "lifeboat".to_string())]);
        if is_label_value(&record.spec.playbook) {
            labels.insert("lifeboat.dev/playbook".into(), record.spec.playbook.clone());
        }
        if let Some(alert) = record.spec.trigger.alert.as_ref().filter(|a| is_label_value(&a.fingerprint)) {
            labels.insert(ALERT_FINGERPRINT_LABEL.into(), alert.fingerprint.clone());
        }
        if record.is_terminal() {
            labels.insert(RUN_FINISHED_LABEL.into(), "true".into());
        }
        obj.metadata.labels = Some(labels);
        let post = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
        let created = match api.create(&post, &obj).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.code == 409 => return Err(JournalError::AlreadyExists { id: record.id.clone(), location: self.location() }),
            Err(e) => return Err(self.map_error(format!("creating RemediationRun {}", record.id), e, None).await),
        };
        // The status subresource ignores status on create: write it now, on
        // top of the version just created.
        let mut status = record.status.clone();
        if status.observed_generation.is_none() {
            status.observed_generation = created.metadata.generation;
        }
        let patch = json!({
            "metadata": { "resourceVersion": created.metadata.resource_version },
            "status": status.to_stored_json(),
        });
        let stored = api
            .patch_status(&record.id, &Self::params(), &Patch::Merge(&patch))
            .await
            .map_err(|e| JournalError::api(format!("writing the initial status of RemediationRun {}", record.id), self.location(), e))?;
        self.decode(stored)
    }

    pub async fn get(&self, id: &str) -> Result<Option<RunRecord>, JournalError> {
        super::check_id(id)?;
        match self.api().get(id).await {
            Ok(obj) => self.decode(obj).map(Some),
            Err(kube::Error::Api(s)) if s.code == 404 => {
                if self.crd_missing().await {
                    Err(JournalError::CrdMissing { namespace: self.namespace.clone() })
                } else {
                    Ok(None)
                }
            }
            Err(e) => Err(self.map_error(format!("reading RemediationRun {id}"), e, None).await),
        }
    }

    pub async fn list(&self) -> Result<Listing, JournalError> {
        self.list_with(&ListParams::default()).await
    }

    /// The runs not labelled finished: the unfinished ones, and every run
    /// written before the label existed, whatever its phase (`!=` selects
    /// the objects without the label too).
    pub async fn list_unfinished(&self) -> Result<Listing, JournalError> {
        self.list_with(&ListParams::default().labels(&format!("{RUN_FINISHED_LABEL}!=true"))).await
    }

    /// The runs labelled with one of these alert fingerprints (every run
    /// when one cannot be a label value: then no run carries it as a label).
    pub async fn list_for_alerts(&self, fingerprints: &[&str]) -> Result<Listing, JournalError> {
        if fingerprints.is_empty() {
            return Ok(Listing::default());
        }
        if !fingerprints.iter().all(|f| !f.is_empty() && is_label_value(f)) {
            return self.list().await;
        }
        self.list_with(&ListParams::default().labels(&format!("{ALERT_FINGERPRINT_LABEL} in ({})", fingerprints.join(",")))).await
    }

    async fn list_with(&self, params: &ListParams) -> Result<Listing, JournalError> {
        let list = match self.api().list(params).await {
            Ok(list) => list,
            Err(e) => return Err(self.map_error("listing RemediationRuns".into(), e, None).await),
        };
        let mut listing = Listing::default();
        for object in list.items {
            match self.decode(object) {
                Ok(record) => listing.records.push(record),
                Err(e) => listing.undecodable.push(e),
            }
        }
        sort_newest_first(&mut listing.records);
        Ok(listing)
    }

    /// The status write keeps the finished label true to the phase: a run
    /// that ends is labelled after its status is written, a run labelled
    /// finished that becomes unfinished again loses the label before. So
    /// between the two writes the label never hides an unfinished run from
    /// [`Self::list_unfinished`] (a finished run not yet labelled is only
    /// read once more).
    pub async fn update_status_with<F>(&self, id: &str, mut change: F) -> Result<RunRecord, JournalError>
    where
        F: FnMut(&RunRecord) -> Option<RunStatus>,
    {
        super::check_id(id)?;
        let api = self.api();
        for _ in 0..STATUS_ATTEMPTS {
            let mut unchanged: Option<RunRecord> = None;
            let mut decode_error: Option<JournalError> = None;
            let mut reopening = false;
            let result = patch_status_locked(&api, id, STATUS_ATTEMPTS, |current| {
                reopening = false;
                let record = match self.decode(current.clone()) {
                    Ok(r) => r,
                    Err(e) => {
                        decode_error = Some(e);
                        return None;
                    }
                };
                let Some(mut status) = change(&record) else {
                    unchanged = Some(record);
                    return None;
                };
                if !status.phase.is_terminal() && labelled_finished(current) {
                    reopening = true;
                    return None;
                }
                if status.observed_generation.is_none() {
                    status.observed_generation = current.metadata.generation;
                }
                Some(json!({ "status": status_merge_patch(current.data.get("status"), &status) }))
            })
            .await;
            match result {
                Ok(Some(stored)) => {
                    let (finished, version) = (labelled_finished(&stored), stored.metadata.resource_version.clone());
                    let record = self.decode(stored)?;
                    if record.is_terminal() && !finished {
                        self.label_finished(&record.id, version).await;
                    }
                    return Ok(record);
                }
                Ok(None) if reopening => self.unlabel_finished(id).await?,
                Ok(None) => {
                    return match (decode_error, unchanged) {
                        (Some(e), _) => Err(e),
                        (None, Some(record)) => Ok(record),
                        (None, None) => unreachable!("patch_status_locked returns None only when the closure did"),
                    }
                }
                Err(WriteError::Conflict { attempts, .. }) => {
                    return Err(JournalError::Conflict { action: "updating the status of".into(), id: id.into(), location: self.location(), attempts })
                }
                Err(WriteError::Api { what, source }) => {
                    let not_found = JournalError::NotFound { id: id.into(), location: self.location() };
                    return Err(self.map_error(format!("{what} (RemediationRun)"), source, Some(not_found)).await);
                }
            }
        }
        Err(JournalError::Conflict { action: "reopening".into(), id: id.into(), location: self.location(), attempts: STATUS_ATTEMPTS })
    }

    /// Labels a run finished, only as of `version` (the write that made it
    /// terminal): if anything wrote it since, it may have been reopened, and
    /// the label stays off. Best effort: an unlabelled finished run is only
    /// read more often than needed.
    async fn label_finished(&self, id: &str, version: Option<String>) {
        let patch = json!({ "metadata": { "resourceVersion": version, "labels": { RUN_FINISHED_LABEL: "true" } } });
        match self.api().patch(id, &Self::params(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => tracing::debug!(run = id, "RemediationRun changed before it was labelled finished; left unlabelled"),
            Err(error) => tracing::warn!(run = id, %error, "could not label a finished RemediationRun; it stays among the unfinished ones read"),
        }
    }

    /// Removes the finished label before a run becomes unfinished again.
    async fn unlabel_finished(&self, id: &str) -> Result<(), JournalError> {
        let patch = json!({ "metadata": { "labels": { RUN_FINISHED_LABEL: null } } });
        match self.api().patch(id, &Self::params(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let not_found = JournalError::NotFound { id: id.into(), location: self.location() };
                Err(self.map_error(format!("removing the finished label of RemediationRun {id}"), e, Some(not_found)).await)
            }
        }
    }
}

fn labelled_finished(object: &DynamicObject) -> bool {
    object.metadata.labels.as_ref().and_then(|l| l.get(RUN_FINISHED_LABEL)).is_some_and(|v| v == "true")
}

fn is_label_value(s: &str) -> bool {
    s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}
