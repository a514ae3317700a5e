//! Discord's Gateway transport against the fake Gateway and the fake
//! Discord REST API, with the journal on the real apiserver: an approval
//! clicked over the Gateway runs the plan; a connection that drops, goes
//! zombie, is told to reconnect or whose session is invalidated comes back
//! without losing or repeating an interaction; an invalid token is not
//! retried; the Lease leader holds the connection and a new leader takes it
//! over; a non-approver's or forged interaction changes nothing; the
//! `/lifeboat` slash commands answer.

mod support;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeboat::config::{Config, DiscordApprovers, Dur};
use lifeboat::discord::client::DiscordClient;
use lifeboat::discord::gateway::commands::SlashCommands;
use lifeboat::discord::gateway::{session, Gateway};
use lifeboat::discord::interactions::Interactions;
use lifeboat::discord::notifier::Notifier;
use lifeboat::journal::{Mode, Phase, RunRecord, RunTrigger};
use serde_json::{json, Value};
use support::controlplane::control_plane;
use support::fake_discord::{FakeDiscord, BOT_TOKEN, CHANNEL_ID};
use support::fake_gateway::FakeGateway;
use support::k8s::get;
use support::live_app;

const APPROVER: &str = "1000000000000000001";
const APPROVER_ROLE: &str = "2000000000000000002";
const STRANGER: &str = "3000000000000000003";
const GUILD: &str = "1100000000000000001";

/// The app of [`support::live_app`] and the fakes.
struct Scene {
    app: live_app::Scene,
    fake: FakeDiscord,
    gateway: FakeGateway,
}

impl std::ops::Deref for Scene {
    type Target = live_app::Scene;
    fn deref(&self) -> &live_app::Scene {
        &self.app
    }
}

async fn scene(prefix: &str) -> Scene {
    let app = live_app::scene(prefix).await;
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let gateway = FakeGateway::start(Duration::from_millis(500)).await;
    fake.set_gateway_url(&gateway.url);
    Scene { app, fake, gateway }
}

fn bot(s: &Scene) -> Arc<DiscordClient> {
    Arc::new(DiscordClient::bot(&s.fake.api_base, BOT_TOKEN, CHANNEL_ID))
}

fn interactions(s: &Scene) -> Arc<Interactions> {
    Arc::new(Interactions {
        journal: s.journal.clone(),
        public_key: None,
        approvers: DiscordApprovers { users: vec![APPROVER.into()], roles: vec![APPROVER_ROLE.into()] },
        channel_id: Some(CHANNEL_ID.into()),
        approval_ttl: Dur::hours(1),
        edit_interval: Dur::secs(1),
        client: bot(s),
        answer_within: Duration::from_secs(2),
        seen: Default::default(),
    })
}

fn lifeboat_gateway(s: &Scene, interactions: Arc<Interactions>) -> Gateway {
    Gateway {
        token: BOT_TOKEN.into(),
        client: bot(s),
        interactions,
        commands: Some(SlashCommands {
            guild_id: GUILD.into(),
            cluster: Some((s.client.clone(), s.ns.clone())),
            triage: Some(Arc::new(|| "node worker-2: NotReady for 7m\nCNPG database/postgres: primary on worker-2".to_string())),
        }),
    }
}

