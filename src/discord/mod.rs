//! Discord: run notifications, and approvals with buttons.
//!
//! * Bot mode (`discord.botTokenFile`, `channelId`, approvers): each run
//!   gets a message in the channel with Approve / Reject / Show commands
//!   buttons; clicks come back over the leader's Gateway connection
//!   ([`gateway`], the default) or signed to `POST /discord/interactions`
//!   (`transport: http`, with the application's public key), and take the
//!   same decision path ([`interactions::answer`]).
//! * Webhook-only mode (`discord.webhookUrlFile`): the same messages without
//!   buttons; they say how to approve over HTTP or the CLI.
//!
//! In both, [`notifier::Notifier`] keeps the messages in step with the
//! journal: live edits while a run executes, a reply per finished step, a
//! final summary. Secrets (bot token, webhook URL) are read from files and
//! only ever sent to Discord in the places Discord expects them.

pub mod client;
pub mod gateway;
pub mod interactions;
pub mod notifier;
pub mod render;

use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{Config, DiscordConfig, DiscordTransport};
use crate::journal::Journal;
use client::DiscordClient;

/// Discord, as configured: the client, and in bot mode what verifies clicks.
pub struct Discord {
    pub client: Arc<DiscordClient>,
    /// Bot mode with `transport: http`: what serves `POST /discord/interactions`.
    pub interactions: Option<interactions::Interactions>,
    /// Bot mode with `transport: gateway`: the leader's Gateway connection.
    pub gateway: Option<gateway::Gateway>,
    pub notifier: notifier::Notifier,
}

