//! HTTP surface: /metrics, /healthz, /readyz, and what every listener
//! shares against unauthenticated clients: a cap on open connections, an
//! idle-read timeout on each ([`guard`]), and bodies read only after the
//! credentials were checked, with a size cap and a deadline ([`read_body`]).

pub mod guard;

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::StreamExt as _;

use crate::snapshot::Hub;

/// A request body must arrive whole within this.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("request body not received within {}s", BODY_READ_TIMEOUT.as_secs())]
    TimedOut,
    #[error("request body broken off: {0}")]
    Broken(String),
}

impl BodyError {
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::TimedOut => StatusCode::REQUEST_TIMEOUT,
            BodyError::Broken(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a body of at most `limit` bytes within [`BODY_READ_TIMEOUT`]. A
/// declared `Content-Length` over the limit is refused before reading a byte.
/// Call it only once the request's credentials were checked.
pub async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let read = async {
        let mut stream = body.into_data_stream();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Broken(e.to_string()))?;
            if out.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(BODY_READ_TIMEOUT, read).await.unwrap_or(Err(BodyError::TimedOut))
}

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new().route("/metrics", get(metrics)).route("/healthz", get(|| async { "ok\n" })).route("/readyz", get(readyz)).with_state(hub)
}

async fn metrics(State(hub): State<Arc<Hub>>, request: HeaderMap) -> Response {
    match crate::metrics::render_parts(&hub) {
        Ok(body) if accepts_gzip(&request) => {
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE), (header::CONTENT_ENCODING, "gzip"), (header::VARY, "accept-encoding")], gzip(&body)).into_response()
        }
        Ok(crate::metrics::Exposition { live, findings }) => {
            // The findings part is shared with the snapshot: sent as it is, not copied.
            let parts = futures::stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(live)), Ok(findings)]);
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE), (header::VARY, "accept-encoding")], Body::from_stream(parts)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "encoding /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed\n").into_response()
        }
    }
}

/// Whether `Accept-Encoding` lists gzip (or `*`) with a non-zero quality
/// (RFC 9110 section 12.5.3), as Prometheus sends it.
fn accepts_gzip(request: &HeaderMap) -> bool {
    request.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let coding = parts.next().unwrap_or("");
        let quality = parts.find_map(|p| p.strip_prefix("q=")).map_or(1.0, |q| q.parse::<f32>().unwrap_or(0.0));
        (coding.eq_ignore_ascii_case("gzip") || coding == "*") && quality > 0.0
    })
}

/// A fast level: the exposition is repetitive, so even level 1 shrinks it
/// about fifteenfold, and the scrape stays cheap.
fn gzip(body: &crate::metrics::Exposition) -> Vec<u8> {
    use std::io::Write as _;
    let size = body.live.len() + body.findings.len();
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(size / 8), flate2::Compression::fast());
    encoder.write_all(body.live.as_bytes()).expect("writing to a Vec cannot fail");
    encoder.write_all(&body.findings).expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    let waiting = hub.kinds_not_served();
    if waiting.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for the first list of: {}\n", waiting.join(", "))).into_response()
    }
}

/// What each listener serves.
pub struct Listener {
    pub addr: std::net::SocketAddr,
    pub app: Router,
}

/// The listeners to open: `main` serves everything; with `discord_addr`,
/// Discord's public interactions endpoint gets a listener of its own that
/// serves nothing else, so `/metrics` and `/api` need not be reachable from
/// the internet.
pub fn arrange(main: Listener, discord: Option<Router>, discord_addr: Option<std::net::SocketAddr>) -> anyhow::Result<Vec<Listener>> {
    match (discord, discord_addr) {
        (Some(discord), Some(addr)) => {
            anyhow::ensure!(addr != main.addr, "discord.listen {addr} is also the main listen address: give Discord a port of its own");
            Ok(vec![main, Listener { addr, app: discord }])
        }
        (Some(discord), None) => Ok(vec![Listener { addr: main.addr, app: main.app.merge(discord) }]),
        (None, _) => Ok(vec![main]),
    }
}

/// Serves every listener (each behind a [`guard::GuardedListener`]) until
/// `shutdown` completes, then drains them.
pub async fn serve(listeners: Vec<Listener>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let mut servers = tokio::task::JoinSet::new();
    for Listener { addr, app } in listeners {
        let tcp = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "serving HTTP");
        let mut stopped = stopped.clone();
        servers.spawn(async move {
            axum::serve(guard::GuardedListener::new(tcp), app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
                .with_context(|| format!("HTTP server on {addr}"))
        });
    }
    while let Some(done) = servers.join_next().await {
        done.context("HTTP server task")??;
    }
    Ok(())
}
