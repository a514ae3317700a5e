//! A local Discord for the tests: an HTTP server on 127.0.0.1 that holds
//! lifeboat to Discord's documented request shapes and limits, and plays
//! Discord's side of interactions.
//!
//! * Bot routes `POST /api/v10/channels/{id}/messages` and
//!   `PATCH …/messages/{mid}` need `Authorization: Bot <token>` (401
//!   otherwise); channel webhook routes `POST /api/v10/webhooks/{id}/{token}`
//!   (`?wait=true`) and `PATCH …/messages/{mid}` need the webhook's token.
//! * Bodies must be JSON with Discord's structure and limits (content ≤ 2000,
//!   ≤ 10 embeds with title ≤ 256, description ≤ 4096, ≤ 25 fields, 6000
//!   characters in all; action rows of ≤ 5 buttons, `custom_id` 1..=100 and
//!   unique; replies only to existing messages; no buttons through a plain
//!   webhook; no unknown keys). Violations get 400 with the reason.
//! * Rate limits, deterministic: each route bucket allows `bucket_size`
//!   requests per window (the window opens at its first request and lasts
//!   `reset_after`), announced in `X-RateLimit-*` headers; a request into an
//!   exhausted bucket, or during a global limit, is answered 429 and counted
//!   as a violation. `inject_global_429(n)` answers the n-th API request with
//!   a global 429 (`retry_after`), which is not a violation.
//! * Outages: `Outage::Unavailable` answers 503 to everything;
//!   `Outage::Refuse` drops new connections and resets open ones.
//! * Interactions: `click` sends a button click signed with the test key
//!   to lifeboat's endpoint and applies the answer like Discord does (type 7
//!   edits the message, type 4 with flags 64 is an ephemeral message, type 6
//!   waits for a follow-up on `/webhooks/{app}/{token}/messages/@original`).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

pub const BOT_TOKEN: &str = "MTIzNDU2Nzg5MDEyMzQ1Njc4.fake-bot-token.do-not-leak-this-secret";
pub const WEBHOOK_TOKEN: &str = "webhook-secret-token-do-not-leak-0123456789";
pub const WEBHOOK_ID: &str = "555000111";
pub const CHANNEL_ID: &str = "1200000000000000001";
pub const APPLICATION_ID: &str = "1300000000000000001";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outage {
    None,
    Unavailable,
    Refuse,
}

#[derive(Clone, Debug)]
pub struct Message {
    pub id: String,
    /// "bot" or "webhook".
    pub via: String,
    pub content: String,
    pub embeds: Value,
    pub components: Value,
    /// The message replied to.
    pub reply_to: Option<String>,
    /// Every body that edited it (PATCH or an interaction answer), in order.
    pub edits: Vec<Value>,
    /// When the request that created it arrived (for latency benches).
    pub posted_at: Instant,
}

impl Message {
    /// Content, embed titles, descriptions and fields as one text.
    pub fn text(&self) -> String {
        let mut out = self.content.clone();
        for e in self.embeds.as_array().into_iter().flatten() {
            for key in ["title", "description"] {
                if let Some(s) = e[key].as_str() {
                    out.push('\n');
                    out.push_str(s);
                }
            }
            for f in e["fields"].as_array().into_iter().flatten() {
                out.push_str(&format!("\n{}: {}", f["name"].as_str().unwrap_or(""), f["value"].as_str().unwrap_or("")));
            }
        }
        out
    }

    pub fn custom_ids(&self) -> Vec<String> {
        self.components
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["custom_id"].as_str().map(String::from))
            .collect()
    }

    pub fn button_labels(&self) -> Vec<String> {
        self.components
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
            .filter_map(|b| b["label"].as_str().map(String::from))
            .collect()
    }
}

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
    pub status: u16,
}

#[derive(Clone, Copy)]
struct Bucket {
    remaining: u64,
    reset_at: Instant,
}

