//! A stand-in kubelet that serves container logs, so `pods/log` works on the
//! test apiserver the way it does in a cluster: the apiserver reads the
//! node's address and kubelet port from its status and fetches
//! `GET /containerLogs/<ns>/<pod>/<container>` over HTTPS (it verifies the
//! kubelet's certificate only with --kubelet-certificate-authority, which the
//! test apiserver does not set). Only that endpoint is served, HTTP/1.1.
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

pub struct FakeKubelet {
    pub port: u16,
    logs: Arc<Mutex<HashMap<String, String>>>,
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
        let served = logs.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, served) = (acceptor.clone(), served.clone());
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
                    let head = String::from_utf8_lossy(&head);
                    let path = head.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
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
        FakeKubelet { port, logs }
    }

    /// What `kubectl logs <pod> -c <container>` shows from now on.
    pub fn set_log(&self, ns: &str, pod: &str, container: &str, text: &str) {
        self.logs.lock().unwrap().insert(format!("{ns}/{pod}/{container}"), text.to_string());
    }

    /// Points the node's status at this kubelet, as a kubelet registers itself.
    pub async fn register(&self, client: &Client, node: &str) {
        super::k8s::set_status(client, "v1", "Node", None, node, json!({
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
        }))
        .await;
    }
}
