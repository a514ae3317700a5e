//! An `INTERACTION_CREATE` from the Gateway to its answer: the replay check
//! and decision path of the HTTP endpoint, then the initial response to
//! `POST /interactions/{id}/{token}/callback` and, when deferred, the late
//! answer after it.
//!
//! Gateway events need no signature check: they arrive on the connection
//! the bot opened to Discord with its token. The interaction id still goes
//! through the replay check, so an event delivered twice (a Resume replays
//! what the last connection may already have handed over) is answered once.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;

use super::Gateway;
use crate::discord::interactions::{self, Seen, MAX_REMEMBERED};

pub async fn on_interaction(gateway: Arc<Gateway>, interaction: Value) {
    let (Some(id), Some(token)) = (interaction["id"].as_str(), interaction["token"].as_str()) else {
        tracing::warn!("Discord Gateway: an interaction without id or token ignored");
        return;
    };
    let (id, token) = (id.to_string(), token.to_string());
    let now = Utc::now().timestamp();
    match gateway.interactions.seen.check_and_remember(&id, now, now) {
        Seen::First => {}
        Seen::Replayed => {
            tracing::info!(interaction = %id, "Discord Gateway: an interaction delivered again was already answered");
            return;
        }
        Seen::Full => {
            tracing::warn!(remembered = MAX_REMEMBERED, interaction = %id, "too many Discord interactions in the replay window; not answered");
            return;
        }
    }
    let answered = match (interaction["type"].as_u64(), &gateway.commands) {
        (Some(super::commands::APPLICATION_COMMAND), Some(commands)) => commands.answer(&gateway.interactions, interaction).await,
        _ => interactions::answer(gateway.interactions.clone(), interaction).await,
    };
    if let Err(error) = gateway.client.interaction_callback(&id, &token, &answered.now).await {
        tracing::warn!(%error, interaction = %id, "Discord Gateway: the interaction callback failed");
        return;
    }
    if let Some(later) = answered.later {
        later.await;
    }
}
