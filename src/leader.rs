//! Lease-based leader election on a `coordination.k8s.io/v1` Lease, so several
//! replicas can serve `/metrics` while only the leader executes remediation
//! runs. The semantics follow client-go's `leaderelection`:
//!
//! * **Acquire.** The Lease is created if absent (holderIdentity,
//!   leaseDurationSeconds, acquireTime, renewTime, leaseTransitions). A Lease
//!   held by another identity is left alone while it is valid; an expired or
//!   released one is taken over with an update carrying the resourceVersion
//!   that was read, so of two candidates racing for it exactly one wins (the
//!   other gets 409 and stays follower).
//! * **Valid** means: the holder is non-empty and either its
//!   `renewTime + leaseDurationSeconds` is still in the future by our wall
//!   clock, or we have seen the record change less than a lease duration ago
//!   by our monotonic clock (client-go's observed-time rule, which does not
//!   trust the other replica's clock). The longer of the record's and our
//!   configured lease duration applies. A candidate that starts next to an
//!   abandoned Lease therefore waits one lease duration before taking it
//!   over; a released Lease (empty holder) is taken at once.
//! * **Renew.** The leader renews every `renew_interval`. Leadership is only
//!   claimed for `lease_duration - renew_interval` (the *renew deadline*) from
//!   the moment the last confirmed write was *sent*; if no renewal is
//!   confirmed by then (API errors, timeouts, conflicts, another holder) it
//!   steps down, a full `renew_interval` before any other candidate may
//!   consider the Lease expired. [`LeaderHandle::is_leader`] checks that
//!   deadline itself, so even a stalled election task never yields two leaders.
//! * **Release.** [`LeaderHandle::release`] stops the loop, stops claiming
//!   leadership, and then writes the Lease with an empty holder (and a one
//!   second duration, as client-go does) so a successor takes over at once.
//!
//! Timestamps in the Lease are written from the local clock, as client-go
//! does. API errors are logged and retried; nothing here panics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Field manager recorded on the Lease writes.
pub const FIELD_MANAGER: &str = "lifeboat-leader";

/// Where and how to hold the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease (lifeboat's own namespace).
    pub namespace: String,
    /// Name of the Lease; every replica of one deployment uses the same.
    pub lease_name: String,
    /// Unique per replica (the pod name). Two processes with the same
    /// identity are the same candidate as far as the Lease is concerned.
    pub identity: String,
    /// How long a holder's claim stands after its last renewal
    /// (leaseDurationSeconds, rounded up to whole seconds on the wire).
    pub lease_duration: std::time::Duration,
    /// How often the leader renews. Must be under half the lease duration
    /// (otherwise a third of it is used): the leader stops claiming
    /// leadership `lease_duration - renew_interval` after its last confirmed
    /// renewal.
    pub renew_interval: std::time::Duration,
    /// How often a follower retries, and how soon a failed renewal is retried.
    pub retry_interval: std::time::Duration,
}

impl LeaderConfig {
    /// Lease `lifeboat-leader` in `namespace`, lease 15s, renew every 5s,
    /// retry every 2s.
    pub fn new(namespace: impl Into<String>, identity: impl Into<String>) -> Self {
        LeaderConfig {
            namespace: namespace.into(),
            lease_name: "lifeboat-leader".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
    }

    /// The same with unusable durations replaced (logged): lease at least
    /// 1s, renew interval non-zero and at most half the lease, retry
    /// interval at least 10ms.
    fn sanitized(mut self) -> Self {
        if self.lease_duration < Duration::from_secs(1) {
            tracing::warn!(lease_duration = ?self.lease_duration, "leader election: lease duration below 1s; using 1s");
            self.lease_duration = Duration::from_secs(1);
        }
        let max = Duration::from_secs(i32::MAX as u64);
        if self.lease_duration > max {
            tracing::warn!(lease_duration = ?self.lease_duration, "leader election: lease duration beyond leaseDurationSeconds; capped");
            self.lease_duration = max;
        }
        if self.renew_interval.is_zero() || self.renew_interval * 2 > self.lease_duration {
            let renew = self.lease_duration / 3;
            tracing::warn!(renew_interval = ?self.renew_interval, lease_duration = ?self.lease_duration, using = ?renew,
                "leader election: renew interval must be non-zero and at most half the lease duration");
            self.renew_interval = renew;
        }
        if self.retry_interval < Duration::from_millis(10) {
            self.retry_interval = Duration::from_millis(10);
        }
        self
    }

    /// How long after the send of its last confirmed write the leader keeps
    /// claiming leadership.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration - self.renew_interval
    }