struct Fake {
    messages: Vec<Message>,
    requests: Vec<Request>,
    ephemeral: Vec<String>,
    bucket_size: u64,
    reset_after: Duration,
    buckets: HashMap<String, Bucket>,
    global_until: Option<Instant>,
    inject: Vec<(usize, f64)>,
    api_requests: usize,
    injected: u32,
    violations: u32,
    outage: Outage,
    nonces: HashMap<String, String>,
    nonce_repeats: u32,
    next_id: u64,
    /// Interaction token → the clicked message, for follow-ups.
    deferred: HashMap<String, String>,
    /// Gateway mode: see [`GatewayRest`].
    gateway: GatewayRest,
}

pub struct FakeDiscord {
    pub base: String,
    pub api_base: String,
    pub key: SigningKey,
    state: Arc<Mutex<Fake>>,
    refuse: Arc<AtomicBool>,
}

impl FakeDiscord {
    /// A fake allowing `bucket_size` requests per route bucket every `reset_after`.
    pub async fn start(bucket_size: u64, reset_after: Duration) -> Self {
        let state = Arc::new(Mutex::new(Fake {
            messages: vec![],
            requests: vec![],
            ephemeral: vec![],
            bucket_size,
            reset_after,
            buckets: HashMap::new(),
            global_until: None,
            inject: vec![],
            api_requests: 0,
            injected: 0,
            violations: 0,
            outage: Outage::None,
            nonces: HashMap::new(),
            nonce_repeats: 0,
            next_id: 1_400_000_000_000_000_000,
            deferred: HashMap::new(),
            gateway: GatewayRest::default(),
        }));
        let refuse = Arc::new(AtomicBool::new(false));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let flaky = FlakyListener { inner: listener, refuse: refuse.clone() };
        tokio::spawn(async move { axum::serve(flaky, app).await });
        let base = format!("http://{addr}");
        Self { api_base: format!("{base}/api/v10"), base, key: SigningKey::from_bytes(&[7u8; 32]), state, refuse }
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/webhooks/{WEBHOOK_ID}/{WEBHOOK_TOKEN}", self.api_base)
    }

    pub fn set_outage(&self, outage: Outage) {
        self.state.lock().unwrap().outage = outage;
        self.refuse.store(outage == Outage::Refuse, Ordering::SeqCst);
    }

    /// The `n`-th API request from now on (1 = the next) gets a global 429.
    pub fn inject_global_429(&self, n: usize, retry_after: f64) {
        let mut s = self.state.lock().unwrap();
        let at = s.api_requests + n;
        s.inject.push((at, retry_after));
    }

    pub fn messages(&self) -> Vec<Message> {
        self.state.lock().unwrap().messages.clone()
    }

