use std::path::PathBuf;

/// Every journal error says what failed, where (run id, file, namespace) and
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("RemediationRun {id} already exists in {location}: a run of this plan was already recorded at that second; read it instead of creating it again")]
    AlreadyExists { id: String, location: String },

    #[error("RemediationRun {id} not found in {location}: check the id against the list of runs")]
    NotFound { id: String, location: String },

    #[error(
        "the RemediationRun CRD ({crd}) is not installed, so the journal in namespace {namespace} cannot be used: install {file} (kubectl apply --server-side -f {file})",
        crd = super::CRD_NAME,
        file = super::CRD_FILE
    )]
    CrdMissing { namespace: String },

    #[error("{action} RemediationRun {id} in {location}: still conflicting after {attempts} attempts (another writer keeps changing it); retry, and make sure only one lifeboat leader runs")]
    Conflict { action: String, id: String, location: String, attempts: u32 },

    #[error("{action} in {location}: {source}{hint}")]
    Api {
        action: String,
        location: String,
        #[source]
        source: Box<kube::Error>,
        /// What to do, starting with "; " (empty when there is nothing specific).
        hint: String,
    },

    #[error("{action} {}: {source}; check that the directory exists and is writable", path.display())]
    Io {
        action: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("RemediationRun {id} in {location} is unreadable: {reason}; fix or move it aside (it was not written by this lifeboat version?)")]
    Corrupt { id: String, location: String, reason: String },

    #[error("invalid run id {id:?}: a run id is an object name (lowercase letters, digits, '-' and '.', at most 253 characters), e.g. cnpg-instance-lost-0123abcd-1700000000")]
    InvalidId { id: String },
}

impl JournalError {
    pub(crate) fn api(action: impl Into<String>, location: impl Into<String>, source: kube::Error) -> Self {
        let hint = match &source {
            kube::Error::Api(s) if s.code == 403 => {
                "; grant lifeboat's ServiceAccount the journal Role (get, list, create, patch on remediationruns and patch on remediationruns/status; the Helm chart's remediation.enabled)".to_string()
            }
            kube::Error::Api(s) if s.code == 422 => "; the record does not pass the CRD's validation: is the installed CRD older than this lifeboat?".to_string(),
            _ => String::new(),
        };
        JournalError::Api { action: action.into(), location: location.into(), source: Box::new(source), hint }
    }
}
