//! Shutdown: the signal that starts it, and the leader's step-down.

use std::time::Duration;

use crate::leader::LeaderHandle;

/// SIGTERM (what Kubernetes sends) or Ctrl-C.
pub async fn signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C stops serve");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: shutting down"),
    }
}

/// How long shutdown waits for the step in progress to end, and then for the
/// Lease to be vacated: together well inside Kubernetes' default 30s grace.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Stops starting steps (resign: the runner's guard refuses the next one and
/// the run is left to the next leader at that step boundary), waits for the
/// remediator to get there, then vacates the Lease so a successor takes over
/// at once instead of after the Lease expires.
pub async fn step_down(leader: LeaderHandle, remediator: tokio::task::JoinHandle<()>) {
    leader.resign();
    if tokio::time::timeout(DRAIN_TIMEOUT, remediator).await.is_err() {
        tracing::warn!(timeout = ?DRAIN_TIMEOUT, "the step in progress did not end in time; vacating the Lease anyway");
    }
    if tokio::time::timeout(RELEASE_TIMEOUT, leader.release()).await.is_err() {
        tracing::warn!("vacating the Lease timed out; it expires on its own");
    }
}
