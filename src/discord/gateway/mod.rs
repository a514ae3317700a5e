//! Discord's Gateway transport: the Lease leader holds one outbound
//! websocket to Discord and receives `INTERACTION_CREATE` there, so bot mode
//! needs no public endpoint. Clicks go through the same decision path as the
//! HTTP endpoint ([`super::interactions::answer`]); responses go to
//! `POST /interactions/{id}/{token}/callback`.
//!
//! * [`session`]: one Gateway session (twilight-gateway does Hello,
//!   Identify, heartbeats, zombie detection, Resume, Reconnect and Invalid
//!   Session; this module closes it cleanly and stops on fatal close codes).
//! * [`bridge`]: an `INTERACTION_CREATE` event to its callback.
//! * [`commands`]: the `/lifeboat` slash commands.

pub mod bridge;
pub mod commands;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::client::DiscordClient;
use super::interactions::Interactions;

/// Everything the Gateway task needs.
pub struct Gateway {
    /// The bot token (Identify and Resume carry it).
    pub token: String,
    pub client: Arc<DiscordClient>,
    pub interactions: Arc<Interactions>,
    /// The `/lifeboat` commands, when discord.guildId names a guild.
    pub commands: Option<commands::SlashCommands>,
}

/// How long to wait before asking Discord for the Gateway URL again.
const RETRY_GATEWAY_BOT: Duration = Duration::from_secs(5);

/// The running Gateway task, as serve holds it.
pub struct GatewayTask {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// How long shutdown waits for the clean close.
const STOP_TIMEOUT: Duration = Duration::from_secs(6);

impl GatewayTask {
    /// Closes the connection (1000) and waits for the task to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            tracing::warn!("Discord Gateway: not closed in time; exiting anyway");
        }
    }
}

impl Gateway {
    /// Gives the slash commands the cluster (kill switch) and serve's
    /// snapshots (triage).
    pub fn with_cluster(mut self, client: kube::Client, namespace: String, hub: Arc<crate::snapshot::Hub>) -> Self {
        if let Some(commands) = &mut self.commands {
            commands.cluster = Some((client, namespace));
            commands.triage = Some(Arc::new(move || {
                let snapshot = hub.snapshot();
                crate::triage::render_text(&crate::triage::triage(&snapshot.state, &snapshot.findings, None))
            }));
        }
        self
    }

    /// Starts [`run`](Self::run) on the current runtime.
    pub fn spawn(self, leader: Option<watch::Receiver<bool>>) -> GatewayTask {
        let (stop, stopped) = watch::channel(false);
        GatewayTask { stop, task: tokio::spawn(self.run(leader, stopped)) }
    }

    /// Holds the connection while this replica leads (always, without
    /// `leader`), closes it when leadership is lost and reopens it when it
    /// returns; ends when `stop` turns true (shutdown) after a clean close.
    pub async fn run(self, mut leader: Option<watch::Receiver<bool>>, mut stop: watch::Receiver<bool>) {
        let gateway = Arc::new(self);
        loop {
            if !session::wait_until_leading(&mut leader, &mut stop).await {
                return;
            }
            let bot = match gateway.client.gateway_bot().await {
                Ok(bot) => bot,
                Err(error) => {
                    tracing::warn!(%error, "cannot learn the Discord Gateway URL; retrying");
                    let _ = tokio::time::timeout(RETRY_GATEWAY_BOT, stop.changed()).await;
                    continue;
                }
            };
            match session::hold(&gateway, &bot, &mut leader, &mut stop).await {
                session::Ended::Stopped => return,
                session::Ended::LostLeadership => continue,
                session::Ended::Fatal => {
                    // Reconnecting with the same token would fail the same way
                    // (and burn identify budget): wait for a restart.
                    let _ = stop.wait_for(|stopped| *stopped).await;
                    return;
                }
            }
        }
    }
}
