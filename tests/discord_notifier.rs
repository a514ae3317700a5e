//! The Discord notifier against the fake Discord: the approval message
//! (what happened, plan steps, objects, recovery sources and evidence,
//! buttons; never a secret), webhook-only mode, rate limits (429 with
//! retry_after, per-bucket headers) with every message arriving in order, and
//! on the real apiserver: a run approved by a click, edited live while it
//! executes, a reply per finished step and a final summary; a failing run;
//! a Discord outage during a run that neither blocks the run nor loses a
//! notification.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat::act::runner::{Outcome, RunReport, StepReport, StepStatus};
use lifeboat::config::{DiscordApprovers, Dur};
use lifeboat::discord::client::DiscordClient;
use lifeboat::discord::notifier::{Notifier, NotifyError};
use lifeboat::journal::{AlertRef, Journal, Mode, Phase, RunRecord, RunTrigger};
use lifeboat::plan::Plan;
use serde_json::json;
use support::fake_discord::{FakeDiscord, Message, Outage, BOT_TOKEN, CHANNEL_ID, WEBHOOK_TOKEN};

fn example_plan() -> Plan {
    let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    let snap = lifeboat::snapshot::Snapshot::build(state, &Default::default(), &Default::default());
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    lifeboat::plan::playbooks::plan("cnpg-instance-lost", &snap.state, &snap.findings, &trigger).unwrap()
}

fn alert_trigger() -> RunTrigger {
    RunTrigger {
        namespace: Some("database".into()),
        name: Some("postgres".into()),
        node: None,
        alert: Some(AlertRef { fingerprint: "5f1c0ffee0ddba11".into(), starts_at: Utc::now(), alertname: "LifeboatCnpgPrimaryOnLostNode".into() }),
    }
}

/// A final report: steps before `failed_at` succeeded, that one failed, the rest did not run.
fn report(plan: &Plan, failed_at: Option<usize>, start: DateTime<Utc>) -> RunReport {
    let steps = plan
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let status = match failed_at {
                Some(f) if i == f => StepStatus::Failed { error: format!("{} blew up", step.id) },
                Some(f) if i > f => StepStatus::NotRun,
                _ => StepStatus::Succeeded { detail: format!("evidence for {}", step.id) },
            };
            let ran = !matches!(status, StepStatus::NotRun);
            let t = start + chrono::Duration::seconds(10 * i as i64);
            StepReport {
                id: step.id.clone(),
                title: step.title.clone(),
                command: step.command(),
                status,
                started: ran.then_some(t),
                finished: ran.then(|| t + chrono::Duration::seconds(5)),
            }
        })
        .collect();
    let outcome = if failed_at.is_some() { Outcome::Stopped } else { Outcome::Succeeded };
    RunReport { plan_hash: plan.hash(), outcome, reason: None, steps, flux_left_suspended: vec![], awaiting_phase: None }
}

fn bot(fake: &FakeDiscord) -> Arc<DiscordClient> {
    Arc::new(DiscordClient::bot(&fake.api_base, BOT_TOKEN, CHANNEL_ID))
}

fn fast(mut notifier: Notifier) -> Notifier {
    notifier.poll_interval = Duration::from_millis(100);
    notifier.max_backoff = Duration::from_millis(500);
    notifier
}

fn assert_no_secret(fake: &FakeDiscord) {
    for r in fake.requests() {
        for secret in [BOT_TOKEN, WEBHOOK_TOKEN] {
            assert!(!r.body.contains(secret), "a secret in a request body: {r:?}");
        }
        assert!(!r.path.contains(BOT_TOKEN), "the bot token in a path: {r:?}");
        if let Some(auth) = &r.authorization {
            assert_eq!(auth, &format!("Bot {BOT_TOKEN}"), "only the Authorization header carries the token");
        }
    }
}

/// The replies to `main`, in the order they were posted.
fn replies(messages: &[Message], main: &str) -> Vec<Message> {
    messages.iter().filter(|m| m.reply_to.as_deref() == Some(main)).cloned().collect()
}

