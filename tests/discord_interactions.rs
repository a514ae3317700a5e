//! `POST /discord/interactions` against the fake Discord, with a directory
//! journal: signatures (PING, forged, altered, missing, wrong key, replayed
//! late → 401), and button clicks: approvers by user or role approve the
//! exact plan hash, anyone else gets an ephemeral refusal, a changed plan or
//! an expired request is refused, Reject aborts, Show commands answers
//! ephemerally, and a slow answer is deferred and followed up.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ed25519_dalek::SigningKey;
use lifeboat::config::{DiscordApprovers, Dur};
use lifeboat::discord::client::DiscordClient;
use lifeboat::discord::interactions::{parse_public_key, routes, Interactions};
use lifeboat::discord::notifier::Notifier;
use lifeboat::journal::{AlertRef, Journal, Mode, Phase, RunRecord, RunTrigger};
use serde_json::json;
use support::fake_discord::{FakeDiscord, BOT_TOKEN, CHANNEL_ID};

const APPROVER: &str = "1000000000000000001";
const APPROVER_ROLE: &str = "2000000000000000002";
const STRANGER: &str = "3000000000000000003";

struct Setup {
    fake: FakeDiscord,
    endpoint: String,
    journal: Arc<Journal>,
    notifier: Notifier,
    _dir: tempfile::TempDir,
}

fn example_plan() -> lifeboat::plan::Plan {
    let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    let snap = lifeboat::snapshot::Snapshot::build(state, &Default::default(), &Default::default());
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    lifeboat::plan::playbooks::plan("cnpg-instance-lost", &snap.state, &snap.findings, &trigger).unwrap()
}

fn trigger() -> RunTrigger {
    RunTrigger {
        namespace: Some("database".into()),
        name: Some("postgres".into()),
        node: None,
        alert: Some(AlertRef { fingerprint: "5f1c0ffee0ddba11".into(), starts_at: Utc::now(), alertname: "LifeboatCnpgPrimaryOnLostNode".into() }),
    }
}

/// lifeboat's endpoint verifying with `public_key`, answering within `answer_within`.
async fn setup_with(public_key: &str, answer_within: Duration) -> Setup {
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let client = Arc::new(DiscordClient::bot(&fake.api_base, BOT_TOKEN, CHANNEL_ID));
    let interactions = Interactions {
        journal: journal.clone(),
        public_key: Some(parse_public_key(public_key).unwrap()),
        approvers: DiscordApprovers { users: vec![APPROVER.into()], roles: vec![APPROVER_ROLE.into()] },
        channel_id: Some(CHANNEL_ID.into()),
        approval_ttl: Dur::hours(1),
        edit_interval: Dur::secs(15),
        client: client.clone(),
        answer_within,
        seen: Default::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/discord/interactions", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes(Arc::new(interactions))).await });
    let notifier = Notifier::new(journal.clone(), client, Dur::hours(1), Dur::secs(15));
    Setup { fake, endpoint, journal, notifier, _dir: dir }
}

async fn setup() -> Setup {
    let fake_key = hex::encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes());
    setup_with(&fake_key, Duration::from_secs(2)).await
}

/// A run awaiting approval, requested at `requested_at`, and its message in the channel.
async fn run_with_message(s: &mut Setup, requested_at: chrono::DateTime<Utc>) -> (RunRecord, String) {
    let run = s.journal.create(&RunRecord::new(&example_plan(), trigger(), Mode::Approve, "alertmanager", requested_at)).await.unwrap();
    assert_eq!(run.status.phase, Phase::AwaitingApproval);
    s.notifier.reconcile_once().await.unwrap();
    let message = s.journal.get(&run.id).await.unwrap().unwrap().status.notification.unwrap().message_id.unwrap();
    (run, message)
}

fn button(s: &Setup, message: &str, label: &str) -> String {
    let m = s.fake.message(message);
    let i = m.button_labels().iter().position(|l| l == label).unwrap_or_else(|| panic!("no {label} button: {:?}", m.button_labels()));
    m.custom_ids()[i].clone()
}

async fn phase(s: &Setup, id: &str) -> Phase {
    s.journal.get(id).await.unwrap().unwrap().status.phase
}

