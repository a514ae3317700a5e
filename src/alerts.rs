//! Alertmanager webhook intake (`POST /alertmanager`, payload version 4).
//!
//! An alert is a hint: a routed, firing alert makes the playbook plan from
//! the current snapshot and records a run (awaiting approval, approved or
//! observed per its mode). An alert instance (fingerprint and start time)
//! starts at most one run: duplicate deliveries (repeats, HA pairs, even
//! concurrent ones) and later repeats of it start nothing; a resolved alert
//! never starts anything and marks a run still awaiting approval as
//! "condition cleared". Bad requests get a 4xx
//! with the reason (Alertmanager does not retry those); 5xx only when a retry
//! can help (the journal was unreachable).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use crate::journal::{AlertRef, Journal, Phase, RunRecord, RunTrigger};
use crate::plan::Plan;
use crate::snapshot::Hub;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// How a run's message starts once its alert resolved before approval.
const CLEARED: &str = "condition cleared";

pub use crate::config::Route;
/// The routes for the alerts lifeboat ships that have a playbook (each playbook lists its own).
pub use crate::plan::playbooks::default_routes;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    status: String,
    alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    labels: BTreeMap<String, String>,
    starts_at: DateTime<Utc>,
    fingerprint: String,
}

/// Counters for the self-metrics.
#[derive(Debug, Default)]
pub struct IntakeCounters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub unrouted: AtomicU64,
    pub duplicates: AtomicU64,
    pub runs_created: AtomicU64,
    /// Firing alerts whose plan found nothing to do (or could not be made).
    pub nothing_to_do: AtomicU64,
    /// Resolved alerts with no run waiting for approval.
    pub resolved: AtomicU64,
    /// Resolved alerts whose run awaiting approval is marked "condition cleared".
    pub cleared: AtomicU64,
}

impl IntakeCounters {
    /// The counters `hub` exports (zero while the webhook is off).
    pub fn of(hub: &Hub) -> Arc<IntakeCounters> {
        hub.self_metrics.get_or_default()
    }
}

pub struct Intake {
    pub hub: Arc<Hub>,
    pub journal: Arc<Journal>,
    pub routes: Vec<Route>,
    /// `Authorization` must be exactly this: `Bearer <token>` or `Basic <base64>`.
    authorization: String,
    /// Shared with the hub, which exports them.
    pub counters: Arc<IntakeCounters>,
    /// Serializes journal lookups and run creation within this process.
    journal_lock: tokio::sync::Mutex<()>,
    /// Alert instances (fingerprint, start) known to have a run, and its id:
    /// a repeated firing delivery of one of them is a duplicate without a
    /// journal read. Filled from every journal listing and every run created.
    known: std::sync::Mutex<std::collections::HashMap<(String, DateTime<Utc>), String>>,
}

impl Intake {
    /// `credentials_file` holds the token (sent as Bearer) or, with a colon,
    /// `user:password` (sent as basic auth) — as Alertmanager's http_config can.
    pub fn new(hub: Arc<Hub>, journal: Arc<Journal>, routes: Vec<Route>, credentials: &str) -> Self {
        let credentials = credentials.trim();
        let authorization = match credentials.split_once(':') {
            Some(_) => format!("Basic {}", base64_encode(credentials.as_bytes())),
            None => format!("Bearer {credentials}"),
        };
        let counters = IntakeCounters::of(&hub);
        Self { hub, journal, routes, authorization, counters, journal_lock: tokio::sync::Mutex::new(()), known: Default::default() }
    }

    pub fn from_file(hub: Arc<Hub>, journal: Arc<Journal>, routes: Vec<Route>, path: &std::path::Path) -> anyhow::Result<Self> {
        let credentials = crate::api::read_secret_file(path, "the webhook credentials")?;
        Ok(Self::new(hub, journal, routes, &credentials))
    }