#[tokio::test]
async fn the_approval_message_says_what_happened_and_the_plan_and_never_a_secret() {
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let plan = example_plan();
    let run = journal.create(&RunRecord::new(&plan, alert_trigger(), Mode::Approve, "alertmanager", Utc::now())).await.unwrap();
    let mut notifier = Notifier::new(journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(15));
    notifier.reconcile_once().await.unwrap();

    let messages = fake.messages();
    assert_eq!(messages.len(), 1, "one message per run");
    let m = &messages[0];
    let text = m.text();
    for expected in [
        "Awaiting approval",
        "cnpg-instance-lost",
        "Cluster database/postgres",
        "LifeboatCnpgPrimaryOnLostNode",
        "5f1c0ffee0ddba11",
        "What happened",
        "instance postgres-1 is on lost node node-01-pve",
        &run.spec.plan_hash,
        &run.id,
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    for step in &plan.steps {
        assert!(text.contains(&step.title), "missing step {}:\n{text}", step.id);
    }
    assert!(text.contains("touches: PersistentVolumeClaim database/postgres-1"), "{text}");
    let source = plan.steps.iter().find_map(|s| s.recovery_source.clone()).expect("the plan deletes data with a recovery source");
    assert!(text.contains(&format!("recovery: {}", source.description)), "{text}");
    for evidence in &source.evidence {
        assert!(text.contains(evidence.as_str()), "missing evidence {evidence:?}:\n{text}");
    }
    assert_eq!(m.button_labels(), vec!["Approve", "Reject", "Show commands"]);
    for id in m.custom_ids() {
        assert!(id.len() <= 100 && id.ends_with(&run.spec.plan_hash), "{id}");
    }
    let request = fake.requests().into_iter().find(|r| r.method == "POST").unwrap();
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["allowed_mentions"], json!({"parse": []}), "no @everyone from plan text");
    assert_no_secret(&fake);

    // Nothing changed: nothing is sent again.
    let sent = fake.requests().len();
    notifier.reconcile_once().await.unwrap();
    assert_eq!(fake.requests().len(), sent);
    let stored = journal.get(&run.id).await.unwrap().unwrap().status.notification.unwrap();
    assert_eq!(stored.message_id.as_deref(), Some(m.id.as_str()));
    assert!(!stored.complete);
}

#[tokio::test]
async fn webhook_only_mode_has_no_buttons_and_says_how_to_approve() {
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let plan = example_plan();
    let run = journal.create(&RunRecord::new(&plan, alert_trigger(), Mode::Approve, "alertmanager", Utc::now())).await.unwrap();
    let client = Arc::new(DiscordClient::webhook(&fake.webhook_url(), &fake.api_base).unwrap());
    let mut notifier = Notifier::new(journal.clone(), client, Dur::hours(1), Dur::secs(15));

    // Unreachable first: the pass fails without leaking the webhook URL, and nothing is recorded.
    fake.set_outage(Outage::Refuse);
    let error = notifier.reconcile_once().await.expect_err("Discord refuses connections");
    assert!(matches!(error, NotifyError::Discord(_)), "{error}");
    assert!(!error.to_string().contains(WEBHOOK_TOKEN), "{error}");
    assert!(journal.get(&run.id).await.unwrap().unwrap().status.notification.is_none());
    fake.set_outage(Outage::None);

    notifier.reconcile_once().await.unwrap();
    let main = fake.messages()[0].clone();
    assert_eq!(main.via, "webhook");
    assert!(main.custom_ids().is_empty());
    let text = main.text();
    assert!(text.contains(&format!("lifeboat approve {} --hash {}", run.id, run.spec.plan_hash)), "{text}");
    assert!(text.contains(&format!("/api/runs/{}/approve", run.id)), "{text}");

    // The run goes on (written as the remediator would); the same message is edited and the story posted.
    lifeboat::remediator::approve(&journal, &run.id, &run.spec.plan_hash, "alice", lifeboat::config::Dur::hours(1)).await.unwrap();
    let start = Utc::now();
    let mut halfway = report(&plan, None, start);
    for step in &mut halfway.steps[2..] {
        (step.status, step.started, step.finished) = (StepStatus::NotRun, None, None);
    }
    halfway.steps[2].started = Some(start);
    journal
        .update_status_with(&run.id, |current| {
            let mut status = current.status.clone();
            status.start("lifeboat-0", start);
            status.apply_progress(&halfway);
            Some(status)
        })
        .await
        .unwrap();
    notifier.reconcile_once().await.unwrap();
    assert_eq!(fake.messages().len(), 1 + 1 + 2, "main, approval, two steps so far");
    assert!(fake.message(&main.id).text().contains(&format!("step 3 of {}", plan.steps.len())), "{}", fake.message(&main.id).text());
    journal
        .update_status_with(&run.id, |current| {
            let mut status = current.status.clone();
            status.start("lifeboat-0", start);
            status.apply_report(&report(&plan, None, start));
            Some(status)
        })
        .await
        .unwrap();
    notifier.reconcile_once().await.unwrap();
    let messages = fake.messages();
    assert_eq!(messages.len(), 1 + 1 + plan.steps.len() + 1, "main, approval, one per step, final");
    assert!(messages.iter().all(|m| m.via == "webhook" && m.reply_to.is_none()));
    assert!(messages[1].content.contains("approved by alice"));
    assert!(messages.last().unwrap().content.contains("Succeeded"));
    assert!(fake.message(&main.id).content.contains("Succeeded"), "the main message was edited");
    let state = journal.get(&run.id).await.unwrap().unwrap().status.notification.unwrap();
    assert!(state.complete);
    assert_eq!(state.posted.len(), 1 + plan.steps.len() + 1, "{:?}", state.posted);
    notifier.reconcile_once().await.unwrap();
    assert_eq!(fake.messages().len(), messages.len(), "a complete run is not told again");
    assert_no_secret(&fake);
}

