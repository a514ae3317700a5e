//! Bad input gets an error that names the file and the problem, never a panic.

use std::path::Path;
use std::process::Command;

use lifeboat::cluster::dump;
use lifeboat::config::Config;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn malformed_yaml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "broken.yaml", "apiVersion: v1\nkind: List\nitems: [\n");
    let err = dump::load(&path).unwrap_err().to_string();
    assert!(err.contains("broken.yaml") && err.contains("not valid YAML"), "{err}");
}

#[test]
fn malformed_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", r#"{"apiVersion": "v1", "kind": "List", "items": []}"#);
    write(dir.path(), "b.json", r#"{"apiVersion": "v1", "kind": "List", "items": [}"#);
    let err = dump::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("b.json") && err.contains("not valid JSON"), "{err}");
}

#[test]
fn wrong_field_type_names_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "pvs.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: PersistentVolume\n  metadata: {name: pv-bad}\n  spec: {nodeAffinity: {required: {nodeSelectorTerms: \"not a list\"}}}\n",
    );
    let err = dump::load(&path).unwrap_err().to_string();
    assert!(err.contains("pvs.yaml") && err.contains("item 1") && err.contains("PersistentVolume pv-bad"), "{err}");
}

#[test]
fn object_without_kind_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.yaml", "metadata: {name: x}\n");
    let err = dump::load(&path).unwrap_err().to_string();
    assert!(err.contains("missing apiVersion or kind"), "{err}");
}

#[test]
fn unknown_kinds_are_counted_not_fatal_and_multi_document_yaml_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mixed.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: d}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n");
    let (state, summary) = dump::load(&path).unwrap();
    assert_eq!(state.nodes.len(), 1);
    assert_eq!(summary.ignored.get("v1/ConfigMap"), Some(&1));
}

#[test]
fn missing_path_and_empty_directory_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dump::load(&dir.path().join("nope")).unwrap_err().to_string().contains("cannot read"));
    assert!(dump::load(dir.path()).unwrap_err().to_string().contains("no YAML or JSON files"));
}

#[test]
fn bad_capture_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "nodes.yaml", "apiVersion: v1\nkind: List\nitems: []\n");
    write(dir.path(), "capture.yaml", "capturedAt: yesterday\n");
    let err = dump::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("capture.yaml"), "{err}");
}

#[test]
fn config_errors_name_the_key() {
    let unknown = Config::parse("nodeLostGrase: 5m\n").unwrap_err();
    assert!(unknown.contains("nodeLostGrase"), "{unknown}");
    let unit = Config::parse("nodeLostGrace: 5 minutes\n").unwrap_err();
    assert!(unit.contains("unknown unit"), "{unit}");
    let zero = Config::parse("volsync:\n  staleIntervals: 0\n").unwrap_err();
    assert!(zero.contains("volsync.staleIntervals"), "{zero}");
    let url = Config::parse("garage:\n  adminUrl: ftp://garage\n").unwrap_err();
    assert!(url.contains("garage.adminUrl"), "{url}");
    let token = Config::parse("garage:\n  adminTokenFile: /t\n").unwrap_err();
    assert!(token.contains("adminTokenFile"), "{token}");
    let ok = Config::parse("nodeLostGrace: 1h30m\nbackupCronJobs:\n  nameContains: dump\n").unwrap();
    assert_eq!(ok.node_lost_grace.0.as_secs(), 5400);
    assert_eq!(Config::parse("").unwrap(), Config::default());
}

fn lifeboat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
}

#[test]
fn cli_reports_bad_config_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lifeboat.yaml", "listen: nowhere\n");
    let out = lifeboat().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lifeboat.yaml") && stderr.contains("listen"), "{stderr}");
}

