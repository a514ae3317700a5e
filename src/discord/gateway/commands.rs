//! The `/lifeboat` slash commands, registered for the configured guild when
//! the Gateway session is ready: `runs`, `show <id>`, `triage` and
//! `kill-switch on|off` (approvers only). What names runs, plans or cluster
//! state is answered ephemerally (only the caller sees it); a kill-switch
//! change is announced in the channel.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::discord::interactions::{ephemeral, not_an_approver, Answered, Interactions};
use crate::discord::render::{self, MAX_CONTENT};
use crate::plan::shell::quote;

/// Interaction type APPLICATION_COMMAND (Discord: "Interaction Type").
pub const APPLICATION_COMMAND: u64 = 2;
/// Interaction callback types (Discord: "Interaction Callback Type").
const CHANNEL_MESSAGE_WITH_SOURCE: u64 = 4;
const DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE: u64 = 5;
/// Application command option types.
const SUB_COMMAND: u64 = 1;
const STRING: u64 = 3;
/// Runs listed by `/lifeboat runs`, newest first.
const RUNS_LISTED: usize = 15;

/// The triage summary, rendered on demand (serve reads its current snapshot).
pub type TriageText = Arc<dyn Fn() -> String + Send + Sync>;

pub struct SlashCommands {
    /// The guild the commands are registered for; commands from elsewhere are refused.
    pub guild_id: String,
    /// The cluster and lifeboat's namespace, for the kill switch.
    pub cluster: Option<(kube::Client, String)>,
    pub triage: Option<TriageText>,
}

/// The body of `PUT /applications/{app}/guilds/{guild}/commands`.
pub fn definitions() -> Value {
    let sub = |name: &str, description: &str, options: Value| json!({"type": SUB_COMMAND, "name": name, "description": description, "options": options});
    json!([{
        "name": "lifeboat",
        "type": 1,
        "description": "lifeboat remediation runs",
        "options": [
            sub("runs", "The latest remediation runs", json!([])),
            sub("show", "One run: phase, plan hash, steps", json!([{"type": STRING, "name": "id", "description": "The run id", "required": true}])),
            sub("triage", "What lifeboat sees wrong in the cluster now", json!([])),
            sub("kill-switch", "Stop or allow remediation steps (approvers only)", json!([{
                "type": STRING, "name": "state", "description": "on: no step starts; off: steps may start", "required": true,
                "choices": [{"name": "on", "value": "on"}, {"name": "off", "value": "off"}],
            }])),
        ],
    }])
}

/// How an answer is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Audience {
    /// Only the caller.
    Caller,
    /// The channel.
    Channel,
}

impl SlashCommands {
    pub fn registration(&self) -> Value {
        definitions()
    }

    pub async fn answer(&self, ix: &Arc<Interactions>, interaction: Value) -> Answered {
        if interaction["guild_id"].as_str() != Some(self.guild_id.as_str()) {
            return at_once(Audience::Caller, "lifeboat answers its commands only in its own server.".into());
        }
        let data = &interaction["data"];
        let sub = &data["options"][0];
        let option = |name: &str| sub["options"].as_array().into_iter().flatten().find(|o| o["name"] == name).and_then(|o| o["value"].as_str()).map(str::to_string);
        if data["name"] != "lifeboat" {
            return at_once(Audience::Caller, "This is not a lifeboat command.".into());
        }
        let journal = ix.journal.clone();
        match sub["name"].as_str().unwrap_or_default() {
            "runs" => in_time(ix, &interaction, Audience::Caller, async move { runs_text(&journal).await }).await,
            "show" => {
                let id = option("id").unwrap_or_default();
                in_time(ix, &interaction, Audience::Caller, async move { show_text(&journal, &id).await }).await
            }
            "triage" => match &self.triage {
                Some(triage) => {
                    let triage = triage.clone();
                    in_time(ix, &interaction, Audience::Caller, async move { code_block("Triage", &triage()) }).await
                }
                None => at_once(Audience::Caller, "Triage needs serve's view of the cluster; it is not available here.".into()),
            },
            "kill-switch" => {
                let sender = ix.sender(&interaction);
                if !sender.may_decide {
                    tracing::info!(user = %sender.id, "Discord /lifeboat kill-switch by a non-approver refused");
                    return at_once(Audience::Caller, not_an_approver(&sender));
                }
                let Some((client, namespace)) = self.cluster.clone() else {
                    return at_once(Audience::Caller, "The kill switch needs the cluster; it is not available here.".into());
                };
                let engage = match option("state").as_deref() {
                    Some("on") => true,
                    Some("off") => false,
                    _ => return at_once(Audience::Caller, "kill-switch takes `on` or `off`.".into()),
                };
                let by = sender.by();
                in_time(ix, &interaction, Audience::Channel, async move { kill_switch(&client, &namespace, engage, &by).await }).await
            }
            other => at_once(Audience::Caller, format!("lifeboat has no command `{other}`.")),
        }
    }
}

