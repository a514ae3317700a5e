//! What lifeboat says on Discord about a run, as message bodies: a pure
//! function of the journal record and the clock, so the notifier (and a
//! button click) render the same message from the same record.
//!
//! Discord's limits are respected here: content ≤ 2000 characters, embed
//! title ≤ 256, description ≤ 4096, field value ≤ 1024, all embeds of a
//! message ≤ 6000 characters, `custom_id` ≤ 100.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::config::Dur;
use crate::journal::{Mode as RunMode, Phase, RunRecord, StepState};
use crate::plan::shell::quote;

pub const MAX_CONTENT: usize = 2000;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_EMBEDS_TOTAL: usize = 6000;
pub const MAX_CUSTOM_ID: usize = 100;

/// Bot mode posts buttons; a plain channel webhook cannot, so its messages
/// say how to approve over HTTP or the CLI instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Bot,
    Webhook,
}

#[derive(Clone, Debug)]
pub struct RenderContext {
    pub transport: Transport,
    pub approval_ttl: Dur,
    /// Elapsed times are shown rounded down to this, so a running run's
    /// message changes (and is edited) at most this often.
    pub edit_interval: Dur,
    pub now: DateTime<Utc>,
}

/// What a button does. Encoded in its `custom_id` with the run id, the
/// plan hash the message showed, and (for a per-phase gate) the phase, so
/// an approval binds to that plan and that gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Approve,
    Reject,
    Commands,
}

impl Verb {
    fn code(self) -> &'static str {
        match self {
            Verb::Approve => "a",
            Verb::Reject => "r",
            Verb::Commands => "c",
        }
    }
}

/// A lifeboat button, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub verb: Verb,
    pub run_id: String,
    pub plan_hash: String,
    /// The approval gate the button decides: None for the run's first
    /// approval, else the phase the run was paused for when it was shown.
    pub phase: Option<String>,
}

/// `lb:<verb>:<run id>:<plan hash>`, with `:<phase>` appended while the run
/// waits at a per-phase gate (Approve and Reject), or None when it would
/// not fit in 100 characters.
pub fn custom_id(verb: Verb, run: &RunRecord) -> Option<String> {
    let mut id = format!("lb:{}:{}:{}", verb.code(), run.id, run.spec.plan_hash);
    if let (Some(phase), false) = (&run.status.awaiting_phase, verb == Verb::Commands) {
        id = format!("{id}:{phase}");
    }
    (id.len() <= MAX_CUSTOM_ID).then_some(id)
}

/// The verb, run id, plan hash and gate of a lifeboat button.
pub fn parse_custom_id(custom_id: &str) -> Option<Button> {
    let mut parts = custom_id.splitn(5, ':');
    if parts.next()? != "lb" {
        return None;
    }
    let verb = match parts.next()? {
        "a" => Verb::Approve,
        "r" => Verb::Reject,
        "c" => Verb::Commands,
        _ => return None,
    };
    let (run_id, plan_hash) = (parts.next()?.to_string(), parts.next()?.to_string());
    let phase = match parts.next() {
        Some("") => return None,
        phase => phase.map(str::to_string),
    };
    (!run_id.is_empty() && !plan_hash.is_empty()).then_some(Button { verb, run_id, plan_hash, phase })
}

/// When the buttons of a run awaiting approval stop working.
pub fn approval_deadline(run: &RunRecord, ttl: Dur) -> DateTime<Utc> {
    // Past the end of time: closed.
    run.approval_deadline(ttl).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Cuts `text` to at most `max` characters, marking the cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::AwaitingApproval => "🟡 Awaiting approval",
        Phase::Approved => "🔵 Approved, waiting for the leader",
        Phase::Running => "🔵 Running",
        Phase::Succeeded => "🟢 Succeeded",
        Phase::NothingToDo => "⚪ Nothing to do",
        Phase::Stopped => "🟠 Stopped",
        Phase::Rejected => "🔴 Rejected",
        Phase::Aborted => "🔴 Aborted",
        Phase::Failed => "🔴 Failed",
    }
}