    fn route_of(&self, alert: &Alert) -> Option<&Route> {
        let alertname = alert.labels.get("alertname")?;
        self.routes.iter().find(|r| &r.alertname == alertname && r.matchers.iter().all(|(k, v)| alert.labels.get(k) == Some(v)))
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        crate::api::secrets_equal(given, &self.authorization)
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn routes(intake: Arc<Intake>) -> Router {
    Router::new().route("/alertmanager", post(receive)).with_state(intake)
}

fn reject(intake: &Intake, status: StatusCode, reason: String) -> Response {
    intake.counters.rejected.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%status, %reason, "alertmanager webhook rejected");
    (status, Json(json!({"error": reason}))).into_response()
}

/// Credentials and content type are checked before a byte of the body is read.
async fn receive(State(intake): State<Arc<Intake>>, headers: HeaderMap, body: Body) -> Response {
    if !intake.authorized(&headers) {
        return reject(&intake, StatusCode::UNAUTHORIZED, "missing or wrong credentials".into());
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/json") {
        return reject(&intake, StatusCode::UNSUPPORTED_MEDIA_TYPE, format!("content type {content_type:?}: expected application/json"));
    }
    let body = match crate::server::read_body(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return reject(&intake, e.status(), e.to_string()),
    };
    let payload: Payload = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return reject(&intake, StatusCode::BAD_REQUEST, format!("not an Alertmanager webhook payload: {e}")),
    };
    if payload.version != "4" {
        return reject(&intake, StatusCode::BAD_REQUEST, format!("payload version {:?}: only version 4 is understood", payload.version));
    }
    intake.counters.accepted.fetch_add(1, Ordering::Relaxed);
    match handle_all(&intake, &payload.alerts).await {
        Ok(results) => Json(json!({"status": payload.status, "alerts": results})).into_response(),
        // The journal is unreachable: Alertmanager retries 5xx.
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": e.to_string()}))).into_response(),
    }
}

/// An alert's route (None: unrouted) and, when it fires, its plan or why planning failed.
type Intent<'a> = Option<(&'a Route, Option<Result<Plan, String>>)>;

/// One result per alert, in order. Planning is pure and comes first: a
/// firing alert whose plan fails (target gone, trigger incomplete) starts
/// nothing whatever the journal says, so the journal is read once per
/// notification, and only when an alert in it is resolved or plans.
async fn handle_all(intake: &Intake, alerts: &[Alert]) -> Result<Vec<serde_json::Value>, crate::journal::JournalError> {
    let snapshot = intake.hub.snapshot();
    let intents: Vec<Intent> = alerts
        .iter()
        .map(|alert| {
            let route = intake.route_of(alert)?;
            let plan = (alert.status != "resolved").then(|| {
                let trigger = trigger_of(route, alert).to_trigger();
                crate::plan::playbooks::plan(&route.playbook, &snapshot.state, &snapshot.findings, &trigger).map_err(|e| e.to_string())
            });
            Some((route, plan))
        })
        .collect();
    // Lookup and create under one lock: the copies of a notification an HA
    // pair sends at the same moment must not both find no run and both create one.
    let known: Vec<Option<String>> = {
        let known = intake.known.lock().expect("known alerts lock");
        alerts
            .iter()
            .zip(&intents)
            .map(|(alert, intent)| intent.as_ref().filter(|(_, plan)| matches!(plan, Some(Ok(_)))).and_then(|_| known.get(&alert_key(alert)).cloned()))
            .collect()
    };
    let needs_journal = intents.iter().zip(&known).any(|(intent, known)| known.is_none() && intent.as_ref().is_some_and(|(_, plan)| !matches!(plan, Some(Err(_)))));
    let (_guard, mut runs) = if needs_journal {
        let guard = intake.journal_lock.lock().await;
        let runs = intake.journal.list().await?;
        remember(intake, &runs);
        (Some(guard), runs)
    } else {
        (None, vec![])
    };
    let mut results = Vec::with_capacity(alerts.len());
    for ((alert, intent), known) in alerts.iter().zip(intents).zip(known) {
        let alertname = alert.labels.get("alertname").map_or("", String::as_str);
        let result = match intent {
            None => json!({"alertname": alertname, "result": "unrouted"}),
            Some(_) if known.is_some() => json!({"alertname": alertname, "result": "duplicate", "run": known}),
            // The target is gone or the trigger incomplete: state wins over the alert.
            Some((_, Some(Err(reason)))) => json!({"alertname": alertname, "result": "nothing to do", "reason": reason}),
            Some((route, plan)) => handle(intake, alert, route, plan.and_then(Result::ok), &mut runs).await?,
        };
        decided(intake, alert, &result);
        results.push(result);
    }
    Ok(results)
}

