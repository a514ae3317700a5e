//! mariadb-operator's Galera health check and recovery, played on the test
//! apiserver for one MariaDB at a time. It reproduces mariadb-operator
//! v25.10.4 (github.com/mariadb-operator/mariadb-operator, tag v25.10.4) in
//! the parts `mariadb-instance-lost` depends on:
//!
//! * internal/controller/statefulset_galera_controller.go: only with
//!   `spec.galera.recovery.enabled` (and GaleraConfigured True) does the
//!   health check run; with no Ready member it sets Ready and GaleraReady
//!   False (reason GaleraNotReady) and clears `status.galeraRecovery`.
//!   (clusterHealthyTimeout is not waited for: the test has no clock to spare.)
//! * pkg/controller/galera/controller.go + recovery.go: while GaleraReady is
//!   False, whatever `recovery.enabled` says, the recovery runs. Only
//!   scheduled pods (`spec.nodeName` set) are asked for their Galera state /
//!   recovered seqno, and only once they run.
//! * pkg/controller/galera/recovery_status.go (`isComplete`,
//!   `bootstrapSource`): without `forceClusterBootstrapInPod` a bootstrap pod
//!   is chosen only when every member `<name>-0..N-1` has a valid seqno (or
//!   is skipped: uuid 00000000-…, seqno -1, i.e. an empty volume), the highest
//!   seqno wins, a later pod on a tie. A member Pending on a claim pinned to a
//!   lost node never reports one: no bootstrap. With the field set, the named
//!   pod is the bootstrap pod at once. Either way `status.galeraRecovery.bootstrap`
//!   records `{time, pod}`, and a bootstrap older than clusterBootstrapTimeout
//!   (default 10m) resets `status.galeraRecovery`.
//! * recovery.go `restartPods`: the bootstrap pod first, then every other
//!   member in index order; each must be Running before the operator moves
//!   on (it retries after podSyncTimeout), so a Pending member holds the
//!   recovery (`podsRestarted` never set) and GaleraReady never returns.
//! * controller.go: GaleraReady (and GaleraConfigured) True once every member
//!   is Ready; internal/controller/mariadb_controller_status.go: Ready follows
//!   the members unless GaleraReady is False.
//! * pkg/agent/handler/galera/probe.go: a member is Ready only when Synced in
//!   a primary component — the player turns pods Ready when they bootstrap,
//!   rejoin after the bootstrap, or join (SST) a cluster that holds quorum.
//!
//! Left out: the downscale/upscale around the recovery Jobs, Events, and the
//! agent's HTTP API (the player writes the positions the Jobs would report).
#![allow(dead_code)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use kube::Client;
use serde_json::{json, Value};

use super::k8s::{rfc3339, set_status};
use super::players::running_status;

pub const MDB: &str = "k8s.mariadb.com/v1alpha1";
/// An empty volume's position: the operator skips such a member.
pub const EMPTY_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// What the cluster looks like this tick, in the MariaDB's namespace.
pub struct View<'a> {
    pub pods: &'a [Value],
    /// claim name → bound volume name.
    pub claims: &'a BTreeMap<String, String>,
    pub nodes_ready: &'a BTreeMap<String, bool>,
}

/// The Galera data each original volume holds (uuid, seqno), by volume
/// name; any other volume is empty. `broken` names a member whose data
/// cannot start a primary component (its bootstrap never converges).
#[derive(Clone, Default)]
pub struct Galera {
    pub disks: BTreeMap<String, (String, i64)>,
    pub broken: Option<String>,
}

/// What the player did this tick that a test may want to see.
#[derive(Debug, Default)]
pub struct Tick {
    /// The bootstrap pod the operator started with, and whether it was forced.
    pub bootstrap_started: Option<(String, bool)>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Member {
    Absent,
    /// Not scheduled (e.g. its claim is pinned to a lost node).
    Pending,
    /// Scheduled on a node that is not Ready, or being deleted.
    Unreachable,
    Running {
        ready: bool,
    },
}

fn condition_status<'a>(mdb: &'a Value, type_: &str) -> Option<&'a str> {
    mdb["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)?["status"].as_str()
}