impl Discord {
    /// Reads the secret files named by `config.discord`; None when Discord is off.
    pub fn from_config(config: &Config, journal: Arc<Journal>) -> anyhow::Result<Option<Self>> {
        let d = &config.discord;
        let mut bot_token = None;
        let client = if let Some(path) = &d.bot_token_file {
            let token = crate::api::read_secret_file(path, "the Discord bot token")?;
            let channel = d.channel_id.as_deref().context("discord.channelId is required in bot mode")?;
            let client = DiscordClient::bot(&d.api_base, &token, channel);
            bot_token = Some(token);
            client
        } else if let Some(path) = &d.webhook_url_file {
            let url = crate::api::read_secret_file(path, "the Discord webhook URL")?;
            DiscordClient::webhook(&url, &d.api_base).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        } else {
            return Ok(None);
        };
        let client = Arc::new(client);
        let interactions = match &d.bot_token_file {
            None => None,
            Some(_) => {
                // Only the HTTP endpoint verifies signatures: over the Gateway
                // a configured key (the chart always mounts one) is not read.
                let key = match (&d.public_key, &d.public_key_file, d.transport) {
                    (_, _, DiscordTransport::Gateway) => None,
                    (Some(key), _, _) => Some(key.clone()),
                    (None, Some(path), _) => Some(std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the Discord public key", path.display()))?),
                    (None, None, _) => anyhow::bail!("discord.publicKey or discord.publicKeyFile is required with discord.transport: http"),
                };
                let public_key = key.map(|key| interactions::parse_public_key(&key)).transpose().map_err(|e| anyhow::anyhow!("Discord public key: {e}"))?;
                Some(interactions::Interactions {
                    journal: journal.clone(),
                    public_key,
                    approvers: d.approvers.clone(),
                    channel_id: d.channel_id.clone(),
                    approval_ttl: config.remediation.approval_ttl,
                    edit_interval: d.edit_interval,
                    client: client.clone(),
                    answer_within: std::time::Duration::from_secs(2),
                    seen: Default::default(),
                })
            }
        };
        let (interactions, gateway) = match (interactions, bot_token, d.transport) {
            (Some(interactions), Some(token), DiscordTransport::Gateway) => {
                let commands = d.guild_id.clone().map(|guild_id| gateway::commands::SlashCommands { guild_id, cluster: None, triage: None });
                (None, Some(gateway::Gateway { token, client: client.clone(), interactions: Arc::new(interactions), commands }))
            }
            (interactions, _, _) => (interactions, None),
        };
        let notifier = notifier::Notifier::new(journal, client.clone(), config.remediation.approval_ttl, d.edit_interval);
        Ok(Some(Self { client, interactions, gateway, notifier }))
    }
}

/// Problems in the `discord` config section.
pub fn config_problems(d: &DiscordConfig) -> Vec<String> {
    let mut problems = vec![];
    let snowflake = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    match reqwest::Url::parse(&d.api_base) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {}
        Ok(u) => problems.push(format!("discord.apiBase: scheme {:?} is not http or https", u.scheme())),
        Err(e) => problems.push(format!("discord.apiBase: {:?}: {e}", d.api_base)),
    }
    if let Some(id) = d.channel_id.as_deref().filter(|id| !snowflake(id)) {
        problems.push(format!("discord.channelId: {id:?} is not a Discord id (digits only)"));
    }
    problems.extend(transport_problems(d, snowflake));
    for (key, ids) in [("discord.approvers.users", &d.approvers.users), ("discord.approvers.roles", &d.approvers.roles)] {
        if let Some(id) = ids.iter().find(|id| !snowflake(id)) {
            problems.push(format!("{key}: {id:?} is not a Discord id (digits only)"));
        }
    }
    if let Some(key) = &d.public_key {
        if let Err(e) = interactions::parse_public_key(key) {
            problems.push(format!("discord.publicKey: {e}"));
        }
    }
    if d.public_key.is_some() && d.public_key_file.is_some() {
        problems.push("discord.publicKey and discord.publicKeyFile: set one, not both".into());
    }
    if d.edit_interval.0.is_zero() {
        problems.push("discord.editInterval: must be longer than 0s".into());
    }
    if let Some(listen) = &d.listen {
        if listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("discord.listen: {listen:?} is not an address like 0.0.0.0:9848"));
        }
        if d.bot_token_file.is_none() {
            problems.push("discord.listen: only bot mode receives interactions (set discord.botTokenFile)".into());
        } else if d.transport == DiscordTransport::Gateway {
            problems.push("discord.listen: the Gateway transport has no endpoint to serve (set discord.transport: http for the HTTP endpoint)".into());
        }
    }
    let bot = d.bot_token_file.is_some();
    if bot && d.webhook_url_file.is_some() {
        problems.push("discord.botTokenFile and discord.webhookUrlFile: choose bot mode (buttons) or webhook-only mode, not both".into());
    }
    if bot {
        if d.channel_id.is_none() {
            problems.push("discord.channelId: bot mode needs the channel to post to".into());
        }
        if d.transport == DiscordTransport::Http && d.public_key.is_none() && d.public_key_file.is_none() {
            problems.push("discord.publicKey: bot mode needs the application's public key (or publicKeyFile) to verify button clicks".into());
        }
        if d.approvers.users.is_empty() && d.approvers.roles.is_empty() {
            problems.push("discord.approvers: name at least one user or role id, or nobody can approve from Discord".into());
        }
    } else if d.public_key.is_some() || d.public_key_file.is_some() || d.channel_id.is_some() {
        problems.push("discord.publicKey/publicKeyFile/channelId: only used in bot mode: set discord.botTokenFile too".into());
    }
    problems
}

/// The slash commands' guild comes with the Gateway transport only.
fn transport_problems(d: &DiscordConfig, snowflake: impl Fn(&str) -> bool) -> Vec<String> {
    let mut problems = vec![];
    if let Some(id) = d.guild_id.as_deref().filter(|id| !snowflake(id)) {
        problems.push(format!("discord.guildId: {id:?} is not a Discord id (digits only)"));
    }
    if d.guild_id.is_some() && (d.bot_token_file.is_none() || d.transport != DiscordTransport::Gateway) {
        problems.push("discord.guildId: the slash commands come with the Gateway transport in bot mode (discord.botTokenFile, discord.transport: gateway)".into());
    }
    problems
}