#[test]
fn cli_reports_bad_dump_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", ": : :\n");
    let out = lifeboat().args(["triage", "--from-dump"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml"));
}

#[test]
fn remediation_config_is_validated() {
    let err = Config::parse("remediation:\n  modes:\n    cnpg-instance-lsot: auto\n").unwrap_err();
    assert!(err.contains("remediation.modes") && err.contains("cnpg-instance-lsot"), "{err}");
    let err = Config::parse("remediation:\n  defaultMode: yolo\n").unwrap_err();
    assert!(err.contains("yolo"), "{err}");
    let ok = Config::parse("remediation:\n  defaultMode: observe\n  modes:\n    stale-cleanup: auto\n").unwrap();
    assert_eq!(ok.remediation.mode_of("stale-cleanup"), lifeboat::config::Mode::Auto);
    assert_eq!(ok.remediation.mode_of("cnpg-instance-lost"), lifeboat::config::Mode::Observe);
}

#[test]
fn webhook_routes_are_validated() {
    let err = Config::parse("remediation:\n  routes:\n  - alertname: X\n    playbook: nope\n").unwrap_err();
    assert!(err.contains("unknown playbook \"nope\""), "{err}");
    let err = Config::parse("remediation:\n  routes:\n  - alertname: X\n    playbook: stale-cleanup\n    params: {cluster: cluster}\n").unwrap_err();
    assert!(err.contains("unknown parameter \"cluster\""), "{err}");
    assert_eq!(Config::default().remediation.routes, lifeboat::alerts::default_routes());
}

#[test]
fn job_playbook_config_is_validated() {
    let err = Config::parse("s3Restore:\n  apps:\n    kanidm: {}\n").unwrap_err();
    assert!(err.contains("s3Restore.apps") && err.contains("<namespace>/<pvc>") && err.contains("no template"), "{err}");
    let bad_template = "s3Restore:\n  defaultTemplate:\n    kind: Pod\n    spec: {}\n";
    assert!(Config::parse(bad_template).unwrap_err().contains("s3Restore.defaultTemplate: must be a batch/v1 Job"));
    let typo = "s3Restore:\n  defaultTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: r, image: i, args: ['{{pcv}}']}]\n";
    let err = Config::parse(typo).unwrap_err();
    assert!(err.contains("unknown placeholder(s) pcv"), "{err}");
    let ok = "s3Restore:\n  defaultTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: r, image: i, args: ['{{pvc}} ${SHELL_VAR}']}]\n";
    assert!(Config::parse(ok).is_ok(), "shell ${{}} is not a placeholder");
    assert!(Config::parse("s3Restore:\n  sucessMarker: x\n").unwrap_err().contains("sucessMarker"), "unknown keys are refused");
    let err = Config::parse("kanidm:\n  oidcClients: [Deployment/forgejo]\n").unwrap_err();
    assert!(err.contains("kanidm.oidcClients"), "{err}");
    // The keys of the Job-based reset are gone: named, they are refused, not ignored.
    let err = Config::parse("kanidm:\n  domain: idm.example.com\n").unwrap_err();
    assert!(err.contains("domain"), "{err}");
    let err = Config::parse("garage:\n  restore:\n    workload: garage\n    backup: {s3: {}}\n").unwrap_err();
    assert!(err.contains("s3") || err.contains("workload"), "{err}");
    let ok = Config::parse("garage:\n  restore:\n    backup: {nfs: {server: nas, path: /mnt/meta-backup}}\n").unwrap();
    assert_eq!(ok.garage.restore.backup, Some(lifeboat::config::GarageBackupSource::Nfs { server: "nas".into(), path: "/mnt/meta-backup".into() }));
    let ok = Config::parse("garage:\n  restore:\n    backup: {pvc: {claimName: meta-backup}}\n").unwrap();
    assert!(matches!(ok.garage.restore.backup, Some(lifeboat::config::GarageBackupSource::Pvc { .. })));
    assert!(Config::parse("garage:\n  restore:\n    workload: Job/garage\n").unwrap_err().contains("garage.restore.workload"));
}

/// Every value a rendered command interpolates is one shell word: run by
/// `sh` with kubectl, flux, curl and lifeboat replaced by functions that
/// print their arguments, a hostile name arrives as one argument and the
/// commands hidden in it never run.
#[test]
fn rendered_commands_quote_hostile_values() {
    use lifeboat::plan::job::JobOutput;
    use lifeboat::plan::{Action, ObjectRef, Step, WaitCondition};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let evil = "x$(touch pwned-1)`touch pwned-2`'; touch pwned-3; echo '\ntouch pwned-4\nEOF\ntouch pwned-5\n{a,b} *";
    let obj = |kind: &str| ObjectRef::namespaced("example.io/v1", kind, evil, evil);
    let pod = ObjectRef::pod(evil, evil);
    let wait = |until: WaitCondition| Action::Wait { object: obj("Thing"), until, timeout_seconds: 60 };
    let manifest = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": evil},
        "spec": {"template": {"spec": {"containers": [{"name": evil, "image": "busybox", "args": [evil, "EOF"]}]}}}});
    let actions = vec![
        Action::PromoteCnpg { cluster: obj("Cluster"), pod: evil.into() },
        Action::ForceDeletePod { pod: pod.clone() },
        Action::DeletePvc { pvc: ObjectRef::pvc(evil, evil), pinned_node: evil.into() },
        Action::Delete { object: obj("Thing") },
        Action::RestartPod { pod: pod.clone() },
        Action::SuspendFlux { object: obj("Kustomization"), keep_suspended: false },
        Action::ResumeFlux { object: obj("HelmRelease") },
        Action::Scale { object: obj("StatefulSet"), replicas: 0 },
        Action::MergePatch { object: obj("Thing"), patch: json!({"metadata": {"annotations": {"a": evil}}}) },
        Action::TemporaryPatch { object: obj("Thing"), patch: json!({"spec": {"x": evil}}), revert: json!({"spec": {"x": null}}) },
        Action::Apply { object: obj("Backup"), manifest: json!({"kind": "Backup", "EOF": evil, "spec": {"note": "EOF"}}) },
        // Renders as the line `EOF`: the here-document must not end there.
        Action::Apply { object: obj("Backup"), manifest: json!("EOF") },
        Action::SetCnpgPluginParameter { cluster: obj("Cluster"), plugin: evil.into(), parameter: evil.into(), value: evil.into() },
        Action::RecreatePod { pod: pod.clone(), timeout_seconds: 60 },
        Action::TaintNode { node: evil.into(), key: evil.into(), value: evil.into(), effect: "NoExecute".into() },
        Action::RunJob { job: obj("Job"), manifest: manifest.clone(), timeout_seconds: 60, success_marker: evil.into(), output: JobOutput::Nothing },
        Action::RunJob {
            job: obj("Job"),
            manifest,
            timeout_seconds: 60,
            success_marker: evil.into(),
            output: JobOutput::SecretKey { secret: ObjectRef::namespaced("v1", "Secret", evil, evil), key: evil.into(), pattern: "pw: \"{}\"".into() },
        },
        Action::RolloutRestart { object: obj("Deployment") },
        Action::VerifyGarage { admin_url: format!("http://garage:3903/{evil}"), token_file: None, min_buckets: 1, timeout_seconds: 60 },
        Action::ApprovalGate { phase: evil.into() },
        wait(WaitCondition::CnpgPrimaryIs { pod: evil.into() }),
        wait(WaitCondition::CnpgHealthy),
        wait(WaitCondition::ServiceHasEndpoints),
        wait(WaitCondition::ConditionIs { condition: evil.into(), status: evil.into() }),
        wait(WaitCondition::CnpgBackupCompleted),
        wait(WaitCondition::WorkloadReady),
        wait(WaitCondition::NodeConfirmedGone),
        wait(WaitCondition::VolsyncManualSyncDone { token: evil.into() }),
        wait(WaitCondition::ClaimUnused),
        wait(WaitCondition::NoReplicas),
    ];
    let stub = |name: &str| format!("{name}() {{ printf '%s\\0' \"$@\" >> args; cat >> stdin; }}\n");
    let stubs: String = ["kubectl", "flux", "curl", "lifeboat"].iter().map(|c| stub(c)).collect();
    for action in actions {
        let step = Step { id: "s".into(), title: "t".into(), action, needs: vec![], preconditions: vec![], recovery_source: None };
        let command = step.command();
        let _ = std::fs::remove_file(dir.path().join("args"));
        let _ = std::fs::remove_file(dir.path().join("stdin"));
        let out = Command::new("sh").arg("-c").arg(format!("{stubs}{command}")).current_dir(dir.path()).output().unwrap();
        let pwned: Vec<_> = std::fs::read_dir(dir.path()).unwrap().filter_map(|e| e.ok()).map(|e| e.file_name()).filter(|n| n.to_string_lossy().starts_with("pwned")).collect();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(pwned.is_empty(), "{pwned:?} ran from:\n{command}\nstderr: {stderr}");
        assert!(stderr.is_empty(), "{command}\nstderr: {stderr}");
        let args = std::fs::read(dir.path().join("args")).unwrap_or_default();
        let args: Vec<String> = args.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // A manifest is the here-document, whole.
        if let Action::Apply { manifest, .. } = &step.action {
            let stdin = std::fs::read_to_string(dir.path().join("stdin")).unwrap_or_default();
            assert_eq!(stdin, serde_yaml::to_string(manifest).unwrap(), "{command}");
            continue;
        }
        // The gate's command names its phase in a comment only.
        let in_comment_only = matches!(step.action, Action::ApprovalGate { .. });
        assert!(in_comment_only || args.iter().any(|a| a.contains(evil)), "the hostile value is not one argument:\n{command}\nargs: {args:?}");
        assert!(!args.iter().any(|a| a == "touch" || a == "pwned-3"), "{command}\nargs: {args:?}");
    }
}

