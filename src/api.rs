//! The authenticated HTTP API (`/api/...`): operations a human or a chat bot
//! triggers: the kill switch and approvals. Bearer token from a file (a
//! mounted Secret); without one the API is off. An approval is recorded as
//! `api:<by>` (a validated name) and checked against the approval window
//! like every other path; a malformed run id or name is a 400.

use std::path::Path;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::act::kill_switch;

pub struct ApiContext {
    pub client: kube::Client,
    pub namespace: String,
    token: String,
    /// `remediation.approvalTtl`: approvals after the window are refused.
    pub approval_ttl: crate::config::Dur,
}

impl ApiContext {
    pub fn new(client: kube::Client, namespace: String, token: String) -> Self {
        Self { client, namespace, token, approval_ttl: crate::config::RemediationConfig::default().approval_ttl }
    }

    pub fn from_token_file(client: kube::Client, namespace: String, path: &Path) -> anyhow::Result<Self> {
        Ok(Self::new(client, namespace, read_secret_file(path, "the API token")?))
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        given.is_some_and(|given| secrets_equal(given, &self.token))
    }
}

/// A credential from a file (a mounted Secret), trimmed; at least 16 characters.
pub fn read_secret_file(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: cannot read {what}: {e}", path.display()))?;
    let secret = text.trim().to_string();
    anyhow::ensure!(secret.len() >= 16, "{}: {what} must be at least 16 characters", path.display());
    Ok(secret)
}

/// Compares without stopping at the first differing byte, so response time
/// does not reveal how much of a guess was right.
pub fn secrets_equal(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Bodies on the API are small JSON documents.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn routes(api: Arc<ApiContext>) -> Router {
    Router::new()
        .route("/api/kill-switch", get(status).post(engage).delete(release))
        .route("/api/runs/{id}/approve", axum::routing::post(approve))
        // Runs before the handlers' extractors: no body is read for a request without the token.
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), token_first))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}

/// Refuses a request without the bearer token before its body is read, then
/// reads the body (capped, with a deadline) for the handler.
async fn token_first(State(api): State<Arc<ApiContext>>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !api.authorized(request.headers()) {
        return unauthorized();
    }
    let (parts, body) = request.into_parts();
    match crate::server::read_body(&parts.headers, body, MAX_BODY_BYTES).await {
        Ok(body) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(body))).await,
        Err(e) => (e.status(), format!("{e}\n")).into_response(),
    }
}

#[derive(serde::Deserialize)]
struct Approval {
    /// The plan hash the approver reviewed.
    hash: String,
    by: String,
}

/// Webhook-only mode: approve a run over HTTP, bound to the plan hash.
async fn approve(State(api): State<Arc<ApiContext>>, axum::extract::Path(id): axum::extract::Path<String>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    use crate::remediator::{self, RemediationError};
    if !api.authorized(&headers) {
        return unauthorized();
    }
    if let Err(e) = crate::journal::check_id(&id) {
        return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
    }
    let Ok(approval) = serde_json::from_slice::<Approval>(&body) else {
        return (StatusCode::BAD_REQUEST, "body must be JSON {\"hash\": \"<plan hash>\", \"by\": \"<who>\"}\n").into_response();
    };
    let Some(by) = approver_name(&approval.by) else {
        return (StatusCode::BAD_REQUEST, format!("\"by\" must name the approver: 1 to {MAX_APPROVER_LEN} letters, digits, '.', '_', '@' or '-' (got {:?})\n", approval.by))
            .into_response();
    };
    let journal = crate::journal::Journal::cluster(api.client.clone(), api.namespace.clone());
    match remediator::approve(&journal, &id, &approval.hash, &by, api.approval_ttl).await {
        Ok(run) => Json(json!({"id": run.id, "phase": run.status.phase, "approvedBy": run.status.approved_by})).into_response(),
        Err(e @ RemediationError::NoSuchRun(_)) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
        Err(e @ (RemediationError::WrongHash { .. } | RemediationError::NotAwaitingApproval { .. } | RemediationError::ApprovalWindowClosed { .. })) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(e @ RemediationError::Journal(crate::journal::JournalError::InvalidId { .. })) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}

const MAX_APPROVER_LEN: usize = 64;

/// The approver as recorded: `api:<name>`, so an API caller can never pass
/// for a Discord (`discord:…`) or CLI approver. None for an unusable name.
fn approver_name(by: &str) -> Option<String> {
    let valid = !by.is_empty() && by.len() <= MAX_APPROVER_LEN && by.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'));
    valid.then(|| format!("api:{by}"))
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, [("www-authenticate", "Bearer")], "missing or wrong bearer token\n").into_response()
}

async fn status(State(api): State<Arc<ApiContext>>, headers: HeaderMap) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    Json(json!({"engaged": kill_switch::engaged(&api.client, &api.namespace).await})).into_response()
}

async fn engage(State(api): State<Arc<ApiContext>>, headers: HeaderMap) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    match kill_switch::engage(&api.client, &api.namespace, "http-api", "engaged through /api/kill-switch").await {
        Ok(()) => Json(json!({"engaged": true})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("could not engage the kill switch: {e}\n")).into_response(),
    }
}

async fn release(State(api): State<Arc<ApiContext>>, headers: HeaderMap) -> Response {
    if !api.authorized(&headers) {
        return unauthorized();
    }
    match kill_switch::release(&api.client, &api.namespace).await {
        Ok(()) => Json(json!({"engaged": false})).into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("could not release the kill switch: {e}\n")).into_response(),
    }
}
