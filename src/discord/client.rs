//! Discord's REST API, as lifeboat uses it: create and edit messages (bot
//! or channel webhook) and answer interactions late. Honours the rate-limit
//! headers per route bucket before sending, and 429s (`retry_after`,
//! `global`) by waiting and sending again.
//!
//! The bot token and the webhook URL (which carries the webhook's token)
//! are secrets: they never appear in an error, a log line or a route key,
//! and reqwest errors are stripped of their URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;

use super::render::Transport;

#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("Discord unreachable ({route}): {reason}")]
    Unreachable { route: String, reason: String },
    #[error("Discord answered {status} to {route}: {body}")]
    Status { route: String, status: u16, body: String },
    #[error("Discord has no such message ({route})")]
    NotFound { route: String },
    #[error("Discord kept rate-limiting {route} after {attempts} attempts")]
    RateLimited { route: String, attempts: u32 },
}

/// Where messages go.
enum Target {
    /// `POST {api}/channels/{channel}/messages` with `Authorization: Bot <token>`.
    Bot { api_base: String, token: String, channel_id: String },
    /// A channel webhook URL `…/webhooks/{id}/{token}`; `webhook_id` names its routes.
    Webhook { url: String, webhook_id: String },
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    remaining: u64,
    reset_at: Instant,
}

#[derive(Default)]
struct RateLimits {
    global_until: Option<Instant>,
    /// Route key → the bucket Discord named for it (`X-RateLimit-Bucket`).
    bucket_of: HashMap<String, String>,
    /// Bucket (or, before Discord named one, route key) → its state.
    buckets: HashMap<String, Bucket>,
}

impl RateLimits {
    fn key(&self, route: &str) -> String {
        self.bucket_of.get(route).cloned().unwrap_or_else(|| route.to_string())
    }

    /// How long to wait before sending on `route`.
    fn wait(&self, route: &str, now: Instant) -> Duration {
        let global = self.global_until.map_or(Duration::ZERO, |t| t.saturating_duration_since(now));
        let bucket = match self.buckets.get(&self.key(route)) {
            Some(b) if b.remaining == 0 => b.reset_at.saturating_duration_since(now),
            _ => Duration::ZERO,
        };
        global.max(bucket)
    }

    fn observe(&mut self, route: &str, headers: &reqwest::header::HeaderMap, now: Instant) {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(bucket) = header("x-ratelimit-bucket") {
            self.bucket_of.insert(route.to_string(), bucket);
        }
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after) {
            let reset_at = now + seconds_from_header(reset_after);
            self.buckets.insert(self.key(route), Bucket { remaining, reset_at });
        }
    }

    fn limited(&mut self, route: &str, retry_after: Duration, global: bool, now: Instant) {
        if global {
            self.global_until = Some(now + retry_after);
        } else {
            self.buckets.insert(self.key(route), Bucket { remaining: 0, reset_at: now + retry_after });
        }
    }
}

/// Longest wait Discord's answers may impose on one route.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// A wait in seconds as Discord sends it (a float), cut to 0..=1 h. Never
/// panics: NaN, infinities and negatives are input, not Discord's contract,
/// and a panic here would poison the rate-limit lock and stop every
/// notification. NaN, unreadable, waits one second like a missing value.
pub fn seconds_from_header(seconds: f64) -> Duration {
    if seconds.is_nan() {
        return Duration::from_secs(1);
    }
    Duration::try_from_secs_f64(seconds.clamp(0.0, MAX_RATE_LIMIT_WAIT.as_secs_f64())).unwrap_or(MAX_RATE_LIMIT_WAIT)
}

/// The answer of `GET /gateway/bot`.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct GatewayBot {
    pub url: String,
    pub session_start_limit: SessionStartLimit,
}

#[derive(Clone, Copy, Debug, serde::Deserialize)]
pub struct SessionStartLimit {
    pub total: u32,
    pub remaining: u32,
    /// Milliseconds until `remaining` resets to `total`.
    pub reset_after: u64,
    pub max_concurrency: u16,
}

