//! The `serve` runtime, in the shape of kube-rs' controller-rs and
//! olix0r/kubert's `Runtime`: [`Runtime::build`] sets everything up once,
//! [`Runtime::run`] serves until SIGTERM/SIGINT and then shuts down in order.
//!
//! It owns the one Kubernetes client (none when serving a dump and nothing
//! needs the cluster), the one journal every feature shares, the snapshot
//! hub, the HTTP listeners, the Lease election and the remediator. Work that
//! only the Lease holder does is listed in `Runtime::leader_tasks`; adding
//! some is one line there.

pub mod config;
pub mod hub;
pub mod malloc;
pub mod shutdown;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use axum::Router;
use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::journal::Journal;
use crate::leader::LeaderHandle;
use crate::snapshot::Hub;
pub use hub::Source;

/// Where a leader-only task learns whether it may act: `None` when no
/// election runs (remediation off: this replica is the only voice), else the
/// Lease holder's transitions (`true`: leading).
pub type Leadership = Option<watch::Receiver<bool>>;

/// Background work that only the Lease holder does, started once at serve.
pub struct LeaderTask {
    pub name: &'static str,
    pub start: Box<dyn FnOnce(Leadership) -> BoxFuture<'static, ()> + Send>,
}

impl LeaderTask {
    pub fn new<F>(name: &'static str, start: impl FnOnce(Leadership) -> F + Send + 'static) -> Self
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        LeaderTask { name, start: Box::new(move |leadership| Box::pin(start(leadership))) }
    }
}

/// `serve`, set up: see the module comment.
pub struct Runtime {
    config: Config,
    source: Source,
    hub: Arc<Hub>,
    client: Option<kube::Client>,
    journal: Option<Arc<Journal>>,
    election: Option<Election>,
    app: Router,
    discord_app: Option<Router>,
    notifier: Option<crate::discord::notifier::Notifier>,
    /// Clicks and slash commands over Discord's Gateway (bot mode, `transport: gateway`).
    discord_gateway: Option<crate::discord::gateway::Gateway>,
    addr: SocketAddr,
}

/// The Lease election and the remediator that executes runs while leading.
struct Election {
    leader: LeaderHandle,
    remediator: JoinHandle<()>,
}

impl Runtime {
    /// Connects (for a live cluster), starts the hub, the election and the
    /// remediator (with `remediation.execute`), and mounts every configured
    /// HTTP surface. Nothing is served until [`run`](Self::run).
    pub async fn build(config: Config, source: Source, listen: Option<SocketAddr>) -> anyhow::Result<Self> {
        let addr: SocketAddr = match listen {
            Some(a) => a,
            None => config.listen.parse().context("config listen address")?,
        };
        let live = source.from_dump.is_none() && source.now.is_none();
        let client = if live { Some(crate::cluster::connect::client("(set --kubeconfig/KUBECONFIG, run in a pod, or use --from-dump PATH)").await?) } else { None };
        let hub = hub::start_hub(config.clone(), &source, client.clone()).await?;
        let app = crate::server::router(hub.clone());
        let mut runtime = Runtime { config, source, hub, client, journal: None, election: None, app, discord_app: None, notifier: None, discord_gateway: None, addr };
        runtime.start_remediation().await?;
        runtime.mount_discord().await?;
        runtime.mount_webhook().await?;
        runtime.mount_api().await?;
        Ok(runtime)
    }

