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

mod index;

use std::collections::{BTreeMap, HashMap};
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
use index::AlertIndex;

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
    /// Journal reads: listings of the unfinished runs, listings of the runs of given alerts, reads of one run.
    pub journal_lists: AtomicU64,
    pub journal_alert_lists: AtomicU64,
    pub journal_gets: AtomicU64,
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
    /// What this process knows of alert instances and their runs, to read
    /// the journal no more than needed (see `index`).
    index: std::sync::Mutex<AlertIndex>,
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
        Self { hub, journal, routes, authorization, counters, journal_lock: tokio::sync::Mutex::new(()), index: Default::default() }
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

/// What an alert needs from the journal, per the index (see `index`).
enum Need {
    /// Nothing: answered already (unrouted, nothing to do, a duplicate of a known run, busy).
    Answered(serde_json::Value),
    /// Firing and last refused because this run collides: is it still so?
    Blocker(String),
    /// Resolved, with this run.
    Run(String),
    /// Resolved, no run known: the runs labelled with its fingerprint.
    RunsOfAlert,
    /// Firing without a run: the whole journal (the collision check reads it).
    Listing,
}

/// One result per alert, in order. Planning is pure and comes first: a
/// firing alert whose plan fails (target gone, trigger incomplete) starts
/// nothing whatever the journal says. The journal is listed (once per
/// notification) only when an alert in it may start a run, or before the
/// index is primed; see `index` for what each other alert reads.
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
    let mut needs: Vec<Need> = {
        let index = intake.index.lock().expect("alert index lock");
        alerts.iter().zip(&intents).map(|(alert, intent)| need_of(&index, alert, intent)).collect()
    };
    recheck_blockers(intake, alerts, &intents, &mut needs).await?;
    let primed = intake.index.lock().expect("alert index lock").primed();
    let needs_listing = needs.iter().any(|n| matches!(n, Need::Listing) || (!primed && matches!(n, Need::RunsOfAlert)));
    // Lookup and create under one lock: the copies of a notification an HA
    // pair sends at the same moment must not both find no run and both create one.
    let (_guard, mut runs) = if needs_listing {
        let guard = intake.journal_lock.lock().await;
        let runs = intake.journal.list_unfinished().await?;
        intake.counters.journal_lists.fetch_add(1, Ordering::Relaxed);
        intake.index.lock().expect("alert index lock").remember_listing(&runs);
        (Some(guard), Some(runs))
    } else {
        (None, None)
    };
    // Resolved alerts without a known run create nothing: their own runs are all they need, in one read.
    let mut runs_of_alerts = match runs {
        Some(_) => None,
        None => runs_of_alerts(intake, alerts, &needs).await?,
    };
    let mut results = Vec::with_capacity(alerts.len());
    for ((alert, intent), need) in alerts.iter().zip(intents).zip(needs) {
        let result = match (need, intent) {
            (Need::Answered(result), _) => result,
            (_, None) => unreachable!("an unrouted alert is answered"),
            (need, Some((route, plan))) => {
                let plan = plan.and_then(Result::ok);
                match (runs.as_mut(), need, runs_of_alerts.as_mut()) {
                    (Some(runs), _, _) => handle(intake, alert, route, plan, runs).await?,
                    (None, Need::Run(id), _) => resolve_run(intake, alert, route, &id).await?,
                    (None, Need::RunsOfAlert, Some(found)) => handle(intake, alert, route, None, found).await?,
                    (None, _, _) => unreachable!("a firing alert without a run makes the notification list the journal"),
                }
            }
        };
        learn(intake, alert, &result);
        decided(intake, alert, &result);
        results.push(result);
    }
    Ok(results)
}

/// The runs of the resolved alerts without a known run (`Need::RunsOfAlert`), if there are any.
async fn runs_of_alerts(intake: &Intake, alerts: &[Alert], needs: &[Need]) -> Result<Option<Vec<RunRecord>>, crate::journal::JournalError> {
    let mut fingerprints: Vec<&str> = alerts.iter().zip(needs).filter(|(_, need)| matches!(need, Need::RunsOfAlert)).map(|(alert, _)| alert.fingerprint.as_str()).collect();
    if fingerprints.is_empty() {
        return Ok(None);
    }
    fingerprints.sort_unstable();
    fingerprints.dedup();
    let found = intake.journal.list_for_alerts(&fingerprints).await?;
    intake.counters.journal_alert_lists.fetch_add(1, Ordering::Relaxed);
    intake.index.lock().expect("alert index lock").remember(&found);
    Ok(Some(found))
}

