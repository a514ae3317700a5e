//! A local Discord Gateway (websocket, JSON encoding) that holds lifeboat to
//! the protocol Discord documents, and delivers interactions.
//!
//! Spec: discord/discord-api-docs, docs/topics/gateway.mdx (Connecting,
//! Hello, Sending Heartbeats, Identifying, Ready, Disconnecting, Resuming,
//! Gateway Intents) and docs/topics/opcodes-and-status-codes.md (Gateway
//! Opcodes, Gateway Close Event Codes), read at commit 468c03c:
//!
//! * The URL carries `v=10&encoding=json`; the first message is Hello (op
//!   10) with `heartbeat_interval` (ms).
//! * Heartbeat (op 1) carries the last sequence number received (or null)
//!   and gets a Heartbeat ACK (op 11). A connection that sends no heartbeat
//!   in time is closed (resumable). [`FakeGateway::go_silent`] plays a
//!   zombied connection: no ACKs and no events; the client must close it
//!   (with a code other than 1000/1001) and resume.
//! * Identify (op 2) needs the bot token, `intents` and `properties`
//!   {os, browser, device}; a wrong token closes with 4004 (must not be
//!   retried), a second Identify with 4005, anything but Heartbeat before
//!   Identify/Resume with 4003, an unknown opcode with 4001, a payload that
//!   is not JSON with 4002. Ready (op 0, `t: READY`) carries `session_id`,
//!   `resume_gateway_url` and the application.
//! * Resume (op 6) with token, `session_id` and `seq` on a new connection to
//!   `resume_gateway_url` replays the events after `seq` in order, then
//!   RESUMED; an unknown or invalidated session gets Invalid Session (op 9,
//!   `d: false`); a `seq` beyond the session's closes with 4007.
//! * Closing with 1000 or 1001 invalidates the session; any other close, or
//!   a dropped TCP connection, keeps it resumable.
//! * Reconnect (op 7) and Invalid Session (op 9) are sent on request.
//!
//! Protocol deviations by the client are recorded as violations (tests
//! assert there are none). Identify tokens are compared without the `Bot `
//! prefix, which twilight-gateway 0.18 sends (src/config.rs ConfigBuilder::new).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as Ws;

use super::fake_discord::{APPLICATION_ID, BOT_TOKEN};

/// Where Ready points resumes (`resume_gateway_url`): a path of its own, so
/// the fake sees whether the client resumes there and identifies at the
/// `GET /gateway/bot` URL.
const RESUME_PATH: &str = "/resume";

/// What a connection is told to do.
enum Out {
    Send(Value),
    Close(u16),
    /// The TCP connection ends without a close frame.
    Drop,
}

struct Session {
    /// The last sequence number used.
    seq: u64,
    /// Dispatches by sequence number, for replays.
    log: Vec<(u64, Value)>,
    /// The connection that holds it now.
    live: Option<u64>,
    invalidated: bool,
}

#[derive(Default)]
struct State {
    token: String,
    heartbeat_interval_ms: u64,
    sessions: HashMap<String, Session>,
    /// The session interactions go to: the latest identified.
    current: Option<String>,
    open: HashMap<u64, mpsc::UnboundedSender<Out>>,
    next_connection: u64,
    next_session: u64,
    silent: bool,
    identifies: u32,
    resumes: u32,
    heartbeats: u32,
    /// Close codes the client sent.
    client_closes: Vec<Option<u16>>,
    /// Close codes the fake sent.
    server_closes: Vec<u16>,
    /// The most connections open at once.
    most_open: usize,
    /// (intents, properties) of each Identify.
    identify_payloads: Vec<Value>,
    violations: Vec<String>,
}