#[tokio::test]
async fn rate_limits_are_honoured_and_every_message_arrives_in_order() {
    // Two requests per bucket per 300 ms, and a global 429 on the third request.
    let fake = FakeDiscord::start(2, Duration::from_millis(300)).await;
    fake.inject_global_429(3, 0.4);
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let plan = example_plan();
    let mut ids = vec![];
    // Two finished runs, the second one failed at its third step.
    for (i, failed_at) in [None, Some(2)].into_iter().enumerate() {
        let requested = Utc::now() - chrono::Duration::minutes(10 - i as i64);
        let mut target = plan.clone();
        target.target = format!("Cluster database/postgres-{i}");
        let run = journal.create(&RunRecord::new(&target, alert_trigger(), Mode::Auto, "alertmanager", requested)).await.unwrap();
        journal
            .update_status_with(&run.id, |current| {
                let mut status = current.status.clone();
                status.start("lifeboat-0", requested);
                status.apply_report(&report(&target, failed_at, requested));
                Some(status)
            })
            .await
            .unwrap();
        ids.push(run.id);
    }
    let mut notifier = Notifier::new(journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(15));
    notifier.reconcile_once().await.unwrap();

    assert_eq!(fake.injected_429s(), 1, "the global 429 was sent");
    assert_eq!(fake.violations(), 0, "no request went into an exhausted bucket or a global limit");
    assert!(fake.requests().iter().any(|r| r.status == 429));
    let messages = fake.messages();
    let mains: Vec<&Message> = messages.iter().filter(|m| m.reply_to.is_none()).collect();
    assert_eq!(mains.len(), 2);
    for (main, failed_at) in mains.iter().zip([None, Some(2usize)]) {
        let replies = replies(&messages, &main.id);
        let mut expected = vec!["approved by mode auto".to_string()];
        let ran = failed_at.map_or(plan.steps.len(), |f| f + 1);
        for (i, step) in plan.steps.iter().enumerate().take(ran) {
            expected.push(format!("Step {}/{} **{}**", i + 1, plan.steps.len(), step.title));
        }
        expected.push(if failed_at.is_some() { "Failed".into() } else { "Succeeded".into() });
        let got: Vec<String> = replies.iter().map(|r| r.content.clone()).collect();
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (g, e) in got.iter().zip(&expected) {
            assert!(g.contains(e.as_str()), "out of order or missing: expected {e:?}, got {got:#?}");
        }
        let summary = replies.last().unwrap().text();
        if let Some(f) = failed_at {
            assert!(replies[f + 1].text().contains("To do it by hand") && replies[f + 1].text().contains(&plan.steps[f].command()));
            assert!(summary.contains(&plan.steps[f + 1].command()), "the summary lists what is left:\n{summary}");
        } else {
            assert!(summary.contains("What was done") && summary.contains("evidence for verify-rw-endpoints") && summary.contains("nothing"), "{summary}");
        }
    }
    // The first run's messages all came before the second's.
    let position = |id: &str| messages.iter().position(|m| m.id == id).unwrap();
    let last_of_first = replies(&messages, &mains[0].id).last().map(|m| position(&m.id)).unwrap();
    assert!(last_of_first < position(&mains[1].id));
    for id in &ids {
        assert!(journal.get(id).await.unwrap().unwrap().status.notification.unwrap().complete);
    }
    assert_no_secret(&fake);
}

