//! Lease-based leader election against a real kube-apiserver: one leader at a
//! time, prompt hand-over on release, a crashed leader's lease respected until
//! it expires, a live foreign holder never displaced, and least-privilege RBAC
//! (get/create/update on leases in one namespace) is enough.

mod support;

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use lifeboat::leader::{self, LeaderConfig, LeaderHandle};
use serde_json::json;
use support::controlplane::control_plane;
use tokio::time::Instant;

const LEASE: Duration = Duration::from_secs(2);

fn init_logs() {
    let _ = tracing_subscriber::fmt().with_test_writer().with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "lifeboat::leader=info".into())).try_init();
}

fn config(ns: &str, identity: &str) -> LeaderConfig {
    LeaderConfig { lease_duration: LEASE, renew_interval: Duration::from_millis(500), retry_interval: Duration::from_millis(200), ..LeaderConfig::new(ns, identity) }
}

/// Polls `check` until it holds; panics after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn one_leader<'a>(a: &'a LeaderHandle, b: &'a LeaderHandle) -> (&'a LeaderHandle, &'a LeaderHandle) {
    eventually("one of the two candidates leads", Duration::from_secs(30), || async { a.is_leader() || b.is_leader() }).await;
    if a.is_leader() {
        (a, b)
    } else {
        (b, a)
    }
}

async fn lease(client: &Client, ns: &str) -> Lease {
    Api::<Lease>::namespaced(client.clone(), ns).get("lifeboat-leader").await.expect("the Lease exists")
}

fn holder(lease: &Lease) -> Option<String> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty())
}

fn transitions(lease: &Lease) -> i32 {
    lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0)
}

