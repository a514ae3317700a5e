//! `POST /discord/interactions`: Discord delivers button clicks here (the
//! application's "Interactions Endpoint URL").
//!
//! Every request must carry a valid Ed25519 signature by the application's
//! key over `X-Signature-Timestamp` + the raw body, with a timestamp within
//! five minutes; anything else is 401 (Discord probes with bad signatures on
//! purpose). PING is answered with PONG. A click is answered within Discord's
//! 3-second deadline: UPDATE_MESSAGE (type 7) with the run's new rendering,
//! or an ephemeral message (type 4, flags 64) for a refusal; when the journal
//! is slow, a deferred update (type 6) and the result as a follow-up.
//!
//! [`answer`] is the decision path; the Gateway transport
//! (`super::gateway::bridge`) feeds it the interactions it receives too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{json, Value};

use super::client::DiscordClient;
use super::render::{self, RenderContext, Transport, Verb};
use crate::config::{DiscordApprovers, Dur};
use crate::journal::{Journal, Phase};
use crate::plan::shell::quote;
use crate::remediator::{self, RemediationError};

pub const PATH: &str = "/discord/interactions";
/// Signed requests older (or newer) than this are refused: a captured
/// request cannot be replayed later.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
const EPHEMERAL: u64 = 64;
/// Interactions are small (the clicked message is at most ~6000 characters
/// of embeds and 2000 of content); anything larger is not from Discord.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Interaction ids remembered at once; Discord's rate limits keep a real
/// channel far below this.
pub const MAX_REMEMBERED: usize = 10_000;

/// The application's public key, 64 hex characters.
pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|e| format!("not hex: {e}"))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| format!("{} bytes, an Ed25519 public key has 32", b.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// The signature headers, when present, well-formed and recent: what can be
/// checked before the body is read.
struct SignatureHeaders<'a> {
    signature: [u8; 64],
    timestamp: &'a str,
    sent_at: i64,
}

fn signature_headers(headers: &HeaderMap, now_unix: i64) -> Option<SignatureHeaders<'_>> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (signature, timestamp) = (header("x-signature-ed25519")?, header("x-signature-timestamp")?);
    let sent_at = timestamp.parse::<i64>().ok()?;
    // abs_diff: a timestamp near i64::MIN must not overflow a subtraction.
    if now_unix.abs_diff(sent_at) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return None;
    }
    let signature = hex::decode(signature).ok().and_then(|b| <[u8; 64]>::try_from(b).ok())?;
    Some(SignatureHeaders { signature, timestamp, sent_at })
}

/// Whether the request is signed by `key`, and recent.
pub fn verify(key: &VerifyingKey, headers: &HeaderMap, body: &[u8], now_unix: i64) -> bool {
    signature_headers(headers, now_unix).is_some_and(|h| verify_signed(key, &h, body))
}