    pub fn message(&self, id: &str) -> Message {
        self.messages().into_iter().find(|m| m.id == id).unwrap_or_else(|| panic!("no message {id}"))
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn ephemeral(&self) -> Vec<String> {
        self.state.lock().unwrap().ephemeral.clone()
    }

    /// Requests sent into an exhausted bucket or during a global limit.
    pub fn violations(&self) -> u32 {
        self.state.lock().unwrap().violations
    }

    /// Messages sent again with a nonce already used (dropped, as Discord does).
    pub fn nonce_repeats(&self) -> u32 {
        self.state.lock().unwrap().nonce_repeats
    }

    pub fn injected_429s(&self) -> u32 {
        self.state.lock().unwrap().injected
    }

    /// Polls until `check` holds (panics after 60 s with `what`).
    pub async fn wait_until(&self, what: &str, check: impl Fn(&[Message]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if check(&self.messages()) {
                return;
            }
            assert!(Instant::now() < deadline, "fake Discord: gave up waiting for {what}; messages: {:#?}", self.messages());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn sign(key: &SigningKey, timestamp: &str, body: &[u8]) -> String {
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(body);
        hex::encode(key.sign(&message).to_bytes())
    }

    /// POSTs `body` to lifeboat's endpoint with the given signature headers (None = left out).
    pub async fn post_raw(endpoint: &str, body: &[u8], signature: Option<&str>, timestamp: Option<&str>) -> (u16, String) {
        let mut request = reqwest::Client::new().post(endpoint).header("content-type", "application/json").body(body.to_vec());
        if let Some(s) = signature {
            request = request.header("X-Signature-Ed25519", s);
        }
        if let Some(t) = timestamp {
            request = request.header("X-Signature-Timestamp", t);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// A correctly signed POST, as Discord sends it.
    pub async fn post_signed(&self, endpoint: &str, body: &Value) -> (u16, String) {
        let body = serde_json::to_vec(body).unwrap();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature = Self::sign(&self.key, &timestamp, &body);
        Self::post_raw(endpoint, &body, Some(&signature), Some(&timestamp)).await
    }

    pub fn click_payload(&self, message_id: &str, custom_id: &str, user_id: &str, roles: &[&str]) -> Value {
        let n = {
            let mut s = self.state.lock().unwrap();
            s.next_id += 1;
            s.next_id
        };
        json!({
            "id": n.to_string(), "application_id": APPLICATION_ID, "type": 3, "version": 1,
            "token": format!("interaction-token-{n}"), "channel_id": CHANNEL_ID, "guild_id": "1100000000000000001",
            "member": {"user": {"id": user_id, "username": format!("user{user_id}"), "global_name": null}, "roles": roles},
            "message": {"id": message_id, "channel_id": CHANNEL_ID},
            "data": {"custom_id": custom_id, "component_type": 2},
        })
    }

    /// A signed button click; Discord's handling of the answer is applied.
    pub async fn click(&self, endpoint: &str, message_id: &str, custom_id: &str, user_id: &str, roles: &[&str]) -> Value {
        let payload = self.click_payload(message_id, custom_id, user_id, roles);
        // The interaction token is valid for follow-ups from the moment Discord sends it.
        let token = payload["token"].as_str().unwrap().to_string();
        self.state.lock().unwrap().deferred.insert(token, message_id.to_string());
        let (status, text) = self.post_signed(endpoint, &payload).await;
        assert_eq!(status, 200, "lifeboat refused a signed click: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {text}"));
        let mut s = self.state.lock().unwrap();
        match answer["type"].as_u64() {
            Some(7) => {
                if let Err(reason) = check_message(&answer["data"], false, false, &s.messages) {
                    panic!("invalid UPDATE_MESSAGE data: {reason}: {answer}");
                }
                let m = s.messages.iter_mut().find(|m| m.id == message_id).expect("clicked message exists");
                apply_edit(m, &answer["data"]);
            }
            Some(4) => {
                assert_eq!(answer["data"]["flags"].as_u64().map(|f| f & 64), Some(64), "refusals are ephemeral: {answer}");
                s.ephemeral.push(answer["data"]["content"].as_str().unwrap_or_default().to_string());
            }
            Some(6) => {}
            other => panic!("unexpected interaction answer type {other:?}: {answer}"),
        }
        answer
    }
}

fn apply_edit(m: &mut Message, body: &Value) {
    if let Some(c) = body.get("content") {
        m.content = c.as_str().unwrap_or_default().to_string();
    }
    if let Some(e) = body.get("embeds") {
        m.embeds = e.clone();
    }
    if let Some(c) = body.get("components") {
        m.components = c.clone();
    }
    m.edits.push(body.clone());
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"code": 50035, "message": message.into()}))).into_response()
}

fn len(v: &Value) -> usize {
    v.as_str().map_or(0, |s| s.chars().count())
}