mod http {
    //! The HTTP surface against unauthenticated and oversized requests:
    //! credentials are checked before a body is read, bodies are capped and
    //! refusals logged and counted, slow connections are cut, open
    //! connections are capped, and Discord's endpoint can have a listener of
    //! its own.

    use std::io::Write as _;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use ed25519_dalek::SigningKey;
    use lifeboat::alerts::{default_routes, Intake};
    use lifeboat::config::{Config, DiscordApprovers, Dur};
    use lifeboat::discord::client::DiscordClient;
    use lifeboat::discord::interactions::{parse_public_key, Interactions};
    use lifeboat::journal::Journal;
    use lifeboat::server::guard::GuardedListener;
    use lifeboat::snapshot::{Hub, Snapshot};
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "alertmanager-webhook-token";
    /// Not a bound on how fast lifeboat answers: only how long a test waits
    /// before it reports that lifeboat never answered (it waited for a body
    /// that never comes).
    const HANG: Duration = Duration::from_secs(60);

    fn hub() -> Arc<Hub> {
        let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
        let config = Config::default();
        Arc::new(Hub::new(config.clone(), Snapshot::build(state, &config, &Default::default()), None))
    }

    async fn spawn(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn interactions(dir: &Path) -> Interactions {
        Interactions {
            journal: Arc::new(Journal::file(dir)),
            public_key: Some(parse_public_key(&hex::encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes())).unwrap()),
            approvers: DiscordApprovers { users: vec!["1".into()], roles: vec![] },
            channel_id: None,
            approval_ttl: Dur::hours(1),
            edit_interval: Dur::secs(15),
            client: Arc::new(DiscordClient::bot("http://127.0.0.1:9", "bot-token-of-sixteen-plus", "1")),
            answer_within: Duration::from_secs(2),
            seen: Default::default(),
        }
    }

