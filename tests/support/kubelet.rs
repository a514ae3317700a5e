//! A stand-in kubelet that serves container logs and exec, so `pods/log` and
//! `pods/exec` work on the test apiserver the way they do in a cluster: the
//! apiserver reads the node's address and kubelet port from its status and
//! calls the kubelet over HTTPS (it verifies the kubelet's certificate only
//! with --kubelet-certificate-authority, which the test apiserver does not
//! set). Served, HTTP/1.1:
//! * `GET /containerLogs/<ns>/<pod>/<container>`;
//! * `POST /exec/<ns>/<pod>/<container>?command=..&output=1&error=1..`
//!   (kubernetes v1.35 `pkg/registry/core/pod/strategy.go` `ExecLocation` /
//!   `streamParams`), upgraded to SPDY/3.1: a websocket exec from a client
//!   (kube-rs offers `v5.channel.k8s.io`) is translated by the apiserver
//!   (feature `TranslateStreamCloseWebsocketRequests`, staging/src/k8s.io/
//!   apiserver/pkg/util/proxy/streamtranslator.go) into an SPDY exec to the
//!   kubelet (client-go `tools/remotecommand` `NewSPDYExecutor`), which is
//!   answered here just enough: see [`serve_exec`]. A container with no
//!   registered command handler is not running: the exec is refused.
//!   A handler registered with [`FakeKubelet::serve_while_ready`] answers
//!   only while its pod's status says Running and Ready, read at exec time:
//!   the real kubelet execs into the container it reports running, so the
//!   exec and the status it wrote can never disagree.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use kube::Client;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What a running container does with an exec'd command: (exit code, stdout).
pub type ExecHandler = Arc<dyn Fn(&[String]) -> (i32, String) + Send + Sync>;
type Execs = Arc<Mutex<HashMap<String, ExecHandler>>>;
/// Which `(namespace, pod, container)` a ready-gated handler serves.
pub type PodMatcher = Arc<dyn Fn(&str, &str, &str) -> bool + Send + Sync>;
type Gates = Arc<Mutex<Vec<(PodMatcher, Client, ExecHandler)>>>;

pub struct FakeKubelet {
    pub port: u16,
    logs: Arc<Mutex<HashMap<String, String>>>,
    execs: Execs,
    gates: Gates,
}