/// Discord's rules for a message body; `create` needs content or embeds.
fn check_message(body: &Value, create: bool, webhook: bool, messages: &[Message]) -> Result<(), String> {
    let object = body.as_object().ok_or("the body is not a JSON object")?;
    const KEYS: &[&str] = &["content", "embeds", "components", "allowed_mentions", "message_reference", "nonce", "enforce_nonce", "flags", "tts"];
    if let Some(k) = object.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!("unknown key {k:?}"));
    }
    let content = &body["content"];
    if !content.is_null() && !content.is_string() {
        return Err("content must be a string".into());
    }
    if len(content) > 2000 {
        return Err(format!("content is {} characters (max 2000)", len(content)));
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if create && len(content) == 0 && embeds.is_empty() {
        return Err("a message needs content or embeds".into());
    }
    if embeds.len() > 10 {
        return Err("more than 10 embeds".into());
    }
    let mut total = 0;
    for e in &embeds {
        if len(&e["title"]) > 256 || len(&e["description"]) > 4096 || len(&e["footer"]["text"]) > 2048 {
            return Err("embed title > 256, description > 4096 or footer > 2048".into());
        }
        if e["color"].as_u64().is_some_and(|c| c > 0xFFFFFF) {
            return Err("embed color out of range".into());
        }
        let fields = e["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            return Err("more than 25 fields".into());
        }
        for f in &fields {
            if len(&f["name"]) == 0 || len(&f["name"]) > 256 || len(&f["value"]) == 0 || len(&f["value"]) > 1024 {
                return Err(format!("field name 1..=256 and value 1..=1024: {f}"));
            }
            total += len(&f["name"]) + len(&f["value"]);
        }
        total += len(&e["title"]) + len(&e["description"]) + len(&e["footer"]["text"]);
    }
    if total > 6000 {
        return Err(format!("embeds hold {total} characters (max 6000)"));
    }
    let rows = body["components"].as_array().cloned().unwrap_or_default();
    if webhook && !rows.is_empty() {
        return Err("a channel webhook cannot send components (buttons need a bot application)".into());
    }
    if rows.len() > 5 {
        return Err("more than 5 action rows".into());
    }
    let mut ids = HashSet::new();
    for row in &rows {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Err(format!("an action row is type 1 with 1..=5 components: {row}"));
        }
        for b in &buttons {
            let style = b["style"].as_u64().unwrap_or(0);
            if b["type"] != 2 || !(1..=5).contains(&style) || len(&b["label"]) > 80 {
                return Err(format!("a button is type 2, style 1..=5, label ≤ 80: {b}"));
            }
            if style == 5 {
                continue;
            }
            let id = b["custom_id"].as_str().ok_or_else(|| format!("a button needs a custom_id: {b}"))?;
            if id.is_empty() || id.chars().count() > 100 {
                return Err(format!("custom_id must be 1..=100 characters: {id:?}"));
            }
            if !ids.insert(id.to_string()) {
                return Err(format!("duplicate custom_id {id:?}"));
            }
        }
    }
    if let Some(reference) = body.get("message_reference") {
        if webhook {
            return Err("a channel webhook cannot reply".into());
        }
        let id = reference["message_id"].as_str().ok_or("message_reference needs message_id")?;
        if !messages.iter().any(|m| m.id == id) {
            return Err(format!("message_reference: unknown message {id}"));
        }
    }
    if len(&body["nonce"]) > 25 {
        return Err("nonce longer than 25".into());
    }
    Ok(())
}

/// Bucket name of a route: per method, channel/webhook, not per message.
fn bucket_of(method: &Method, segments: &[&str]) -> String {
    let major = segments.get(1).copied().unwrap_or("");
    let kind = if segments.len() > 3 { "one-message" } else { "messages" };
    format!("{}-{}-{major}-{kind}", method.as_str().to_lowercase(), segments.first().copied().unwrap_or(""))
}

async fn handle(Shared(state): Shared<Arc<Mutex<Fake>>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let text = String::from_utf8_lossy(&body).to_string();
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(String::from);
    let response = route(&state, &method, &uri, &headers, &text);
    state.lock().unwrap().requests.push(Request { method: method.to_string(), path, authorization, body: text, status: response.status().as_u16() });
    response
}