fn need_of(index: &AlertIndex, alert: &Alert, intent: &Intent) -> Need {
    let alertname = alert.labels.get("alertname").map_or("", String::as_str);
    let key = alert_key(alert);
    match intent {
        None => Need::Answered(json!({"alertname": alertname, "result": "unrouted"})),
        // The target is gone or the trigger incomplete: state wins over the alert.
        Some((_, Some(Err(reason)))) => Need::Answered(json!({"alertname": alertname, "result": "nothing to do", "reason": reason})),
        Some((_, None)) => index.run_of(&key).map_or(Need::RunsOfAlert, |id| Need::Run(id.clone())),
        Some((_, Some(Ok(_)))) => match (index.run_of(&key), index.blocker_of(&key)) {
            (Some(id), _) => Need::Answered(json!({"alertname": alertname, "result": "duplicate", "run": id})),
            (None, Some(blocker)) => Need::Blocker(blocker.clone()),
            (None, None) => Need::Listing,
        },
    }
}

/// A firing alert last refused because an active run collided with its
/// plan is refused again after one `get` of that run, while the run is
/// unfinished and collides with the current plan (a refusal creates
/// nothing); otherwise it lists the journal like a new alert.
async fn recheck_blockers(intake: &Intake, alerts: &[Alert], intents: &[Intent<'_>], needs: &mut [Need]) -> Result<(), crate::journal::JournalError> {
    let mut blockers: HashMap<String, Option<RunRecord>> = HashMap::new();
    for ((alert, intent), need) in alerts.iter().zip(intents).zip(needs.iter_mut()) {
        let (Need::Blocker(id), Some((route, Some(Ok(plan))))) = (&*need, intent) else { continue };
        let id = id.clone();
        if !blockers.contains_key(&id) {
            let run = intake.journal.get(&id).await?;
            intake.counters.journal_gets.fetch_add(1, Ordering::Relaxed);
            blockers.insert(id.clone(), run);
        }
        *need = match blockers[&id].as_ref().filter(|run| run.collides_with(plan)) {
            Some(run) => Need::Answered(json!({"alertname": route.alertname, "result": "target busy", "run": run.id})),
            None => {
                intake.index.lock().expect("alert index lock").forget_blocked(&alert_key(alert));
                Need::Listing
            }
        };
    }
    Ok(())
}

/// A resolved alert whose run is known: cleared through that run alone (a
/// `get`, and a status write when it still awaits approval uncleared).
async fn resolve_run(intake: &Intake, alert: &Alert, route: &Route, id: &str) -> Result<serde_json::Value, crate::journal::JournalError> {
    let alertname = route.alertname.as_str();
    intake.counters.journal_gets.fetch_add(1, Ordering::Relaxed);
    match intake.journal.update_status_with(id, cleared_status).await {
        Ok(run) if run.status.phase == Phase::AwaitingApproval => Ok(json!({"alertname": alertname, "result": "resolved", "run": run.id})),
        Ok(_) => Ok(json!({"alertname": alertname, "result": "resolved"})),
        // Deleted by hand: as if it never was.
        Err(crate::journal::JournalError::NotFound { .. }) => {
            intake.index.lock().expect("alert index lock").forget_run(&alert_key(alert));
            Ok(json!({"alertname": alertname, "result": "resolved"}))
        }
        Err(e) => Err(e),
    }
}

/// The status of a run still awaiting approval, marked "condition cleared"
/// (None: it is not awaiting approval, or is marked already).
fn cleared_status(current: &RunRecord) -> Option<crate::journal::RunStatus> {
    let cleared = current.status.message.as_deref().is_some_and(|m| m.starts_with(CLEARED));
    (current.status.phase == Phase::AwaitingApproval && !cleared).then(|| {
        let mut status = current.status.clone();
        status.message = Some(format!("{CLEARED} at {}: approve anyway?", Utc::now().to_rfc3339()));
        status
    })
}

/// Keeps the index current with what became of an alert.
fn learn(intake: &Intake, alert: &Alert, result: &serde_json::Value) {
    let Some(run) = result["run"].as_str() else { return };
    let mut index = intake.index.lock().expect("alert index lock");
    match result["result"].as_str() {
        Some("run" | "duplicate") => index.remember_run(alert_key(alert), run.into()),
        Some("target busy") => index.remember_blocked(alert_key(alert), run.into()),
        _ => {}
    }
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
        if cleared_status(&runs[index]).is_some() {
            runs[index] = intake.journal.update_status_with(&runs[index].id, cleared_status).await?;
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
            runs.insert(0, run);
            Ok(result)
        }
        // Another replica got the same notification (Alertmanager HA) and
        // created the alert's run first: its deterministic name is taken.
        Err(crate::remediator::RemediationError::Journal(crate::journal::JournalError::AlreadyExists { id, .. })) => {
            // Counted as a duplicate by `decided`, like every other answer.
            // This replica's notifier may lead: it posts the run now rather than at its next poll.
            crate::journal::announce_run_created(&id);
            Ok(json!({"alertname": alertname, "result": "duplicate", "run": id}))
        }
        Err(crate::remediator::RemediationError::Journal(e)) => Err(e),
        Err(crate::remediator::RemediationError::TargetBusy { id, .. }) => Ok(json!({"alertname": alertname, "result": "target busy", "run": id})),
        Err(e) => Ok(json!({"alertname": alertname, "result": "nothing to do", "reason": e.to_string()})),
    }
}
