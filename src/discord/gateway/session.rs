//! One Gateway session, held with twilight-gateway (see
//! docs/discord-gateway.md for why a library): it connects to the URL from
//! `GET /gateway/bot`, identifies with intents 0 (interactions are sent to
//! every bot whatever its intents: Discord's "Gateway Intents" list no
//! intent for INTERACTION_CREATE), heartbeats, detects a zombied connection
//! (no ACK between two heartbeats), resumes at `resume_gateway_url` after a
//! drop, a Reconnect (op 7) or a resumable Invalid Session (op 9), and
//! identifies again (spaced by the identify queue) otherwise. Close codes
//! Discord documents as final (4004 invalid token, 4010–4014) end it.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::watch;
use twilight_gateway::queue::InMemoryQueue;
use twilight_gateway::{CloseFrame, ConfigBuilder, Intents, Message, Shard, ShardId};
use twilight_model::gateway::payload::outgoing::identify::IdentifyProperties;

use super::Gateway;
use crate::discord::client::GatewayBot;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// Shutdown: closed with 1000 (the session is invalidated at once).
    Stopped,
    /// Another replica leads now: closed with 1000 so it starts afresh.
    LostLeadership,
    /// Discord closed with a code that must not be retried.
    Fatal,
}

/// How long a clean close may take before the connection is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Resolves with true once this replica leads (at once without an
/// election), false once `stop` is set.
pub async fn wait_until_leading(leader: &mut Option<watch::Receiver<bool>>, stop: &mut watch::Receiver<bool>) -> bool {
    loop {
        if *stop.borrow_and_update() {
            return false;
        }
        let Some(leading) = leader.as_mut() else { return true };
        if *leading.borrow_and_update() {
            return true;
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return false },
            changed = stop.changed() => if changed.is_err() { return false },
        }
    }
}

fn shard(gateway: &Gateway, bot: &GatewayBot) -> Shard {
    let limit = bot.session_start_limit;
    // Discord's session start limit from /gateway/bot, so a restart loop
    // cannot exhaust the identify budget (Discord resets the token when it is).
    let queue = InMemoryQueue::new(limit.max_concurrency.max(1), limit.remaining.min(limit.total), Duration::from_millis(limit.reset_after), limit.total);
    let config = ConfigBuilder::new(gateway.token.clone(), Intents::empty())
        .proxy_url(bot.url.trim_end_matches('/').to_string())
        .identify_properties(IdentifyProperties::new("lifeboat", "lifeboat", std::env::consts::OS))
        .queue(queue)
        .build();
    Shard::with_config(ShardId::ONE, config)
}

/// Holds one session until shutdown, leadership loss or a fatal close.
pub async fn hold(gateway: &Arc<Gateway>, bot: &GatewayBot, leader: &mut Option<watch::Receiver<bool>>, stop: &mut watch::Receiver<bool>) -> Ended {
    let mut shard = shard(gateway, bot);
    tracing::info!("Discord Gateway: connecting (intents 0: interactions only)");
    let mut last_close = None;
    loop {
        let lost_leadership = async {
            match leader.as_mut() {
                Some(leading) => {
                    let _ = leading.wait_for(|leading| !*leading).await;
                }
                None => std::future::pending().await,
            }
        };
        let stopped = async {
            let _ = stop.wait_for(|stopped| *stopped).await;
        };
        tokio::select! {
            _ = stopped => {
                close(gateway, &mut shard).await;
                tracing::info!("Discord Gateway: closed for shutdown");
                return Ended::Stopped;
            }
            _ = lost_leadership => {
                close(gateway, &mut shard).await;
                tracing::info!("Discord Gateway: closed, no longer the leader");
                return Ended::LostLeadership;
            }
            item = shard.next() => match item {
                None => {
                    tracing::error!(close_code = ?last_close, "Discord closed the Gateway with a code that must not be retried (4004: the bot token is invalid; 4010-4014: shard, version or intents); not reconnecting until restarted");
                    return Ended::Fatal;
                }
                Some(Ok(Message::Text(text))) => dispatch(gateway, &text),
                Some(Ok(Message::Close(frame))) => {
                    last_close = frame.as_ref().map(|f| f.code);
                    tracing::info!(close_code = ?last_close, "Discord Gateway connection closed; reconnecting");
                }
                Some(Err(error)) => tracing::warn!(%error, "Discord Gateway: receiving failed; reconnecting"),
            },
        }
    }
}

fn dispatch(gateway: &Arc<Gateway>, text: &str) {
    let Ok(mut event) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if event["op"] != 0 {
        return;
    }
    match event["t"].as_str() {
        Some("INTERACTION_CREATE") => {
            tokio::spawn(super::bridge::on_interaction(gateway.clone(), event["d"].take()));
        }
        Some("READY") => {
            tracing::info!(session = event["d"]["session_id"].as_str().unwrap_or("?"), "Discord Gateway: identified");
            if let (Some(commands), Some(application)) = (&gateway.commands, event["d"]["application"]["id"].as_str()) {
                let (client, commands, application) = (gateway.client.clone(), commands.registration(), application.to_string());
                let guild = gateway.commands.as_ref().map(|c| c.guild_id.clone()).unwrap_or_default();
                tokio::spawn(async move {
                    match client.overwrite_guild_commands(&application, &guild, &commands).await {
                        Ok(()) => tracing::info!(%guild, "Discord: /lifeboat slash commands registered"),
                        Err(error) => tracing::warn!(%error, %guild, "Discord: registering the /lifeboat slash commands failed"),
                    }
                });
            }
        }
        Some("RESUMED") => tracing::info!("Discord Gateway: resumed"),
        _ => {}
    }
}

/// Sends a 1000 close frame and reads until the close completes; what
/// arrives meanwhile is still answered (a closed session is never replayed).
async fn close(gateway: &Arc<Gateway>, shard: &mut Shard) {
    shard.close(CloseFrame::NORMAL);
    let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(item) = shard.next().await {
            match item {
                Ok(Message::Close(_)) => break,
                Ok(Message::Text(text)) => dispatch(gateway, &text),
                Err(_) => {}
            }
        }
    });
    if drained.await.is_err() {
        tracing::warn!("Discord Gateway: the close was not confirmed in time; dropping the connection");
    }
}