#[tokio::test]
async fn ping_is_answered_and_every_bad_signature_is_401() {
    let s = setup().await;
    let ping = serde_json::to_vec(&json!({"id": "1", "application_id": "1", "type": 1, "token": "t", "version": 1})).unwrap();
    let (code, body) = s.fake.post_signed(&s.endpoint, &serde_json::from_slice(&ping).unwrap()).await;
    assert_eq!((code, serde_json::from_str::<serde_json::Value>(&body).unwrap()), (200, json!({"type": 1})));

    let now = Utc::now().timestamp().to_string();
    let good = FakeDiscord::sign(&s.fake.key, &now, &ping);
    let forger = SigningKey::from_bytes(&[9u8; 32]);
    let forged = FakeDiscord::sign(&forger, &now, &ping);
    let altered = serde_json::to_vec(&json!({"id": "1", "application_id": "1", "type": 1, "token": "u", "version": 1})).unwrap();
    let old = (Utc::now().timestamp() - 3600).to_string();
    let replayed_late = FakeDiscord::sign(&s.fake.key, &old, &ping);
    type Case<'a> = (&'a str, &'a [u8], Option<&'a str>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("forged signature", &ping, Some(&forged), Some(&now)),
        ("altered body, same signature", &altered, Some(&good), Some(&now)),
        ("other timestamp, same signature", &ping, Some(&good), Some("1700000000")),
        ("missing signature", &ping, None, Some(&now)),
        ("missing timestamp", &ping, Some(&good), None),
        ("missing both", &ping, None, None),
        ("signature not hex", &ping, Some("zz"), Some(&now)),
        ("signature too short", &ping, Some(&good[..64]), Some(&now)),
        ("timestamp not a number", &ping, Some(&good), Some("yesterday")),
        // `now - sent_at` overflows an i64 here: refused, not a panicking handler.
        ("timestamp i64::MIN", &ping, Some(&good), Some("-9223372036854775808")),
        ("validly signed an hour ago (replay)", &ping, Some(&replayed_late), Some(&old)),
    ];
    for (what, body, signature, timestamp) in cases {
        let (code, _) = FakeDiscord::post_raw(&s.endpoint, body, signature, timestamp).await;
        assert_eq!(code, 401, "{what}");
    }

    // lifeboat configured with another application's key refuses the fake's signatures.
    let other = setup_with(&hex::encode(forger.verifying_key().to_bytes()), Duration::from_secs(2)).await;
    let (code, _) = other.fake.post_signed(&other.endpoint, &serde_json::from_slice(&ping).unwrap()).await;
    assert_eq!(code, 401, "wrong public key");
    assert!(parse_public_key("abcd").is_err() && parse_public_key("not hex at all").is_err());
}

#[tokio::test]
async fn a_forged_approval_changes_nothing() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let payload = s.fake.click_payload(&message, &button(&s, &message, "Approve"), APPROVER, &[]);
    let body = serde_json::to_vec(&payload).unwrap();
    let now = Utc::now().timestamp().to_string();
    let forged = FakeDiscord::sign(&SigningKey::from_bytes(&[9u8; 32]), &now, &body);
    assert_eq!(FakeDiscord::post_raw(&s.endpoint, &body, Some(&forged), Some(&now)).await.0, 401);
    assert_eq!(phase(&s, &run.id).await, Phase::AwaitingApproval);
}

#[tokio::test]
async fn an_approver_approves_the_plan_hash_the_message_showed() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let approve = button(&s, &message, "Approve");
    assert!(approve.contains(&run.spec.plan_hash) && approve.contains(&run.id) && approve.len() <= 100, "{approve}");
    let answer = s.fake.click(&s.endpoint, &message, &approve, APPROVER, &[]).await;
    assert_eq!(answer["type"], 7, "{answer}");
    let stored = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.status.phase, Phase::Approved);
    assert_eq!(stored.status.approved_hash.as_deref(), Some(run.spec.plan_hash.as_str()));
    let by = stored.status.approved_by.unwrap();
    assert!(by.starts_with("discord:") && by.contains(APPROVER), "{by}");
    let m = s.fake.message(&message);
    assert!(m.content.contains("Approved"), "{}", m.content);
    assert!(!m.button_labels().contains(&"Approve".to_string()), "the buttons go once decided: {:?}", m.button_labels());
    // A second click on the old button is refused: the run is no longer awaiting approval.
    let again = s.fake.click(&s.endpoint, &message, &approve, APPROVER, &[]).await;
    assert_eq!(again["type"], 4);
    assert!(s.fake.ephemeral().last().unwrap().contains("nothing to approve"));
}