/// Logs and counts what became of one alert (its `result` as answered).
/// Labels other than the alert's name are not logged: they are the
/// sender's, and the fingerprint identifies the alert.
fn decided(intake: &Intake, alert: &Alert, result: &serde_json::Value) {
    let kind = result["result"].as_str().unwrap_or("");
    let run = result["run"].as_str();
    let counters = &intake.counters;
    let counter = match (kind, run) {
        ("run", _) => &counters.runs_created,
        ("duplicate" | "target busy", _) => &counters.duplicates,
        ("unrouted", _) => &counters.unrouted,
        ("resolved", Some(_)) => &counters.cleared,
        ("resolved", None) => &counters.resolved,
        _ => &counters.nothing_to_do,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let alertname = alert.labels.get("alertname").map_or("", String::as_str);
    let (fingerprint, starts_at) = (alert.fingerprint.as_str(), alert.starts_at.to_rfc3339());
    let reason = result["reason"].as_str().unwrap_or("");
    match (kind, run) {
        ("run", Some(run)) => {
            let phase = result["phase"].as_str().unwrap_or("");
            tracing::info!(alertname, fingerprint, starts_at, run, phase, "alert recorded a run")
        }
        ("resolved", Some(run)) => tracing::info!(alertname, fingerprint, starts_at, run, "alert resolved: its run awaiting approval is marked condition cleared"),
        (_, Some(run)) => tracing::info!(alertname, fingerprint, starts_at, run, result = kind, "alert started nothing: it already has a run"),
        _ => tracing::info!(alertname, fingerprint, starts_at, result = kind, reason, "alert started nothing"),
    }
}

fn alert_key(alert: &Alert) -> (String, DateTime<Utc>) {
    (alert.fingerprint.clone(), alert.starts_at)
}

fn remember(intake: &Intake, runs: &[RunRecord]) {
    let mut known = intake.known.lock().expect("known alerts lock");
    for run in runs {
        if let Some(a) = &run.spec.trigger.alert {
            known.entry((a.fingerprint.clone(), a.starts_at)).or_insert_with(|| run.id.clone());
        }
    }
}

/// The playbook trigger from the alert's labels, per the route's params.
fn trigger_of(route: &Route, alert: &Alert) -> RunTrigger {
    let label = |field: &str| route.params.get(field).and_then(|l| alert.labels.get(l)).cloned();
    RunTrigger {
        namespace: label("namespace"),
        name: label("name"),
        node: label("node"),
        alert: Some(AlertRef { fingerprint: alert.fingerprint.clone(), starts_at: alert.starts_at, alertname: route.alertname.clone() }),
    }
}

/// A routed alert (firing ones with their `plan`), against the journal's
/// records `runs` (kept current here).
async fn handle(intake: &Intake, alert: &Alert, route: &Route, plan: Option<Plan>, runs: &mut Vec<RunRecord>) -> Result<serde_json::Value, crate::journal::JournalError> {
    let alertname = route.alertname.as_str();
    // One alert instance (fingerprint and start) starts at most one run,
    // whatever became of it: a repeat after the run ended (or was aborted,
    // or found nothing to do) is still the same alert, not a new request.
    let existing = runs.iter().position(|r| r.spec.trigger.alert.as_ref().is_some_and(|a| a.fingerprint == alert.fingerprint && a.starts_at == alert.starts_at));
    if alert.status == "resolved" {
        let Some(index) = existing.filter(|&i| runs[i].status.phase == Phase::AwaitingApproval) else {
            return Ok(json!({"alertname": alertname, "result": "resolved"}));
        };
        let cleared = |status: &crate::journal::RunStatus| status.message.as_deref().is_some_and(|m| m.starts_with(CLEARED));
        if !cleared(&runs[index].status) {
            runs[index] = intake
                .journal
                .update_status_with(&runs[index].id, |current| {
                    (current.status.phase == Phase::AwaitingApproval && !cleared(&current.status)).then(|| {
                        let mut status = current.status.clone();
                        status.message = Some(format!("{CLEARED} at {}: approve anyway?", Utc::now().to_rfc3339()));
                        status
                    })
                })
                .await?;
        }
        return Ok(json!({"alertname": alertname, "result": "resolved", "run": runs[index].id}));
    }
    if let Some(index) = existing {
        return Ok(json!({"alertname": alertname, "result": "duplicate", "run": runs[index].id}));
    }
    let Some(plan) = plan else { return Ok(json!({"alertname": alertname, "result": "nothing to do"})) };
    let trigger = trigger_of(route, alert);
    let active = runs.iter().find(|r| r.collides_with(&plan)).cloned();
    let config = &intake.hub.config.remediation;
    match crate::remediator::record(&intake.journal, config, &plan, active, trigger, "alertmanager").await {
        Ok(run) => {
            let result = json!({"alertname": alertname, "result": "run", "run": run.id, "phase": run.status.phase});
            remember(intake, std::slice::from_ref(&run));
            runs.insert(0, run);
            Ok(result)
        }
        // Another replica got the same notification (Alertmanager HA) and
        // created the alert's run first: its deterministic name is taken.
        Err(crate::remediator::RemediationError::Journal(crate::journal::JournalError::AlreadyExists { id, .. })) => {
            intake.counters.duplicates.fetch_add(1, Ordering::Relaxed);
            Ok(json!({"alertname": alertname, "result": "duplicate", "run": id}))
        }
        Err(crate::remediator::RemediationError::Journal(e)) => Err(e),
        Err(crate::remediator::RemediationError::TargetBusy { id, .. }) => Ok(json!({"alertname": alertname, "result": "target busy", "run": id})),
        Err(e) => Ok(json!({"alertname": alertname, "result": "nothing to do", "reason": e.to_string()})),
    }
}