pub struct DiscordClient {
    http: reqwest::Client,
    target: Target,
    /// Base for interaction follow-ups (`/webhooks/{application}/{token}`).
    api_base: String,
    limits: Mutex<RateLimits>,
    /// 429s in a row on one request before giving up (the caller retries later).
    pub max_attempts: u32,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("DiscordBot (https://github.com/lifeboat-dev/lifeboat, ", env!("CARGO_PKG_VERSION"), ")"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client builds")
}

impl DiscordClient {
    pub fn bot(api_base: &str, token: &str, channel_id: &str) -> Self {
        let api_base = api_base.trim_end_matches('/').to_string();
        Self {
            http: http_client(),
            target: Target::Bot { api_base: api_base.clone(), token: token.into(), channel_id: channel_id.into() },
            api_base,
            limits: Mutex::default(),
            max_attempts: 8,
        }
    }

    /// A channel webhook URL `https://discord.com/api/webhooks/{id}/{token}`.
    /// The error never repeats the URL (it holds the token).
    pub fn webhook(url: &str, api_base: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url.trim()).map_err(|e| format!("not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("not an http(s) URL".into());
        }
        let segments: Vec<&str> = parsed.path_segments().map(|s| s.collect()).unwrap_or_default();
        let at = segments.iter().position(|s| *s == "webhooks").ok_or("not a Discord webhook URL (…/api/webhooks/ID/TOKEN)")?;
        let (Some(id), Some(token)) = (segments.get(at + 1), segments.get(at + 2)) else {
            return Err("not a Discord webhook URL (…/api/webhooks/ID/TOKEN)".into());
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) || token.is_empty() {
            return Err("not a Discord webhook URL (…/api/webhooks/ID/TOKEN)".into());
        }
        let mut url = parsed.clone();
        url.set_query(None);
        Ok(Self {
            http: http_client(),
            target: Target::Webhook { url: url.to_string().trim_end_matches('/').to_string(), webhook_id: id.to_string() },
            api_base: api_base.trim_end_matches('/').to_string(),
            limits: Mutex::default(),
            max_attempts: 8,
        })
    }

    pub fn transport(&self) -> Transport {
        match self.target {
            Target::Bot { .. } => Transport::Bot,
            Target::Webhook { .. } => Transport::Webhook,
        }
    }

    /// Posts a message; returns its id.
    pub async fn create_message(&self, body: &Value) -> Result<String, DiscordError> {
        let (url, route, auth) = match &self.target {
            Target::Bot { api_base, token, channel_id } => {
                (format!("{api_base}/channels/{channel_id}/messages"), format!("POST /channels/{channel_id}/messages"), Some(token.as_str()))
            }
            // wait=true: Discord answers with the message (its id), not 204.
            Target::Webhook { url, webhook_id } => (format!("{url}?wait=true"), format!("POST /webhooks/{webhook_id}"), None),
        };
        let message = self.send(Method::POST, &url, &route, auth, Some(body)).await?;
        message["id"].as_str().map(str::to_string).ok_or_else(|| DiscordError::Status { route, status: 200, body: "the answer has no message id".into() })
    }

    pub async fn edit_message(&self, message_id: &str, body: &Value) -> Result<(), DiscordError> {
        let (url, route, auth) = match &self.target {
            Target::Bot { api_base, token, channel_id } => {
                (format!("{api_base}/channels/{channel_id}/messages/{message_id}"), format!("PATCH /channels/{channel_id}/messages/:id"), Some(token.as_str()))
            }
            Target::Webhook { url, webhook_id } => (format!("{url}/messages/{message_id}"), format!("PATCH /webhooks/{webhook_id}/messages/:id"), None),
        };
        self.send(Method::PATCH, &url, &route, auth, Some(body)).await.map(|_| ())
    }

    /// After a deferred answer (type 6): edits the message the button was on.
    pub async fn edit_original_response(&self, application_id: &str, interaction_token: &str, body: &Value) -> Result<(), DiscordError> {
        let url = format!("{}/webhooks/{application_id}/{interaction_token}/messages/@original", self.api_base);
        self.send(Method::PATCH, &url, &format!("PATCH /webhooks/{application_id}/:token/messages/@original"), None, Some(body)).await.map(|_| ())
    }

