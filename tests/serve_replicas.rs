//! `lifeboat serve` processes against the real apiserver (issue 12): two
//! replicas receiving the same Alertmanager notification record one run (the
//! journal is the arbiter), and SIGTERM vacates the leader Lease and exits.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use lifeboat::journal::Journal;
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::process::free_ports;

const WEBHOOK_TOKEN: &str = "a-webhook-token-for-the-replicas";
/// Bounds a wait so a broken build fails instead of hanging (not a performance assertion).
const PATIENCE: Duration = Duration::from_secs(120);

/// A `lifeboat serve` child we can signal; killed when dropped.
struct Serve {
    child: Child,
    log: std::path::PathBuf,
    url: String,
}

impl Serve {
    fn start(dir: &Path, name: &str, ns: &str, port: u16, execute: bool) -> Serve {
        let kubeconfig = dir.join("kubeconfig");
        control_plane().write_admin_kubeconfig(&kubeconfig);
        std::fs::write(dir.join("webhook-credentials"), format!("{WEBHOOK_TOKEN}\n")).unwrap();
        let config = format!(
            "listen: 127.0.0.1:{port}\ndiscoveryInterval: 2s\nremediation:\n  execute: {execute}\n  namespace: {ns}\n  webhookCredentialsFile: {}\n",
            dir.join("webhook-credentials").display()
        );
        let config_path = dir.join(format!("{name}.yaml"));
        std::fs::write(&config_path, &config).unwrap();
        lifeboat::config::Config::parse(&config).expect("the test's config is valid");
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", name)
            .env("LIFEBOAT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("lifeboat serve starts");
        Serve { child, log, url: format!("http://127.0.0.1:{port}") }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.url)).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("lifeboat serve exited ({status}) before it was ready\n{}", self.log_tail());
            }
            assert!(tokio::time::Instant::now() < deadline, "not ready\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ item 9

/// An orphaned-destination alert for `ns` (the stale-cleanup route), as
/// Alertmanager posts it (payload version 4).
fn notification(ns: &str) -> Value {
    json!({"version": "4", "groupKey": "{}:{alertname=\"LifeboatVolsyncDestinationOrphaned\"}", "truncatedAlerts": 0, "status": "firing",
           "receiver": "lifeboat", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
           "alerts": [{"status": "firing", "labels": {"alertname": "LifeboatVolsyncDestinationOrphaned", "namespace": ns}, "annotations": {},
                       "startsAt": "2026-11-25T11:30:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
                       "fingerprint": "0a1b2c3d4e5f6071"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_given_the_same_alert_record_one_run() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "replicas").await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let mut a = Serve::start(dir.path(), "replica-a", &ns, ports[0], false);
    let mut b = Serve::start(dir.path(), "replica-b", &ns, ports[1], false);
    a.wait_ready().await;
    b.wait_ready().await;

    // Alertmanager's HA pair: each peer delivers the same notification to a different replica, at once.
    let http = reqwest::Client::new();
    let post = |url: String| {
        let http = http.clone();
        let body = notification(&ns);
        async move {
            let r = http.post(format!("{url}/alertmanager")).bearer_auth(WEBHOOK_TOKEN).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let ((code_a, body_a), (code_b, body_b)) = tokio::join!(post(a.url.clone()), post(b.url.clone()));
    assert_eq!((code_a, code_b), (200, 200), "{body_a} {body_b}\n{}\n{}", a.log_tail(), b.log_tail());
    let results: Vec<&str> = [&body_a, &body_b].iter().map(|b| b["alerts"][0]["result"].as_str().unwrap_or("")).collect();
    let runs = Journal::cluster(client.clone(), ns.clone()).list().await.unwrap();
    assert_eq!(runs.len(), 1, "one alert instance, one run: {runs:#?}\n{body_a}\n{body_b}");
    assert!(results.contains(&"run") && results.contains(&"duplicate"), "{results:?}");
    assert_eq!(body_a["alerts"][0]["run"], body_b["alerts"][0]["run"]);
}

// ------------------------------------------------------------------ item 11

async fn lease_holder(client: &kube::Client, ns: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    leases.get_opt("lifeboat-leader").await.unwrap().and_then(|l| l.spec?.holder_identity).filter(|h| !h.is_empty())
}

/// Until the Lease names `want` (any holder when None); returns the holder.
async fn await_holder(client: &kube::Client, ns: &str, want: Option<&str>, replicas: &[&Serve]) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let holder = lease_holder(client, ns).await;
        if let Some(holder) = holder.filter(|h| want.is_none_or(|w| w == h)) {
            return holder;
        }
        let logs: Vec<String> = replicas.iter().map(|r| r.log_tail()).collect();
        assert!(tokio::time::Instant::now() < deadline, "the Lease never named {}\n{}", want.unwrap_or("anyone"), logs.join("\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_vacates_the_lease_and_exits_cleanly() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "sigterm").await;
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), "lifeboat-sigterm", &ns, free_ports(1)[0], true);
    serve.wait_ready().await;
    await_holder(&client, &ns, Some("lifeboat-sigterm"), &[&serve]).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;

    // What the kubelet sends first when the pod is deleted.
    let pid = i32::try_from(serve.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(tokio::time::Instant::now() < deadline, "still running after SIGTERM\n{}", serve.log_tail());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}\n{}", serve.log_tail());
    assert_eq!(lease_holder(&client, &ns).await, None, "the Lease still names the stopped replica\n{}", serve.log_tail());
}

// ------------------------------------------------------------------ HA (issue 14, item 3)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_moves_to_the_other_replica_when_the_leaders_process_dies() {
    let cp = control_plane();
    let client = cp.admin_client();
    let ns = cp.namespace(&client, "ha").await;
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(2);
    let mut replicas = [Serve::start(dir.path(), "lifeboat-a", &ns, ports[0], true), Serve::start(dir.path(), "lifeboat-b", &ns, ports[1], true)];
    for replica in &mut replicas {
        replica.wait_ready().await;
    }
    let leader = await_holder(&client, &ns, None, &[&replicas[0], &replicas[1]]).await;
    let (dead, survivor) = if leader == "lifeboat-a" { (0, 1) } else { (1, 0) };

    // The node under the leader goes away with it: SIGKILL, no step-down.
    replicas[dead].child.kill().unwrap();
    replicas[dead].child.wait().unwrap();
    let survivor_name = if survivor == 0 { "lifeboat-a" } else { "lifeboat-b" };
    await_holder(&client, &ns, Some(survivor_name), &[&replicas[survivor]]).await;
    assert!(replicas[survivor].child.try_wait().unwrap().is_none(), "the survivor keeps serving");
}