fn renew_time(lease: &Lease) -> Timestamp {
    lease.spec.as_ref().and_then(|s| s.renew_time.clone()).expect("renewTime").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_candidates_never_lead_at_once() {
    init_logs();
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "leader").await;
    let a = leader::spawn(client.clone(), config(&ns, "a"));
    let b = leader::spawn(client.clone(), config(&ns, "b"));
    assert_eq!((a.identity(), b.identity()), ("a", "b"));

    one_leader(&a, &b).await;
    // Sample for three lease durations: never both at once.
    let until = Instant::now() + 3 * LEASE;
    let mut samples = 0;
    while Instant::now() < until {
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(samples > 50);
    // The Lease names the leader.
    eventually("the Lease names the leader", Duration::from_secs(30), || async {
        let (leading, _) = one_leader(&a, &b).await;
        holder(&lease(&client, &ns).await).as_deref() == Some(leading.identity())
    })
    .await;
    let held = lease(&client, &ns).await;
    assert_eq!(held.spec.as_ref().unwrap().lease_duration_seconds, Some(2));
    assert!(held.spec.as_ref().unwrap().acquire_time.is_some());

    a.release().await;
    b.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_to_the_follower() {
    init_logs();
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "leader").await;
    // A long lease: the hand-over within the deadline below can only come
    // from the release, not from the lease running out.
    let long = |identity: &str| LeaderConfig { lease_duration: Duration::from_secs(120), ..config(&ns, identity) };
    let a = leader::spawn(client.clone(), long("a"));
    let b = leader::spawn(client.clone(), long("b"));
    let (leader, follower) = one_leader(&a, &b).await;
    let (leader, follower) = (leader.clone(), follower.clone());
    let mut transitions_before = transitions(&lease(&client, &ns).await);
    let mut changes = leader.subscribe();
    assert!(*changes.borrow_and_update());

    let released = leader.clone();
    released.release().await;
    assert!(!leader.is_leader(), "a released handle no longer leads");
    assert!(!*changes.borrow_and_update(), "subscribers saw the step-down");
    eventually("the follower takes over after the release", Duration::from_secs(30), || async { follower.is_leader() }).await;
    let held = lease(&client, &ns).await;
    assert_eq!(holder(&held).as_deref(), Some(follower.identity()));
    transitions_before += 1; // released -> follower
    assert!(transitions(&held) >= transitions_before, "leaseTransitions counts the hand-over");
    // The stopped candidate never comes back.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!leader.is_leader());
    follower.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leaders_lease_is_respected_until_it_expires() {
    init_logs();
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "leader").await;
    let a = leader::spawn(client.clone(), config(&ns, "a"));
    let b = leader::spawn(client.clone(), config(&ns, "b"));
    let (leader, follower) = one_leader(&a, &b).await;
    let (leader, follower) = (leader.clone(), follower.clone());
    let transitions_before = transitions(&lease(&client, &ns).await);

    leader.abort(); // a crash: the task dies without releasing
    assert!(!leader.is_leader());
    let held = lease(&client, &ns).await;
    assert_eq!(holder(&held).as_deref(), Some(leader.identity()), "nobody released the Lease");
    // A renewal in flight at the crash can only move the expiry later.
    let expiry = renew_time(&held) + LEASE;
    let mut samples = 0;
    while Timestamp::now() < expiry - Duration::from_millis(50) {
        assert!(!follower.is_leader(), "the follower took over a lease that had not expired");
        samples += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(samples > 10, "the lease should still have been valid for a while after the crash");
    eventually("the follower takes over once the lease expired", Duration::from_secs(30), || async { follower.is_leader() }).await;
    assert!(Timestamp::now() >= expiry);
    let held = lease(&client, &ns).await;
    assert_eq!(holder(&held).as_deref(), Some(follower.identity()));
    assert_eq!(transitions(&held), transitions_before + 1);
    follower.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_foreign_holder_is_never_displaced() {
    init_logs();
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "leader").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let now = || serde_json::to_value(MicroTime(Timestamp::now())).unwrap();
    let foreign: Lease = serde_json::from_value(json!({
        "metadata": {"name": "lifeboat-leader"},
        "spec": {"holderIdentity": "someone-else", "leaseDurationSeconds": 2, "acquireTime": now(), "renewTime": now(), "leaseTransitions": 4}
    }))
    .unwrap();
    leases.create(&PostParams::default(), &foreign).await.unwrap();
    // The foreign holder keeps renewing, like a live replica.
    let renewer = {
        let leases = leases.clone();
        tokio::spawn(async move {
            loop {
                let patch = json!({"spec": {"renewTime": now()}});
                if let Err(e) = leases.patch("lifeboat-leader", &PatchParams::default(), &Patch::Merge(&patch)).await {
                    eprintln!("foreign renewal failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };

    let a = leader::spawn(client.clone(), config(&ns, "a"));
    let until = Instant::now() + 3 * LEASE;
    while Instant::now() < until {
        assert!(!a.is_leader(), "took over a lease its holder keeps renewing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let held = lease(&client, &ns).await;
    assert_eq!(holder(&held).as_deref(), Some("someone-else"));
    assert_eq!(transitions(&held), 4);

    // Once the foreign holder stops renewing, its lease runs out and is taken.
    renewer.abort();
    let _ = renewer.await;
    eventually("the candidate takes over the abandoned lease", Duration::from_secs(30), || async { a.is_leader() }).await;
    let held = lease(&client, &ns).await;
    assert_eq!(holder(&held).as_deref(), Some("a"));
    assert_eq!(transitions(&held), 5);
    a.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_create_update_on_leases_is_enough_to_lead() {
    init_logs();
    let cp = control_plane();
    let admin = cp.admin_client();
    let ns = cp.namespace(&admin, "leader").await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "lifeboat-leader-election"},
        "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &role).await.unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "lifeboat-leader-election"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lifeboat-leader-election"},
        "subjects": [{"kind": "ServiceAccount", "name": "lifeboat", "namespace": ns}]
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), &ns).create(&PostParams::default(), &binding).await.unwrap();

    let client = cp.service_account_client(&ns, "lifeboat").await;
    let identity = "lifeboat-7d9c-x2x4q";
    let a = leader::spawn(client.clone(), config(&ns, identity));
    tokio::time::timeout(Duration::from_secs(30), a.wait_until_leader()).await.expect("leads as the ServiceAccount");
    // Renewals (updates) keep it leader over several renew intervals.
    let first_renewal = renew_time(&lease(&admin, &ns).await);
    tokio::time::sleep(2 * LEASE).await;
    assert!(a.is_leader(), "still leader after renewing as the ServiceAccount");
    let held = lease(&admin, &ns).await;
    assert_eq!(holder(&held).as_deref(), Some(identity));
    assert!(renew_time(&held) > first_renewal, "the ServiceAccount renews the lease");

    // The Role does not reach beyond leases in this namespace.
    let other: Api<Lease> = Api::namespaced(client.clone(), "default");
    assert!(matches!(other.get("lifeboat-leader").await, Err(kube::Error::Api(s)) if s.code == 403));

    // Releasing is an update too.
    a.release().await;
    assert_eq!(holder(&lease(&admin, &ns).await), None, "released as the ServiceAccount");
}