fn message(audience: Audience, text: String) -> Value {
    match audience {
        Audience::Caller => ephemeral(text),
        Audience::Channel => json!({"content": render::clip(&text, MAX_CONTENT), "allowed_mentions": {"parse": []}}),
    }
}

fn at_once(audience: Audience, text: String) -> Answered {
    Answered::at_once(json!({"type": CHANNEL_MESSAGE_WITH_SOURCE, "data": message(audience, text)}))
}

/// The answer within `answer_within`, or a deferred response now (ephemeral
/// alike) and the answer as an edit of it.
async fn in_time(ix: &Arc<Interactions>, interaction: &Value, audience: Audience, text: impl Future<Output = String> + Send + 'static) -> Answered {
    let mut task = tokio::spawn(text);
    if !ix.answer_within.is_zero() {
        if let Ok(done) = tokio::time::timeout(ix.answer_within, &mut task).await {
            return at_once(audience, done.unwrap_or_else(|e| format!("lifeboat failed: {e}")));
        }
    }
    let (application, token) = (interaction["application_id"].as_str().unwrap_or_default().to_string(), interaction["token"].as_str().unwrap_or_default().to_string());
    let client = ix.client.clone();
    let flags = if audience == Audience::Caller { json!({"flags": 64}) } else { json!({}) };
    Answered {
        now: json!({"type": DEFERRED_CHANNEL_MESSAGE_WITH_SOURCE, "data": flags}),
        later: Some(Box::pin(async move {
            let text = task.await.unwrap_or_else(|e| format!("lifeboat failed: {e}"));
            if let Err(error) = client.edit_original_response(&application, &token, &message(audience, text)).await {
                tracing::warn!(%error, "answering a Discord command late failed");
            }
        })),
    }
}

fn code_block(title: &str, body: &str) -> String {
    let head = format!("{title}:\n```\n");
    let room = MAX_CONTENT - head.chars().count() - 4;
    format!("{head}{}\n```", render::clip(body.trim_end(), room))
}

async fn runs_text(journal: &crate::journal::Journal) -> String {
    let runs = match journal.list().await {
        Ok(runs) => runs,
        Err(e) => return format!("The journal is unreachable: {e}"),
    };
    if runs.is_empty() {
        return "No remediation runs.".into();
    }
    let mut out = String::new();
    for run in runs.iter().rev().take(RUNS_LISTED) {
        let _ = writeln!(out, "`{}` {:?} {} ({})", run.id, run.status.phase, run.spec.target, run.status.progress());
    }
    if runs.len() > RUNS_LISTED {
        let _ = writeln!(out, "… {} older: `lifeboat runs list`", runs.len() - RUNS_LISTED);
    }
    out
}

async fn show_text(journal: &crate::journal::Journal, id: &str) -> String {
    let run = match journal.get(id).await {
        Ok(Some(run)) => run,
        Ok(None) => return format!("There is no run `{id}`."),
        Err(e) => return format!("The journal is unreachable: {e}"),
    };
    let mut out = format!("Run `{}`: {:?}, playbook {} on {}, plan `{}`\n", run.id, run.status.phase, run.spec.playbook, run.spec.target, run.spec.plan_hash);
    if let Some(by) = &run.status.approved_by {
        let _ = writeln!(out, "approved by {by}");
    }
    for step in &run.status.steps {
        let _ = writeln!(out, "{:?} {}: {}", step.state, step.id, step.title);
    }
    let _ = write!(out, "All of it: `lifeboat runs show {}`", quote(&run.id));
    out
}

async fn kill_switch(client: &kube::Client, namespace: &str, engage: bool, by: &str) -> String {
    let result = match engage {
        true => crate::act::kill_switch::engage(client, namespace, by, "engaged from Discord").await,
        false => crate::act::kill_switch::release(client, namespace).await,
    };
    match result {
        Ok(()) if engage => {
            tracing::info!(%by, "kill switch engaged from Discord");
            format!("Kill switch ON ({by}): no remediation step starts until it is off.")
        }
        Ok(()) => {
            tracing::info!(%by, "kill switch released from Discord");
            format!("Kill switch off ({by}): remediation steps may start again (remediation.killSwitch in the config still applies).")
        }
        Err(e) => format!("The kill switch was not changed: {e}"),
    }
}