fn colour(phase: Phase) -> u32 {
    match phase {
        Phase::AwaitingApproval => 0xF1C40F,
        Phase::Approved | Phase::Running => 0x3498DB,
        Phase::Succeeded => 0x2ECC71,
        Phase::NothingToDo => 0x95A5A6,
        Phase::Stopped | Phase::Rejected | Phase::Aborted | Phase::Failed => 0xE74C3C,
    }
}

fn marker(state: StepState) -> &'static str {
    match state {
        StepState::Pending => "▫️",
        StepState::Running => "⏳",
        StepState::Succeeded => "✅",
        StepState::Refused => "⛔",
        StepState::Failed => "❌",
        StepState::NotRun => "➖",
    }
}

/// `<t:UNIX:R>`: Discord shows it in the reader's time zone, relative.
fn when(t: DateTime<Utc>) -> String {
    format!("<t:{}:R>", t.timestamp())
}

fn duration(d: chrono::Duration) -> String {
    Dur(d.to_std().unwrap_or_default()).to_string()
}

/// Rounded down to the edit interval (see [`RenderContext::edit_interval`]).
fn coarse(d: chrono::Duration, interval: Dur) -> String {
    let step = interval.0.as_secs().max(1) as i64;
    duration(chrono::Duration::seconds(d.num_seconds().max(0) / step * step))
}

fn trigger_text(run: &RunRecord) -> String {
    let mut out = String::new();
    let t = &run.spec.trigger;
    match &t.alert {
        Some(alert) => {
            let _ = writeln!(out, "Alert **{}** firing since {} (fingerprint `{}`)", alert.alertname, when(alert.starts_at), alert.fingerprint);
        }
        None => {
            let _ = writeln!(out, "Requested by **{}** {}", run.spec.requested_by, when(run.spec.requested_at));
        }
    }
    let labels: Vec<String> = [("namespace", &t.namespace), ("name", &t.name), ("node", &t.node)].iter().filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))).collect();
    if !labels.is_empty() {
        let _ = writeln!(out, "Trigger: {}", labels.join(", "));
    }
    for finding in &run.spec.plan.findings {
        let _ = writeln!(out, "• {finding}");
    }
    out
}

fn plan_text(run: &RunRecord) -> String {
    let mut out = String::new();
    for (i, step) in run.spec.plan.steps.iter().enumerate() {
        let record = run.status.steps.iter().find(|s| s.id == step.id);
        let state = record.map_or(StepState::Pending, |r| r.state);
        let _ = writeln!(out, "{} **{}. {}** `{}`", marker(state), i + 1, step.title, step.id);
        let objects: Vec<String> = step.objects().iter().map(|o| o.to_string()).collect();
        let _ = writeln!(out, "   touches: {}", objects.join(", "));
        if !step.needs.is_empty() {
            let _ = writeln!(out, "   after: {}", step.needs.join(", "));
        }
        if let Some(source) = &step.recovery_source {
            let _ = writeln!(out, "   recovery: {} — evidence: {}", source.description, source.evidence.join("; "));
        }
        if let Some(detail) = record.and_then(|r| r.detail.as_deref()) {
            let _ = writeln!(out, "   → {}", clip(detail, 300));
        }
    }
    out
}

