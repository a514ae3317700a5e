//! Alert to recovery, end to end, with every part real: the apiserver holds
//! two CNPG clusters whose primaries sit on a NotReady node; `lifeboat serve`
//! (the built binary) watches it and exports metrics; a real Prometheus
//! scrapes lifeboat and evaluates the shipped rules; two real Alertmanagers
//! (an HA pair that does not gossip, so both deliver every notification, and
//! repeat it every few seconds) post to lifeboat's `/alertmanager` with the
//! bearer credentials. Each alert records one run awaiting approval however
//! often it is delivered; lifeboat posts it to Discord (the fake Discord of
//! tests/support, in bot mode); the one whose condition clears before
//! approval is marked so; an approval naming a plan computed after the state
//! changed is refused, over the HTTP API and as a Discord click; a signed
//! Approve click approves the run, which executes cnpg-instance-lost against
//! the apiserver (the test plays CloudNativePG) until it Succeeds, its
//! Discord message edited live and the summary replied to it.
//!
//! Needs /usr/bin/prometheus and /usr/bin/prometheus-alertmanager (Debian
//! packages `prometheus`, `prometheus-alertmanager`; override with PROMETHEUS
//! and ALERTMANAGER) besides the control plane. Every wait polls with a
//! generous deadline; nothing asserts how long a step took.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kube::Client;
use lifeboat::config::Config;
use lifeboat::journal::{Journal, Phase, RunRecord, StepState};
use lifeboat::plan::playbooks::{plan, Trigger};
use lifeboat::snapshot::Snapshot;
use serde_json::{json, Value};
// Private: Prometheus alerts on the whole cluster, so other binaries' leftover incidents would fire and start runs.
use support::cnpg::*;
use support::controlplane::control_plane_private as control_plane;
use support::fake_discord::{FakeDiscord, Message, BOT_TOKEN, CHANNEL_ID};
use support::k8s::*;
use support::process::{find_binary, free_ports, Process};

const WEBHOOK_TOKEN: &str = "e2e-alertmanager-webhook-credentials";
const API_TOKEN: &str = "e2e-lifeboat-http-api-token";
const ALERT: &str = "LifeboatCnpgPrimaryOnLostNode";
/// The Discord user allowed to approve.
const APPROVER: &str = "1000000000000000001";

/// Generous: the machine is shared, and a delivery takes scrape (1s) + rule
/// evaluation (1s) + `for` (2s here) + group_wait (1s) + the snapshot rebuild.
const PATIENCE: Duration = Duration::from_secs(180);

fn running(mut pod: Value, ready: bool) -> Value {
    pod["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "app", "ready": ready, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {"startedAt": "2026-11-25T00:00:00Z"}}}]});
    pod
}

/// The cnpg-instance-lost scene (tests/support/cnpg.rs) in a fresh namespace.
/// Returns (namespace, healthy node).
async fn lost_primary_scene(client: &Client, prefix: &str) -> (String, String) {
    let ns = control_plane().namespace(client, prefix).await;
    let (healthy, _) = lost_primary_cluster(client, &ns).await;
    (ns, healthy)
}

/// The shipped rules with every `for:` shortened to 2s: the real durations
/// (1m for this alert, up to 24h for others) would make the test minutes
/// long; the `for:` timings are covered by the promtool tests in rules/tests/.
fn rules_with_short_for(dir: &Path) -> std::path::PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/lifeboat.rules.yaml");
    let mut rules: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&source).unwrap()).unwrap();
    let mut shortened = 0;
    for group in rules["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if let Some(f) = rule.get_mut("for") {
                *f = "2s".into();
                shortened += 1;
            }
        }
    }
    assert!(shortened > 10, "rules/lifeboat.rules.yaml: expected alert rules with `for:`");
    let path = dir.join("lifeboat.rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(&rules).unwrap()).unwrap();
    path
}

struct Stack {
    lifeboat: Process,
    prometheus: Process,
    alertmanagers: Vec<Process>,
    lifeboat_url: String,
    journal: Journal,
}

impl Stack {
    /// The logs of every process, for a failure message.
    fn logs(&self) -> String {
        let mut out = vec![self.lifeboat.log_tail(40), self.prometheus.log_tail(10)];
        out.extend(self.alertmanagers.iter().map(|a| a.log_tail(10)));
        out.join("\n")
    }