    /// After a deferred answer: a follow-up message (ephemeral with flags 64).
    pub async fn follow_up(&self, application_id: &str, interaction_token: &str, body: &Value) -> Result<(), DiscordError> {
        let url = format!("{}/webhooks/{application_id}/{interaction_token}", self.api_base);
        self.send(Method::POST, &url, &format!("POST /webhooks/{application_id}/:token"), None, Some(body)).await.map(|_| ())
    }

    fn bot_token(&self) -> Option<&str> {
        match &self.target {
            Target::Bot { token, .. } => Some(token),
            Target::Webhook { .. } => None,
        }
    }

    /// `GET /gateway/bot`: where to connect, and how many sessions may start.
    pub async fn gateway_bot(&self) -> Result<GatewayBot, DiscordError> {
        let route = "GET /gateway/bot".to_string();
        let answer = self.send(Method::GET, &format!("{}/gateway/bot", self.api_base), &route, self.bot_token(), None).await?;
        serde_json::from_value(answer).map_err(|e| DiscordError::Status { route, status: 200, body: format!("unexpected answer: {e}") })
    }

    /// The initial response to an interaction that came over the Gateway.
    pub async fn interaction_callback(&self, interaction_id: &str, interaction_token: &str, body: &Value) -> Result<(), DiscordError> {
        let url = format!("{}/interactions/{interaction_id}/{interaction_token}/callback", self.api_base);
        self.send(Method::POST, &url, &format!("POST /interactions/{interaction_id}/:token/callback"), None, Some(body)).await.map(|_| ())
    }

    /// `PUT /applications/{application}/guilds/{guild}/commands`: the guild's
    /// commands become exactly `commands` (idempotent).
    pub async fn overwrite_guild_commands(&self, application_id: &str, guild_id: &str, commands: &Value) -> Result<(), DiscordError> {
        let path = format!("/applications/{application_id}/guilds/{guild_id}/commands");
        let url = format!("{}{path}", self.api_base);
        self.send(Method::PUT, &url, &format!("PUT {path}"), self.bot_token(), Some(commands)).await.map(|_| ())
    }

    async fn send(&self, method: Method, url: &str, route: &str, bot_token: Option<&str>, body: Option<&Value>) -> Result<Value, DiscordError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let wait = self.limits.lock().expect("rate limits lock").wait(route, Instant::now());
            if !wait.is_zero() {
                tracing::debug!(%route, wait_ms = wait.as_millis() as u64, "waiting for the Discord rate limit");
                tokio::time::sleep(wait).await;
            }
            let mut request = self.http.request(method.clone(), url);
            if let Some(token) = bot_token {
                request = request.header(reqwest::header::AUTHORIZATION, format!("Bot {token}"));
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| DiscordError::Unreachable { route: route.into(), reason: e.without_url().to_string() })?;
            let status = response.status();
            self.limits.lock().expect("rate limits lock").observe(route, response.headers(), Instant::now());
            let text = response.text().await.unwrap_or_default();
            if status == StatusCode::TOO_MANY_REQUESTS {
                let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let retry_after = seconds_from_header(body["retry_after"].as_f64().unwrap_or(1.0));
                let global = body["global"].as_bool().unwrap_or(false);
                tracing::info!(%route, retry_after_ms = retry_after.as_millis() as u64, global, "Discord rate limit hit; waiting");
                self.limits.lock().expect("rate limits lock").limited(route, retry_after, global, Instant::now());
                if attempts >= self.max_attempts {
                    return Err(DiscordError::RateLimited { route: route.into(), attempts });
                }
                continue;
            }
            if status == StatusCode::NOT_FOUND {
                return Err(DiscordError::NotFound { route: route.into() });
            }
            if !status.is_success() {
                return Err(DiscordError::Status { route: route.into(), status: status.as_u16(), body: super::render::clip(&text, 300) });
            }
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
    }
}