fn verify_signed(key: &VerifyingKey, headers: &SignatureHeaders, body: &[u8]) -> bool {
    let SignatureHeaders { signature, timestamp, .. } = headers;
    let mut message = Vec::with_capacity(timestamp.len() + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.extend_from_slice(body);
    key.verify_strict(&message, &Signature::from_bytes(signature)).is_ok()
}

/// Interaction ids already answered, with their signature time: a signed
/// request captured and sent again within the clock-skew window is refused.
/// Entries older than the window are forgotten (a replay that late fails the
/// timestamp check), so memory is bounded by the traffic of ten minutes, and
/// by [`MAX_REMEMBERED`] beyond which new interactions are refused.
#[derive(Default)]
pub struct SeenInteractions {
    seen: Mutex<HashMap<String, i64>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    First,
    Replayed,
    /// Too many to remember: refused rather than forgotten.
    Full,
}

impl SeenInteractions {
    pub fn check_and_remember(&self, interaction_id: &str, sent_at: i64, now_unix: i64) -> Seen {
        let mut seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains_key(interaction_id) {
            return Seen::Replayed;
        }
        if seen.len() >= MAX_REMEMBERED {
            seen.retain(|_, at| now_unix.saturating_sub(*at) <= 2 * MAX_CLOCK_SKEW_SECS);
        }
        if seen.len() >= MAX_REMEMBERED {
            return Seen::Full;
        }
        seen.insert(interaction_id.to_string(), sent_at);
        Seen::First
    }

    pub fn len(&self) -> usize {
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub struct Interactions {
    pub journal: Arc<Journal>,
    /// Verifies `POST /discord/interactions` (HTTP transport); the Gateway
    /// transport has no signatures (the bot opened the connection itself).
    pub public_key: Option<VerifyingKey>,
    pub approvers: DiscordApprovers,
    /// Clicks from any other channel are refused.
    pub channel_id: Option<String>,
    pub approval_ttl: Dur,
    pub edit_interval: Dur,
    /// For follow-ups after a deferred answer.
    pub client: Arc<DiscordClient>,
    /// How long to wait for the journal before answering "deferred" (Discord
    /// allows 3 s); zero always defers.
    pub answer_within: Duration,
    /// Interactions already answered (replay protection).
    pub seen: SeenInteractions,
}

pub fn routes(interactions: Arc<Interactions>) -> Router {
    Router::new().route(PATH, post(receive)).with_state(interactions)
}

/// What a click comes to.
#[derive(Debug)]
enum Answer {
    /// The button's message, re-rendered (type 7).
    Update(Value),
    /// Only the clicker sees it (type 4, flags 64).
    Ephemeral(String),
}

impl Answer {
    fn immediate(self) -> Value {
        match self {
            Answer::Update(message) => json!({"type": 7, "data": message}),
            Answer::Ephemeral(text) => json!({"type": 4, "data": ephemeral(text)}),
        }
    }
}

/// Message data only the interaction's user sees.
pub fn ephemeral(text: String) -> Value {
    json!({"content": render::clip(&text, render::MAX_CONTENT), "flags": EPHEMERAL, "allowed_mentions": {"parse": []}})
}

fn bad_signature() -> Response {
    tracing::info!("Discord interaction with a missing or bad signature refused");
    (StatusCode::UNAUTHORIZED, "invalid request signature\n").into_response()
}

async fn receive(State(ix): State<Arc<Interactions>>, headers: HeaderMap, body: Body) -> Response {
    let now = Utc::now().timestamp();
    // What can be refused without the body is refused before reading it.
    let Some(signed) = signature_headers(&headers, now) else {
        return bad_signature();
    };
    let body = match crate::server::read_body(&headers, body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => {
            tracing::info!(error = %e, "Discord interaction body refused");
            return (e.status(), format!("{e}\n")).into_response();
        }
    };
    if !ix.public_key.as_ref().is_some_and(|key| verify_signed(key, &signed, &body)) {
        return bad_signature();
    }
    let Ok(interaction) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON\n").into_response();
    };
    let Some(interaction_id) = interaction["id"].as_str() else {
        return (StatusCode::BAD_REQUEST, "interaction without an id\n").into_response();
    };
    match ix.seen.check_and_remember(interaction_id, signed.sent_at, now) {
        Seen::First => {}
        Seen::Replayed => {
            tracing::warn!(interaction = %interaction_id, "a Discord interaction delivered again refused (replay)");
            return (StatusCode::UNAUTHORIZED, "interaction already answered\n").into_response();
        }
        Seen::Full => {
            tracing::warn!(remembered = MAX_REMEMBERED, "too many Discord interactions in the replay window; refusing");
            return (StatusCode::SERVICE_UNAVAILABLE, "too many interactions, try again\n").into_response();
        }
    }
    let Answered { now, later } = answer(ix, interaction).await;
    if let Some(later) = later {
        tokio::spawn(later);
    }
    Json(now).into_response()
}

/// An interaction response: `now` is the initial response (what Discord
/// needs within its 3-second deadline); `later`, when the answer was
/// deferred, sends the real answer once `now` has reached Discord.
pub struct Answered {
    pub now: Value,
    pub later: Option<futures::future::BoxFuture<'static, ()>>,
}

impl Answered {
    pub fn at_once(now: Value) -> Self {
        Self { now, later: None }
    }
}

/// The decision path shared by both transports, for an interaction that is
/// authentic and seen for the first time: PING, button clicks (approver
/// roles, channel, plan hash, phase, approval window), refusals otherwise.
pub async fn answer(ix: Arc<Interactions>, interaction: Value) -> Answered {
    match interaction["type"].as_u64() {
        Some(1) => Answered::at_once(json!({"type": 1})),
        Some(3) => click(ix, interaction).await,
        _ => Answered::at_once(Answer::Ephemeral("lifeboat only understands its own buttons.".into()).immediate()),
    }
}

/// Who sent an interaction, and whether discord.approvers names them.
pub struct Sender {
    pub id: String,
    pub name: String,
    pub may_decide: bool,
}

impl Sender {
    /// How the journal records a decision by this sender.
    pub fn by(&self) -> String {
        format!("discord:{} ({})", self.name, self.id)
    }
}

impl Interactions {
    pub fn sender(&self, interaction: &Value) -> Sender {
        let user = if interaction["member"].is_object() { &interaction["member"]["user"] } else { &interaction["user"] };
        let id = user["id"].as_str().unwrap_or_default().to_string();
        let name = user["global_name"].as_str().or(user["username"].as_str()).unwrap_or("unknown").to_string();
        let roles: Vec<&str> = interaction["member"]["roles"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
        let may_decide = self.approvers.users.contains(&id) || self.approvers.roles.iter().any(|r| roles.contains(&r.as_str()));
        Sender { id, name, may_decide }
    }
}

async fn click(ix: Arc<Interactions>, interaction: Value) -> Answered {
    let custom_id = interaction["data"]["custom_id"].as_str().unwrap_or_default();
    let refuse = |text: &str| Answered::at_once(Answer::Ephemeral(text.into()).immediate());
    let Some(button) = render::parse_custom_id(custom_id) else {
        return refuse("This is not a lifeboat button.");
    };
    let (verb, run_id) = (button.verb, button.run_id.clone());
    if let (Some(expected), Some(channel)) = (&ix.channel_id, interaction["channel_id"].as_str()) {
        if expected != channel {
            return refuse("lifeboat only takes decisions in its own channel.");
        }
    }
    let sender = ix.sender(&interaction);
    if verb != Verb::Commands && !sender.may_decide {
        tracing::info!(user = %sender.id, run = %run_id, "Discord click by a non-approver refused");
        return refuse(&not_an_approver(&sender));
    }
    let by = sender.by();
    let mut task = tokio::spawn(decide(ix.clone(), button, by));
    let answered = match ix.answer_within.is_zero() {
        true => Err(()),
        false => tokio::time::timeout(ix.answer_within, &mut task).await.map_err(|_| ()),
    };
    match answered {
        Ok(answer) => Answered::at_once(answer.unwrap_or_else(|e| Answer::Ephemeral(format!("lifeboat failed: {e}"))).immediate()),
        Err(_) => {
            // Too slow for Discord's deadline: acknowledge now, answer by follow-up.
            let (application, token) = (interaction["application_id"].as_str(), interaction["token"].as_str());
            let later = match (application, token) {
                (Some(application), Some(token)) => {
                    let (application, token) = (application.to_string(), token.to_string());
                    let client = ix.client.clone();
                    let later: futures::future::BoxFuture<'static, ()> = Box::pin(async move {
                        let answer = task.await.unwrap_or_else(|e| Answer::Ephemeral(format!("lifeboat failed: {e}")));
                        let sent = match answer {
                            Answer::Update(message) => client.edit_original_response(&application, &token, &message).await,
                            Answer::Ephemeral(text) => client.follow_up(&application, &token, &ephemeral(text)).await,
                        };
                        if let Err(error) = sent {
                            tracing::warn!(%error, "answering a Discord click late failed");
                        }
                    });
                    Some(later)
                }
                _ => None,
            };
            Answered { now: json!({"type": 6}), later }
        }
    }
}

/// The refusal a non-approver gets (ephemeral).
pub fn not_an_approver(sender: &Sender) -> String {
    format!("You ({}, {}) are not a lifeboat approver: nothing was done. Approvers are the users and roles in discord.approvers.", sender.name, sender.id)
}

async fn decide(ix: Arc<Interactions>, button: render::Button, by: String) -> Answer {
    let render::Button { verb, run_id: id, plan_hash: hash, phase } = button;
    let run = match ix.journal.get(&id).await {
        Ok(Some(run)) => run,
        Ok(None) => return Answer::Ephemeral(format!("There is no run `{id}` (any more).")),
        Err(e) => return Answer::Ephemeral(format!("The journal is unreachable, nothing was done: {e}")),
    };
    let context = |now| RenderContext { transport: Transport::Bot, approval_ttl: ix.approval_ttl, edit_interval: ix.edit_interval, now };
    if verb == Verb::Commands {
        return Answer::Ephemeral(render::commands_text(&run));
    }
    if run.status.phase != Phase::AwaitingApproval {
        let what = if verb == Verb::Approve { "approve" } else { "reject" };
        return Answer::Ephemeral(format!("Run `{id}` is {:?}: there is nothing to {what} (use `lifeboat abort {}` to stop a run).", run.status.phase, quote(&id)));
    }
    if hash != run.spec.plan_hash {
        return Answer::Ephemeral(format!(
            "Refused: this message shows plan `{hash}`, but run `{id}` is plan `{}`. The plan changed; review it again (`lifeboat runs show {}`).",
            run.spec.plan_hash,
            quote(&id)
        ));
    }
    if phase != run.status.awaiting_phase {
        let shown = phase.as_deref().map_or("the run's first approval".to_string(), |p| format!("phase {p}"));
        let waiting = run.status.awaiting_phase.as_deref().map_or("its first approval".to_string(), |p| format!("phase {p}"));
        return Answer::Ephemeral(format!("Refused: this button decides {shown}, but run `{id}` now waits for {waiting}. Use the buttons of its current message."));
    }
    let now = Utc::now();
    let result = match verb {
        Verb::Approve => {
            let deadline = render::approval_deadline(&run, ix.approval_ttl);
            if now > deadline {
                return Answer::Ephemeral(format!(
                    "Refused: the approval window of run `{id}` closed at {} (remediation.approvalTtl {}). The cluster may have changed since: submit the run again.",
                    deadline.to_rfc3339(),
                    ix.approval_ttl
                ));
            }
            remediator::approve(&ix.journal, &id, &hash, &by, ix.approval_ttl).await
        }
        _ => remediator::abort(&ix.journal, &id, &format!("{by}, rejected in Discord")).await,
    };
    match result {
        Ok(run) => {
            tracing::info!(run = %id, %by, phase = ?run.status.phase, "Discord decision recorded");
            Answer::Update(render::main_message(&run, &context(Utc::now())))
        }
        Err(
            e
            @ (RemediationError::WrongHash { .. } | RemediationError::NotAwaitingApproval { .. } | RemediationError::NoSuchRun(_) | RemediationError::ApprovalWindowClosed { .. }),
        ) => Answer::Ephemeral(format!("Refused: {e}")),
        Err(e) => Answer::Ephemeral(format!("Nothing was done: {e}")),
    }
}