/// "step n of m: title, running for …; elapsed …" while a run executes.
fn progress_text(run: &RunRecord, ctx: &RenderContext) -> Option<String> {
    let started = run.status.started_at?;
    let total = run.status.steps.len();
    let done = run.status.steps.iter().filter(|s| s.state == StepState::Succeeded).count();
    let end = run.status.finished_at.unwrap_or(ctx.now);
    let elapsed = coarse(end - started, ctx.edit_interval);
    if run.status.phase != Phase::Running {
        return Some(format!("{done} of {total} steps succeeded in {elapsed}"));
    }
    let running: Vec<(usize, &crate::journal::StepRecord)> = run.status.steps.iter().enumerate().filter(|(_, s)| s.state == StepState::Running).collect();
    let current = match running.first() {
        Some((i, s)) => {
            let since = s.started_at.map_or(String::new(), |t| format!(", running for {}", coarse(ctx.now - t, ctx.edit_interval)));
            let others = if running.len() > 1 { format!(" (+{} more in parallel)", running.len() - 1) } else { String::new() };
            format!("step {} of {total}: **{}**{since}{others}", i + 1, s.title)
        }
        None => format!("step {} of {total}: starting", (done + 1).min(total)),
    };
    Some(format!("{current}\n{done} of {total} done; elapsed {elapsed}"))
}

fn approval_text(run: &RunRecord, ctx: &RenderContext) -> String {
    let status = &run.status;
    if status.phase == Phase::AwaitingApproval {
        let deadline = approval_deadline(run, ctx.approval_ttl);
        if ctx.now > deadline {
            return format!("expired {} (remediation.approvalTtl {}): submit the run again", when(deadline), ctx.approval_ttl);
        }
        return format!("needed, closes {}", when(deadline));
    }
    match (&status.approved_by, status.approved_at) {
        (Some(by), Some(at)) => format!("approved by {by} {}", when(at)),
        (Some(by), None) => format!("approved by {by}"),
        _ => "not approved".into(),
    }
}

fn field(name: &str, value: String, inline: bool) -> Value {
    json!({"name": name, "value": clip(&value, 200.min(MAX_FIELD_VALUE)), "inline": inline})
}

fn embed_chars(embeds: &[Value]) -> usize {
    let len = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    embeds
        .iter()
        .map(|e| {
            len(&e["title"]) + len(&e["description"]) + len(&e["footer"]["text"]) + e["fields"].as_array().map_or(0, |f| f.iter().map(|f| len(&f["name"]) + len(&f["value"])).sum())
        })
        .sum()
}

fn buttons(run: &RunRecord, ctx: &RenderContext) -> Vec<Value> {
    if ctx.transport != Transport::Bot {
        return vec![];
    }
    let awaiting = run.status.phase == Phase::AwaitingApproval;
    let open = awaiting && ctx.now <= approval_deadline(run, ctx.approval_ttl);
    let mut row = vec![];
    let mut button = |verb: Verb, label: &str, style: u8| {
        if let Some(id) = custom_id(verb, run) {
            row.push(json!({"type": 2, "style": style, "label": label, "custom_id": id}));
        }
    };
    if open {
        button(Verb::Approve, "Approve", 3);
    }
    if awaiting {
        button(Verb::Reject, "Reject", 4);
    }
    if !run.spec.plan.steps.is_empty() {
        button(Verb::Commands, "Show commands", 2);
    }
    if row.is_empty() {
        return vec![];
    }
    vec![json!({"type": 1, "components": row})]
}