#[tokio::test]
async fn a_member_with_an_approver_role_approves() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    s.fake.click(&s.endpoint, &message, &button(&s, &message, "Approve"), STRANGER, &["42", APPROVER_ROLE]).await;
    assert_eq!(phase(&s, &run.id).await, Phase::Approved);
}

#[tokio::test]
async fn anyone_else_gets_an_ephemeral_refusal_and_the_run_still_waits() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    for verb in ["Approve", "Reject"] {
        let answer = s.fake.click(&s.endpoint, &message, &button(&s, &message, verb), STRANGER, &["42"]).await;
        assert_eq!(answer["type"], 4, "{answer}");
        assert_eq!(answer["data"]["flags"], 64);
        assert!(answer["data"]["content"].as_str().unwrap().contains("not a lifeboat approver"), "{answer}");
    }
    let stored = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.status.phase, Phase::AwaitingApproval);
    assert_eq!(stored.status.approved_by, None);
    assert!(s.fake.message(&message).button_labels().contains(&"Approve".to_string()), "the message is unchanged");
}

#[tokio::test]
async fn an_approval_of_another_plan_hash_is_refused_clearly() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let stale = format!("lb:a:{}:{}", run.id, "0123456789abcdef01234567");
    let answer = s.fake.click(&s.endpoint, &message, &stale, APPROVER, &[]).await;
    assert_eq!(answer["type"], 4, "{answer}");
    let text = answer["data"]["content"].as_str().unwrap();
    assert!(text.contains("0123456789abcdef01234567") && text.contains(&run.spec.plan_hash) && text.contains("plan changed"), "{text}");
    assert_eq!(phase(&s, &run.id).await, Phase::AwaitingApproval);
}

#[tokio::test]
async fn an_expired_approval_request_is_refused() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now() - chrono::Duration::hours(2)).await;
    assert!(!s.fake.message(&message).button_labels().contains(&"Approve".to_string()), "an expired request shows no Approve button");
    assert!(s.fake.message(&message).text().contains("expired"));
    // An Approve button from before the expiry:
    let old_button = format!("lb:a:{}:{}", run.id, run.spec.plan_hash);
    let answer = s.fake.click(&s.endpoint, &message, &old_button, APPROVER, &[]).await;
    assert_eq!(answer["type"], 4);
    assert!(answer["data"]["content"].as_str().unwrap().contains("approval window"), "{answer}");
    assert_eq!(phase(&s, &run.id).await, Phase::AwaitingApproval);
}

#[tokio::test]
async fn reject_aborts_the_run() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let answer = s.fake.click(&s.endpoint, &message, &button(&s, &message, "Reject"), APPROVER, &[]).await;
    assert_eq!(answer["type"], 7, "{answer}");
    let stored = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!(stored.status.phase, Phase::Aborted);
    assert!(stored.status.message.unwrap().contains(APPROVER));
    let m = s.fake.message(&message);
    assert!(m.content.contains("Aborted"), "{}", m.content);
    assert_eq!(m.button_labels(), vec!["Show commands".to_string()]);
}

#[tokio::test]
async fn show_commands_answers_only_the_clicker_with_the_kubectl_rendering() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let answer = s.fake.click(&s.endpoint, &message, &button(&s, &message, "Show commands"), STRANGER, &[]).await;
    assert_eq!(answer["type"], 4);
    assert_eq!(answer["data"]["flags"], 64);
    let text = answer["data"]["content"].as_str().unwrap();
    // Discord caps a message at 2000 characters: the steps shown are whole, the rest is behind `lifeboat runs show`.
    let shown: Vec<_> = run.spec.plan.steps.iter().filter(|step| text.contains(&format!(". {}\n", step.title))).collect();
    assert!(shown.len() == run.spec.plan.steps.len() || text.contains("All of it: `lifeboat runs show"), "{text}");
    for step in shown.iter().take(shown.len().saturating_sub(1)) {
        assert!(text.contains(&step.command().lines().next().unwrap().to_string()), "missing {}: {text}", step.id);
    }
    assert!(text.contains("kubectl cnpg promote postgres -n database"), "{text}");
    assert_eq!(phase(&s, &run.id).await, Phase::AwaitingApproval);
}