fn route(state: &Arc<Mutex<Fake>>, method: &Method, uri: &Uri, headers: &HeaderMap, text: &str) -> Response {
    let mut s = state.lock().unwrap();
    if s.outage == Outage::Unavailable {
        return error(StatusCode::SERVICE_UNAVAILABLE, "upstream connect error");
    }
    let Some(rest) = uri.path().strip_prefix("/api/v10/") else {
        return error(StatusCode::NOT_FOUND, "404: Not Found");
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if let Some(response) = gateway_routes(&mut s, method, &segments, headers, text) {
        return response;
    }
    let is_followup = segments.first() == Some(&"webhooks") && segments.get(1) == Some(&APPLICATION_ID);
    let webhook = segments.first() == Some(&"webhooks") && !is_followup;
    // Authentication first, as Discord does.
    if segments.first() == Some(&"channels") {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bot {BOT_TOKEN}")) {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "401: Unauthorized", "code": 0}))).into_response();
        }
        if segments.get(1) != Some(&CHANNEL_ID) {
            return error(StatusCode::NOT_FOUND, "Unknown Channel");
        }
    } else if webhook && (segments.get(1) != Some(&WEBHOOK_ID) || segments.get(2) != Some(&WEBHOOK_TOKEN)) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "Invalid Webhook Token", "code": 50027}))).into_response();
    }
    // Rate limits.
    s.api_requests += 1;
    let now = Instant::now();
    let n = s.api_requests;
    if let Some(i) = s.inject.iter().position(|(at, _)| *at == n) {
        let (_, retry_after) = s.inject.remove(i);
        s.injected += 1;
        s.global_until = Some(now + Duration::from_secs_f64(retry_after));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-ratelimit-global", "true"), ("x-ratelimit-scope", "global")],
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": true})),
        )
            .into_response();
    }
    if let Some(until) = s.global_until.filter(|t| *t > now) {
        s.violations += 1;
        let retry_after = (until - now).as_secs_f64();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("x-ratelimit-global", "true"), ("x-ratelimit-scope", "global")],
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": true})),
        )
            .into_response();
    }
    let bucket_name = bucket_of(method, &segments);
    let (size, window) = (s.bucket_size, s.reset_after);
    let bucket = s.buckets.entry(bucket_name.clone()).or_insert(Bucket { remaining: size, reset_at: now });
    if bucket.reset_at <= now {
        *bucket = Bucket { remaining: size, reset_at: now + window };
    }
    let reset_after = format!("{:.3}", (bucket.reset_at - now).as_secs_f64());
    if bucket.remaining == 0 {
        s.violations += 1;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-ratelimit-limit", size.to_string()),
                ("x-ratelimit-remaining", "0".into()),
                ("x-ratelimit-reset-after", reset_after.clone()),
                ("x-ratelimit-bucket", bucket_name),
                ("x-ratelimit-scope", "user".into()),
            ],
            axum::Json(json!({"message": "You are being rate limited.", "retry_after": reset_after.parse::<f64>().unwrap(), "global": false})),
        )
            .into_response();
    }
    bucket.remaining -= 1;
    let limit_headers = [
        ("x-ratelimit-limit", size.to_string()),
        ("x-ratelimit-remaining", bucket.remaining.to_string()),
        ("x-ratelimit-reset-after", reset_after),
        ("x-ratelimit-bucket", bucket_name),
    ];
    // The request itself.
    if headers.get("content-type").and_then(|v| v.to_str().ok()).map(|c| c.starts_with("application/json")) != Some(true) {
        return error(StatusCode::BAD_REQUEST, "Content-Type must be application/json");
    }
    let body: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not JSON: {e}")),
    };
    let answer = match (method.clone(), segments.as_slice()) {
        (Method::POST, ["channels", _, "messages"]) => create(&mut s, body, "bot"),
        (Method::PATCH, ["channels", _, "messages", id]) => edit(&mut s, id, body, false),
        (Method::POST, ["webhooks", _, _]) if !is_followup => {
            if !uri.query().unwrap_or("").split('&').any(|q| q == "wait=true") {
                return error(StatusCode::BAD_REQUEST, "lifeboat needs the message id back: ?wait=true");
            }
            create(&mut s, body, "webhook")
        }
        (Method::PATCH, ["webhooks", _, _, "messages", id]) if !is_followup => edit(&mut s, id, body, true),
        (Method::PATCH, ["webhooks", _, token, "messages", "@original"]) => match s.deferred.get(*token).cloned() {
            // A deferred command's answer (there is no clicked message).
            Some(id) if id.is_empty() => {
                let interaction = s.gateway.interactions.iter().find(|(_, (t, _, _))| t == token).map(|(i, _)| i.clone()).unwrap_or_default();
                s.gateway.responses.push((interaction, body.clone()));
                Ok(body)
            }
            Some(id) => edit(&mut s, &id, body, false),
            None => Err(Box::new(error(StatusCode::NOT_FOUND, "Unknown Webhook"))),
        },
        (Method::POST, ["webhooks", _, token]) => match s.deferred.contains_key(*token) {
            true => {
                s.ephemeral.push(body["content"].as_str().unwrap_or_default().to_string());
                Ok(body)
            }
            false => Err(Box::new(error(StatusCode::NOT_FOUND, "Unknown Webhook"))),
        },
        _ => Err(Box::new(error(StatusCode::NOT_FOUND, "404: Not Found"))),
    };
    match answer {
        Ok(message) => (StatusCode::OK, limit_headers, axum::Json(message)).into_response(),
        Err(response) => *response,
    }
}