    /// The cnpg-instance-lost runs for the cluster in `ns` (the node-loss and
    /// per-claim alerts of the same incident route to other playbooks).
    async fn runs_for(&self, ns: &str) -> Vec<RunRecord> {
        let runs = self.journal.list().await.unwrap().into_iter();
        runs.filter(|r| r.spec.playbook == "cnpg-instance-lost" && r.spec.trigger.namespace.as_deref() == Some(ns)).collect()
    }

    /// Polls `check` until it returns Some; panics with the logs after PATIENCE.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            for p in [&self.lifeboat, &self.prometheus].into_iter().chain(&self.alertmanagers) {
                if let Some(status) = p.exited() {
                    panic!("{} exited ({status}) while waiting for {what}\n{}", p.name, self.logs());
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "waited {PATIENCE:?} for {what}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn metric(&self, line_prefix: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.lifeboat_url)).await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix(line_prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    }
}

/// lifeboat serve + Prometheus + two Alertmanagers on free loopback ports.
/// Spawned from the test's thread (see support::process).
async fn start_stack(dir: &Path, lifeboat_ns: &str, discord: &FakeDiscord) -> Stack {
    let prometheus_bin = find_binary("PROMETHEUS", &["/usr/bin/prometheus", "prometheus"], "prometheus");
    let alertmanager_bin = find_binary("ALERTMANAGER", &["/usr/bin/prometheus-alertmanager", "alertmanager"], "prometheus-alertmanager");
    let ports = free_ports(4);
    let (lb_port, prom_port, am_ports) = (ports[0], ports[1], [ports[2], ports[3]]);

    let kubeconfig = dir.join("kubeconfig");
    control_plane().write_admin_kubeconfig(&kubeconfig);
    std::fs::write(dir.join("webhook-credentials"), format!("{WEBHOOK_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("api-token"), format!("{API_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("discord-bot-token"), format!("{BOT_TOKEN}\n")).unwrap();
    let config = format!(
        "listen: 127.0.0.1:{lb_port}\nnodeLostGrace: 5s\nsnapshotInterval: 1s\ndiscoveryInterval: 2s\n\
         remediation:\n  execute: true\n  namespace: {lifeboat_ns}\n  apiTokenFile: {}\n  webhookCredentialsFile: {}\n\
         discord:\n  transport: http\n  botTokenFile: {}\n  channelId: \"{CHANNEL_ID}\"\n  publicKey: {}\n  approvers:\n    users: [\"{APPROVER}\"]\n  apiBase: {}\n  editInterval: 1s\n",
        dir.join("api-token").display(),
        dir.join("webhook-credentials").display(),
        dir.join("discord-bot-token").display(),
        discord.public_key_hex(),
        discord.api_base
    );
    std::fs::write(dir.join("lifeboat.yaml"), &config).unwrap();
    Config::parse(&config).expect("the test's lifeboat config is valid");
    let mut command = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    command.args(["serve", "--config"]).arg(dir.join("lifeboat.yaml")).env("KUBECONFIG", &kubeconfig).env("POD_NAME", "lifeboat-e2e").env("LIFEBOAT_LOG", "info");
    let lifeboat = Process::spawn("lifeboat serve", command, &dir.join("lifeboat.log"));
    let lifeboat_url = format!("http://127.0.0.1:{lb_port}");
    lifeboat.wait_http_ok(&format!("{lifeboat_url}/readyz"), PATIENCE).await;

    let mut alertmanagers = vec![];
    for (i, port) in am_ports.iter().enumerate() {
        let am_dir = dir.join(format!("alertmanager-{i}"));
        std::fs::create_dir_all(&am_dir).unwrap();
        // Short group timings so the test sees first deliveries, repeats and
        // resolutions within seconds; the bearer token comes from a file, as
        // a deployment would mount it.
        let config = format!(
            "route:\n  receiver: lifeboat\n  group_by: [alertname, namespace]\n  group_wait: 1s\n  group_interval: 2s\n  repeat_interval: 3s\n\
             receivers:\n  - name: lifeboat\n    webhook_configs:\n      - url: {lifeboat_url}/alertmanager\n        send_resolved: true\n\
             \x20       http_config:\n          authorization:\n            type: Bearer\n            credentials_file: {}\n",
            dir.join("webhook-credentials").display()
        );
        std::fs::write(am_dir.join("alertmanager.yml"), config).unwrap();
        let mut command = Command::new(&alertmanager_bin);
        command
            .arg(format!("--config.file={}", am_dir.join("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", am_dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // No gossip: each peer delivers every notification (what an HA pair does when it cannot dedupe).
            .arg("--cluster.listen-address=");
        let am = Process::spawn(&format!("alertmanager-{i}"), command, &am_dir.join("alertmanager.log"));
        am.wait_http_ok(&format!("http://127.0.0.1:{port}/-/ready"), PATIENCE).await;
        alertmanagers.push(am);
    }

    let rules = rules_with_short_for(dir);
    let prometheus_config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files: [{}]\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{}\", \"127.0.0.1:{}\"]\n\
         scrape_configs:\n  - job_name: lifeboat\n    static_configs:\n      - targets: [\"127.0.0.1:{lb_port}\"]\n",
        rules.display(),
        am_ports[0],
        am_ports[1]
    );
    std::fs::write(dir.join("prometheus.yml"), prometheus_config).unwrap();
    let mut command = Command::new(&prometheus_bin);
    command
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("prometheus-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .arg("--rules.alert.resend-delay=1s")
        .arg("--log.level=warn");
    let prometheus = Process::spawn("prometheus", command, &dir.join("prometheus.log"));
    prometheus.wait_http_ok(&format!("http://127.0.0.1:{prom_port}/-/ready"), PATIENCE).await;

    let journal = Journal::cluster(control_plane().admin_client(), lifeboat_ns);
    Stack { lifeboat, prometheus, alertmanagers, lifeboat_url, journal }
}

/// The plan cnpg-instance-lost makes from the cluster as it is now.
async fn plan_now(client: &Client, ns: &str) -> lifeboat::plan::Plan {
    let config = Config { discovery_interval: lifeboat::config::Dur::secs(1), node_lost_grace: lifeboat::config::Dur::secs(5), ..Config::default() };
    let hub = lifeboat::runtime::hub::start_live_hub(config.clone(), client.clone());
    lifeboat::runtime::hub::wait_ready(&hub, Duration::from_secs(60)).await.unwrap();
    let snapshot = Snapshot::build(hub.live.as_ref().unwrap().snapshot(), &config, &Default::default());
    let trigger = Trigger { namespace: Some(ns.into()), name: Some("postgres".into()), node: None };
    plan("cnpg-instance-lost", &snapshot.state, &snapshot.findings, &trigger).expect("plans")
}

async fn approve(stack: &Stack, id: &str, hash: &str, token: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(format!("{}/api/runs/{id}/approve", stack.lifeboat_url))
        .bearer_auth(token)
        .json(&json!({"hash": hash, "by": "e2e-operator"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_to_approved_recovery_through_prometheus_and_alertmanager() {
    let cp = control_plane();
    let client = cp.admin_client();
    let lifeboat_ns = cp.namespace(&client, "lifeboat").await;
    // `main` is recovered; `cleared` has its primary moved by the operator before anyone approves.
    let (main_ns, main_healthy) = lost_primary_scene(&client, "db-main").await;
    let (cleared_ns, _) = lost_primary_scene(&client, "db-cleared").await;
    let tmp = tempfile::Builder::new().prefix("lifeboat-alert-e2e-").tempdir().unwrap();
    // LIFEBOAT_E2E_KEEP=1 keeps the configs and logs for a look afterwards.
    let (_cleanup, dir) = if std::env::var_os("LIFEBOAT_E2E_KEEP").is_some() {
        let kept = tmp.keep();
        eprintln!("keeping {}", kept.display());
        (None, kept)
    } else {
        let path = tmp.path().to_path_buf();
        (Some(tmp), path)
    };
    let discord = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let stack = start_stack(&dir, &lifeboat_ns, &discord).await;
    let interactions = format!("{}/discord/interactions", stack.lifeboat_url);

    // 1. Each alert, delivered by both Alertmanagers, records one run awaiting approval.
    let (main_run, cleared_run) = stack
        .wait_for("a run per cluster recorded from the alerts", || async {
            let main = stack.runs_for(&main_ns).await;
            let cleared = stack.runs_for(&cleared_ns).await;
            (!main.is_empty() && !cleared.is_empty()).then(|| (main[0].clone(), cleared[0].clone()))
        })
        .await;
    for run in [&main_run, &cleared_run] {
        assert_eq!(run.status.phase, Phase::AwaitingApproval, "{run:#?}");
        assert_eq!(run.spec.playbook, "cnpg-instance-lost");
        assert_eq!(run.spec.requested_by, "alertmanager");
        let alert = run.spec.trigger.alert.as_ref().expect("the run names its alert");
        assert_eq!(alert.alertname, ALERT);
        assert_eq!(alert.fingerprint.len(), 16, "Alertmanager's fingerprint: {alert:?}");
        assert_eq!(run.spec.trigger.name.as_deref(), Some("postgres"));
        assert!(run.spec.plan.steps.iter().any(|s| s.id == "promote"), "{:#?}", run.spec.plan);
    }

    // 2. Repeats (repeat_interval) and the HA peer's copies start nothing new.
    let duplicates = "lifeboat_alertmanager_alerts_total{result=\"duplicate\"} ";
    stack.wait_for("at least 6 duplicate deliveries", || async { (stack.metric(duplicates).await >= 6.0).then_some(()) }).await;
    assert_eq!(stack.runs_for(&main_ns).await.len(), 1, "one run for {main_ns} however often the alert came");
    assert_eq!(stack.runs_for(&cleared_ns).await.len(), 1, "one run for {cleared_ns}");
    assert_eq!(stack.metric("lifeboat_alertmanager_requests_total{result=\"rejected\"} ").await, 0.0, "Alertmanager's bearer credentials were accepted");

    // The run is posted to Discord with its buttons, bound to its plan hash.
    let approve_id = format!("lb:a:{}:{}", main_run.id, main_run.spec.plan_hash);
    let message = stack.wait_for("the run's approval message on Discord", || async { discord.messages().into_iter().find(|m| m.custom_ids().contains(&approve_id)) }).await;
    assert!(message.text().contains(&main_ns) && message.text().contains("postgres-2"), "{}", message.text());

    // 3. The condition clears before approval (the operator failed over by
    //    itself): the resolved notification marks the run, which stays unapproved.
    set_status(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&cleared_ns), "postgres", json!({"currentPrimary": "postgres-2", "targetPrimary": "postgres-2"})).await;
    let cleared = stack
        .wait_for("the resolved alert to mark the run", || async {
            let run = stack.journal.get(&cleared_run.id).await.unwrap().unwrap();
            run.status.message.as_deref().is_some_and(|m| m.contains("condition cleared")).then_some(run)
        })
        .await;
    assert_eq!(cleared.status.phase, Phase::AwaitingApproval, "a cleared condition never starts or ends a run by itself");

    // 4. The plan changed after it was recorded (postgres-2 stopped being
    //    ready, so the playbook would now promote postgres-3): an approval
    //    naming the new plan's hash is refused; so is a wrong token.
    set_status(&client, "v1", "Pod", Some(&main_ns), "postgres-2", running(json!({}), false)["status"].clone()).await;
    let changed = plan_now(&client, &main_ns).await;
    assert_ne!(changed.hash(), main_run.spec.plan_hash, "the plan changed with the state");
    assert!(changed.steps[0].title.contains("postgres-3"), "{}", changed.render_text());
    let (code, body) = approve(&stack, &main_run.id, &changed.hash(), API_TOKEN).await;
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("look at the plan again"), "{body}");
    let (code, _) = approve(&stack, &main_run.id, &main_run.spec.plan_hash, "not-the-api-token-at-all").await;
    assert_eq!(code, 401);
    // The same over Discord: a click naming the changed plan, and one by someone who is no approver.
    let stale_click = format!("lb:a:{}:{}", main_run.id, changed.hash());
    assert_eq!(discord.click(&interactions, &message.id, &stale_click, APPROVER, &[]).await["type"], 4, "refused");
    assert_eq!(discord.click(&interactions, &message.id, &approve_id, "1000000000000000999", &[]).await["type"], 4, "refused");
    assert_eq!(stack.journal.get(&main_run.id).await.unwrap().unwrap().status.phase, Phase::AwaitingApproval);
    set_status(&client, "v1", "Pod", Some(&main_ns), "postgres-2", running(json!({}), true)["status"].clone()).await;

    // 5. Approved on Discord for the plan it recorded, the run executes against the apiserver.
    assert_eq!(discord.click(&interactions, &message.id, &approve_id, APPROVER, &[]).await["type"], 7, "the message is updated in place");
    assert_eq!(stack.journal.get(&main_run.id).await.unwrap().unwrap().status.phase, Phase::Approved);
    let pvcs = api_for(&client, "v1", "PersistentVolumeClaim", Some(&main_ns)).await;
    let lost_claim = pvcs.get("postgres-1").await.unwrap().metadata.uid;
    let operator = tokio::spawn(play_cnpg(client.clone(), main_ns.clone(), main_healthy));
    let done = stack
        .wait_for("the approved run to finish", || async {
            let run = stack.journal.get(&main_run.id).await.unwrap().unwrap();
            run.is_terminal().then_some(run)
        })
        .await;
    operator.abort();
    assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}\n{}", done.status, stack.logs());
    assert!(done.status.approved_by.as_deref().is_some_and(|by| by.contains(APPROVER)), "{:?}", done.status.approved_by);
    assert_eq!(done.status.leader.as_deref(), Some("lifeboat-e2e"));
    assert!(done.status.steps.iter().all(|s| s.state == StepState::Succeeded), "{:#?}", done.status.steps);
    let cluster = get(&client, "postgresql.cnpg.io/v1", "Cluster", Some(&main_ns), "postgres").await;
    assert_eq!(cluster["status"]["currentPrimary"], "postgres-2");
    // CNPG v1.30.0 re-creates the lost instance under its own name (generateNodeSerial), on a new claim.
    let claim = pvcs.get_opt("postgres-1").await.unwrap();
    assert!(claim.is_none_or(|c| c.metadata.uid != lost_claim), "the lost instance's PVC is gone");

    // Discord followed it: the message edited live to the outcome, every step
    // and the summary replied to it, nothing secret, nothing Discord refused.
    let replies = |messages: &[Message]| -> Vec<Message> { messages.iter().filter(|m| m.reply_to.as_deref() == Some(message.id.as_str())).cloned().collect() };
    stack.wait_for("the summary on Discord", || async { replies(&discord.messages()).iter().any(|r| r.content.contains("Succeeded")).then_some(()) }).await;
    let replied: Vec<String> = replies(&discord.messages()).iter().map(|r| r.content.clone()).collect();
    assert!(replied[0].contains("approved by"), "{replied:#?}");
    for step in &done.spec.plan.steps {
        assert!(replied.iter().any(|r| r.contains(&step.title)), "no reply for step {:?}: {replied:#?}", step.title);
    }
    let edited = discord.message(&message.id);
    assert!(edited.content.contains("Succeeded"), "{}", edited.content);
    assert!(edited.edits.len() >= 3, "approved, running, done: {:#?}", edited.edits);
    assert!(!edited.custom_ids().contains(&approve_id), "no Approve button on a finished run");
    assert_eq!(discord.violations(), 0);
    for request in discord.requests() {
        for secret in [BOT_TOKEN, WEBHOOK_TOKEN, API_TOKEN] {
            assert!(!request.body.contains(secret), "a secret reached Discord: {}", request.body);
        }
    }

    // 6. Afterwards the alert resolves; its last deliveries still start nothing.
    stack
        .wait_for("the alert for the recovered cluster to resolve", || async {
            let text = reqwest::get(format!("{}/metrics", stack.lifeboat_url)).await.unwrap().text().await.unwrap();
            let firing = text.lines().any(|l| l.starts_with("lifeboat_cnpg_primary_on_lost_node{") && l.contains(&format!("namespace=\"{main_ns}\"")) && l.ends_with(" 1"));
            (!firing).then_some(())
        })
        .await;
    assert_eq!(stack.runs_for(&main_ns).await.len(), 1, "{:#?}", stack.runs_for(&main_ns).await);
    assert_eq!(stack.runs_for(&cleared_ns).await.len(), 1);
}