impl FakeKubelet {
    /// Listens on 127.0.0.1 with a self-signed certificate made in a new
    /// directory under `parent` (removed once loaded): kubelets started side
    /// by side, as parallel tests do, never share a key file.
    pub async fn start(parent: &Path) -> Self {
        let dir = tempfile::Builder::new().prefix("lifeboat-kubelet-").tempdir_in(parent).expect("kubelet directory");
        let (cert, key) = (dir.path().join("kubelet.crt"), dir.path().join("kubelet.key"));
        let ok = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=fake-kubelet", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(ok.success(), "openssl could not make the kubelet certificate");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert).unwrap().map(|c| c.unwrap()).collect();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        drop(dir);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let logs: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let execs: Execs = Arc::default();
        let gates: Gates = Arc::default();
        let served = logs.clone();
        let (running, gated) = (execs.clone(), gates.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, served, running, gated) = (acceptor.clone(), served.clone(), running.clone(), gated.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let path = head.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
                    if let Some(key) = path.strip_prefix("/exec/") {
                        let handler = handler_for(&running, &gated, key).await;
                        serve_exec(tls, &head, handler).await;
                        return;
                    }
                    let log = path.strip_prefix("/containerLogs/").and_then(|key| served.lock().unwrap().get(key).cloned());
                    let (status, body) = match log {
                        Some(text) => ("200 OK", text),
                        None => ("404 Not Found", format!("no log for {path}")),
                    };
                    let response = format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(response.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        FakeKubelet { port, logs, execs, gates }
    }

    /// The container runs (exec is answered by `handler`), or, with None, not.
    pub fn set_running(&self, ns: &str, pod: &str, container: &str, handler: Option<ExecHandler>) {
        let key = format!("{ns}/{pod}/{container}");
        let mut execs = self.execs.lock().unwrap();
        match handler {
            Some(h) => execs.insert(key, h),
            None => execs.remove(&key),
        };
    }

    /// Every container `serves` matches answers exec with `handler` while its
    /// pod is Running and Ready on the apiserver `client` talks to.
    pub fn serve_while_ready(&self, client: Client, serves: PodMatcher, handler: ExecHandler) {
        self.gates.lock().unwrap().push((serves, client, handler));
    }

    /// Whether an exec into the container would be answered now.
    pub async fn is_running(&self, ns: &str, pod: &str, container: &str) -> bool {
        handler_for(&self.execs, &self.gates, &format!("{ns}/{pod}/{container}")).await.is_some()
    }

    /// What `kubectl logs <pod> -c <container>` shows from now on.
    pub fn set_log(&self, ns: &str, pod: &str, container: &str, text: &str) {
        self.logs.lock().unwrap().insert(format!("{ns}/{pod}/{container}"), text.to_string());
    }

    /// Points the node's status at this kubelet, as a kubelet registers itself.
    pub async fn register(&self, client: &Client, node: &str) {
        super::k8s::set_status(
            client,
            "v1",
            "Node",
            None,
            node,
            json!({
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            }),
        )
        .await;
    }
}

/// `%XX` and `+` in a query value.
fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && u8::from_str_radix(&text[i + 1..i + 3], 16).is_ok() => {
                out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

/// SPDY/3.1 frames (the SPDY/3 draft, as moby/spdystream `spdy/types.go`
/// reads them): a control frame starts with bit 1, version 3 and a type
/// (SYN_STREAM 1, SYN_REPLY 2); a data frame with the 31-bit stream id; both
/// then carry 8 bits of flags (FIN 0x01) and a 24-bit length.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const FIN: u8 = 1;

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// A SYN_REPLY with no headers. Header blocks are one zlib stream per
/// direction; spdystream's reader (moby/spdystream v0.5.1 `spdy/read.go`
/// `uncorkHeaderDecompressor`: `zlib.NewReaderDict` over a reader limited to
/// the frame) uses the SPDY dictionary only when the zlib header asks for it
/// (FDICT), so this side sends a plain zlib header once, then each block as
/// a stored deflate block closed by a sync flush, the empty stored block
/// `00 00 00 ff ff` (RFC 1951 3.2.4, zlib `Z_SYNC_FLUSH`, as the SPDY/3
/// draft's header block compression asks). Go's inflater (go1.26
/// `compress/flate/inflate.go`) hands out what it has at an empty stored
/// block (`dataBlock`); after a non-empty one (`finishBlock`, `nextBlock`)
/// it reads on for the next block header past the frame's end, keeps the
/// error, and every later header block fails with "compressed
/// payload size was incorrect": the second stream's reply is lost and
/// client-go's `CreateStream` gives up after 30 s with "Timeout occurred".
fn syn_reply(stream: u32, first_block: bool) -> Vec<u8> {
    let block = 0u32.to_be_bytes(); // number of header pairs: 0
    let mut compressed = if first_block { vec![0x78, 0x01] } else { vec![] };
    for data in [&block[..], &[]] {
        let len = data.len() as u16;
        compressed.push(0x00); // not final, stored
        compressed.extend_from_slice(&len.to_le_bytes());
        compressed.extend_from_slice(&(!len).to_le_bytes());
        compressed.extend_from_slice(data);
    }
    let mut frame = vec![0x80, 0x03];
    frame.extend_from_slice(&SYN_REPLY.to_be_bytes());
    frame.push(0);
    frame.extend_from_slice(&((4 + compressed.len()) as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(&compressed);
    frame
}

/// The v4 `error` stream's message (client-go `remotecommand/v4.go`
/// `errorDecoderV4`): a metav1.Status, `NonZeroExitCode` with the code as cause.
fn exit_status(command: &[String], code: i32) -> String {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"}).to_string();
    }
    json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
           "message": format!("command terminated with non-zero exit code: error executing command {command:?}, exit code {code}"),
           "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    .to_string()
}

/// The kubelet's side of an SPDY exec (k8s.io/kubelet v0.35.4, staged from
/// kubernetes v1.35.4, `pkg/cri/streaming/remotecommand/httpstream.go`
/// `createHTTPStreamStreams`; v1.35 has no gate making the apiserver speak
/// WebSockets to the kubelet for exec, only `PortForwardWebsockets` for
/// port-forward): answer the upgrade with
/// `101`, `Upgrade: SPDY/3.1` and the chosen `X-Stream-Protocol-Version`
/// (v4.channel.k8s.io), accept the client's streams with SYN_REPLY, and once
/// all expected streams exist (client-go `remotecommand/v2.go`
/// `createStreams` opens them in this order: error, stdin if asked, stdout
/// if asked, stderr if asked and no tty; the SYN_STREAM header blocks are
/// not decoded, the order identifies them), run the command, send its
/// stdout then FIN, and the exit status on the error stream then FIN.
/// The apiserver's PINGs (every 5 s, `streamtranslator.go`) go unanswered:
/// client-go only logs a failed ping, and these execs finish sooner.
/// The handler an exec into `key` (`<ns>/<pod>/<container>`) reaches: one
/// set with `set_running`, else a ready-gated one whose pod is Ready now.
async fn handler_for(execs: &Execs, gates: &Gates, key: &str) -> Option<ExecHandler> {
    if let Some(h) = execs.lock().unwrap().get(key).cloned() {
        return Some(h);
    }
    let [ns, pod, container] = key.splitn(3, '/').collect::<Vec<_>>()[..] else { return None };
    let gate = gates.lock().unwrap().iter().find(|(serves, _, _)| serves(ns, pod, container)).map(|(_, c, h)| (c.clone(), h.clone()));
    let (client, handler) = gate?;
    let status = kube::Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client, ns).get_opt(pod).await.ok()??;
    super::players::pod_ready(&serde_json::to_value(status).ok()?).then_some(handler)
}

async fn serve_exec<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut io: S, head: &str, handler: Option<ExecHandler>) {
    let target = head.split_whitespace().nth(1).unwrap_or("");
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let params: Vec<(String, String)> = query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (unescape(k), unescape(v))).collect();
    let flag = |name: &str| params.iter().any(|(k, v)| k == name && v == "1");
    let command: Vec<String> = params.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let offered = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("x-stream-protocol-version"))
        .flat_map(|(_, v)| v.split(',').map(|p| p.trim().to_string()))
        .any(|p| p == "v4.channel.k8s.io");
    let refuse = |status: &str, body: &str| format!("HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let Some(handler) = handler else {
        let _ = io.write_all(refuse("404 Not Found", "container is not running").as_bytes()).await;
        return;
    };
    if !offered {
        let _ = io.write_all(refuse("400 Bad Request", "no supported stream protocol offered").as_bytes()).await;
        return;
    }
    let upgraded = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n";
    if io.write_all(upgraded.as_bytes()).await.is_err() {
        return;
    }
    let mut order = vec!["error"];
    if flag("input") {
        order.push("stdin");
    }
    if flag("output") {
        order.push("stdout");
    }
    if flag("error") && !flag("tty") {
        order.push("stderr");
    }
    if flag("tty") {
        order.push("resize");
    }
    let mut streams: Vec<(&str, u32)> = vec![];
    loop {
        let mut header = [0u8; 8];
        if io.read_exact(&mut header).await.is_err() {
            return; // the apiserver closed the connection
        }
        let length = u32::from_be_bytes([0, header[5], header[6], header[7]]) as usize;
        let mut payload = vec![0u8; length];
        if io.read_exact(&mut payload).await.is_err() {
            return;
        }
        let control = header[0] & 0x80 != 0;
        if !control || u16::from_be_bytes([header[2], header[3]]) != SYN_STREAM || payload.len() < 4 {
            continue; // data from the client, pings, settings, goaway: nothing to answer
        }
        let stream = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
        let Some(kind) = order.get(streams.len()) else { continue };
        streams.push((kind, stream));
        if io.write_all(&syn_reply(stream, streams.len() == 1)).await.is_err() {
            return;
        }
        if streams.len() < order.len() {
            continue;
        }
        let id = |k: &str| streams.iter().find(|(kind, _)| *kind == k).map(|(_, id)| *id);
        let (code, stdout) = handler(&command);
        let mut out = vec![];
        if let Some(s) = id("stdout") {
            if !stdout.is_empty() {
                out.extend(data_frame(s, 0, stdout.as_bytes()));
            }
            out.extend(data_frame(s, FIN, &[]));
        }
        if let Some(s) = id("stderr") {
            out.extend(data_frame(s, FIN, &[]));
        }
        let e = id("error").expect("the error stream comes first");
        out.extend(data_frame(e, 0, exit_status(&command, code).as_bytes()));
        out.extend(data_frame(e, FIN, &[]));
        if io.write_all(&out).await.is_err() {
            return;
        }
        let _ = io.flush().await;
    }
}
