//! Discord Gateway benchmark: latency from an interaction arriving over the
//! Gateway to its callback reaching Discord. lifeboat's real Gateway task
//! (twilight-gateway session, the shared decision path, the callback over
//! HTTP) against the fake Gateway and the fake Discord REST API on loopback,
//! with a directory journal. Two kinds of interaction, one at a time:
//! "Show commands" clicks (a journal read, an ephemeral answer) and Approve
//! clicks on fresh runs (a journal write, the message re-rendered).
//!
//!     cargo bench --bench discord_gateway
//!
//! Env: LIFEBOAT_BENCH_CLICKS (Show commands clicks, default 300),
//! LIFEBOAT_BENCH_APPROVALS (default 30). The clock starts when the fake
//! Gateway queues the event and stops when the fake REST API receives the
//! callback. Figures are printed, never asserted; record them in
//! BENCHMARKS.md.

#[path = "../tests/support/fake_discord.rs"]
mod fake_discord;
#[path = "../tests/support/fake_gateway.rs"]
mod fake_gateway;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fake_discord::{FakeDiscord, BOT_TOKEN, CHANNEL_ID};
use fake_gateway::FakeGateway;
use lifeboat::config::{DiscordApprovers, Dur};
use lifeboat::discord::client::DiscordClient;
use lifeboat::discord::gateway::Gateway;
use lifeboat::discord::interactions::Interactions;
use lifeboat::discord::notifier::Notifier;
use lifeboat::journal::{Journal, Mode, RunRecord, RunTrigger};
use tokio::time::Instant;

const APPROVER: &str = "1000000000000000001";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn example_plan() -> lifeboat::plan::Plan {
    let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    let snap = lifeboat::snapshot::Snapshot::build(state, &Default::default(), &Default::default());
    let trigger = lifeboat::plan::playbooks::Trigger { namespace: Some("database".into()), name: Some("postgres".into()), node: None };
    lifeboat::plan::playbooks::plan("cnpg-instance-lost", &snap.state, &snap.findings, &trigger).unwrap()
}

struct Bench {
    fake: FakeDiscord,
    gateway: FakeGateway,
    journal: Arc<Journal>,
    client: Arc<DiscordClient>,
}

impl Bench {
    /// A new run awaiting approval: its message id and the custom ids of its buttons.
    async fn run(&self, at: chrono::DateTime<Utc>) -> (String, Vec<String>) {
        let run = self.journal.create(&RunRecord::new(&example_plan(), RunTrigger::default(), Mode::Approve, "bench", at)).await.unwrap();
        Notifier::new(self.journal.clone(), self.client.clone(), Dur::hours(1), Dur::secs(15)).reconcile_once().await.unwrap();
        let message = self.journal.get(&run.id).await.unwrap().unwrap().status.notification.unwrap().message_id.unwrap();
        let ids = self.fake.message(&message).custom_ids();
        (message, ids)
    }

    /// Delivers a click and returns the time to its callback.
    async fn click(&self, message: &str, custom_id: &str) -> Duration {
        let payload = self.fake.click_payload(message, custom_id, APPROVER, &[]);
        self.fake.expect_interaction(&payload, message);
        let id = payload["id"].as_str().unwrap().to_string();
        let sent = Instant::now();
        self.gateway.dispatch_interaction(&payload);
        loop {
            if let Some(arrived) = self.fake.callback_arrival(&id) {
                return arrived - sent;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("{what}: n={} p50={:.2}ms p99={:.2}ms max={:.2}ms", samples.len(), ms(at(0.50)), ms(at(0.99)), ms(*samples.last().unwrap()));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let (clicks, approvals) = (env("LIFEBOAT_BENCH_CLICKS", 300), env("LIFEBOAT_BENCH_APPROVALS", 30));
        let fake = FakeDiscord::start(1_000_000, Duration::from_secs(1)).await;
        // Discord's usual heartbeat interval.
        let gateway = FakeGateway::start(Duration::from_millis(41_250)).await;
        fake.set_gateway_url(&gateway.url);
        let dir = tempfile::tempdir().unwrap();
        let journal = Arc::new(Journal::file(dir.path()));
        let client = Arc::new(DiscordClient::bot(&fake.api_base, BOT_TOKEN, CHANNEL_ID));
        let interactions = Arc::new(Interactions {
            journal: journal.clone(),
            public_key: None,
            approvers: DiscordApprovers { users: vec![APPROVER.into()], roles: vec![] },
            channel_id: Some(CHANNEL_ID.into()),
            approval_ttl: Dur::hours(1),
            edit_interval: Dur::secs(15),
            client: client.clone(),
            answer_within: Duration::from_secs(2),
            seen: Default::default(),
        });
        let task = Gateway { token: BOT_TOKEN.into(), client: client.clone(), interactions, commands: None }.spawn(None);
        gateway.wait_until("a session", FakeGateway::session_held).await;
        let bench = Bench { fake, gateway, journal, client };

        let (message, ids) = bench.run(Utc::now()).await;
        let mut shown = vec![];
        for _ in 0..clicks {
            shown.push(bench.click(&message, &ids[2]).await);
        }
        let mut approved = vec![];
        for i in 0..approvals {
            let (message, ids) = bench.run(Utc::now() + chrono::Duration::milliseconds(i as i64 + 1)).await;
            approved.push(bench.click(&message, &ids[0]).await);
        }
        report("Show commands click → callback", shown);
        report("Approve click → callback", approved);
        assert!(bench.gateway.violations().is_empty(), "{:?}", bench.gateway.violations());
        task.stop().await;
    });
}