/// The run's main message: what happened, the plan, where it stands, and
/// (bot mode) the buttons. Also the `data` of an UPDATE_MESSAGE answer.
pub fn main_message(run: &RunRecord, ctx: &RenderContext) -> Value {
    let status = &run.status;
    let content = clip(&format!("**{}** — `{}` for **{}**", phase_label(status.phase), run.spec.playbook, run.spec.target), MAX_CONTENT);
    let mut fields = vec![
        field("Run", format!("`{}`", run.id), false),
        field("Plan hash", format!("`{}`", run.spec.plan_hash), true),
        field("Mode", format!("{:?}", run.spec.mode).to_lowercase(), true),
        field("Approval", approval_text(run, ctx), false),
    ];
    if let Some(message) = &status.message {
        fields.push(field("Status", message.clone(), false));
    }
    let mut embeds = vec![json!({
        "title": "What happened",
        "description": clip(&trigger_text(run), 1200),
        "color": colour(status.phase),
        "fields": fields,
    })];
    if !run.spec.plan.steps.is_empty() {
        embeds.push(json!({
            "title": clip(&format!("Plan: {} steps", run.spec.plan.steps.len()), 256),
            "description": plan_text(run),
            "color": colour(status.phase),
        }));
    }
    if let Some(progress) = progress_text(run, ctx) {
        embeds.push(json!({"title": "Progress", "description": clip(&progress, 400), "color": colour(status.phase)}));
    }
    if ctx.transport == Transport::Webhook && status.phase == Phase::AwaitingApproval && run.spec.mode == RunMode::Approve {
        let how = format!(
            "This channel has no buttons. Approve the plan you reviewed with\n`lifeboat approve {id} --hash {hash}`\nor `POST /api/runs/{path_id}/approve` with `{{\"hash\": \"{json_hash}\", \"by\": \"<you>\"}}` (bearer token of remediation.apiTokenFile).\nReject: `lifeboat abort {id}`",
            id = quote(&run.id),
            hash = quote(&run.spec.plan_hash),
            path_id = run.id,
            json_hash = run.spec.plan_hash
        );
        embeds.push(json!({"title": "How to approve", "description": clip(&how, 1000), "color": colour(status.phase)}));
    }
    // Fit every embed into Discord's 6000-character total; the plan gives way first.
    let plan_index = if run.spec.plan.steps.is_empty() { None } else { Some(1) };
    if let Some(i) = plan_index {
        let others = embed_chars(&embeds) - embeds[i]["description"].as_str().map_or(0, |s| s.chars().count());
        let room = (MAX_EMBEDS_TOTAL - 50).saturating_sub(others).min(MAX_DESCRIPTION);
        let full = embeds[i]["description"].as_str().unwrap_or_default().to_string();
        if full.chars().count() > room {
            let note = format!("\n… see `lifeboat runs show {}`", quote(&run.id));
            let cut = clip(&full, room.saturating_sub(note.chars().count()));
            embeds[i]["description"] = json!(format!("{cut}{note}"));
        }
    }
    json!({
        "content": content,
        "embeds": embeds,
        "components": buttons(run, ctx),
        "allowed_mentions": {"parse": []},
    })
}

/// A reply the notifier posts once, identified by `key` in the journal.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub key: String,
    pub body: Value,
}

fn reply(key: String, content: String, description: Option<String>, phase: Phase) -> Reply {
    let mut body = json!({"content": clip(&content, MAX_CONTENT), "allowed_mentions": {"parse": []}});
    if let Some(description) = description.filter(|d| !d.is_empty()) {
        body["embeds"] = json!([{"description": clip(&description, MAX_DESCRIPTION), "color": colour(phase)}]);
    }
    Reply { key, body }
}

/// Whether a run gets replies at all: one that never needed a decision nor
/// ran (nothing to do, observe mode) is said in its main message alone.
fn has_story(run: &RunRecord) -> bool {
    !(run.status.phase == Phase::NothingToDo || run.spec.mode == RunMode::Observe)
}