fn with_condition(mdb: &Value, type_: &str, status: &str, reason: &str, message: &str, now: &str) -> Vec<Value> {
    let mut conditions: Vec<Value> = mdb["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let same = conditions.iter().any(|c| c["type"] == type_ && c["status"] == status);
    if !same {
        conditions.retain(|c| c["type"] != type_);
        conditions.push(json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}));
    }
    conditions
}

/// A `time.Duration` field, or upstream's default.
fn go_duration(text: Option<&str>, default: Duration) -> Duration {
    text.and_then(lifeboat::inspect::mariadb::go_duration_seconds).map_or(default, |s| Duration::seconds(s as i64))
}

impl Galera {
    fn member(&self, view: &View, name: &str) -> Member {
        let Some(pod) = view.pods.iter().find(|p| p["metadata"]["name"] == name) else { return Member::Absent };
        let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else { return Member::Pending };
        if pod["metadata"]["deletionTimestamp"].is_string() || view.nodes_ready.get(node) != Some(&true) || pod["status"]["phase"] != "Running" {
            return Member::Unreachable;
        }
        let ready = pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        Member::Running { ready }
    }

    /// The (uuid, seqno) the recovery Job would report for a member.
    fn position(&self, view: &View, name: &str) -> (String, i64) {
        let volume = view.claims.get(&format!("storage-{name}"));
        volume.and_then(|v| self.disks.get(v)).cloned().unwrap_or((EMPTY_UUID.to_string(), -1))
    }

    /// One reconcile of the MariaDB `mdb` (as read this tick).
    pub async fn tick(&self, client: &Client, mdb: &Value, view: &View<'_>) -> Tick {
        let mut out = Tick::default();
        let (ns, name) = (mdb["metadata"]["namespace"].as_str().unwrap_or_default(), mdb["metadata"]["name"].as_str().unwrap_or_default());
        let galera = &mdb["spec"]["galera"];
        if galera["enabled"] != true {
            return out;
        }
        let recovery = &galera["recovery"];
        let now_t: DateTime<Utc> = Utc::now();
        let now = rfc3339(now_t);
        let replicas = mdb["spec"]["replicas"].as_i64().unwrap_or(1);
        let names: Vec<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
        let members: Vec<Member> = names.iter().map(|n| self.member(view, n)).collect();
        let any_ready = members.iter().any(|m| matches!(m, Member::Running { ready: true }));

        // statefulset_galera_controller.go: the health check, only with the recovery on.
        if recovery["enabled"] == true && condition_status(mdb, "GaleraConfigured") == Some("True") && condition_status(mdb, "GaleraReady") != Some("False") && !any_ready {
            let mut flipped = mdb.clone();
            flipped["status"]["conditions"] = json!(with_condition(mdb, "Ready", "False", "GaleraNotReady", "Galera not ready", &now));
            let conditions = with_condition(&flipped, "GaleraReady", "False", "GaleraNotReady", "Galera not ready", &now);
            set_status(client, MDB, "MariaDB", Some(ns), name, json!({"conditions": conditions, "galeraRecovery": null})).await;
            return out;
        }

        if condition_status(mdb, "GaleraReady") == Some("False") {
            let mut status = mdb["status"]["galeraRecovery"].clone();
            if !status.is_object() {
                status = json!({});
            }
            // recovery_status.go bootstrapTimeout → recovery.go resetRecovery.
            let bootstrap_timeout = go_duration(recovery["clusterBootstrapTimeout"].as_str(), Duration::minutes(10));
            let started = status["bootstrap"]["time"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok());
            if started.is_some_and(|t| now_t > t.with_timezone(&Utc) + bootstrap_timeout) {
                set_status(client, MDB, "MariaDB", Some(ns), name, json!({"galeraRecovery": null})).await;
                return out;
            }
            let force = recovery["forceClusterBootstrapInPod"].as_str().filter(|p| !p.is_empty());
            if status["bootstrap"].is_null() {
                let chosen = match force {
                    Some(pod) if names.iter().any(|n| n == pod) => Some(pod.to_string()),
                    Some(_) => None, // "Pod used to forcefully bootstrap not found"
                    None => self.collect_positions(view, &names, &members, &mut status),
                };
                if let Some(pod) = &chosen {
                    status["bootstrap"] = json!({"time": now, "pod": pod});
                    out.bootstrap_started = Some((pod.clone(), force.is_some()));
                }
                set_status(client, MDB, "MariaDB", Some(ns), name, json!({"galeraRecovery": status})).await;
                return out;
            }
            if status["podsRestarted"] != true {
                let bootstrap = status["bootstrap"]["pod"].as_str().unwrap_or_default().to_string();
                let order = std::iter::once(bootstrap.clone()).chain(names.iter().filter(|n| **n != bootstrap).cloned());
                let mut all = true;
                for pod in order {
                    let index = names.iter().position(|n| *n == pod);
                    let member = index.map_or(Member::Absent, |i| members[i]);
                    let Member::Running { ready } = member else {
                        all = false; // ensurePodHealthy: not Running within podSyncTimeout, retried later
                        break;
                    };
                    if self.broken.as_deref() == Some(bootstrap.as_str()) {
                        all = false; // the bootstrap pod never becomes Synced
                        break;
                    }
                    if !ready {
                        self.make_ready(client, view, ns, &pod).await;
                    }
                }
                if all {
                    status["podsRestarted"] = json!(true);
                    set_status(client, MDB, "MariaDB", Some(ns), name, json!({"galeraRecovery": status})).await;
                }
                return out;
            }
        } else if any_ready {
            // Quorum held: a running member joins the primary component (SST) and turns Ready.
            for (pod, member) in names.iter().zip(&members) {
                if *member == (Member::Running { ready: false }) {
                    self.make_ready(client, view, ns, pod).await;
                }
            }
        }

        // controller.go: GaleraReady once every member is Ready; mariadb_controller_status.go: Ready.
        let all_ready = members.iter().all(|m| matches!(m, Member::Running { ready: true }));
        if all_ready && (condition_status(mdb, "GaleraReady") != Some("True") || condition_status(mdb, "Ready") != Some("True")) {
            let mut next = mdb.clone();
            next["status"]["conditions"] = json!(with_condition(mdb, "GaleraReady", "True", "GaleraReady", "Galera ready", &now));
            next["status"]["conditions"] = json!(with_condition(&next, "GaleraConfigured", "True", "GaleraConfigured", "Galera configured", &now));
            let conditions = with_condition(&next, "Ready", "True", "StatefulSetReady", "Running", &now);
            set_status(client, MDB, "MariaDB", Some(ns), name, json!({"conditions": conditions})).await;
        }
        out
    }