    /// leaseDurationSeconds as written: whole seconds, rounded up.
    fn lease_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs() + u64::from(self.lease_duration.subsec_nanos() > 0);
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }

    fn lease_ref(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }
}

/// State shared by the election task and every clone of its handle.
struct Shared {
    identity: String,
    /// Some(deadline) while leading: leadership is claimed until then.
    valid_until: Mutex<Option<Instant>>,
    /// Set by `release`/`abort`: from then on nobody is leader here.
    stopped: AtomicBool,
    leading: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    done: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn set_leading(&self, until: Option<Instant>) {
        // A resigned replica never claims leadership again, whatever the election task still does.
        let until = until.filter(|_| !self.stopped.load(Ordering::SeqCst));
        *lock(&self.valid_until) = until;
        let now_leading = until.is_some();
        self.leading.send_if_modified(|v| {
            let changed = *v != now_leading;
            *v = now_leading;
            changed
        });
    }

    fn is_leader(&self) -> bool {
        !self.stopped.load(Ordering::SeqCst) && lock(&self.valid_until).is_some_and(|until| Instant::now() < until)
    }
}

/// Marks the task finished however it ends (returned, aborted, runtime gone).
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.set_leading(None);
        self.0.done.send_replace(true);
    }
}

/// A running election. Cheap to clone; every clone observes the same task.
#[derive(Clone)]
pub struct LeaderHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LeaderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderHandle").field("identity", &self.shared.identity).field("is_leader", &self.is_leader()).finish()
    }
}

impl LeaderHandle {
    /// Whether this replica may act as leader right now: it holds the Lease
    /// and its last renewal is recent enough that no other candidate can
    /// have taken it. Check it right before each leader-only action.
    pub fn is_leader(&self) -> bool {
        self.shared.is_leader()
    }

