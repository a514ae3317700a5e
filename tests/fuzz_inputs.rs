//! Fuzzing, bounded so it runs in CI: arbitrary and mutated inputs to the
//! four parsers an outsider (or a typo) reaches — the Alertmanager webhook,
//! a signed Discord interaction, the dump loader and the config — never
//! panic, and every refusal says what is wrong. `LIFEBOAT_FUZZ_CASES` raises
//! the case count for a longer local run (default 48 per target).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::{Signer, SigningKey};
use lifeboat::alerts::{default_routes, Intake};
use lifeboat::config::{Config, DiscordApprovers, Dur};
use lifeboat::journal::Journal;
use lifeboat::snapshot::{Hub, Snapshot};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};
use serde_json::{json, Value};

const TOKEN: &str = "alertmanager-webhook-token";

fn runner() -> TestRunner {
    let cases = std::env::var("LIFEBOAT_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48);
    TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() })
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(".{0,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `valid` with a few bytes flipped, cut, or repeated.
fn mutated(valid: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    let len = valid.len().max(1);
    (proptest::collection::vec((0..len, any::<u8>()), 0..8), 0..=len, any::<bool>()).prop_map(move |(flips, cut, twice)| {
        let mut bytes = valid.clone();
        for (at, b) in flips {
            if at < bytes.len() {
                bytes[at] = b;
            }
        }
        bytes.truncate(cut.max(1));
        if twice {
            let copy = bytes.clone();
            bytes.extend_from_slice(&copy);
        }
        bytes
    })
}

fn alert_payload(status: &str, labels: Value, fingerprint: &str, starts_at: &str) -> Value {
    json!({"version": "4", "status": status, "receiver": "lifeboat", "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
           "externalURL": "http://alertmanager:9093", "groupKey": "{}", "truncatedAlerts": 0,
           "alerts": [{"status": status, "labels": labels, "annotations": {}, "startsAt": starts_at, "endsAt": "0001-01-01T00:00:00Z",
                       "generatorURL": "", "fingerprint": fingerprint}]})
}

/// Routed alerts with arbitrary label values, fingerprints and times.
fn routed_alert() -> impl Strategy<Value = Vec<u8>> {
    let alertnames: Vec<String> = default_routes().into_iter().map(|r| r.alertname).collect();
    (
        proptest::sample::select(alertnames),
        prop_oneof![Just("firing".to_string()), Just("resolved".to_string()), ".{0,8}"],
        proptest::collection::btree_map(
            prop_oneof![
                Just("namespace".to_string()),
                Just("cluster".to_string()),
                Just("name".to_string()),
                Just("node".to_string()),
                Just("persistentvolumeclaim".to_string()),
                ".{0,8}"
            ],
            ".{0,40}",
            0..5,
        ),
        ".{0,40}",
        prop_oneof![Just("2026-11-25T11:30:00Z".to_string()), Just("+262143-12-31T23:59:59Z".to_string()), Just("-262143-01-01T00:00:00Z".to_string()), ".{0,30}"],
    )
        .prop_map(|(alertname, status, mut labels, fingerprint, starts_at)| {
            labels.insert("alertname".into(), alertname);
            serde_json::to_vec(&alert_payload(&status, json!(labels), &fingerprint, &starts_at)).unwrap()
        })
}

#[test]
fn alertmanager_payloads_never_panic_and_refusals_say_why() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = rt.block_on(async {
        let (state, _) = lifeboat::cluster::dump::load(&root().join("examples/node-loss")).unwrap();
        let config = Config::default();
        let hub = Arc::new(Hub::new(config.clone(), Snapshot::build(state, &config, &Default::default()), None));
        let intake = Arc::new(Intake::new(hub, Arc::new(Journal::file(dir.path())), default_routes(), TOKEN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/alertmanager", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, lifeboat::alerts::routes(intake)).await });
        url
    });
    let http = reqwest::Client::new();
    let valid = serde_json::to_vec(&alert_payload(
        "firing",
        json!({"alertname": "LifeboatCnpgPrimaryOnLostNode", "namespace": "database", "cluster": "postgres"}),
        "fp",
        "2026-11-25T11:30:00Z",
    ))
    .unwrap();
    let inputs = prop_oneof![any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()), mutated(valid), routed_alert(), proptest::collection::vec(any::<u8>(), 0..256),];
    runner()
        .run(&inputs, |body| {
            let (status, text) = rt.block_on(async {
                let r = http
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .expect("lifeboat answers (a panic drops the connection)");
                (r.status().as_u16(), r.text().await.unwrap())
            });
            prop_assert!(matches!(status, 200 | 400), "{status}: {text}");
            if status == 400 {
                let error: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(error["error"].as_str().is_some_and(|e| e.len() > 10), "{text}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn signed_discord_interactions_never_panic() {
    use lifeboat::discord::client::DiscordClient;
    use lifeboat::discord::interactions::{parse_public_key, routes, Interactions};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let endpoint = rt.block_on(async {
        let interactions = Interactions {
            journal: Arc::new(Journal::file(dir.path())),
            public_key: Some(parse_public_key(&hex::encode(key.verifying_key().to_bytes())).unwrap()),
            approvers: DiscordApprovers { users: vec!["1000000000000000001".into()], roles: vec!["2000000000000000002".into()] },
            channel_id: Some("1".into()),
            approval_ttl: Dur::hours(1),
            edit_interval: Dur::secs(15),
            client: Arc::new(DiscordClient::bot("http://127.0.0.1:9", "bot-token-of-sixteen-plus", "1")),
            answer_within: Duration::from_secs(2),
            seen: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/discord/interactions", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, routes(Arc::new(interactions))).await });
        endpoint
    });
    let click = (
        prop_oneof![Just(1u64), Just(2), Just(3), Just(5), any::<u64>()],
        prop_oneof!["lb:[arc]:[a-z0-9.:-]{0,60}", ".{0,100}"],
        prop_oneof![Just("1000000000000000001".to_string()), "[0-9]{0,20}"],
        proptest::collection::vec(prop_oneof![Just("2000000000000000002".to_string()), ".{0,8}"], 0..3),
        any::<bool>(),
        any_json(),
    )
        .prop_map(|(kind, custom_id, user, roles, in_guild, extra)| {
            let mut v = json!({"id": format!("{custom_id}{user}{kind}"), "application_id": "1", "type": kind, "token": "t", "version": 1, "channel_id": "1",
                               "data": {"custom_id": custom_id, "component_type": 2}, "extra": extra});
            if in_guild {
                v["member"] = json!({"user": {"id": user}, "roles": roles});
            } else {
                v["user"] = json!({"id": user});
            }
            serde_json::to_vec(&v).unwrap()
        });
    let valid = serde_json::to_vec(&json!({"id": "9", "application_id": "1", "type": 3, "token": "t", "version": 1, "channel_id": "1",
        "member": {"user": {"id": "1000000000000000001"}, "roles": []}, "data": {"custom_id": "lb:a:run-x:0123456789abcdef01234567", "component_type": 2}}))
    .unwrap();
    let inputs = prop_oneof![click, mutated(valid), any_json().prop_map(|v| serde_json::to_vec(&v).unwrap())];
    let http = reqwest::Client::new();
    runner()
        .run(&inputs, |body| {
            let now = chrono::Utc::now().timestamp().to_string();
            let mut message = now.clone().into_bytes();
            message.extend_from_slice(&body);
            let signature = hex::encode(key.sign(&message).to_bytes());
            let (status, text) = rt.block_on(async {
                let r = http
                    .post(&endpoint)
                    .header("content-type", "application/json")
                    .header("x-signature-ed25519", signature)
                    .header("x-signature-timestamp", now)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("lifeboat answers (a panic drops the connection)");
                (r.status().as_u16(), r.text().await.unwrap())
            });
            // 401 only for an interaction id seen before (replay).
            prop_assert!(matches!(status, 200 | 400 | 401), "{status}: {text}");
            if status == 200 {
                let answer: Value = serde_json::from_str(&text).unwrap();
                prop_assert!(matches!(answer["type"].as_u64(), Some(1 | 4 | 6 | 7)), "{text}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn dumps_never_panic_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let valid = |name: &str| std::fs::read(root().join("examples/node-loss").join(name)).unwrap();
    let inputs = prop_oneof![
        mutated(valid("storage.yaml")),
        mutated(valid("cnpg.yaml")),
        mutated(valid("pods.yaml")),
        any_json().prop_map(|v| serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "List", "items": [v]})).unwrap()),
        any_json().prop_map(|v| serde_yaml::to_string(&v).unwrap().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..512),
    ];
    runner()
        .run(&inputs, |bytes| {
            let path = dir.path().join("fuzzed.yaml");
            std::fs::write(&path, &bytes).unwrap();
            if let Err(e) = lifeboat::cluster::dump::load(&path) {
                prop_assert!(e.to_string().contains("fuzzed.yaml"), "{e}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn configs_never_panic_and_errors_name_the_key_or_line() {
    let values: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(root().join("deploy/helm/lifeboat/values.yaml")).unwrap()).unwrap();
    let chart_config = serde_yaml::to_string(&values["config"]).unwrap().into_bytes();
    let keys = prop_oneof![
        Just("listen"),
        Just("nodeLostGrace"),
        Just("snapshotInterval"),
        Just("discord"),
        Just("remediation"),
        Just("garage"),
        Just("volsync"),
        Just("s3Restore"),
        Just("kanidm"),
        Just("cnpg"),
        Just("backupCronJobs"),
    ];
    let inputs = prop_oneof![
        mutated(chart_config),
        (keys, any_json()).prop_map(|(k, v)| serde_yaml::to_string(&json!({k: v})).unwrap().into_bytes()),
        ".{0,200}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..256),
    ];
    runner()
        .run(&inputs, |bytes| {
            let Ok(text) = String::from_utf8(bytes) else { return Ok(()) };
            if let Err(e) = Config::parse(&text) {
                prop_assert!(e.len() > 5, "an error that says nothing: {e:?}");
            }
            Ok(())
        })
        .unwrap();
}