/// A run awaiting approval and its message (with buttons) in the channel.
async fn run_with_message(s: &Scene) -> (RunRecord, String) {
    let run = s.journal.create(&RunRecord::new(&live_app::plan(&s.ns, "app"), RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
    Notifier::new(s.journal.clone(), bot(s), Dur::hours(1), Dur::secs(1)).reconcile_once().await.unwrap();
    let message = s.journal.get(&run.id).await.unwrap().unwrap().status.notification.unwrap().message_id.unwrap();
    (run, message)
}

fn button(s: &Scene, message: &str, label: &str) -> String {
    let m = s.fake.message(message);
    let i = m.button_labels().iter().position(|l| l == label).unwrap_or_else(|| panic!("no {label} button: {:?}", m.button_labels()));
    m.custom_ids()[i].clone()
}

/// Discord delivers `payload` over the Gateway; returns its callback body.
async fn deliver(s: &Scene, payload: &Value, message_id: &str) -> Value {
    s.fake.expect_interaction(payload, message_id);
    s.gateway.dispatch_interaction(payload);
    callback_of(s, payload).await
}

async fn callback_of(s: &Scene, payload: &Value) -> Value {
    let id = payload["id"].as_str().unwrap().to_string();
    let found = |s: &Scene| s.fake.callbacks().into_iter().find(|(i, _)| *i == id).map(|(_, body)| body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(body) = found(s) {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "no callback for interaction {id}; violations {:?}", s.gateway.violations());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn callbacks_for(s: &Scene, payload: &Value) -> usize {
    s.fake.callbacks().iter().filter(|(i, _)| Some(i.as_str()) == payload["id"].as_str()).count()
}

async fn phase(s: &Scene, id: &str) -> Phase {
    s.journal.get(id).await.unwrap().unwrap().status.phase
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_clicked_over_the_gateway_runs_the_plan() {
    let s = scene("gw-approve").await;
    let task = lifeboat_gateway(&s, interactions(&s)).spawn(None);
    s.gateway.wait_until("an identified session", FakeGateway::session_held).await;
    let (run, message) = run_with_message(&s).await;

    let click = s.fake.click_payload(&message, &button(&s, &message, "Approve"), APPROVER, &[]);
    let answer = deliver(&s, &click, &message).await;
    assert_eq!(answer["type"], 7, "the button's message re-rendered: {answer}");
    assert!(s.fake.message(&message).content.contains("Approved"), "{}", s.fake.message(&message).content);
    let approved = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!(approved.status.phase, Phase::Approved);
    assert!(approved.status.approved_by.as_deref().unwrap().starts_with(&format!("discord:user{APPROVER} ({APPROVER})")));
    assert_eq!(approved.status.approved_hash.as_deref(), Some(run.spec.plan_hash.as_str()));

    live_app::endpoints_ready(&s.app).await;
    let done = live_app::remediator(&s.app).execute(approved, None).await.unwrap();
    assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
    let config_map = get(&s.client, "v1", "ConfigMap", Some(&s.ns), "app-config").await;
    assert_eq!(config_map["metadata"]["annotations"]["lifeboat.dev/incident"], "node-loss");
    assert_eq!(get(&s.client, "apps/v1", "Deployment", Some(&s.ns), "app").await["spec"]["replicas"], 0);

    // Interactions need no intent; the heartbeat went on meanwhile.
    s.gateway.wait_until("two heartbeats", |g| g.heartbeats() >= 2).await;
    assert_eq!(s.gateway.identify_payloads()[0]["intents"], 0);
    task.stop().await;
    assert_eq!(s.gateway.client_closes(), vec![Some(1000)], "a clean close on shutdown");
    s.gateway.wait_until("the connection closed", |g| g.open_connections() == 0).await;
    assert_eq!(s.gateway.violations(), Vec::<String>::new());
    assert_eq!((s.gateway.identifies(), s.fake.refused_callbacks(), s.fake.violations()), (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_run_resumes_without_losing_or_repeating_an_interaction() {
    let s = scene("gw-resume").await;
    let task = lifeboat_gateway(&s, interactions(&s)).spawn(None);
    s.gateway.wait_until("an identified session", FakeGateway::session_held).await;
    let (run, message) = run_with_message(&s).await;
    let click = s.fake.click_payload(&message, &button(&s, &message, "Approve"), APPROVER, &[]);
    assert_eq!(deliver(&s, &click, &message).await["type"], 7);
    let show = button(&s, &message, "Show commands");
    // The run is executing while the connection fails in three ways; an
    // interaction sent during each failure arrives on the resumed session.
    let executing = tokio::spawn({
        let (remediator, approved) = (live_app::remediator(&s.app), s.journal.get(&run.id).await.unwrap().unwrap());
        async move { remediator.execute(approved, None).await.unwrap() }
    });
    // Running: the last step waits for the Service's endpoint.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while phase(&s, &run.id).await != Phase::Running {
        assert!(tokio::time::Instant::now() < deadline, "the run never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut sent = vec![];
    for (failure, expected_resumes) in [("drop", 1), ("zombie", 2), ("reconnect", 3)] {
        match failure {
            "drop" => s.gateway.drop_connections(),
            "zombie" => s.gateway.go_silent(),
            _ => s.gateway.send_reconnect(),
        }
        let payload = s.fake.click_payload(&message, &show, STRANGER, &[]);
        s.fake.expect_interaction(&payload, &message);
        s.gateway.dispatch_interaction(&payload);
        s.gateway.wait_until(failure, |g| g.resumes() >= expected_resumes).await;
        let answer = callback_of(&s, &payload).await;
        assert_eq!(answer["type"], 4, "{failure}: {answer}");
        assert!(answer["data"]["content"].as_str().unwrap().contains(&run.spec.plan_hash), "{answer}");
        sent.push(payload);
    }
    // Delivered again (Discord's delivery is at least once): answered once.
    s.gateway.dispatch_interaction(&sent[0]);
    let marker = s.fake.click_payload(&message, &show, STRANGER, &[]);
    deliver(&s, &marker, &message).await;
    for payload in &sent {
        assert_eq!(callbacks_for(&s, payload), 1, "answered exactly once: {payload}");
    }
    assert_eq!(callbacks_for(&s, &click), 1);
    assert_eq!(phase(&s, &run.id).await, Phase::Running, "all of it happened mid-run");
    live_app::endpoints_ready(&s.app).await;
    let done = executing.await.unwrap();
    assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);
    assert_eq!(s.gateway.identifies(), 1, "every failure was resumed, none re-identified");
    assert!(s.gateway.client_closes().iter().any(|c| !matches!(c, Some(1000 | 1001))), "the client closed resumably (op 7 → 4000): {:?}", s.gateway.client_closes());
    task.stop().await;
    assert_eq!(s.gateway.violations(), Vec::<String>::new());
    assert_eq!(s.fake.refused_callbacks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_session_identifies_again_and_an_invalid_token_is_not_retried() {
    let s = scene("gw-invalid").await;
    let task = lifeboat_gateway(&s, interactions(&s)).spawn(None);
    s.gateway.wait_until("an identified session", FakeGateway::session_held).await;
    s.gateway.send_invalid_session(true);
    s.gateway.wait_until("a resume after a resumable Invalid Session", |g| g.resumes() == 1).await;
    s.gateway.send_invalid_session(false);
    s.gateway.wait_until("a second Identify", |g| g.identifies() == 2 && g.session_held()).await;
    let (_, message) = run_with_message(&s).await;
    let payload = s.fake.click_payload(&message, &button(&s, &message, "Show commands"), STRANGER, &[]);
    assert_eq!(deliver(&s, &payload, &message).await["type"], 4, "the new session delivers");
    task.stop().await;

    // A token Discord refuses (4004) ends the session for good.
    s.gateway.set_token("a-reset-token");
    let gateway = Arc::new(lifeboat_gateway(&s, interactions(&s)));
    let bot_answer = bot(&s).gateway_bot().await.unwrap();
    let (_leading, stop) = tokio::sync::watch::channel(false);
    let ended = session::hold(&gateway, &bot_answer, &mut None, &mut stop.clone()).await;
    assert_eq!(ended, session::Ended::Fatal);
    assert_eq!(s.gateway.server_closes(), vec![4004]);
    assert_eq!(s.gateway.identifies(), 2, "the refused Identify was not repeated");
    assert_eq!(s.gateway.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_leader_holds_the_connection_and_a_new_leader_takes_it_over() {
    use lifeboat::leader::{spawn, LeaderConfig};
    let s = scene("gw-leader").await;
    let lease = |identity: &str| LeaderConfig {
        lease_duration: Duration::from_secs(3),
        renew_interval: Duration::from_millis(500),
        retry_interval: Duration::from_millis(200),
        ..LeaderConfig::new(s.ns.clone(), identity)
    };
    let first = spawn(s.client.clone(), lease("replica-a"));
    first.wait_until_leader().await;
    let second = spawn(s.client.clone(), lease("replica-b"));
    let (a, b) = (interactions(&s), interactions(&s));
    let task_a = lifeboat_gateway(&s, a.clone()).spawn(Some(first.subscribe()));
    let task_b = lifeboat_gateway(&s, b.clone()).spawn(Some(second.subscribe()));
    s.gateway.wait_until("the leader's session", FakeGateway::session_held).await;
    let (_, message) = run_with_message(&s).await;
    let show = button(&s, &message, "Show commands");
    deliver(&s, &s.fake.click_payload(&message, &show, STRANGER, &[]), &message).await;
    assert_eq!((a.seen.len(), b.seen.len(), s.gateway.identifies(), s.gateway.open_connections()), (1, 0, 1, 1), "only the leader connects");

    // The leader steps down: its connection closes (1000), the new leader identifies.
    first.release().await;
    second.wait_until_leader().await;
    s.gateway.wait_until("the new leader's session", |g| g.identifies() == 2 && g.session_held()).await;
    s.gateway.wait_until("the old connection closed", |g| g.open_connections() == 1).await;
    assert_eq!(s.gateway.client_closes(), vec![Some(1000)]);
    deliver(&s, &s.fake.click_payload(&message, &show, STRANGER, &[]), &message).await;
    assert_eq!((a.seen.len(), b.seen.len()), (1, 1), "the new leader answers");

    task_a.stop().await;
    task_b.stop().await;
    second.release().await;
    assert_eq!(s.gateway.violations(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_approver_or_forged_interaction_changes_nothing() {
    let s = scene("gw-refuse").await;
    let task = lifeboat_gateway(&s, interactions(&s)).spawn(None);
    s.gateway.wait_until("an identified session", FakeGateway::session_held).await;
    let (run, message) = run_with_message(&s).await;
    let approve = button(&s, &message, "Approve");
    let before = s.fake.message(&message).edits.len();

    let stranger = deliver(&s, &s.fake.click_payload(&message, &approve, STRANGER, &["4000000000000000004"]), &message).await;
    assert!(stranger["data"]["content"].as_str().unwrap().contains("not a lifeboat approver"), "{stranger}");
    let forged_hash = approve.replace(&format!(":{}", run.spec.plan_hash), &format!(":{}", "0".repeat(run.spec.plan_hash.len())));
    assert_ne!(forged_hash, approve);
    let forged = deliver(&s, &s.fake.click_payload(&message, &forged_hash, APPROVER, &[]), &message).await;
    assert!(forged["data"]["content"].as_str().unwrap().contains("Refused"), "{forged}");
    let mut elsewhere = s.fake.click_payload(&message, &approve, APPROVER, &[]);
    elsewhere["channel_id"] = json!("1200000000000000099");
    let elsewhere = deliver(&s, &elsewhere, &message).await;
    assert!(elsewhere["data"]["content"].as_str().unwrap().contains("own channel"), "{elsewhere}");
    let kill = s.fake.command_payload(GUILD, "kill-switch", &[("state", "on")], STRANGER, &[]);
    let kill = deliver(&s, &kill, "").await;
    assert!(kill["data"]["content"].as_str().unwrap().contains("not a lifeboat approver"), "{kill}");

    for answer in [&stranger, &forged, &elsewhere, &kill] {
        assert_eq!((answer["type"].as_u64(), answer["data"]["flags"].as_u64()), (Some(4), Some(64)), "ephemeral refusal: {answer}");
    }
    assert_eq!(phase(&s, &run.id).await, Phase::AwaitingApproval);
    assert_eq!(s.fake.message(&message).edits.len(), before, "the run's message is unchanged");
    let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(s.client.clone(), &s.ns);
    assert!(maps.get_opt(lifeboat::act::kill_switch::NAME).await.unwrap().is_none(), "no kill switch");
    task.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slash_commands_are_registered_and_answer() {
    let s = scene("gw-slash").await;
    let task = lifeboat_gateway(&s, interactions(&s)).spawn(None);
    s.gateway.wait_until("an identified session", FakeGateway::session_held).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while s.fake.guild_commands(GUILD).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the commands were never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let registered = s.fake.guild_commands(GUILD).unwrap();
    let subs: Vec<&str> = registered[0]["options"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!((registered[0]["name"].as_str(), subs), (Some("lifeboat"), vec!["runs", "show", "triage", "kill-switch"]));
    let (run, _) = run_with_message(&s).await;
    let command = |sub: &str, options: &[(&str, &str)], user: &str| s.fake.command_payload(GUILD, sub, options, user, &[]);
    let content = |answer: &Value| answer["data"]["content"].as_str().unwrap_or_default().to_string();
    let ephemeral = |answer: &Value| answer["type"] == 4 && answer["data"]["flags"] == 64;

    let runs = deliver(&s, &command("runs", &[], STRANGER), "").await;
    assert!(ephemeral(&runs) && content(&runs).contains(&run.id) && content(&runs).contains("AwaitingApproval"), "{runs}");
    let show = deliver(&s, &command("show", &[("id", &run.id)], STRANGER), "").await;
    assert!(ephemeral(&show) && content(&show).contains(&run.spec.plan_hash) && content(&show).contains("Scale the app to 0"), "{show}");
    let missing = deliver(&s, &command("show", &[("id", "no-such-run")], STRANGER), "").await;
    assert!(ephemeral(&missing) && content(&missing).contains("no run `no-such-run`"), "{missing}");
    let triage = deliver(&s, &command("triage", &[], STRANGER), "").await;
    assert!(ephemeral(&triage) && content(&triage).contains("worker-2: NotReady"), "{triage}");
    let other_guild = deliver(&s, &s.fake.command_payload("1100000000000000099", "runs", &[], APPROVER, &[]), "").await;
    assert!(ephemeral(&other_guild) && !content(&other_guild).contains(&run.id), "{other_guild}");

    let maps: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(s.client.clone(), &s.ns);
    let on = deliver(&s, &s.fake.command_payload(GUILD, "kill-switch", &[("state", "on")], "5000000000000000005", &[APPROVER_ROLE]), "").await;
    assert!(on["type"] == 4 && on["data"]["flags"].is_null() && content(&on).contains("Kill switch ON"), "announced in the channel: {on}");
    let engaged = maps.get_opt(lifeboat::act::kill_switch::NAME).await.unwrap().expect("the kill switch ConfigMap");
    assert!(engaged.data.unwrap()["engagedBy"].contains("5000000000000000005"));
    let off = deliver(&s, &command("kill-switch", &[("state", "off")], APPROVER), "").await;
    assert!(content(&off).contains("Kill switch off"), "{off}");
    assert!(maps.get_opt(lifeboat::act::kill_switch::NAME).await.unwrap().is_none());
    task.stop().await;
    assert_eq!(s.gateway.violations(), Vec::<String>::new());
    assert_eq!((s.fake.refused_callbacks(), s.fake.violations()), (0, 0));
}

#[test]
fn the_transport_is_validated() {
    let bot = "discord:\n  botTokenFile: /t\n  channelId: \"1\"\n  approvers: {users: [\"1\"]}\n";
    let gateway = Config::parse(bot).unwrap();
    assert_eq!(gateway.discord.transport, lifeboat::config::DiscordTransport::Gateway, "the default for bot mode; no public key needed");
    Config::parse(&format!("{bot}  guildId: \"{GUILD}\"\n")).unwrap();
    for (extra, expected) in [
        ("  transport: http\n", "discord.publicKey: bot mode needs the application's public key"),
        ("  transport: websocket\n", "unknown variant `websocket`"),
        ("  listen: 0.0.0.0:9848\n", "discord.listen: the Gateway transport has no endpoint"),
        ("  guildId: my-server\n", "discord.guildId: \"my-server\" is not a Discord id"),
        ("  transport: http\n  publicKeyFile: /k\n  guildId: \"5\"\n", "discord.guildId: the slash commands come with the Gateway transport"),
    ] {
        let e = Config::parse(&format!("{bot}{extra}")).expect_err(extra);
        assert!(e.contains(expected), "{extra}: {e}");
    }
}

/// The setup of docs/discord-gateway.md, followed on the fakes: `lifeboat
/// serve` with a bot token file, channel, guild and approvers (no public key,
/// no endpoint) and remediation on. The Lease leader connects, registers the
/// commands, posts the run; an approval over the Gateway runs it; SIGTERM
/// closes the connection with 1000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_documented_setup_approves_over_the_gateway_and_closes_on_sigterm() {
    use support::process::{free_port, Process};
    let s = scene("gw-serve").await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    control_plane().write_admin_kubeconfig(&kubeconfig);
    std::fs::write(dir.path().join("bot-token"), format!("{BOT_TOKEN}\n")).unwrap();
    let config = format!(
        "listen: 127.0.0.1:{}\nremediation:\n  execute: true\n  namespace: {}\n\
         discord:\n  botTokenFile: {}\n  channelId: \"{CHANNEL_ID}\"\n  guildId: \"{GUILD}\"\n  approvers:\n    users: [\"{APPROVER}\"]\n    roles: [\"{APPROVER_ROLE}\"]\n  apiBase: {}\n  editInterval: 1s\n",
        free_port(),
        s.ns,
        dir.path().join("bot-token").display(),
        s.fake.api_base
    );
    std::fs::write(dir.path().join("lifeboat.yaml"), &config).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"));
    command.args(["serve", "--config"]).arg(dir.path().join("lifeboat.yaml")).env("KUBECONFIG", &kubeconfig).env("POD_NAME", "lifeboat-gateway").env("LIFEBOAT_LOG", "info");
    let serve = Process::spawn("lifeboat serve", command, &dir.path().join("lifeboat.log"));

    s.gateway.wait_until("the leader's session", FakeGateway::session_held).await;
    let run = s.journal.create(&RunRecord::new(&live_app::plan(&s.ns, "app"), RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
    s.fake.wait_until("the run's message with its buttons", |ms| ms.iter().any(|m| m.custom_ids().len() == 3)).await;
    assert!(s.fake.guild_commands(GUILD).is_some(), "the commands are registered when the session is ready");
    let message = s.fake.messages()[0].id.clone();
    live_app::endpoints_ready(&s.app).await;
    let click = s.fake.click_payload(&message, &button(&s, &message, "Approve"), APPROVER, &[]);
    assert_eq!(deliver(&s, &click, &message).await["type"], 7, "{}", serve.log_tail(30));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while phase(&s, &run.id).await != Phase::Succeeded {
        assert!(tokio::time::Instant::now() < deadline, "the approved run did not succeed\n{}", serve.log_tail(40));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    serve.terminate();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while serve.exited().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "still running after SIGTERM\n{}", serve.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(s.gateway.client_closes(), vec![Some(1000)], "{}", serve.log_tail(30));
    assert_eq!((s.gateway.identifies(), s.gateway.violations()), (1, Vec::<String>::new()));
    assert_eq!(s.fake.refused_callbacks(), 0);
}