fn create(s: &mut Fake, body: Value, via: &str) -> Result<Value, Box<Response>> {
    check_message(&body, true, via == "webhook", &s.messages).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("Invalid Form Body: {e}"))))?;
    if let (Some(nonce), true) = (body["nonce"].as_str(), body["enforce_nonce"] == true) {
        if let Some(id) = s.nonces.get(nonce).cloned() {
            s.nonce_repeats += 1;
            return Ok(json!({"id": id, "channel_id": CHANNEL_ID}));
        }
    }
    s.next_id += 1;
    let id = s.next_id.to_string();
    if let Some(nonce) = body["nonce"].as_str() {
        s.nonces.insert(nonce.to_string(), id.clone());
    }
    s.messages.push(Message {
        id: id.clone(),
        via: via.into(),
        content: body["content"].as_str().unwrap_or_default().to_string(),
        embeds: body.get("embeds").cloned().unwrap_or(json!([])),
        components: body.get("components").cloned().unwrap_or(json!([])),
        reply_to: body["message_reference"]["message_id"].as_str().map(String::from),
        edits: vec![],
        posted_at: Instant::now(),
    });
    Ok(json!({"id": id, "channel_id": CHANNEL_ID, "content": body["content"], "embeds": body.get("embeds").cloned().unwrap_or(json!([]))}))
}

fn edit(s: &mut Fake, id: &str, body: Value, webhook: bool) -> Result<Value, Box<Response>> {
    check_message(&body, false, webhook, &s.messages).map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, format!("Invalid Form Body: {e}"))))?;
    let Some(m) = s.messages.iter_mut().find(|m| m.id == id) else {
        return Err(Box::new(error(StatusCode::NOT_FOUND, "Unknown Message")));
    };
    if webhook != (m.via == "webhook") {
        return Err(Box::new(error(StatusCode::FORBIDDEN, "Cannot edit a message authored by another user")));
    }
    apply_edit(m, &body);
    Ok(json!({"id": id, "channel_id": CHANNEL_ID}))
}

/// Accepts connections unless refusing; a refusing fake also resets the
/// connections it already has (kept-alive ones included).
struct FlakyListener {
    inner: TcpListener,
    refuse: Arc<AtomicBool>,
}

impl axum::serve::Listener for FlakyListener {
    type Io = FlakyStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else { continue };
            if self.refuse.load(Ordering::SeqCst) {
                drop(stream);
                continue;
            }
            return (FlakyStream { inner: stream, refuse: self.refuse.clone() }, addr);
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub struct FlakyStream {
    inner: TcpStream,
    refuse: Arc<AtomicBool>,
}

impl AsyncRead for FlakyStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.refuse.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for FlakyStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.refuse.load(Ordering::SeqCst) {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What the fake REST API knows in Gateway mode: the `GET /gateway/bot`
/// answer, the interactions dispatched over the fake Gateway (for their
/// callbacks), the registered guild commands.
#[derive(Default)]
struct GatewayRest {
    url: String,
    /// Interaction id → its token, the message it was on ("" for a command)
    /// and whether its callback came.
    interactions: HashMap<String, (String, String, bool)>,
    /// (interaction id, callback body), in order.
    callbacks: Vec<(String, Value)>,
    /// When each callback arrived (for the latency benchmark).
    callback_arrivals: HashMap<String, Instant>,
    /// Answers to commands: (interaction id, message data), the initial
    /// message or the edit that follows a deferral.
    responses: Vec<(String, Value)>,
    commands: HashMap<String, Value>,
    /// Callbacks for unknown interactions or sent twice.
    refused_callbacks: u32,
}

impl FakeDiscord {
    /// The URL `GET /gateway/bot` answers.
    pub fn set_gateway_url(&self, url: &str) {
        self.state.lock().unwrap().gateway.url = url.to_string();
    }