mod live {
    //! On the real apiserver: the remediator executes a small plan (merge
    //! patch, scale, wait for endpoints) while the notifier follows it.

    use super::*;
    use lifeboat::discord::interactions::{parse_public_key, routes, Interactions};
    use support::live_app::{endpoints_ready, plan, remediator, scene, Scene};

    const APPROVER: &str = "1000000000000000001";

    async fn interactions_endpoint(s: &Scene, fake: &FakeDiscord) -> String {
        let ix = Interactions {
            journal: s.journal.clone(),
            public_key: Some(parse_public_key(&fake.public_key_hex()).unwrap()),
            approvers: DiscordApprovers { users: vec![APPROVER.into()], roles: vec![] },
            channel_id: Some(CHANNEL_ID.into()),
            approval_ttl: Dur::hours(1),
            edit_interval: Dur::secs(1),
            client: bot(fake),
            answer_within: Duration::from_secs(2),
            seen: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/discord/interactions", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, routes(Arc::new(ix))).await });
        endpoint
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_run_approved_by_a_click_is_followed_live_to_its_summary() {
        let s = scene("discord-live").await;
        let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
        let endpoint = interactions_endpoint(&s, &fake).await;
        let plan = plan(&s.ns, "app");
        let run = s.journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
        let notifier = tokio::spawn(fast(Notifier::new(s.journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(1))).run_forever());

        fake.wait_until("the approval message", |ms| ms.iter().any(|m| m.custom_ids().len() == 3)).await;
        let main = fake.messages()[0].clone();
        let approve = main.custom_ids()[0].clone();
        assert_eq!(fake.click(&endpoint, &main.id, &approve, APPROVER, &[]).await["type"], 7);
        let approved = s.journal.get(&run.id).await.unwrap().unwrap();
        assert_eq!(approved.status.phase, Phase::Approved);

        let executing = tokio::spawn({
            let remediator = remediator(&s);
            async move { remediator.execute(approved, None).await.unwrap() }
        });
        // Live: the message shows the step being waited on, before it can finish.
        fake.wait_until("a live edit showing step 3 of 3 running", |ms| ms[0].text().contains("step 3 of 3: **Wait for the app Service to have a ready endpoint**")).await;
        assert!(fake.message(&main.id).content.contains("Running"));
        fake.wait_until("the replies for the two finished steps", |ms| replies(ms, &ms[0].id).len() >= 3).await;
        endpoints_ready(&s).await;
        let done = executing.await.unwrap();
        assert_eq!(done.status.phase, Phase::Succeeded, "{:#?}", done.status);

        fake.wait_until("the final summary", |ms| replies(ms, &ms[0].id).iter().any(|r| r.content.contains("Succeeded"))).await;
        // The notifier records a reply in the journal after Discord accepted
        // it: stopping it before then would leave "final" unrecorded.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !s.journal.get(&run.id).await.unwrap().unwrap().status.notification.is_some_and(|n| n.posted.iter().any(|p| p == "final")) {
            assert!(tokio::time::Instant::now() < deadline, "the notifier never recorded the final summary");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        notifier.abort();
        let messages = fake.messages();
        let got: Vec<String> = replies(&messages, &main.id).iter().map(|r| r.content.clone()).collect();
        let expected = [
            "approved by discord:",
            "Step 1/3 **Note the incident on the ConfigMap**",
            "Step 2/3 **Scale the app to 0**",
            "Step 3/3 **Wait for the app Service to have a ready endpoint**",
            "Succeeded",
        ];
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (g, e) in got.iter().zip(expected) {
            assert!(g.contains(e), "expected {e:?}, got {got:#?}");
        }
        let summary = replies(&messages, &main.id).last().unwrap().text();
        assert!(summary.contains("scaled to 0") && summary.contains("What was done") && summary.contains("nothing: every step succeeded"), "{summary}");
        let main_now = fake.message(&main.id);
        assert!(main_now.content.contains("Succeeded"), "{}", main_now.content);
        assert_eq!(main_now.button_labels(), vec!["Show commands"]);
        assert!(main_now.edits.len() >= 3, "approved, running, done: {:#?}", main_now.edits);
        assert_eq!(messages.len(), 1 + expected.len(), "nothing said twice");
        assert_eq!(fake.nonce_repeats(), 0, "the journal, not Discord's nonce check, keeps the notifier from repeating itself");
        let state = s.journal.get(&run.id).await.unwrap().unwrap().status.notification.unwrap();
        assert_eq!(state.posted, vec!["approved", "step:annotate:succeeded", "step:scale-down:succeeded", "step:wait-endpoints:succeeded", "final"]);
        assert_eq!(state.message_id.as_deref(), Some(main.id.as_str()));
        assert_eq!(fake.violations(), 0);
        assert_no_secret(&fake);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_step_is_replied_with_what_is_left_to_do() {
        let s = scene("discord-fail").await;
        let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
        let plan = plan(&s.ns, "no-such-deployment");
        let run = s.journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Auto, "test", Utc::now())).await.unwrap();
        let done = remediator(&s).execute(run.clone(), None).await.unwrap();
        assert_eq!(done.status.phase, Phase::Failed, "{:#?}", done.status);
        let mut notifier = Notifier::new(s.journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(1));
        notifier.reconcile_once().await.unwrap();
        let messages = fake.messages();
        let replies = replies(&messages, &messages[0].id);
        let contents: Vec<&str> = replies.iter().map(|r| r.content.as_str()).collect();
        assert_eq!(contents.len(), 4, "{contents:#?}");
        assert!(contents[1].contains("Step 1/3") && contents[1].contains("succeeded"));
        assert!(contents[2].contains("Step 2/3") && contents[2].contains("failed"), "{contents:#?}");
        assert!(replies[2].text().contains("kubectl scale deployment.apps no-such-deployment"), "{}", replies[2].text());
        assert!(contents[3].contains("Failed"));
        let summary = replies[3].text();
        assert!(summary.contains("Left for you") && summary.contains("kubectl get endpointslices"), "{summary}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_discord_outage_neither_blocks_the_run_nor_loses_a_notification() {
        let s = scene("discord-outage").await;
        let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
        fake.set_outage(Outage::Unavailable);
        endpoints_ready(&s).await;
        let plan = plan(&s.ns, "app");
        let run = s.journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Auto, "test", Utc::now())).await.unwrap();
        let notifier = tokio::spawn(fast(Notifier::new(s.journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(1))).run_forever());

        let done = remediator(&s).execute(run.clone(), None).await.unwrap();
        assert_eq!(done.status.phase, Phase::Succeeded, "the run finished with Discord down: {:#?}", done.status);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while fake.requests().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the notifier never tried");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(fake.messages().is_empty());
        assert!(s.journal.get(&run.id).await.unwrap().unwrap().status.notification.is_none());

        fake.set_outage(Outage::None);
        fake.wait_until("the catch-up", |ms| ms.len() >= 6).await;
        // Let the notifier finish its pass and record it.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !s.journal.get(&run.id).await.unwrap().unwrap().status.notification.is_some_and(|n| n.complete) {
            assert!(tokio::time::Instant::now() < deadline, "the run's notifications were never completed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await; // a few more passes: nothing more may be sent
        notifier.abort();
        let messages = fake.messages();
        assert_eq!(messages.len(), 6, "main, approval, three steps, final — each once: {messages:#?}");
        let got: Vec<String> = replies(&messages, &messages[0].id).iter().map(|r| r.content.clone()).collect();
        for (g, e) in got.iter().zip(["approved by mode auto", "Step 1/3", "Step 2/3", "Step 3/3", "Succeeded"]) {
            assert!(g.contains(e), "expected {e:?}, got {got:#?}");
        }
        assert!(messages[0].content.contains("Succeeded"));
        assert_eq!(fake.nonce_repeats(), 0);
    }
}

#[tokio::test]
async fn a_huge_plan_still_fits_discords_limits() {
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let mut plan = example_plan();
    let template = plan.steps.clone();
    for i in 0..12 {
        for step in &template {
            let mut step = step.clone();
            step.id = format!("{}-{i}", step.id);
            step.title = format!("{} {}", step.title, "with a very long title ".repeat(4));
            step.needs.clear();
            plan.steps.push(step);
        }
    }
    plan.findings.extend((0..50).map(|i| format!("finding {i}: {}", "x".repeat(80))));
    let run = journal.create(&RunRecord::new(&plan, alert_trigger(), Mode::Approve, "alertmanager", Utc::now())).await.unwrap();
    let mut notifier = Notifier::new(journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(15));
    notifier.reconcile_once().await.unwrap();
    let m = &fake.messages()[0];
    assert!(m.text().contains(&format!("lifeboat runs show {}", run.id)), "the cut says where the rest is");
    assert_eq!(m.button_labels().len(), 3);
}

#[tokio::test]
async fn a_run_created_in_this_process_is_posted_without_waiting_for_the_next_poll() {
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let mut notifier = Notifier::new(journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(15));
    // No poll comes during the test: only the wake-up on a new run can post the second one.
    notifier.poll_interval = Duration::from_secs(3600);
    let task = tokio::spawn(notifier.run_forever());
    let first = journal.create(&RunRecord::new(&example_plan(), RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
    fake.wait_until("the first run's message", |m| m.iter().any(|m| m.text().contains(&first.id))).await;
    let plan = lifeboat::plan::Plan::new("stale-cleanup", "utils");
    let second = journal.create(&RunRecord::new(&plan, RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
    fake.wait_until("the second run's message", |m| m.iter().any(|m| m.text().contains(&second.id))).await;
    task.abort();
}

/// In a cluster, a run created in this process is read by name: the
/// wake-up posts that run alone, without listing the journal. A run another
/// replica created (in the journal, never announced here) is left to the
/// next poll, which lists every run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_woken_notifier_reads_the_new_run_by_name_and_leaves_the_rest_to_the_poll() {
    let plane = support::controlplane::control_plane();
    let client = plane.admin_client();
    let ns = plane.namespace(&client, "notify-by-name").await;
    let journal = Arc::new(Journal::cluster(client.clone(), ns.clone()));
    let fake = FakeDiscord::start(50, Duration::from_secs(1)).await;
    let first = journal.create(&RunRecord::new(&Plan::new("stale-cleanup", "utils/first"), RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
    let mut notifier = Notifier::new(journal.clone(), bot(&fake), Dur::hours(1), Dur::secs(15));
    notifier.poll_interval = Duration::from_secs(3600);
    let task = tokio::spawn(notifier.run_forever());
    fake.wait_until("the first pass's message", |m| m.iter().any(|m| m.text().contains(&first.id))).await;

    // Created by "another replica": straight into the journal, announced to no one here.
    let elsewhere = RunRecord::new(&Plan::new("stale-cleanup", "utils/elsewhere"), RunTrigger::default(), Mode::Approve, "replica-b", Utc::now());
    lifeboat::journal::ClusterJournal::new(client, ns).create(&elsewhere).await.unwrap();
    let here = journal.create(&RunRecord::new(&Plan::new("stale-cleanup", "utils/here"), RunTrigger::default(), Mode::Approve, "test", Utc::now())).await.unwrap();
    fake.wait_until("the new run's message", |m| m.iter().any(|m| m.text().contains(&here.id))).await;
    let messages = fake.messages();
    assert!(
        !messages.iter().any(|m| m.text().contains(&elsewhere.id)),
        "the wake-up read only the run it named; a listing would have posted the other replica's run too: {messages:#?}"
    );
    assert_eq!(journal.get(&elsewhere.id).await.unwrap().unwrap().status.notification, None, "left for the next poll");
    task.abort();
}