#[tokio::test]
async fn a_slow_answer_is_deferred_and_followed_up() {
    let fake_key = hex::encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes());
    let mut s = setup_with(&fake_key, Duration::ZERO).await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let answer = s.fake.click(&s.endpoint, &message, &button(&s, &message, "Approve"), APPROVER, &[]).await;
    assert_eq!(answer["type"], 6, "{answer}");
    s.fake.wait_until("the follow-up edit of the original message", |ms| ms.iter().any(|m| m.id == message && m.content.contains("Approved"))).await;
    assert_eq!(phase(&s, &run.id).await, Phase::Approved);
    let followup = s.fake.requests().into_iter().find(|r| r.path.ends_with("/messages/@original")).unwrap();
    assert_eq!(followup.status, 200);
    assert_eq!(followup.authorization, None, "follow-ups authenticate with the interaction token, not the bot token");

    // A refusal after a deferral arrives as an ephemeral follow-up.
    s.fake.click(&s.endpoint, &message, &button(&s, &message, "Show commands"), STRANGER, &[]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !s.fake.ephemeral().iter().any(|e| e.contains("kubectl")) {
        assert!(tokio::time::Instant::now() < deadline, "no ephemeral follow-up: {:?}", s.fake.requests());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for request in s.fake.requests() {
        assert!(!request.body.contains(BOT_TOKEN) && !request.path.contains(BOT_TOKEN), "the bot token leaked: {request:?}");
    }
}

#[test]
fn discord_config_is_validated_with_the_key_and_the_reason() {
    use lifeboat::config::Config;
    let key = hex::encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes());
    let ok = format!("discord:\n  botTokenFile: /s/bot-token\n  channelId: \"{CHANNEL_ID}\"\n  publicKey: {key}\n  approvers: {{users: [\"{APPROVER}\"]}}\n");
    Config::parse(&ok).unwrap();
    Config::parse("discord: {webhookUrlFile: /s/webhook-url}").unwrap();
    for (config, expected) in [
        ("discord: {botTokenFile: /t}", "discord.channelId: bot mode needs"),
        ("discord: {botTokenFile: /t, channelId: \"1\", publicKey: abcd, approvers: {users: [\"1\"]}}", "discord.publicKey: 2 bytes"),
        (&format!("discord: {{botTokenFile: /t, channelId: \"1\", publicKey: {key}}}"), "discord.approvers: name at least one"),
        ("discord: {botTokenFile: /t, webhookUrlFile: /w}", "choose bot mode"),
        ("discord: {webhookUrlFile: /w, channelId: \"#general\"}", "discord.channelId: \"#general\" is not a Discord id"),
        ("discord: {webhookUrlFile: /w, apiBase: \"ftp://x\"}", "discord.apiBase: scheme"),
        ("discord: {webhookUrlFile: /w, approvers: {roles: [admins]}}", "discord.approvers.roles: \"admins\""),
        ("discord: {webhookUrlFile: /w, editInterval: 0s}", "discord.editInterval"),
        ("discord: {webhookUrl: https://discord.com/api/webhooks/1/x}", "unknown field `webhookUrl`"),
    ] {
        let e = Config::parse(config).expect_err(config);
        assert!(e.contains(expected), "{config}: {e}");
    }
    // The webhook URL is checked when read, and the error never repeats it.
    let e = DiscordClient::webhook("https://discord.com/api/channels/1/secret-token", "https://discord.com/api/v10").err().unwrap();
    assert!(!e.contains("secret-token"), "{e}");
    assert!(DiscordClient::webhook("https://discord.com/api/webhooks/123/secret-token", "https://discord.com/api/v10").is_ok());
}

