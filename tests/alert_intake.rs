//! Alertmanager webhook intake over HTTP, on the example incident with a
//! directory journal: auth, content type, size limit, malformed and unknown
//! payloads, routing, duplicates, resolved alerts.

use std::path::Path;
use std::sync::Arc;

use lifeboat::alerts::{default_routes, routes, Intake};
use lifeboat::config::Config;
use lifeboat::journal::{Journal, Phase};
use lifeboat::snapshot::{Hub, Snapshot};
use serde_json::{json, Value};

const TOKEN: &str = "alertmanager-webhook-token";

async fn serve(credentials: &str) -> (String, Arc<Journal>, tempfile::TempDir) {
    let (url, journal, dir, _) = serve_with_hub(credentials).await;
    (url, journal, dir)
}

async fn serve_with_hub(credentials: &str) -> (String, Arc<Journal>, tempfile::TempDir, Arc<Hub>) {
    let (state, _) = lifeboat::cluster::dump::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss")).unwrap();
    let config = Config::default();
    let hub = Arc::new(Hub::new(config.clone(), Snapshot::build(state, &config, &Default::default()), None));
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(Journal::file(dir.path()));
    let intake = Arc::new(Intake::new(hub.clone(), journal.clone(), default_routes(), credentials));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/alertmanager", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, routes(intake)).await });
    (url, journal, dir, hub)
}

