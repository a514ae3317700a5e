//! Rate-limit values are input: a stand-in Discord that answers with
//! non-finite or absurd `X-RateLimit-Reset-After` headers and 429 bodies
//! must not panic the client (a panic there poisons the rate-limit lock and
//! stops every later notification).
//!
//! The header and body fields are those of Discord's rate-limit docs
//! (discord/discord-api-docs, docs/topics/Rate_Limits.md: `X-RateLimit-Remaining`,
//! `X-RateLimit-Reset-After` "in seconds, can have decimals", the 429 JSON
//! body's `retry_after` and `global`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use lifeboat::discord::client::{seconds_from_header, DiscordClient};
use serde_json::json;

/// Answers every message post with `reset_after` as the bucket's reset and
/// nothing remaining; the first `limited` posts get a 429 with `retry_after`.
async fn stand_in(reset_after: &'static str, retry_after: serde_json::Value, limited: usize) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let app = Router::new().route(
        "/channels/{channel}/messages",
        post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let retry_after = retry_after.clone();
            async move {
                let headers = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset-after", reset_after), ("x-ratelimit-bucket", "b1")];
                if n < limited {
                    (StatusCode::TOO_MANY_REQUESTS, headers, axum::Json(json!({"message": "slow down", "retry_after": retry_after, "global": false}))).into_response()
                } else {
                    (headers, axum::Json(json!({"id": format!("{}", 100 + n)}))).into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

#[tokio::test]
async fn non_finite_reset_after_neither_panics_nor_stops_later_messages() {
    // Unreadable values are ignored (no wait); negative ones mean "reset already".
    for reset_after in ["NaN", "nan", "inf", "-inf", "infinity", "1e999", "-5"] {
        let (base, calls) = stand_in(reset_after, json!(0.0), 0).await;
        let client = Arc::new(DiscordClient::bot(&base, "bot-token-of-sixteen-plus", "1"));
        for _ in 0..2 {
            // Spawned, so a panic shows as a JoinError naming the value.
            let c = client.clone();
            let sent = tokio::spawn(async move { c.create_message(&json!({"content": "x"})).await }).await;
            let sent = sent.unwrap_or_else(|e| panic!("X-RateLimit-Reset-After {reset_after:?} panicked the client: {e}"));
            assert!(sent.is_ok(), "{reset_after}: {sent:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "{reset_after}");
    }
}

#[tokio::test]
async fn a_hostile_retry_after_neither_panics_nor_loses_the_message() {
    for retry_after in [json!(-3.5), json!(0.0), json!("soon"), json!(null), json!(1e-300)] {
        let (base, calls) = stand_in("0", retry_after.clone(), 1).await;
        let client = Arc::new(DiscordClient::bot(&base, "bot-token-of-sixteen-plus", "1"));
        let c = client.clone();
        let sent = tokio::spawn(async move { c.create_message(&json!({"content": "x"})).await }).await;
        let sent = sent.unwrap_or_else(|e| panic!("retry_after {retry_after} panicked the client: {e}"));
        assert!(sent.is_ok(), "retry_after {retry_after}: {sent:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2, "sent again after the 429");
    }
}

#[test]
fn seconds_from_header_is_total() {
    assert_eq!(seconds_from_header(f64::NAN), Duration::from_secs(1));
    assert_eq!(seconds_from_header(f64::INFINITY), Duration::from_secs(3600));
    assert_eq!(seconds_from_header(f64::NEG_INFINITY), Duration::ZERO);
    assert_eq!(seconds_from_header(-1.0), Duration::ZERO);
    assert_eq!(seconds_from_header(1.5), Duration::from_millis(1500));
    assert_eq!(seconds_from_header(1e300), Duration::from_secs(3600));
}
