//! HTTP surface: /metrics, /healthz, /readyz.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::snapshot::Hub;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(hub)
}

async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    match crate::metrics::render(&hub) {
        Ok(body) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response()
        }
    }
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    if hub.ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let waiting: Vec<String> = hub
            .live
            .iter()
            .flat_map(|l| l.health())
            .filter(|(_, h)| {
                !h.absent.load(std::sync::atomic::Ordering::Relaxed) && !h.listed.load(std::sync::atomic::Ordering::Relaxed)
            })
            .map(|(k, _)| k)
            .collect();
        (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for the first list of: {}\n", waiting.join(", "))).into_response()
    }
}