fn payload(status: &str, alerts: Vec<Value>) -> Value {
    json!({"version": "4", "groupKey": "{}:{alertname=\"x\"}", "truncatedAlerts": 0, "status": status, "receiver": "lifeboat",
           "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "alerts": alerts})
}

fn alert(status: &str, name: &str, labels: Value, fingerprint: &str) -> Value {
    let mut l = labels;
    l["alertname"] = json!(name);
    json!({"status": status, "labels": l, "annotations": {}, "startsAt": "2026-11-25T11:30:00Z",
           "endsAt": if status == "firing" {"0001-01-01T00:00:00Z"} else {"2026-11-25T12:30:00Z"},
           "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint})
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).bearer_auth(TOKEN).json(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn bad_requests_get_a_4xx_with_the_reason() {
    let (url, journal, _dir) = serve(TOKEN).await;
    let http = reqwest::Client::new();
    let ok_body = payload("firing", vec![]);
    assert_eq!(http.post(&url).json(&ok_body).send().await.unwrap().status(), 401);
    assert_eq!(http.post(&url).bearer_auth("wrong-token-of-some-length").json(&ok_body).send().await.unwrap().status(), 401);
    let r = http.post(&url).bearer_auth(TOKEN).header("content-type", "text/plain").body(ok_body.to_string()).send().await.unwrap();
    assert_eq!(r.status(), 415);
    let r = http.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body("{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not an Alertmanager webhook payload"));
    let mut v3 = ok_body.clone();
    v3["version"] = json!("3");
    let (code, body) = post(&url, &v3).await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("version"));
    let huge = "x".repeat(lifeboat::alerts::MAX_BODY_BYTES + 1);
    let r = http.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body(huge).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(journal.list().await.unwrap().is_empty(), "nothing recorded");
    // Still serving after all that.
    assert_eq!(post(&url, &ok_body).await.0, 200);
}

#[tokio::test]
async fn a_firing_alert_plans_from_state_once_and_a_resolved_one_clears() {
    let (url, journal, _dir) = serve(TOKEN).await;
    let primary = alert("firing", "LifeboatCnpgPrimaryOnLostNode", json!({"namespace": "database", "cluster": "postgres", "severity": "critical"}), "fp-1");
    let (code, body) = post(&url, &payload("firing", vec![primary.clone()])).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["alerts"][0]["result"], "run", "{body}");
    let runs = journal.list().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status.phase, Phase::AwaitingApproval);
    assert_eq!(runs[0].spec.trigger.alert.as_ref().unwrap().fingerprint, "fp-1");
    assert!(runs[0].spec.plan.steps.iter().any(|s| s.id == "promote"));

    // Repeats and HA duplicates start nothing new.
    for _ in 0..3 {
        let (_, body) = post(&url, &payload("firing", vec![primary.clone()])).await;
        assert_eq!(body["alerts"][0]["result"], "duplicate", "{body}");
    }
    assert_eq!(journal.list().await.unwrap().len(), 1);

    // Unrouted alerts are counted and ignored.
    let other = alert("firing", "LifeboatFluxSuspendedTooLong", json!({"namespace": "observability", "name": "teslamate"}), "fp-2");
    let (_, body) = post(&url, &payload("firing", vec![other])).await;
    assert_eq!(body["alerts"][0]["result"], "unrouted");

    // The alert is a hint: live state says the other cluster has nothing on a lost node.
    let immich = alert("firing", "LifeboatCnpgPrimaryOnLostNode", json!({"namespace": "media", "cluster": "immich-postgres"}), "fp-3");
    let (_, body) = post(&url, &payload("firing", vec![immich])).await;
    let id = body["alerts"][0]["run"].as_str().unwrap().to_string();
    assert_eq!(journal.get(&id).await.unwrap().unwrap().status.phase, Phase::NothingToDo);

    // Resolved before approval: never starts anything, and the pending run says so.
    let mut resolved = primary.clone();
    resolved["status"] = json!("resolved");
    let (_, body) = post(&url, &payload("resolved", vec![resolved])).await;
    assert_eq!(body["alerts"][0]["result"], "resolved", "{body}");
    let run = journal.list().await.unwrap().into_iter().find(|r| r.spec.target.contains("postgres") && r.spec.target.contains("database")).unwrap();
    assert_eq!(run.status.phase, Phase::AwaitingApproval);
    assert!(run.status.message.unwrap().contains("condition cleared"));
}

#[tokio::test]
async fn basic_auth_credentials_work_too() {
    let (url, _journal, _dir) = serve("alertmanager:a-long-password").await;
    let r = reqwest::Client::new().post(&url).basic_auth("alertmanager", Some("a-long-password")).json(&payload("firing", vec![])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::Client::new().post(&url).basic_auth("alertmanager", Some("wrong")).json(&payload("firing", vec![])).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn intake_is_counted_in_the_metrics() {
    let (url, _journal, _dir, hub) = serve_with_hub(TOKEN).await;
    let primary = alert("firing", "LifeboatCnpgPrimaryOnLostNode", json!({"namespace": "database", "cluster": "postgres"}), "fp-9");
    post(&url, &payload("firing", vec![primary.clone()])).await;
    post(&url, &payload("firing", vec![primary])).await;
    post(&url, &payload("firing", vec![alert("firing", "Whatever", json!({}), "fp-8")])).await;
    reqwest::Client::new().post(&url).json(&payload("firing", vec![])).send().await.unwrap();
    let text = lifeboat::metrics::render(&hub).unwrap();
    for line in [
        "lifeboat_alertmanager_requests_total{result=\"accepted\"} 3",
        "lifeboat_alertmanager_requests_total{result=\"rejected\"} 1",
        "lifeboat_alertmanager_alerts_total{result=\"run\"} 1",
        "lifeboat_alertmanager_alerts_total{result=\"duplicate\"} 1",
        "lifeboat_alertmanager_alerts_total{result=\"unrouted\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_a_notification_record_one_run() {
    let (url, journal, _dir) = serve(TOKEN).await;
    let primary = alert("firing", "LifeboatCnpgPrimaryOnLostNode", json!({"namespace": "database", "cluster": "postgres"}), "fp-ha");
    let body = payload("firing", vec![primary]);
    // An HA pair (and retries) delivering the same notification at the same moment.
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            tokio::spawn(async move { post(&url, &body).await })
        })
        .collect();
    let mut results = vec![];
    for send in sends {
        let (code, body) = send.await.unwrap();
        assert_eq!(code, 200, "{body}");
        results.push(body["alerts"][0]["result"].as_str().unwrap().to_string());
    }
    assert_eq!(results.iter().filter(|r| *r == "run").count(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|r| *r == "duplicate").count(), 7, "{results:?}");
    assert_eq!(journal.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn repeats_of_an_alert_whose_run_ended_start_nothing() {
    let (url, journal, _dir) = serve(TOKEN).await;
    // Planned from state: nothing to do (a terminal run at once).
    let immich = alert("firing", "LifeboatCnpgPrimaryOnLostNode", json!({"namespace": "media", "cluster": "immich-postgres"}), "fp-nothing");
    let (_, body) = post(&url, &payload("firing", vec![immich.clone()])).await;
    let id = body["alerts"][0]["run"].as_str().unwrap().to_string();
    assert_eq!(journal.get(&id).await.unwrap().unwrap().status.phase, Phase::NothingToDo);
    for _ in 0..3 {
        let (_, body) = post(&url, &payload("firing", vec![immich.clone()])).await;
        assert_eq!(body["alerts"][0]["result"], "duplicate", "{body}");
        assert_eq!(body["alerts"][0]["run"], id.as_str());
    }
    // A new firing of the same alert (a new start time) is a new request.
    let mut again = immich.clone();
    again["startsAt"] = json!("2026-11-25T13:00:00Z");
    let (_, body) = post(&url, &payload("firing", vec![again])).await;
    assert_eq!(body["alerts"][0]["result"], "run", "{body}");
    assert_eq!(journal.list().await.unwrap().len(), 2);
}
