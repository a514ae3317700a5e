//! What the intake of this process knows about alert instances, so that
//! repeated deliveries read the journal (in a cluster: LIST RemediationRuns
//! from the apiserver) as little as correctness allows.
//!
//! The rules, each chosen so that skipping a read can neither create a
//! second run nor miss a resolution:
//! * an instance with a run (`runs`) is answered "duplicate" when it fires
//!   again, without a read: an instance starts at most one run whatever
//!   became of it, and run names are never reused;
//! * an instance that was refused because another active run collides with
//!   its plan (`blocked`) is answered "target busy" after one `get` of that
//!   run, as long as that run is still unfinished and still collides with the
//!   current plan (a busy answer creates nothing; otherwise the journal is listed);
//! * a resolved instance with a run is cleared through that run alone (a
//!   `get` and, the first time, a status write);
//! * a resolved instance without a known run asks the journal only for the
//!   runs labelled with its fingerprint (`Journal::list_for_alerts`, one read
//!   for all such alerts of a notification), once a listing of the
//!   unfinished runs has been read since start (`primed`): every run that
//!   could still await approval then is in the index (a finished run never
//!   awaits approval again), runs created since (by any replica of this
//!   version) carry the label;
//! * everything else (a firing instance without a run) lists the runs not
//!   labelled finished (`Journal::list_unfinished`), which is what the
//!   collision check needs. A finished run of the same instance is not among
//!   them, but its name is derived from the instance
//!   (`RunRecord::id_for_alert`): creating it again is refused (409) and
//!   answered "duplicate" like before. Runs written before the label
//!   existed are selected whatever their phase.
//!
//! The index is per process and starts empty: after a restart the first
//! notification that needs the journal lists it and fills the index again.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::journal::RunRecord;

/// An alert instance: Alertmanager's fingerprint and the alert's start.
pub type AlertKey = (String, DateTime<Utc>);

#[derive(Debug, Default)]
pub struct AlertIndex {
    /// Instance → the id of its run.
    runs: HashMap<AlertKey, String>,
    /// Instance without a run → the active run that collided with its plan.
    blocked: HashMap<AlertKey, String>,
    /// A listing of the unfinished runs has been read since this process started.
    primed: bool,
}

impl AlertIndex {
    pub fn run_of(&self, key: &AlertKey) -> Option<&String> {
        self.runs.get(key)
    }

    pub fn blocker_of(&self, key: &AlertKey) -> Option<&String> {
        self.blocked.get(key)
    }

    pub fn primed(&self) -> bool {
        self.primed
    }

    /// Learns every alert run of a listing of the unfinished runs, and that
    /// the index now holds every run that could still await approval.
    pub fn remember_listing(&mut self, runs: &[RunRecord]) {
        self.remember(runs);
        self.primed = true;
    }

    /// Learns the alert runs among `runs` (a partial read or a run just created).
    pub fn remember(&mut self, runs: &[RunRecord]) {
        for run in runs {
            if let Some(a) = &run.spec.trigger.alert {
                let key = (a.fingerprint.clone(), a.starts_at);
                self.blocked.remove(&key);
                self.runs.entry(key).or_insert_with(|| run.id.clone());
            }
        }
    }

    /// `key`'s run is `id` (created, or found taken by another replica).
    pub fn remember_run(&mut self, key: AlertKey, id: String) {
        self.blocked.remove(&key);
        self.runs.entry(key).or_insert(id);
    }

    /// `key` has no run because the active run `id` collides with its plan.
    pub fn remember_blocked(&mut self, key: AlertKey, id: String) {
        if !self.runs.contains_key(&key) {
            self.blocked.insert(key, id);
        }
    }

    /// The blocking run ended or no longer collides: ask the journal next time.
    pub fn forget_blocked(&mut self, key: &AlertKey) {
        self.blocked.remove(key);
    }

    /// `key`'s run is gone from the journal (deleted by hand).
    pub fn forget_run(&mut self, key: &AlertKey) {
        self.runs.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{AlertRef, Mode, RunTrigger};

    fn key(fingerprint: &str) -> AlertKey {
        (fingerprint.into(), "2026-11-25T11:31:07Z".parse().unwrap())
    }

    fn run(id: &str, alert: Option<&AlertKey>) -> RunRecord {
        let plan = crate::plan::Plan::new("stale-cleanup", "utils/x");
        let trigger = RunTrigger { alert: alert.map(|(f, s)| AlertRef { fingerprint: f.clone(), starts_at: *s, alertname: "A".into() }), ..Default::default() };
        let mut record = RunRecord::new(&plan, trigger, Mode::Approve, "test", Utc::now());
        record.id = id.into();
        record
    }

    #[test]
    fn a_listing_primes_the_index_and_names_each_instance_run() {
        let mut index = AlertIndex::default();
        assert!(!index.primed());
        index.remember(&[run("a", Some(&key("f1")))]);
        assert!(!index.primed(), "a partial read does not prime the index");
        index.remember_listing(&[run("b", Some(&key("f2"))), run("manual", None)]);
        assert!(index.primed());
        assert_eq!(index.run_of(&key("f1")).map(String::as_str), Some("a"));
        assert_eq!(index.run_of(&key("f2")).map(String::as_str), Some("b"));
        assert_eq!(index.run_of(&key("f3")), None);
    }

    #[test]
    fn an_instance_with_a_run_is_no_longer_blocked_and_the_first_run_stays() {
        let mut index = AlertIndex::default();
        index.remember_blocked(key("f1"), "other".into());
        assert_eq!(index.blocker_of(&key("f1")).map(String::as_str), Some("other"));
        index.remember_run(key("f1"), "mine".into());
        assert_eq!(index.blocker_of(&key("f1")), None);
        index.remember_run(key("f1"), "later".into());
        assert_eq!(index.run_of(&key("f1")).map(String::as_str), Some("mine"));
        index.remember_blocked(key("f1"), "other".into());
        assert_eq!(index.blocker_of(&key("f1")), None, "an instance with a run is never blocked");
    }
}