    /// An interaction Discord is about to deliver over the Gateway; its
    /// callback is accepted once. `message_id` is "" for a command.
    pub fn expect_interaction(&self, payload: &Value, message_id: &str) {
        let (id, token) = (payload["id"].as_str().unwrap().to_string(), payload["token"].as_str().unwrap().to_string());
        self.state.lock().unwrap().gateway.interactions.insert(id, (token, message_id.to_string(), false));
    }

    pub fn callbacks(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().gateway.callbacks.clone()
    }

    pub fn callback_arrival(&self, interaction_id: &str) -> Option<Instant> {
        self.state.lock().unwrap().gateway.callback_arrivals.get(interaction_id).copied()
    }

    pub fn responses(&self) -> Vec<(String, Value)> {
        self.state.lock().unwrap().gateway.responses.clone()
    }

    pub fn refused_callbacks(&self) -> u32 {
        self.state.lock().unwrap().gateway.refused_callbacks
    }

    /// The guild's registered commands (`PUT …/guilds/{guild}/commands`).
    pub fn guild_commands(&self, guild: &str) -> Option<Value> {
        self.state.lock().unwrap().gateway.commands.get(guild).cloned()
    }

    /// A slash command interaction (`/lifeboat <sub> [option=value]`).
    pub fn command_payload(&self, guild_id: &str, sub: &str, options: &[(&str, &str)], user_id: &str, roles: &[&str]) -> Value {
        let n = {
            let mut s = self.state.lock().unwrap();
            s.next_id += 1;
            s.next_id
        };
        let options: Vec<Value> = options.iter().map(|(name, value)| json!({"name": name, "type": 3, "value": value})).collect();
        json!({
            "id": n.to_string(), "application_id": APPLICATION_ID, "type": 2, "version": 1,
            "token": format!("interaction-token-{n}"), "channel_id": CHANNEL_ID, "guild_id": guild_id,
            "member": {"user": {"id": user_id, "username": format!("user{user_id}"), "global_name": null}, "roles": roles},
            "data": {"id": "1500000000000000001", "name": "lifeboat", "type": 1, "options": [{"name": sub, "type": 1, "options": options}]},
        })
    }
}

fn bot_authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bot {BOT_TOKEN}"))
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, axum::Json(json!({"message": "401: Unauthorized", "code": 0}))).into_response()
}

/// The routes of Gateway mode, as Discord documents them (discord-api-docs,
/// docs/topics/gateway.mdx "Get Gateway Bot"; docs/interactions/receiving-
/// and-responding.mdx "Create Interaction Response", "Interaction Callback
/// Type"; docs/interactions/application-commands.mdx "Bulk Overwrite Guild
/// Application Commands").
fn gateway_routes(s: &mut Fake, method: &Method, segments: &[&str], headers: &HeaderMap, text: &str) -> Option<Response> {
    match (method.clone(), segments) {
        (Method::GET, ["gateway", "bot"]) => Some(if !bot_authorized(headers) {
            unauthorized()
        } else {
            let url = s.gateway.url.clone();
            axum::Json(json!({"url": url, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86_400_000, "max_concurrency": 1}}))
            .into_response()
        }),
        (Method::POST, ["interactions", id, token, "callback"]) => Some(interaction_callback(s, id, token, text)),
        (Method::PUT, ["applications", app, "guilds", guild, "commands"]) => Some(if !bot_authorized(headers) {
            unauthorized()
        } else if *app != APPLICATION_ID {
            error(StatusCode::FORBIDDEN, "Missing Access")
        } else {
            match serde_json::from_str::<Value>(text).map_err(|e| e.to_string()).and_then(|v| check_commands(&v).map(|()| v)) {
                Ok(commands) => {
                    s.gateway.commands.insert(guild.to_string(), commands.clone());
                    axum::Json(commands).into_response()
                }
                Err(reason) => error(StatusCode::BAD_REQUEST, format!("Invalid Form Body: {reason}")),
            }
        }),
        _ => None,
    }
}