    /// Starts the leader-only tasks, serves until SIGTERM/SIGINT, then drains
    /// the listeners and steps down.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let leadership: Leadership = self.election.as_ref().map(|e| e.leader.subscribe());
        for task in self.leader_tasks() {
            tracing::debug!(task = task.name, "starting leader-only task");
            tokio::spawn((task.start)(leadership.clone()));
        }
        // The Gateway connection is held while leading; stopping it closes it cleanly (code 1000).
        let gateway = self.discord_gateway.take().map(|g| g.spawn(leadership.clone()));
        let discord_addr = self.config.discord.listen.as_deref().map(str::parse).transpose().context("discord.listen address")?;
        let listeners = crate::server::arrange(crate::server::Listener { addr: self.addr, app: self.app }, self.discord_app, discord_addr)?;
        crate::server::serve(listeners, shutdown::signal()).await?;
        if let Some(gateway) = gateway {
            gateway.stop().await;
        }
        if let Some(Election { leader, remediator }) = self.election {
            shutdown::step_down(leader, remediator).await;
        }
        Ok(())
    }

    /// The client, connected on first use (a dump needs one only for the API).
    async fn client(&mut self, why: &str) -> anyhow::Result<kube::Client> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = crate::cluster::connect::client(why).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// The journal in lifeboat's namespace, shared by every feature.
    async fn journal(&mut self, why: &str) -> anyhow::Result<Arc<Journal>> {
        if let Some(journal) = &self.journal {
            return Ok(journal.clone());
        }
        let journal = Arc::new(Journal::cluster(self.client(why).await?, self.config.remediation.namespace()));
        self.journal = Some(journal.clone());
        Ok(journal)
    }

    /// The work only the Lease holder does (every replica when no election
    /// runs). One line per task: `LeaderTask::new(name, |leadership| future)`;
    /// the future runs for the life of the process and checks `leadership`
    /// before each action.
    fn leader_tasks(&mut self) -> Vec<LeaderTask> {
        let mut tasks = vec![];
        if let Some(mut notifier) = self.notifier.take() {
            tasks.push(LeaderTask::new("discord notifier", move |leadership| {
                notifier.leader = leadership;
                notifier.run_forever()
            }));
        }
        tasks
    }

    fn serving_dump(&self) -> bool {
        self.source.from_dump.is_some()
    }

    /// Leader election plus the remediator loop: only the Lease holder executes.
    async fn start_remediation(&mut self) -> anyhow::Result<()> {
        let config = self.config.remediation.clone();
        if !config.execute {
            return Ok(());
        }
        if self.serving_dump() {
            bail!("remediation.execute needs a live cluster, not --from-dump");
        }
        let client = self.client("").await?;
        let journal = self.journal("").await?;
        let namespace = config.namespace();
        let identity = std::env::var("POD_NAME").or_else(|_| std::env::var("HOSTNAME")).unwrap_or_else(|_| format!("lifeboat-{}", std::process::id()));
        let leader = crate::leader::spawn(client.clone(), crate::leader::LeaderConfig::new(namespace.clone(), identity.clone()));
        let remediator = crate::remediator::Remediator {
            client: client.clone(),
            journal: journal.clone(),
            kill_switch: Arc::new(std::sync::atomic::AtomicBool::new(config.kill_switch)),
            config: config.clone(),
            identity: identity.clone(),
            poll_interval: Duration::from_secs(5),
        };
        tracing::info!(%namespace, %identity, "remediation enabled: executing approved runs while leader");
        let task = tokio::spawn(remediator.run_forever(Some(leader.clone())));
        tokio::spawn(publish_remediation_stats(self.hub.clone(), journal, client, config, leader.clone()));
        self.election = Some(Election { leader, remediator: task });
        Ok(())
    }

    /// Discord's interactions endpoint or Gateway (bot mode); the notifier is a leader task.
    async fn mount_discord(&mut self) -> anyhow::Result<()> {
        if !self.config.discord.enabled() {
            return Ok(());
        }
        if self.serving_dump() {
            bail!("Discord notifications follow the runs in the cluster: they need a live cluster, not --from-dump");
        }
        let journal = self.journal("for the Discord notifier").await?;
        let Some(discord) = crate::discord::Discord::from_config(&self.config, journal)? else { return Ok(()) };
        if let Some(gateway) = discord.gateway {
            let client = self.client("for the Discord Gateway").await?;
            self.discord_gateway = Some(gateway.with_cluster(client, self.config.remediation.namespace(), self.hub.clone()));
        }
        if let Some(interactions) = discord.interactions {
            self.discord_app = Some(crate::discord::interactions::routes(Arc::new(interactions)));
            tracing::info!("Discord bot mode: posting runs with buttons; clicks at {}", crate::discord::interactions::PATH);
        } else if self.discord_gateway.is_some() {
            tracing::info!("Discord bot mode: posting runs with buttons; clicks over the Gateway");
        } else {
            tracing::info!("Discord webhook-only mode: posting runs without buttons");
        }
        self.notifier = Some(discord.notifier);
        Ok(())
    }

    /// The Alertmanager webhook (`remediation.webhookCredentialsFile`).
    async fn mount_webhook(&mut self) -> anyhow::Result<()> {
        let Some(path) = self.config.remediation.webhook_credentials_file.clone() else { return Ok(()) };
        if self.serving_dump() {
            bail!("the Alertmanager webhook records runs in the cluster: it needs a live cluster, not --from-dump");
        }
        let journal = self.journal("for the webhook journal").await?;
        let intake = crate::alerts::Intake::from_file(self.hub.clone(), journal, self.config.remediation.routes.to_vec(), &path)?;
        self.app = std::mem::take(&mut self.app).merge(crate::alerts::routes(Arc::new(intake)));
        Ok(())
    }

    /// The authenticated HTTP API (`remediation.apiTokenFile`).
    async fn mount_api(&mut self) -> anyhow::Result<()> {
        let Some(path) = self.config.remediation.api_token_file.clone() else { return Ok(()) };
        let client = self.client("for the HTTP API").await?;
        let mut api = crate::api::ApiContext::from_token_file(client, self.config.remediation.namespace(), &path)?;
        api.approval_ttl = self.config.remediation.approval_ttl;
        self.app = std::mem::take(&mut self.app).merge(crate::api::routes(Arc::new(api)));
        Ok(())
    }
}

/// Journal-derived remediation metrics, refreshed on every replica.
async fn publish_remediation_stats(hub: Arc<Hub>, journal: Arc<Journal>, client: kube::Client, config: crate::config::RemediationConfig, leader: LeaderHandle) {
    loop {
        match crate::remediator::stats::refresh(&journal, &client, &config, leader.is_leader()).await {
            Ok(stats) => hub.self_metrics.publish(stats),
            Err(error) => tracing::warn!(%error, "reading the journal for metrics failed"),
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
}