pub struct FakeGateway {
    /// The URL `GET /gateway/bot` answers (`ws://127.0.0.1:PORT`).
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeGateway {
    /// A Gateway accepting `BOT_TOKEN`, asking for a heartbeat every `heartbeat_interval`.
    pub async fn start(heartbeat_interval: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { token: BOT_TOKEN.to_string(), heartbeat_interval_ms: heartbeat_interval.as_millis() as u64, ..State::default() }));
        let (accepting, resume_url) = (state.clone(), url.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let id = {
                    let mut s = accepting.lock().unwrap();
                    s.next_connection += 1;
                    s.next_connection
                };
                tokio::spawn(connection(accepting.clone(), stream, id, resume_url.clone()));
            }
        });
        Self { url, state }
    }

    /// Sends INTERACTION_CREATE on the current session (replayed on resume
    /// if no connection holds it right now).
    pub fn dispatch_interaction(&self, interaction: &Value) {
        self.dispatch("INTERACTION_CREATE", interaction.clone());
    }

    fn dispatch(&self, t: &str, d: Value) {
        let mut s = self.state.lock().unwrap();
        let current = s.current.clone().expect("no session identified yet");
        let silent = s.silent;
        let session = s.sessions.get_mut(&current).unwrap();
        session.seq += 1;
        let event = json!({"op": 0, "s": session.seq, "t": t, "d": d});
        session.log.push((session.seq, event.clone()));
        if let Some(live) = session.live.filter(|_| !silent) {
            if let Some(out) = s.open.get(&live) {
                let _ = out.send(Out::Send(event));
            }
        }
    }

    fn to_live(&self, out: impl Fn() -> Out) {
        let s = self.state.lock().unwrap();
        for tx in s.open.values() {
            let _ = tx.send(out());
        }
    }

    /// The open connections end without a close frame (a network failure).
    pub fn drop_connections(&self) {
        self.to_live(|| Out::Drop);
    }

    /// Reconnect (op 7) on the open connections.
    pub fn send_reconnect(&self) {
        self.to_live(|| Out::Send(json!({"op": 7, "d": null})));
    }

    /// Invalid Session (op 9); `resumable: false` also forgets the sessions.
    pub fn send_invalid_session(&self, resumable: bool) {
        if !resumable {
            let mut s = self.state.lock().unwrap();
            for session in s.sessions.values_mut() {
                session.invalidated = true;
            }
        }
        self.to_live(|| Out::Send(json!({"op": 9, "d": resumable})));
    }

    /// Close frames with `code` on the open connections.
    pub fn close_connections(&self, code: u16) {
        self.to_live(|| Out::Close(code));
    }

    /// Plays a zombied connection: no ACKs, no events, until a new connection.
    pub fn go_silent(&self) {
        self.state.lock().unwrap().silent = true;
    }

    /// Accepts `token` from now on (the bot token was reset).
    pub fn set_token(&self, token: &str) {
        self.state.lock().unwrap().token = token.to_string();
    }

    pub fn identifies(&self) -> u32 {
        self.state.lock().unwrap().identifies
    }

    pub fn resumes(&self) -> u32 {
        self.state.lock().unwrap().resumes
    }

    pub fn heartbeats(&self) -> u32 {
        self.state.lock().unwrap().heartbeats
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap().open.len()
    }

    pub fn most_open(&self) -> usize {
        self.state.lock().unwrap().most_open
    }

    pub fn client_closes(&self) -> Vec<Option<u16>> {
        self.state.lock().unwrap().client_closes.clone()
    }

    pub fn server_closes(&self) -> Vec<u16> {
        self.state.lock().unwrap().server_closes.clone()
    }

    pub fn identify_payloads(&self) -> Vec<Value> {
        self.state.lock().unwrap().identify_payloads.clone()
    }

    /// Whether a connection holds a session (identified or resumed).
    pub fn session_held(&self) -> bool {
        let s = self.state.lock().unwrap();
        s.current.as_ref().and_then(|c| s.sessions.get(c)).is_some_and(|session| session.live.is_some() && !session.invalidated)
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }

    /// Polls until `check` holds (panics after 60 s with `what`).
    pub async fn wait_until(&self, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check(self) {
            assert!(Instant::now() < deadline, "fake Gateway: gave up waiting for {what}; violations {:?}", self.violations());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn query_ok(uri: &str) -> bool {
    let query = uri.split_once('?').map_or("", |(_, q)| q);
    let pairs: Vec<&str> = query.split('&').collect();
    pairs.contains(&"v=10") && pairs.contains(&"encoding=json")
}

async fn connection(state: Arc<Mutex<State>>, stream: TcpStream, id: u64, resume_url: String) {
    let mut uri = String::new();
    // The callback's error type is tungstenite's (an HTTP response).
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        uri = request.uri().to_string();
        Ok(response)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let interval = {
        let mut s = state.lock().unwrap();
        s.open.insert(id, tx);
        s.most_open = s.most_open.max(s.open.len());
        s.silent = false;
        Duration::from_millis(s.heartbeat_interval_ms)
    };
    let at_resume_url = uri.starts_with(RESUME_PATH);
    let mut conn = Conn { state: state.clone(), id, session: None, at_resume_url, resume_url: format!("{resume_url}{RESUME_PATH}") };
    let mut ended = None;
    if !query_ok(&uri) {
        conn.violation(format!("connected to {uri:?} without v=10&encoding=json"));
        ended = Some(Out::Close(4012));
    } else {
        let hello = json!({"op": 10, "d": {"heartbeat_interval": interval.as_millis() as u64}});
        if sink.send(Ws::text(hello.to_string())).await.is_err() {
            ended = Some(Out::Drop);
        }
    }
    // Discord allows for latency beyond the interval ("there is already
    // tolerance"); twice the interval without a heartbeat closes it.
    let mut heartbeat_due = Instant::now() + interval * 2;
    while ended.is_none() {
        tokio::select! {
            message = source.next() => match message {
                Some(Ok(Ws::Text(text))) => {
                    let replies = conn.receive(text.as_str(), &mut heartbeat_due, interval);
                    for reply in replies {
                        match reply {
                            Out::Send(v) => if sink.send(Ws::text(v.to_string())).await.is_err() { ended = Some(Out::Drop); },
                            other => { ended = Some(other); break; }
                        }
                    }
                }
                Some(Ok(Ws::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    conn.client_closed(code);
                    let _ = sink.close().await;
                    break;
                }
                Some(Ok(Ws::Binary(_))) => ended = Some(Out::Close(4002)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            out = rx.recv() => match out {
                Some(Out::Send(v)) => if sink.send(Ws::text(v.to_string())).await.is_err() { ended = Some(Out::Drop); },
                Some(other) => ended = Some(other),
                None => ended = Some(Out::Drop),
            },
            _ = tokio::time::sleep_until(heartbeat_due) => ended = Some(Out::Drop),
        }
    }
    if let Some(Out::Close(code)) = ended {
        state.lock().unwrap().server_closes.push(code);
        let _ = sink.send(Ws::Close(Some(CloseFrame { code: CloseCode::from(code), reason: "".into() }))).await;
        // Wait (briefly) for the client's answering close frame.
        let _ = tokio::time::timeout(Duration::from_secs(2), source.next()).await;
    }
    conn.detach();
}

/// One connection's protocol state.
struct Conn {
    state: Arc<Mutex<State>>,
    id: u64,
    session: Option<String>,
    at_resume_url: bool,
    resume_url: String,
}

impl Conn {
    fn violation(&self, what: String) {
        self.state.lock().unwrap().violations.push(what);
    }

    fn client_closed(&mut self, code: Option<u16>) {
        let mut s = self.state.lock().unwrap();
        s.client_closes.push(code);
        if matches!(code, Some(1000 | 1001)) {
            if let Some(session) = self.session.as_ref().and_then(|id| s.sessions.get_mut(id)) {
                session.invalidated = true;
            }
        }
    }

    fn detach(&mut self) {
        let mut s = self.state.lock().unwrap();
        s.open.remove(&self.id);
        if let Some(session) = self.session.as_ref().and_then(|id| s.sessions.get_mut(id)) {
            if session.live == Some(self.id) {
                session.live = None;
            }
        }
    }

    fn receive(&mut self, text: &str, heartbeat_due: &mut Instant, interval: Duration) -> Vec<Out> {
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return vec![Out::Close(4002)];
        };
        let d = &payload["d"];
        match payload["op"].as_u64() {
            Some(1) => {
                *heartbeat_due = Instant::now() + interval * 2;
                let mut s = self.state.lock().unwrap();
                s.heartbeats += 1;
                let seq = self.session.as_ref().and_then(|id| s.sessions.get(id)).map_or(0, |session| session.seq);
                if !(d.is_null() || d.as_u64().is_some_and(|n| n <= seq)) {
                    s.violations.push(format!("heartbeat with d={d}, but the last sequence sent is {seq}"));
                }
                if s.silent {
                    return vec![];
                }
                vec![Out::Send(json!({"op": 11}))]
            }
            Some(2) => self.identify(d),
            Some(6) => self.resume(d),
            Some(3 | 4 | 8 | 31) if self.session.is_some() => vec![],
            Some(3 | 4 | 8 | 31) => vec![Out::Close(4003)],
            _ => vec![Out::Close(4001)],
        }
    }

    fn token_ok(s: &State, d: &Value) -> bool {
        d["token"].as_str().map(|t| t.strip_prefix("Bot ").unwrap_or(t)) == Some(s.token.as_str())
    }

    fn identify(&mut self, d: &Value) -> Vec<Out> {
        let mut s = self.state.lock().unwrap();
        if self.session.is_some() {
            return vec![Out::Close(4005)];
        }
        if !Self::token_ok(&s, d) {
            return vec![Out::Close(4004)];
        }
        if !d["intents"].is_u64() {
            return vec![Out::Close(4013)];
        }
        let properties = &d["properties"];
        if !["os", "browser", "device"].iter().all(|k| properties[k].is_string()) {
            return vec![Out::Close(4002)];
        }
        if self.at_resume_url {
            s.violations.push("identified at resume_gateway_url instead of the URL from GET /gateway/bot".into());
        }
        s.identifies += 1;
        s.identify_payloads.push(json!({"intents": d["intents"], "properties": properties}));
        s.next_session += 1;
        let session_id = format!("fake-session-{}", s.next_session);
        let ready = json!({"op": 0, "s": 1, "t": "READY", "d": {
            "v": 10, "user": {"id": "1300000000000000002", "username": "lifeboat", "bot": true},
            "guilds": [], "session_id": session_id, "resume_gateway_url": self.resume_url,
            "application": {"id": APPLICATION_ID, "flags": 0},
        }});
        s.sessions.insert(session_id.clone(), Session { seq: 1, log: vec![(1, ready.clone())], live: Some(self.id), invalidated: false });
        s.current = Some(session_id.clone());
        self.session = Some(session_id);
        vec![Out::Send(ready)]
    }

    fn resume(&mut self, d: &Value) -> Vec<Out> {
        let mut s = self.state.lock().unwrap();
        if self.session.is_some() {
            return vec![Out::Close(4005)];
        }
        if !Self::token_ok(&s, d) {
            return vec![Out::Close(4004)];
        }
        if !self.at_resume_url {
            s.violations.push("resumed at the URL from GET /gateway/bot instead of resume_gateway_url".into());
        }
        let session_id = d["session_id"].as_str().unwrap_or_default().to_string();
        let Some(seq) = d["seq"].as_u64() else {
            return vec![Out::Close(4002)];
        };
        let id = self.id;
        let Some(session) = s.sessions.get_mut(&session_id).filter(|session| !session.invalidated) else {
            return vec![Out::Send(json!({"op": 9, "d": false}))];
        };
        if seq > session.seq {
            return vec![Out::Close(4007)];
        }
        let mut replies: Vec<Out> = session.log.iter().filter(|(n, _)| *n > seq).map(|(_, e)| Out::Send(e.clone())).collect();
        session.seq += 1;
        let resumed = json!({"op": 0, "s": session.seq, "t": "RESUMED", "d": null});
        session.log.push((session.seq, resumed.clone()));
        session.live = Some(id);
        replies.push(Out::Send(resumed));
        s.resumes += 1;
        s.current = Some(session_id.clone());
        self.session = Some(session_id);
        replies
    }
}