    /// recovery.go getGaleraState + recoverGaleraState for the members that
    /// run, then recovery_status.go bootstrapSource: the chosen pod, or None
    /// while a member has no usable position.
    fn collect_positions(&self, view: &View, names: &[String], members: &[Member], status: &mut Value) -> Option<String> {
        for (pod, member) in names.iter().zip(members) {
            if !matches!(member, Member::Running { .. }) || !status["recovered"][pod.as_str()].is_null() {
                continue;
            }
            let (uuid, seqno) = self.position(view, pod);
            if uuid != EMPTY_UUID {
                // grastate.dat after a crash: seqno -1, not safe to bootstrap.
                status["state"][pod.as_str()] = json!({"version": "2.1", "uuid": uuid, "seqno": -1, "safeToBootstrap": false});
            }
            status["recovered"][pod.as_str()] = json!({"uuid": uuid, "seqno": seqno});
        }
        let mut best: Option<(i64, String)> = None;
        let mut skipped = 0;
        for pod in names {
            let state = &status["state"][pod.as_str()];
            if state["safeToBootstrap"] == true {
                return Some(pod.clone());
            }
            let recovered = &status["recovered"][pod.as_str()];
            if recovered["uuid"] == EMPTY_UUID && recovered["seqno"] == -1 {
                skipped += 1;
                continue;
            }
            let seqno = [state, recovered].iter().filter_map(|p| p["seqno"].as_i64()).filter(|s| *s >= 0).max();
            let seqno = seqno?; // isComplete: a member without a valid seqno
            if best.as_ref().is_none_or(|(b, _)| seqno >= *b) {
                best = Some((seqno, pod.clone()));
            }
        }
        if skipped == names.len() {
            return None;
        }
        best.map(|(_, pod)| pod)
    }

    async fn make_ready(&self, client: &Client, view: &View<'_>, ns: &str, pod: &str) {
        if let Some(p) = view.pods.iter().find(|p| p["metadata"]["name"] == pod) {
            set_status(client, "v1", "Pod", Some(ns), pod, running_status(p)).await;
        }
    }
}