    /// Sends the request head (declaring `length` body bytes) and 10 bytes of
    /// body, then waits for the answer without sending the rest.
    async fn head_only(addr: &str, request_line: &str, headers: &str, length: usize) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("{request_line}\r\nHost: lifeboat\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n{headers}\r\n{{\"version\"");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let n = tokio::time::timeout(HANG, stream.read(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{request_line}: no answer without the body: the body is read before the credentials are checked"))
            .unwrap();
        String::from_utf8_lossy(&answer[..n]).into_owned()
    }

    #[tokio::test]
    async fn an_unauthenticated_body_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub();
        let intake = Intake::new(hub.clone(), Arc::new(Journal::file(dir.path())), default_routes(), TOKEN);
        let alerts = spawn(lifeboat::alerts::routes(Arc::new(intake))).await;
        let answer = head_only(&alerts, "POST /alertmanager HTTP/1.1", "", 900_000).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        let answer = head_only(&alerts, "POST /alertmanager HTTP/1.1", "Authorization: Bearer wrong-but-long-enough\r\n", 900_000).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

        let kube = kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
        let api = lifeboat::api::ApiContext::new(kube, "lifeboat".into(), "api-token-of-sixteen-plus".into());
        let api = spawn(lifeboat::api::routes(Arc::new(api))).await;
        let answer = head_only(&api, "POST /api/runs/run-1/approve HTTP/1.1", "", 1_500_000).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

        let discord = spawn(lifeboat::discord::interactions::routes(Arc::new(interactions(dir.path())))).await;
        let answer = head_only(&discord, "POST /discord/interactions HTTP/1.1", "", 60_000).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "unsigned: {answer}");
        // Well-formed signature headers cannot be checked without the body,
        // but a body larger than any interaction is refused unread.
        let now = chrono::Utc::now().timestamp();
        let signed = format!("X-Signature-Ed25519: {}\r\nX-Signature-Timestamp: {now}\r\n", "ab".repeat(64));
        let answer = head_only(&discord, "POST /discord/interactions HTTP/1.1", &signed, 900_000).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "oversized interaction: {answer}");
        assert_eq!(lifeboat::alerts::IntakeCounters::of(&hub).rejected.load(std::sync::atomic::Ordering::Relaxed), 2, "each refusal is counted");
    }

    /// Every log line of this test binary. Global, not per test: tracing
    /// caches per call site whether anyone listens, so a thread-local
    /// subscriber misses lines first hit on another test's thread.
    #[derive(Clone, Default)]
    struct Logs(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            std::io::Write::write(&mut *self.0.lock().unwrap(), buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logs {
        fn capture() -> Self {
            static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
            LOGS.get_or_init(|| {
                let logs = Logs::default();
                let writer = logs.clone();
                let subscriber = tracing_subscriber::fmt().json().with_writer(move || writer.clone()).with_max_level(tracing::Level::INFO).finish();
                tracing::subscriber::set_global_default(subscriber).unwrap();
                logs
            })
            .clone()
        }

        fn lines(&self) -> Vec<Value> {
            String::from_utf8_lossy(&self.0.lock().unwrap()).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
        }
    }

    fn payload(status: &str, alertname: &str, fingerprint: &str) -> Value {
        json!({"version": "4", "status": status, "receiver": "lifeboat", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
               "externalURL": "http://alertmanager:9093", "groupKey": "{}", "truncatedAlerts": 0,
               "alerts": [{"status": status, "labels": {"alertname": alertname, "namespace": "database", "cluster": "postgres"}, "annotations": {},
                           "startsAt": "2026-11-25T11:30:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": fingerprint}]})
    }

    #[tokio::test]
    async fn every_intake_decision_and_refusal_is_logged_and_counted() {
        let logs = Logs::capture();
        let dir = tempfile::tempdir().unwrap();
        let hub = hub();
        let intake = Intake::new(hub.clone(), Arc::new(Journal::file(dir.path())), default_routes(), TOKEN);
        let url = format!("http://{}/alertmanager", spawn(lifeboat::alerts::routes(Arc::new(intake))).await);
        let http = reqwest::Client::new();
        let post = |body: Value| http.post(&url).bearer_auth(TOKEN).json(&body).send();
        let primary = "LifeboatCnpgPrimaryOnLostNode";
        let created: Value = post(payload("firing", primary, "fp-1")).await.unwrap().json().await.unwrap();
        let run = created["alerts"][0]["run"].as_str().unwrap().to_string();
        post(payload("firing", primary, "fp-1")).await.unwrap();
        post(payload("resolved", primary, "fp-1")).await.unwrap();
        post(payload("resolved", primary, "fp-other")).await.unwrap();
        post(payload("firing", "SomethingElse", "fp-2")).await.unwrap();
        let huge = "x".repeat(lifeboat::alerts::MAX_BODY_BYTES + 1);
        let r = http.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body(huge).send().await.unwrap();
        assert_eq!(r.status(), 413);

        let c = lifeboat::alerts::IntakeCounters::of(&hub);
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!((load(&c.runs_created), load(&c.duplicates), load(&c.cleared), load(&c.resolved), load(&c.unrouted), load(&c.rejected)), (1, 1, 1, 1, 1, 1));
        let lines = logs.lines();
        let said = |message: &str, run: Option<&str>| {
            lines.iter().any(|l| l["fields"]["message"].as_str().is_some_and(|m| m.contains(message)) && run.is_none_or(|r| l["fields"]["run"] == r))
        };
        assert!(said("alert recorded a run", Some(&run)), "{lines:#?}");
        assert!(said("it already has a run", Some(&run)), "the duplicate: {lines:#?}");
        assert!(said("condition cleared", Some(&run)), "{lines:#?}");
        assert!(said("alert started nothing", None), "unrouted / resolved: {lines:#?}");
        let oversized = lines.iter().find(|l| l["fields"]["status"].as_str().is_some_and(|s| s.starts_with("413"))).unwrap_or_else(|| panic!("{lines:#?}"));
        assert!(oversized["fields"]["reason"].as_str().unwrap().contains("larger than"), "{oversized}");
        let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
        assert!(!text.contains(TOKEN), "a credential was logged");
        // The metric carries the new results.
        let exposition = lifeboat::metrics::render(&hub).unwrap();
        assert!(exposition.contains("lifeboat_alertmanager_alerts_total{result=\"cleared\"} 1"), "{exposition}");
    }

    #[tokio::test]
    async fn slow_connections_are_cut_and_open_connections_capped() {
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let listener = GuardedListener::with_limits(tcp, 3, Duration::from_millis(300));
        let open = listener.open_connections();
        tokio::spawn(async move { axum::serve(listener, app).await });
        // 12 clients that send half a request head and then nothing.
        let mut slow = vec![];
        for _ in 0..12 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"POST /alertmanager HTTP/1.1\r\nHost: lifeboat\r\nContent-Len").await.unwrap();
            slow.push(s);
        }
        for mut s in slow {
            assert!(open.get() <= 3, "{} connections open", open.get());
            let mut rest = vec![];
            // The server closes each (EOF or reset); without the timeout this never returns.
            let _ = tokio::time::timeout(HANG, s.read_to_end(&mut rest)).await.expect("a stalled connection was never cut");
            assert!(open.get() <= 3, "{} connections open", open.get());
        }
        let body = reqwest::get(format!("http://{addr}/healthz")).await.unwrap().text().await.unwrap();
        assert_eq!(body, "ok\n", "still serving");
    }

    #[tokio::test]
    async fn the_discord_listener_serves_only_interactions() {
        let dir = tempfile::tempdir().unwrap();
        let ports = [free_port(), free_port()];
        let (main, discord) = (format!("127.0.0.1:{}", ports[0]), format!("127.0.0.1:{}", ports[1]));
        let config = Config::parse(&format!(
            "listen: {main}\ndiscord:\n  transport: http\n  botTokenFile: /t\n  channelId: \"1\"\n  publicKey: {}\n  approvers: {{users: [\"1\"]}}\n  listen: {discord}\n",
            hex::encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes())
        ))
        .unwrap();
        let listeners = lifeboat::server::arrange(
            lifeboat::server::Listener { addr: config.listen.parse().unwrap(), app: lifeboat::server::router(hub()) },
            Some(lifeboat::discord::interactions::routes(Arc::new(interactions(dir.path())))),
            config.discord.listen.as_deref().map(|a| a.parse().unwrap()),
        )
        .unwrap();
        assert_eq!(listeners.len(), 2);
        tokio::spawn(lifeboat::server::serve(listeners, std::future::pending()));
        let http = reqwest::Client::new();
        let get = |addr: &str, path: &str| {
            let url = format!("http://{addr}{path}");
            let http = http.clone();
            async move {
                for _ in 0..600 {
                    if let Ok(r) = http.get(&url).send().await {
                        return r.status().as_u16();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                panic!("{url} never answered");
            }
        };
        assert_eq!(get(&main, "/metrics").await, 200);
        assert_eq!(get(&discord, "/metrics").await, 404, "the Discord listener serves no metrics");
        assert_eq!(get(&discord, "/healthz").await, 404);
        assert_eq!(get(&discord, "/api/kill-switch").await, 404);
        let post = |addr: &str| http.post(format!("http://{addr}/discord/interactions")).json(&json!({"type": 1})).send();
        assert_eq!(post(&discord).await.unwrap().status(), 401, "unsigned, but routed");
        assert_eq!(post(&main).await.unwrap().status(), 404, "not on the main listener once it has its own");
        // The same address twice is refused, in the config and when arranging.
        let same = Config::parse(&format!(
            "listen: {main}\ndiscord: {{botTokenFile: /t, channelId: \"1\", publicKey: {}, approvers: {{users: [\"1\"]}}, listen: \"{main}\"}}\n",
            hex::encode(SigningKey::from_bytes(&[7u8; 32]).verifying_key().to_bytes())
        ))
        .unwrap_err();
        assert!(same.contains("discord.listen"), "{same}");
        let webhook = Config::parse("discord: {webhookUrlFile: /w, listen: \"0.0.0.0:9848\"}").unwrap_err();
        assert!(webhook.contains("only bot mode"), "{webhook}");
        let _ = std::io::stdout().flush();
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}