/// Discord answers 204 to a callback; one per interaction (a second one is
/// 40060 "Interaction has already been acknowledged", an unknown one 10062
/// "Unknown interaction").
fn interaction_callback(s: &mut Fake, id: &str, token: &str, text: &str) -> Response {
    let known = s.gateway.interactions.get(id).cloned();
    let Some((expected_token, message_id, answered)) = known.filter(|(t, _, _)| t == token) else {
        s.gateway.refused_callbacks += 1;
        return (StatusCode::NOT_FOUND, axum::Json(json!({"message": "Unknown interaction", "code": 10062}))).into_response();
    };
    if answered {
        s.gateway.refused_callbacks += 1;
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"message": "Interaction has already been acknowledged.", "code": 40060}))).into_response();
    }
    let Ok(body) = serde_json::from_str::<Value>(text) else {
        return error(StatusCode::BAD_REQUEST, "not JSON");
    };
    match body["type"].as_u64() {
        Some(7) if !message_id.is_empty() => {
            if let Err(reason) = check_message(&body["data"], false, false, &s.messages) {
                return error(StatusCode::BAD_REQUEST, format!("Invalid Form Body: {reason}"));
            }
            let m = s.messages.iter_mut().find(|m| m.id == message_id).expect("clicked message exists");
            apply_edit(m, &body["data"]);
        }
        Some(4) => {
            if body["data"]["flags"].as_u64().is_some_and(|f| f & 64 == 64) {
                s.ephemeral.push(body["data"]["content"].as_str().unwrap_or_default().to_string());
            }
            s.gateway.responses.push((id.to_string(), body["data"].clone()));
        }
        Some(5 | 6) => {}
        other => return error(StatusCode::BAD_REQUEST, format!("interaction callback type {other:?} does not fit this interaction")),
    }
    s.gateway.interactions.insert(id.to_string(), (expected_token, message_id.clone(), true));
    s.gateway.callbacks.push((id.to_string(), body));
    s.gateway.callback_arrivals.insert(id.to_string(), Instant::now());
    // Follow-ups exist once the interaction is acknowledged.
    s.deferred.insert(token.to_string(), message_id);
    StatusCode::NO_CONTENT.into_response()
}

/// Application command shapes: names 1..=32 lowercase characters, descriptions
/// 1..=100, at most 25 options, required options before optional ones.
fn check_commands(commands: &Value) -> Result<(), String> {
    fn options(list: &Value, at: &str) -> Result<(), String> {
        let list = list.as_array().map(Vec::as_slice).unwrap_or_default();
        if list.len() > 25 {
            return Err(format!("{at}: more than 25 options"));
        }
        let mut optional_seen = false;
        for o in list {
            let name = o["name"].as_str().unwrap_or_default();
            if name.is_empty() || name.chars().count() > 32 || name.chars().any(|c| c.is_uppercase() || c.is_whitespace()) {
                return Err(format!("{at}: option name {name:?}"));
            }
            let description = o["description"].as_str().unwrap_or_default().chars().count();
            if !(1..=100).contains(&description) {
                return Err(format!("{at}.{name}: description length {description}"));
            }
            let required = o["required"].as_bool().unwrap_or(false);
            if required && optional_seen {
                return Err(format!("{at}.{name}: required options must come first"));
            }
            optional_seen |= !required;
            options(&o["options"], &format!("{at}.{name}"))?;
        }
        Ok(())
    }
    for c in commands.as_array().ok_or("not a list of commands")? {
        let name = c["name"].as_str().unwrap_or_default();
        if name.is_empty() || name.chars().count() > 32 || name.chars().any(|c| c.is_uppercase()) {
            return Err(format!("command name {name:?}"));
        }
        options(&c["options"], name)?;
    }
    Ok(())
}