    /// Resolves once this replica is leader. Never resolves after the
    /// election was stopped (`release`/`abort`) unless it already is leader.
    pub async fn wait_until_leader(&self) {
        let mut changes = self.shared.leading.subscribe();
        loop {
            if self.is_leader() {
                return;
            }
            // The sender lives in `Shared`, which `self` keeps alive.
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves with true once this replica is leader, or with false once it
    /// resigned or the election was stopped.
    pub async fn wait_until_leader_or_stopped(&self) -> bool {
        let mut changes = self.shared.leading.subscribe();
        loop {
            if self.is_leader() {
                return true;
            }
            if self.is_stopped() {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
        }
    }

    /// Stops claiming leadership at once, without touching the Lease yet
    /// (shutdown: [`is_leader`](Self::is_leader) is false from here on, so
    /// the remediator stops at its next step boundary; then
    /// [`release`](Self::release) vacates the Lease).
    pub fn resign(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.set_leading(None);
        tracing::info!(identity = %self.shared.identity, "resigned: no longer acting as leader");
    }

    /// Whether the election was stopped (resign, release, abort).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Leadership transitions (true: became leader; false: stepped down).
    /// The value flips when the election task acts; [`is_leader`](Self::is_leader)
    /// also enforces the renew deadline and is the one to check before acting.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.shared.leading.subscribe()
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.shared.identity
    }

    /// Stops the election (for every clone of this handle). If leader, stops
    /// claiming leadership first, then gives the Lease up (empty holder) so
    /// a successor takes over at once. Returns when the task has finished;
    /// bounded by about one lease duration if the API does not answer.
    pub async fn release(self) {
        self.shared.stop.send_replace(true);
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(|finished| *finished).await;
        self.shared.stopped.store(true, Ordering::SeqCst);
    }

    /// Stops the election task at once *without* giving the Lease up (what a
    /// crash does): other candidates take over only when the Lease expires.
    /// `is_leader` is false from the moment this returns.
    pub fn abort(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        if let Some(task) = lock(&self.shared.task).take() {
            task.abort();
            tracing::info!(identity = %self.shared.identity, "leader election aborted; the lease is left to expire");
        }
        self.shared.set_leading(None);
    }
}

/// Starts the election loop on the current tokio runtime.
pub fn spawn(client: Client, config: LeaderConfig) -> LeaderHandle {
    let config = config.sanitized();
    let shared = Arc::new(Shared {
        identity: config.identity.clone(),
        valid_until: Mutex::new(None),
        stopped: AtomicBool::new(false),
        leading: watch::Sender::new(false),
        stop: watch::Sender::new(false),
        done: watch::Sender::new(false),
        task: Mutex::new(None),
    });
    let elector = Elector { api: Api::namespaced(client, &config.namespace), config, observed: None, mine: None, leading_until: None, last_error: None };
    let task = tokio::spawn(elector.run(Finished(shared.clone())));
    *lock(&shared.task) = Some(task);
    LeaderHandle { shared }
}

/// The resourceVersion of another holder's record and when we first saw it.
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

enum Outcome {
    /// We hold the Lease; leadership may be claimed until the instant.
    Leading(Instant),
    /// Someone else holds it (or won the race for it).
    Following(Option<String>),
}

struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
    observed: Option<Observed>,
    /// The Lease as we last wrote it while leading (cheap renewals).
    mine: Option<Lease>,
    leading_until: Option<Instant>,
    last_error: Option<String>,
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl Elector {
    async fn run(mut self, finished: Finished) {
        let shared = finished.0.clone();
        let mut stop = shared.stop.subscribe();
        let lease = self.config.lease_ref();
        let identity = self.config.identity.clone();
        tracing::info!(%lease, %identity, "leader election started");
        loop {
            if *stop.borrow() {
                break;
            }
            self.step_down_if_expired(&shared);
            let budget = match self.leading_until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => self.config.lease_duration,
            };
            let attempt = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                r = tokio::time::timeout(budget, self.try_acquire_or_renew()) => r,
            };
            let next = match attempt {
                Ok(Ok(Outcome::Leading(until))) => {
                    self.last_error = None;
                    if self.leading_until.is_none() {
                        tracing::info!(%lease, %identity, "became leader");
                    }
                    self.leading_until = Some(until);
                    shared.set_leading(Some(until));
                    self.config.renew_interval
                }
                Ok(Ok(Outcome::Following(holder))) => {
                    self.last_error = None;
                    if self.leading_until.is_some() {
                        self.step_down(&shared, &format!("lease now held by {:?}", holder.as_deref().unwrap_or("")));
                    }
                    tracing::trace!(%lease, holder = holder.as_deref().unwrap_or(""), "following");
                    self.config.retry_interval
                }
                Ok(Err(e)) => {
                    self.log_error(&e);
                    self.step_down_if_expired(&shared);
                    self.config.retry_interval.min(self.config.renew_interval)
                }
                Err(_elapsed) => {
                    self.log_error(&format!("no answer from the API within {budget:?}"));
                    self.step_down_if_expired(&shared);
                    self.config.retry_interval.min(self.config.renew_interval)
                }
            };
            // Sleep, but wake at the renew deadline to step down exactly then.
            let mut wake = Instant::now() + next;
            if let Some(until) = self.leading_until {
                wake = wake.min(until);
            }
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        // Stop claiming leadership before touching the Lease.
        let was_leading = self.leading_until.take().is_some();
        shared.set_leading(None);
        if was_leading {
            tracing::info!(%lease, %identity, "stepped down: stopping");
        }
        match tokio::time::timeout(self.config.lease_duration, self.release()).await {
            Ok(Ok(true)) => tracing::info!(%lease, %identity, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(%lease, error = %e, "could not release the lease; it expires on its own"),
            Err(_) => tracing::warn!(%lease, "releasing the lease timed out; it expires on its own"),
        }
        tracing::info!(%lease, %identity, "leader election stopped");
        drop(finished);
    }

    fn step_down_if_expired(&mut self, shared: &Shared) {
        if self.leading_until.is_some_and(|until| Instant::now() >= until) {
            self.step_down(shared, "renewal not confirmed within the renew deadline");
        }
    }

    fn step_down(&mut self, shared: &Shared, reason: &str) {
        self.leading_until = None;
        self.mine = None;
        shared.set_leading(None);
        tracing::info!(lease = %self.config.lease_ref(), identity = %self.config.identity, reason, "stepped down");
    }

    fn log_error(&mut self, e: &dyn std::fmt::Display) {
        let message = e.to_string();
        let lease = self.config.lease_ref();
        if self.last_error.as_deref() == Some(message.as_str()) {
            tracing::debug!(%lease, error = %message, "leader election: API error (repeated); retrying");
        } else {
            tracing::warn!(%lease, error = %message, "leader election: API error; retrying");
            self.last_error = Some(message);
        }
    }

    /// Our record, derived from the current spec (None: creating).
    fn our_spec(&self, current: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
        let identity = &self.config.identity;
        let previous = current.cloned().unwrap_or_default();
        let ours = previous.holder_identity.as_deref() == Some(identity.as_str());
        LeaseSpec {
            holder_identity: Some(identity.clone()),
            lease_duration_seconds: Some(self.config.lease_seconds()),
            acquire_time: if ours { previous.acquire_time.clone().or(Some(MicroTime(now))) } else { Some(MicroTime(now)) },
            renew_time: Some(MicroTime(now)),
            lease_transitions: match (current, ours) {
                (None, _) => Some(0),
                (Some(_), true) => Some(previous.lease_transitions.unwrap_or(0)),
                (Some(_), false) => Some(previous.lease_transitions.unwrap_or(0).saturating_add(1)),
            },
            ..previous
        }
    }

    /// Whether another holder's claim on `spec` still stands (see the module
    /// docs). Updates the observed-record bookkeeping.
    fn held_by_other(&mut self, lease: &Lease, spec: &LeaseSpec) -> bool {
        let now = Instant::now();
        let rv = lease.metadata.resource_version.clone();
        match &self.observed {
            Some(o) if o.resource_version == rv => {}
            _ => self.observed = Some(Observed { resource_version: rv, since: now }),
        }
        let record = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
        let duration = record.max(self.config.lease_duration);
        let observed_valid = self.observed.as_ref().is_some_and(|o| o.since.checked_add(duration).is_none_or(|expiry| now < expiry));
        let wall_valid = match spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) {
            // Overflow only for absurd timestamps: treat as still held.
            Some(t) => t.0.checked_add(duration).map_or(true, |expiry| Timestamp::now() < expiry),
            None => false,
        };
        observed_valid || wall_valid
    }

    async fn try_acquire_or_renew(&mut self) -> Result<Outcome, kube::Error> {
        let identity = self.config.identity.clone();
        let deadline = self.config.renew_deadline();
        // Leading: renew the Lease we last wrote, without a read.
        if self.leading_until.is_some() {
            if let Some(mut lease) = self.mine.take() {
                let now = Timestamp::now();
                lease.spec = Some(self.our_spec(lease.spec.as_ref(), now));
                let sent = Instant::now();
                match self.api.replace(&self.config.lease_name, &post_params(), &lease).await {
                    Ok(written) => {
                        self.mine = Some(written);
                        return Ok(Outcome::Leading(sent + deadline));
                    }
                    // Changed or deleted under us: decide from a fresh read.
                    Err(e) if is_status(&e, 409) || is_status(&e, 404) => {}
                    Err(e) => {
                        self.mine = Some(lease);
                        return Err(e);
                    }
                }
            }
        }
        let Some(current) = self.api.get_opt(&self.config.lease_name).await? else {
            let now = Timestamp::now();
            let lease = Lease { metadata: ObjectMeta { name: Some(self.config.lease_name.clone()), ..Default::default() }, spec: Some(self.our_spec(None, now)) };
            let sent = Instant::now();
            return match self.api.create(&post_params(), &lease).await {
                Ok(written) => {
                    self.observed = None;
                    self.mine = Some(written);
                    Ok(Outcome::Leading(sent + deadline))
                }
                Err(e) if is_status(&e, 409) => Ok(Outcome::Following(None)),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if let Some(other) = holder.as_ref().filter(|h| **h != identity) {
            if self.held_by_other(&current, &spec) {
                self.mine = None;
                return Ok(Outcome::Following(Some(other.clone())));
            }
        } else {
            self.observed = None;
        }
        // Free, expired, or ours: write our record under the resourceVersion read.
        let mut lease = current;
        let now = Timestamp::now();
        lease.spec = Some(self.our_spec(Some(&spec), now));
        let sent = Instant::now();
        match self.api.replace(&self.config.lease_name, &post_params(), &lease).await {
            Ok(written) => {
                self.observed = None;
                self.mine = Some(written);
                Ok(Outcome::Leading(sent + deadline))
            }
            Err(e) if is_status(&e, 409) => {
                self.mine = None;
                Ok(Outcome::Following(holder))
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up if it names us. Ok(true) when it was released.
    async fn release(&mut self) -> Result<bool, kube::Error> {
        let identity = self.config.identity.clone();
        let mut cached = self.mine.take();
        for _ in 0..3 {
            let current = match cached.take() {
                Some(lease) => lease,
                None => match self.api.get_opt(&self.config.lease_name).await? {
                    Some(lease) => lease,
                    None => return Ok(false),
                },
            };
            let spec = current.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(identity.as_str()) {
                return Ok(false);
            }
            let now = MicroTime(Timestamp::now());
            let mut lease = current;
            lease.spec = Some(LeaseSpec { holder_identity: None, lease_duration_seconds: Some(1), acquire_time: Some(now.clone()), renew_time: Some(now), ..spec });
            match self.api.replace(&self.config.lease_name, &post_params(), &lease).await {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 409) => continue,
                Err(e) if is_status(&e, 404) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = LeaderConfig::new("lifeboat", "pod-a");
        assert_eq!(c.lease_name, "lifeboat-leader");
        assert_eq!(c.lease_duration, Duration::from_secs(15));
        assert_eq!(c.renew_interval, Duration::from_secs(5));
        assert_eq!(c.retry_interval, Duration::from_secs(2));
        assert_eq!(c.renew_deadline(), Duration::from_secs(10));
        assert_eq!(c.lease_seconds(), 15);
    }

    #[test]
    fn unusable_durations_are_replaced() {
        let c = LeaderConfig { lease_duration: Duration::from_millis(2500), renew_interval: Duration::from_secs(2), ..LeaderConfig::new("ns", "a") }.sanitized();
        assert_eq!(c.lease_seconds(), 3);
        assert!(c.renew_interval * 2 <= c.lease_duration && !c.renew_interval.is_zero());
        assert!(c.renew_deadline() >= c.lease_duration / 2);
    }
}