/// Every reply due for this record, in the order to post them: the
/// approval, each finished step (in the order they finished), and the final
/// summary once the run is over.
pub fn replies(run: &RunRecord) -> Vec<Reply> {
    let mut out = vec![];
    if !has_story(run) {
        return out;
    }
    let status = &run.status;
    if let (Some(by), true) = (&status.approved_by, status.phase != Phase::AwaitingApproval) {
        let hash = status.approved_hash.as_deref().unwrap_or("?");
        out.push(reply("approved".into(), format!("✅ Plan `{hash}` of run `{}` approved by {by}", run.id), None, Phase::Approved));
    }
    let total = status.steps.len();
    let mut finished: Vec<(usize, &crate::journal::StepRecord)> =
        status.steps.iter().enumerate().filter(|(_, s)| matches!(s.state, StepState::Succeeded | StepState::Failed | StepState::Refused)).collect();
    finished.sort_by_key(|(i, s)| (s.finished_at, *i));
    for (i, step) in finished {
        let verb = match step.state {
            StepState::Succeeded => "succeeded",
            StepState::Failed => "failed",
            _ => "was refused",
        };
        let took = match (step.started_at, step.finished_at) {
            (Some(a), Some(b)) => format!(" in {}", duration(b - a)),
            _ => String::new(),
        };
        let mut description = step.detail.clone().unwrap_or_default();
        if step.state != StepState::Succeeded {
            let _ = write!(description, "\n\nTo do it by hand:\n```sh\n{}\n```", step.command);
        }
        out.push(reply(
            format!("step:{}:{:?}", step.id, step.state).to_lowercase(),
            format!("{} Step {}/{total} **{}** (`{}`) {verb}{took}", marker(step.state), i + 1, step.title, step.id),
            Some(description),
            if step.state == StepState::Succeeded { Phase::Running } else { Phase::Failed },
        ));
    }
    if status.phase.is_terminal() {
        out.push(final_summary(run));
    }
    out
}

fn final_summary(run: &RunRecord) -> Reply {
    let status = &run.status;
    let done = status.steps.iter().filter(|s| s.state == StepState::Succeeded).count();
    let took = match (status.started_at, status.finished_at) {
        (Some(a), Some(b)) => format!(" in {}", duration(b - a)),
        _ => String::new(),
    };
    let headline = format!("**{}** — run `{}` (`{}` for {}): {done} of {} steps{took}", phase_label(status.phase), run.id, run.spec.playbook, run.spec.target, status.steps.len());
    let mut text = String::new();
    if let Some(message) = &status.message {
        let _ = writeln!(text, "{message}\n");
    }
    let succeeded: Vec<_> = status.steps.iter().filter(|s| s.state == StepState::Succeeded).collect();
    if !succeeded.is_empty() {
        let _ = writeln!(text, "**What was done, and the evidence:**");
        for s in succeeded {
            let _ = writeln!(text, "✅ {} — {}", s.title, clip(s.detail.as_deref().unwrap_or("done"), 300));
        }
    }
    let mut left: Vec<String> = vec![];
    if let Some(suspended) = status.message.as_deref().and_then(|m| m.split_once("LEFT SUSPENDED")) {
        left.push(format!("Flux objects were LEFT SUSPENDED{}", suspended.1));
    }
    let remaining: Vec<_> = status.steps.iter().filter(|s| s.state != StepState::Succeeded).collect();
    if !remaining.is_empty() && status.phase != Phase::Succeeded && status.started_at.is_some() {
        let commands: Vec<&str> = remaining.iter().map(|s| s.command.as_str()).collect();
        left.push(format!("Steps that did not run or did not succeed, by hand if still needed:\n```sh\n{}\n```", commands.join("\n")));
    }
    if status.phase == Phase::Succeeded || !left.is_empty() {
        let _ = writeln!(text, "\n**Left for you:**");
        if left.is_empty() {
            let _ = writeln!(text, "nothing: every step succeeded.");
        }
        for l in left {
            let _ = writeln!(text, "{l}");
        }
    }
    reply("final".into(), headline, Some(text), status.phase)
}

/// The ephemeral answer to "Show commands": the plan as kubectl/flux commands.
pub fn commands_text(run: &RunRecord) -> String {
    let mut out = format!("Commands of run `{}` (plan `{}`):\n```sh\n", run.id, run.spec.plan_hash);
    let tail = format!("```\nAll of it: `lifeboat runs show {}`", quote(&run.id));
    let mut body = String::new();
    for (i, step) in run.spec.plan.steps.iter().enumerate() {
        let _ = writeln!(body, "# {}. {}\n{}", i + 1, step.title, step.command());
    }
    let room = MAX_CONTENT - out.chars().count() - tail.chars().count();
    out.push_str(&clip(&body, room));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&tail);
    out
}
