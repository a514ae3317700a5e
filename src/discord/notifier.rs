//! The notifier: reconciles Discord with the journal. Every pass reads the
//! runs and, per run (oldest first), posts its main message if it has none,
//! edits it when its rendering changed, and posts the replies that are due,
//! in order. What was posted is recorded in the run's status
//! (`status.notification`), so after an outage, a restart or a new leader it
//! simply catches up; nothing is lost and nothing said twice.
//!
//! The runner never waits for Discord: it writes the journal, this task
//! reads it. A Discord error ends the pass (so messages keep their order)
//! and the next one comes after a backoff.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client::{DiscordClient, DiscordError};
use super::render::{self, RenderContext, Transport};
use crate::config::Dur;
use crate::journal::{Journal, JournalError, NotificationState, RunRecord};

/// Terminal runs never announced (e.g. from before Discord was configured)
/// and older than this stay quiet.
pub const ANNOUNCE_HORIZON: chrono::Duration = chrono::Duration::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error(transparent)]
    Discord(#[from] DiscordError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

pub struct Notifier {
    pub journal: Arc<Journal>,
    pub client: Arc<DiscordClient>,
    pub approval_ttl: Dur,
    pub edit_interval: Dur,
    pub poll_interval: Duration,
    /// Longest wait between passes while Discord fails.
    pub max_backoff: Duration,
    /// When set, only the Lease leader notifies (one voice for several replicas).
    pub leader: Option<tokio::sync::watch::Receiver<bool>>,
    /// The last main message sent per run, to edit only on change.
    sent: HashMap<String, Value>,
}

impl Notifier {
    pub fn new(journal: Arc<Journal>, client: Arc<DiscordClient>, approval_ttl: Dur, edit_interval: Dur) -> Self {
        Self { journal, client, approval_ttl, edit_interval, poll_interval: Duration::from_secs(2), max_backoff: Duration::from_secs(60), leader: None, sent: HashMap::new() }
    }

    fn context(&self) -> RenderContext {
        RenderContext { transport: self.client.transport(), approval_ttl: self.approval_ttl, edit_interval: self.edit_interval, now: Utc::now() }
    }

    /// Passes over the whole journal every `poll_interval` (the safety net:
    /// restarts, runs other replicas create, missed wake-ups); in between, a
    /// run this process creates is read by name and posted at once, so the
    /// intake's approval message does not wait for a poll nor a listing.
    pub async fn run_forever(mut self) {
        let mut failures = 0u32;
        let mut created = crate::journal::runs_created();
        loop {
            // The pass reads every run created so far: their names are spent.
            while created.try_recv().is_ok() {}
            let wait = if self.leading() {
                let result = self.pass(Some(&mut created)).await;
                self.next_wait(result, &mut failures)
            } else {
                self.poll_interval
            };
            let mut until = tokio::time::Instant::now() + wait;
            // A failing Discord keeps its backoff: a new run is caught up with the rest.
            while failures == 0 {
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => break,
                    name = created.recv() => match name {
                        Ok(id) if self.leading() => {
                            let result = self.reconcile_named(&id).await;
                            let wait = self.next_wait(result, &mut failures);
                            if failures > 0 {
                                until = tokio::time::Instant::now() + wait;
                            }
                        }
                        Ok(_) => {}
                        // Names were missed: list the journal now.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => until = tokio::time::Instant::now(),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
            tokio::time::sleep_until(until).await;
        }
    }

    fn leading(&self) -> bool {
        self.leader.as_ref().is_none_or(|l| *l.borrow())
    }

    /// How long to wait after a pass: the poll interval, or a growing backoff while Discord fails.
    fn next_wait(&self, result: Result<(), NotifyError>, failures: &mut u32) -> Duration {
        match result {
            Ok(()) => {
                *failures = 0;
                self.poll_interval
            }
            Err(error) => {
                *failures = failures.saturating_add(1);
                let backoff = self.poll_interval.saturating_mul(2u32.saturating_pow((*failures).min(16))).min(self.max_backoff);
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "Discord notification pass failed; will catch up");
                backoff
            }
        }
    }

    /// One pass over the journal. Stops at the first error.
    pub async fn reconcile_once(&mut self) -> Result<(), NotifyError> {
        self.pass(None).await
    }

    /// A pass that, between two runs, first posts the runs `created` names
    /// meanwhile: a new run's approval message does not wait while the pass
    /// catches up with every other run. A run posted so is skipped when the
    /// listing reaches it (its listed copy predates the post).
    async fn pass(&mut self, mut created: Option<&mut tokio::sync::broadcast::Receiver<String>>) -> Result<(), NotifyError> {
        let mut runs = self.journal.list().await?;
        runs.reverse();
        let now = Utc::now();
        let mut posted_by_name = std::collections::HashSet::new();
        for run in runs {
            while let Some(Ok(id)) = created.as_deref_mut().map(|c| c.try_recv()) {
                self.reconcile_named(&id).await?;
                posted_by_name.insert(id);
            }
            if !posted_by_name.contains(&run.id) {
                self.reconcile_if_due(&run, now).await?;
            }
        }
        Ok(())
    }

    /// The run `id` alone, read by name (gone: nothing to say).
    pub async fn reconcile_named(&mut self, id: &str) -> Result<(), NotifyError> {
        match self.journal.get(id).await? {
            Some(run) => self.reconcile_if_due(&run, Utc::now()).await,
            None => Ok(()),
        }
    }

    /// Says what is left to say about `run`, unless all is said or it ended unannounced long ago.
    async fn reconcile_if_due(&mut self, run: &RunRecord, now: chrono::DateTime<Utc>) -> Result<(), NotifyError> {
        let state = run.status.notification.clone().unwrap_or_default();
        if state.complete {
            self.sent.remove(&run.id);
            return Ok(());
        }
        let ended = run.status.finished_at.unwrap_or(run.spec.requested_at);
        if state.message_id.is_none() && run.is_terminal() && now - ended > ANNOUNCE_HORIZON {
            return Ok(());
        }
        self.reconcile_run(run, state).await
    }

    async fn reconcile_run(&mut self, run: &RunRecord, mut state: NotificationState) -> Result<(), NotifyError> {
        let body = render::main_message(run, &self.context());
        let message_id = match state.message_id.clone() {
            Some(id) if self.sent.get(&run.id) == Some(&body) => id,
            Some(id) => match self.client.edit_message(&id, &body).await {
                Ok(()) => id,
                // Deleted by someone: post it again.
                Err(DiscordError::NotFound { .. }) => self.post_main(run, &body, &mut state).await?,
                Err(e) => return Err(e.into()),
            },
            None => self.post_main(run, &body, &mut state).await?,
        };
        self.sent.insert(run.id.clone(), body);
        for reply in render::replies(run) {
            if state.posted.contains(&reply.key) {
                continue;
            }
            let mut body = reply.body;
            match self.client.transport() {
                Transport::Bot => {
                    body["message_reference"] = serde_json::json!({"message_id": message_id, "fail_if_not_exists": false});
                    with_nonce(&mut body, &run.id, &reply.key);
                }
                Transport::Webhook => {
                    let content = body["content"].as_str().unwrap_or_default();
                    body["content"] = Value::String(render::clip(&format!("↪ run `{}`: {content}", run.id), render::MAX_CONTENT));
                }
            }
            self.client.create_message(&body).await?;
            state = self.record(&run.id, |n| n.posted.push(reply.key.clone())).await?;
        }
        if run.is_terminal() {
            self.record(&run.id, |n| n.complete = true).await?;
            self.sent.remove(&run.id);
        }
        Ok(())
    }

    async fn post_main(&self, run: &RunRecord, body: &Value, state: &mut NotificationState) -> Result<String, NotifyError> {
        let mut body = body.clone();
        if self.client.transport() == Transport::Bot {
            with_nonce(&mut body, &run.id, &format!("main:{:?}", state.message_id));
        }
        let id = self.client.create_message(&body).await?;
        let recorded = id.clone();
        *state = self.record(&run.id, move |n| n.message_id = Some(recorded.clone())).await?;
        Ok(id)
    }

    /// Writes a change to the run's notification state; returns the new state.
    async fn record(&self, id: &str, mut change: impl FnMut(&mut NotificationState)) -> Result<NotificationState, JournalError> {
        let stored = self
            .journal
            .update_status_with(id, |current| {
                let mut status = current.status.clone();
                change(status.notification.get_or_insert_with(Default::default));
                (status != current.status).then_some(status)
            })
            .await?;
        Ok(stored.status.notification.unwrap_or_default())
    }
}

/// Discord drops a second message with the same nonce within minutes
/// (`enforce_nonce`): a post whose journal write failed is not repeated.
fn with_nonce(body: &mut Value, run_id: &str, key: &str) {
    let digest = Sha256::digest(format!("{run_id}/{key}").as_bytes());
    let nonce: String = hex::encode(digest).chars().take(25).collect();
    body["nonce"] = Value::String(nonce);
    body["enforce_nonce"] = Value::Bool(true);
}