#[tokio::test]
async fn a_captured_click_sent_again_is_refused() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    // What an eavesdropper (or a misbehaving proxy) holds: the exact signed request.
    let payload = s.fake.click_payload(&message, &button(&s, &message, "Reject"), APPROVER, &[]);
    let body = serde_json::to_vec(&payload).unwrap();
    let now = Utc::now().timestamp().to_string();
    let signature = FakeDiscord::sign(&s.fake.key, &now, &body);
    let (code, first) = FakeDiscord::post_raw(&s.endpoint, &body, Some(&signature), Some(&now)).await;
    assert_eq!(code, 200, "{first}");
    assert_eq!(phase(&s, &run.id).await, Phase::Aborted);
    let (code, again) = FakeDiscord::post_raw(&s.endpoint, &body, Some(&signature), Some(&now)).await;
    assert_eq!(code, 401, "a replay within the signature window: {again}");
    assert!(again.contains("already answered"), "{again}");
    // Another interaction (a new id) is still served.
    let answer = s.fake.click(&s.endpoint, &message, &button(&s, &message, "Show commands"), STRANGER, &[]).await;
    assert_eq!(answer["type"], 4);
}

#[test]
fn remembered_interactions_are_bounded() {
    use lifeboat::discord::interactions::{Seen, SeenInteractions, MAX_CLOCK_SKEW_SECS, MAX_REMEMBERED};
    let seen = SeenInteractions::default();
    let t0 = 1_800_000_000;
    for i in 0..MAX_REMEMBERED {
        assert_eq!(seen.check_and_remember(&i.to_string(), t0, t0), Seen::First);
    }
    assert_eq!(seen.check_and_remember("0", t0, t0), Seen::Replayed);
    assert_eq!(seen.check_and_remember("new", t0, t0), Seen::Full, "full within the window: refused, not forgotten");
    // Past the window the old ids could not pass the timestamp check anyway: forgotten.
    let later = t0 + 2 * MAX_CLOCK_SKEW_SECS + 1;
    assert_eq!(seen.check_and_remember("new", later, later), Seen::First);
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn a_per_phase_gate_needs_a_button_naming_that_phase() {
    let mut s = setup().await;
    let (run, message) = run_with_message(&mut s, Utc::now()).await;
    let first_approval = button(&s, &message, "Approve");
    // The run was approved, ran, and paused at the gate of phase "restore".
    s.journal
        .update_status_with(&run.id, |current| {
            let mut status = current.status.clone();
            status.approve("discord:someone (1)", &run.spec.plan_hash, Utc::now());
            status.phase = Phase::AwaitingApproval;
            status.awaiting_phase = Some("restore".into());
            Some(status)
        })
        .await
        .unwrap();
    // A click on the first approval's button (late, or replayed) does not open the gate.
    let answer = s.fake.click(&s.endpoint, &message, &first_approval, APPROVER, &[]).await;
    assert_eq!(answer["type"], 4, "{answer}");
    let text = answer["data"]["content"].as_str().unwrap();
    assert!(text.contains("now waits for phase restore"), "{text}");
    let stored = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.status.phase, stored.status.approved_phases.clone()), (Phase::AwaitingApproval, vec![]));
    // The message, rendered again, carries the gate's own button.
    let data = lifeboat::discord::render::main_message(
        &stored,
        &lifeboat::discord::render::RenderContext {
            transport: lifeboat::discord::render::Transport::Bot,
            approval_ttl: Dur::hours(1),
            edit_interval: Dur::secs(15),
            now: Utc::now(),
        },
    );
    let gate_button = data["components"][0]["components"][0]["custom_id"].as_str().unwrap().to_string();
    assert!(gate_button.starts_with("lb:a:") && gate_button.ends_with(":restore") && gate_button != first_approval, "{gate_button}");
    let answer = s.fake.click(&s.endpoint, &message, &gate_button, APPROVER, &[]).await;
    assert_eq!(answer["type"], 7, "{answer}");
    let stored = s.journal.get(&run.id).await.unwrap().unwrap();
    assert_eq!((stored.status.phase, stored.status.approved_phases), (Phase::Approved, vec!["restore".to_string()]));
}
