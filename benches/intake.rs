//! Alertmanager intake benchmark: lifeboat's real webhook router
//! (`alerts::routes`, bearer auth, a directory journal) on a loopback port,
//! planning from the `examples/node-loss` snapshot, fed Alertmanager v4 group
//! notifications by concurrent HTTP clients. Prints alerts/s, requests/s and
//! request latency percentiles.
//!
//!     cargo bench --bench intake
//!
//!     cargo bench --bench intake -- --journal cluster
//!
//! serves the same traffic against the cluster journal (RemediationRuns) on
//! the test control plane (tests/support/controlplane.rs, with
//! `LIFEBOAT_CONTROL_PLANE_DIR`; a fresh namespace), with the Discord
//! notifier posting to the fake Discord REST API (tests/support/fake_discord.rs,
//! bot mode), and also prints, for every run awaiting approval the traffic
//! created, the time from its webhook request to the fake receiving the
//! approval message. As the incident's runs are created only once, a probe
//! sends besides the traffic, one at a time, a new instance of a routed alert
//! (a later `startsAt`), waits for its approval message and aborts the run
//! (as a human would) so the next one can start.
//!
//! Env: LIFEBOAT_BENCH_SECONDS (default 10), LIFEBOAT_BENCH_CONCURRENCY
//! (concurrent connections, default 8), LIFEBOAT_BENCH_JOURNAL (`directory`,
//! the default, or `cluster`; `--journal` wins). Figures are printed, never
//! asserted; record them in BENCHMARKS.md.
//!
//! The traffic is an incident as Alertmanager delivers it: the alerts
//! rules/e2e.sh expects for examples/node-loss (two of them routed to a
//! playbook with a real target) plus 600 more alerts from other namespaces
//! (mostly unrouted; 60 routed to CNPG clusters the snapshot does not have),
//! grouped by alertname and namespace into notifications of 1..=40 alerts, each
//! group sent again and again (repeat_interval, HA peers, a flapping group
//! interval) so almost every routed alert is a duplicate; a fifth of the
//! synthetic groups arrive resolved.

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat::alerts::{default_routes, routes, Intake};
use lifeboat::config::{Config, Dur};
use lifeboat::discord::client::DiscordClient;
use lifeboat::discord::notifier::Notifier;
use lifeboat::journal::Journal;
use lifeboat::snapshot::{Hub, Snapshot};
use serde_json::{json, Map, Value};
use support::fake_discord::{FakeDiscord, BOT_TOKEN, CHANNEL_ID};

const TOKEN: &str = "bench-alertmanager-webhook-token";

/// One alert as the rule produces it: name and its identity labels.
struct Rule {
    alertname: &'static str,
    severity: &'static str,
    playbook: &'static str,
}

fn rule(alertname: &str) -> Rule {
    let (severity, playbook) = match alertname {
        "LifeboatNodeLostWithPinnedVolumes" => ("critical", "node-loss"),
        "LifeboatPodBlockedOnLostVolume" | "LifeboatVolsyncCachePvcOnLostNode" => ("warning", "node-loss"),
        "LifeboatCnpgPrimaryOnLostNode" => ("critical", "cnpg-instance-lost"),
        "LifeboatMariadbInstanceOnLostNode" => ("warning", "mariadb-instance-lost"),
        "LifeboatCnpgWalArchivingFailing" => ("critical", "wal-archive-reset"),
        "LifeboatVolsyncDestinationOrphaned" => ("info", "stale-cleanup"),
        _ => ("warning", "none"),
    };
    Rule { alertname: Box::leak(alertname.to_string().into_boxed_str()), severity, playbook }
}

/// The incident's alerts (rules/e2e.sh EXPECTED), as `alertname k=v ...`.
const INCIDENT: &str = "\
LifeboatNodeLostWithPinnedVolumes node=node-01-pve reason=not_ready
LifeboatNodeLostWithPinnedVolumes node=node-04-pve reason=missing
LifeboatPodBlockedOnLostVolume namespace=database pod=mariadb-0 persistentvolumeclaim=galera-mariadb-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=database pod=mariadb-0 persistentvolumeclaim=storage-mariadb-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=database pod=postgres-1 persistentvolumeclaim=postgres-1 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=identity pod=kanidm-default-0 persistentvolumeclaim=kanidm-data-kanidm-default-0 node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=radarr-wcd74nqpz6-rqckd persistentvolumeclaim=radarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=media pod=sonarr-kgkqn4dq82-v9btt persistentvolumeclaim=sonarr node=node-01-pve
LifeboatPodBlockedOnLostVolume namespace=utils pod=forgejo-nbsgpqpvcq-p7mn4 persistentvolumeclaim=forgejo node=node-01-pve
LifeboatCnpgPrimaryOnLostNode namespace=database cluster=postgres pod=postgres-1 node=node-01-pve
LifeboatMariadbInstanceOnLostNode namespace=database name=mariadb
LifeboatVolsyncCachePvcOnLostNode namespace=utils name=forgejo role=source persistentvolumeclaim=volsync-src-forgejo-cache node=node-01-pve
LifeboatCnpgWalArchivingFailing namespace=media cluster=immich-postgres
LifeboatCnpgBackupStale namespace=media cluster=immich-postgres
LifeboatCnpgLastBackupFailed namespace=media cluster=immich-postgres state=failed
LifeboatVolsyncSourceStale namespace=media name=sonarr
LifeboatVolsyncSourceStale namespace=media name=bazarr
LifeboatVolsyncSyncStuck namespace=media name=sonarr role=source
LifeboatVolsyncMoverFailing namespace=media name=bazarr role=source
LifeboatVolsyncPaused namespace=media name=radarr role=source
LifeboatVolsyncDestinationOrphaned namespace=utils name=oldapp-dst
LifeboatBackupCronJobStale namespace=database cronjob=mariadb-backup
LifeboatPvcUnprotected namespace=default persistentvolumeclaim=librespeed node=node-02-pve
LifeboatBackupConfigProblem kind=ReplicationSource namespace=database name=dbgate problem=no_destination
LifeboatFluxSuspendedTooLong kind=Kustomization namespace=observability name=teslamate";

/// Alertmanager's fingerprint: 64-bit FNV-1a over the sorted label pairs, 0xff-separated, as 16 hex digits.
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x100000001b3);
        }
    }
    format!("{hash:016x}")
}

struct Alert {
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    starts_at: String,
}

fn alert(alertname: &str, identity: &[(&str, String)], starts_at: &str) -> Alert {
    let rule = rule(alertname);
    let mut labels: BTreeMap<String, String> = identity.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    labels.insert("alertname".into(), rule.alertname.into());
    labels.insert("severity".into(), rule.severity.into());
    labels.insert("playbook".into(), rule.playbook.into());
    labels.insert("job".into(), "lifeboat".into());
    labels.insert("instance".into(), "10.42.1.17:9847".into());
    labels.insert("prometheus".into(), "monitoring/kube-prometheus-stack-prometheus".into());
    let what = identity.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ");
    let annotations = BTreeMap::from([
        ("summary".to_string(), format!("{alertname}: {what}")),
        ("description".to_string(), format!("{alertname} holds for {what}. Look at `lifeboat triage` for the recovery source of every affected workload and the playbook's plan before approving anything; the alert is a hint, the plan is built from live state.")),
        ("runbook_url".to_string(), format!("https://github.com/lifeboat-dev/lifeboat/blob/main/docs/runbooks/{alertname}.md")),
    ]);
    Alert { labels, annotations, starts_at: starts_at.into() }
}

/// One group notification (`groupKey`, common labels, ...) as Alertmanager renders it.
fn notification(group: &[&Alert], resolved: bool) -> Vec<u8> {
    let common = |pick: fn(&Alert) -> &BTreeMap<String, String>| -> Map<String, Value> {
        let first = pick(group[0]);
        first.iter().filter(|(k, v)| group.iter().all(|a| pick(a).get(*k) == Some(v))).map(|(k, v)| (k.clone(), json!(v))).collect()
    };
    let group_labels: Map<String, Value> = ["alertname", "namespace"].iter().filter_map(|k| group[0].labels.get(*k).map(|v| (k.to_string(), json!(v)))).collect();
    let group_key = format!("{{}}/{{severity=~\"critical|warning|info\"}}:{{{}}}", group_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", "));
    let status = if resolved { "resolved" } else { "firing" };
    let alerts: Vec<Value> = group
        .iter()
        .map(|a| {
            json!({
                "status": status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": a.starts_at,
                "endsAt": if resolved { "2026-11-25T12:41:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": format!("http://prometheus.monitoring.svc:9090/graph?g0.expr={}%20%3D%3D%201&g0.tab=1", a.labels["alertname"]),
                "fingerprint": fingerprint(&a.labels),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "receiver": "lifeboat",
        "status": status,
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": common(|a| &a.labels),
        "commonAnnotations": common(|a| &a.annotations),
        "externalURL": "http://alertmanager.monitoring.svc:9093",
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    }))
    .unwrap()
}

/// The notifications of the incident, in the order they are cycled through.
fn traffic() -> Vec<(Vec<u8>, usize)> {
    let mut alerts: Vec<Alert> = INCIDENT
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let name = parts.next().unwrap();
            let identity: Vec<(&str, String)> = parts.map(|p| p.split_once('=').unwrap()).map(|(k, v)| (k, v.to_string())).collect();
            alert(name, &identity, "2026-11-25T11:31:07.118Z")
        })
        .collect();
    let synthetic_from = alerts.len();
    // 600 more: 20 namespaces x (24 blocked pods, 3 stale VolSync sources, 3 routed CNPG clusters absent from the snapshot).
    for n in 0..20 {
        let ns = format!("tenant-{n:02}");
        for p in 0..24 {
            let id = [("namespace", ns.clone()), ("pod", format!("app-{p}-7c9f8d6b5-x{p:03}")), ("persistentvolumeclaim", format!("data-app-{p}")), ("node", "node-01-pve".into())];
            alerts.push(alert("LifeboatPodBlockedOnLostVolume", &id, "2026-11-25T11:36:07.118Z"));
        }
        for v in 0..3 {
            alerts.push(alert("LifeboatVolsyncSourceStale", &[("namespace", ns.clone()), ("name", format!("app-{v}"))], "2026-11-25T11:46:07.118Z"));
        }
        for c in 0..3 {
            let id = [("namespace", ns.clone()), ("cluster", format!("pg-{c}")), ("pod", format!("pg-{c}-1")), ("node", "node-01-pve".into())];
            alerts.push(alert("LifeboatCnpgPrimaryOnLostNode", &id, "2026-11-25T11:32:07.118Z"));
        }
    }
    // Group by (alertname, namespace), at most 40 alerts per notification.
    let mut groups: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, a) in alerts.iter().enumerate() {
        let key = (a.labels["alertname"].clone(), a.labels.get("namespace").cloned().unwrap_or_default());
        groups.entry(key).or_default().push(i);
    }
    let mut out = vec![];
    for (g, members) in groups.values().enumerate() {
        for chunk in members.chunks(40) {
            let group: Vec<&Alert> = chunk.iter().map(|&i| &alerts[i]).collect();
            out.push((notification(&group, false), group.len()));
            // A fifth of the synthetic groups have resolved (and keep being re-sent resolved by the HA peer).
            if chunk[0] >= synthetic_from && g % 5 == 0 {
                out.push((notification(&group, true), group.len()));
            }
        }
    }
    out
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// CPU seconds (user + system) used so far by this process's threads named `name`.
fn thread_cpu_seconds(name: &str) -> f64 {
    let ticks_per_second = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised command: state is the 1st, utime the 12th, stime the 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        ticks += fields.get(11).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0) + fields.get(12).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    }
    ticks as f64 / ticks_per_second
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `--journal directory|cluster` (cargo passes `--bench` too), else LIFEBOAT_BENCH_JOURNAL.
fn journal_kind() -> String {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args.iter().position(|a| a == "--journal").and_then(|i| args.get(i + 1).cloned());
    let from_args = from_args.or_else(|| args.iter().find_map(|a| a.strip_prefix("--journal=").map(String::from)));
    let kind = from_args.or_else(|| std::env::var("LIFEBOAT_BENCH_JOURNAL").ok()).unwrap_or_else(|| "directory".into());
    assert!(kind == "directory" || kind == "cluster", "--journal {kind}: directory or cluster");
    kind
}

/// RemediationRuns in a fresh namespace of the test control plane (every CRD installed, lifeboat's too).
async fn cluster_journal() -> Journal {
    let plane = support::controlplane::control_plane();
    let client = plane.admin_client();
    let namespace = plane.namespace(&client, "bench-intake").await;
    Journal::cluster(client, namespace)
}

/// A run awaiting approval that a request created: when the request was sent, and the run.
type Created = (Instant, String);

/// The ids of the runs awaiting approval a webhook answer says it created.
fn runs_created(body: &[u8]) -> Vec<String> {
    if !body.windows(14).any(|w| w == b"\"result\":\"run\"") {
        return vec![];
    }
    let answer: Value = serde_json::from_slice(body).unwrap_or_default();
    let alerts = answer["alerts"].as_array().cloned().unwrap_or_default();
    alerts.iter().filter(|a| a["result"] == "run" && a["phase"] == "AwaitingApproval").filter_map(|a| a["run"].as_str().map(String::from)).collect()
}

/// When the fake received the approval message of run `id` (its main message), if it did.
fn approval_message_at(fake: &FakeDiscord, id: &str) -> Option<Instant> {
    let needle = format!("`{id}`");
    fake.messages().iter().find(|m| m.reply_to.is_none() && m.text().contains(&needle)).map(|m| m.posted_at.into_std())
}

/// The probe: one new instance of a routed alert at a time (a later
/// `startsAt` each), until `deadline`; each run it creates is waited for at
/// the fake Discord, then aborted so the target is free for the next. A
/// busy target's run (the traffic's own) is aborted the same way.
async fn probe(url: String, http: reqwest::Client, journal: Arc<Journal>, fake: Arc<FakeDiscord>, deadline: Instant) -> Vec<Created> {
    let mut created = vec![];
    let identity = [("namespace", "utils".to_string()), ("name", "oldapp-dst".to_string())];
    for n in 0.. {
        if n > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if Instant::now() >= deadline {
            break;
        }
        let starts_at = format!("2026-11-25T12:{:02}:{:02}.000Z", (n / 60) % 60, n % 60);
        let body = notification(&[&alert("LifeboatVolsyncDestinationOrphaned", &identity, &starts_at)], false);
        let sent = Instant::now();
        let response = http.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body(body).send().await.unwrap();
        let answer: Value = response.json().await.unwrap_or_default();
        let result = &answer["alerts"][0];
        let Some(run) = result["run"].as_str() else { continue };
        if result["result"] == "run" {
            created.push((sent, run.to_string()));
            let waited = Instant::now() + Duration::from_secs(10);
            while approval_message_at(&fake, run).is_none() && Instant::now() < waited {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        lifeboat::remediator::abort(&journal, run, "bench").await.unwrap();
    }
    created
}

/// p50/p99/max of the times from each request to its run's approval message, and how many never got one.
fn report_approval_latency(what: &str, fake: &FakeDiscord, created: &[Created]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut latencies: Vec<u32> = vec![];
    let mut missing = 0;
    for (sent, id) in created {
        let mut at = approval_message_at(fake, id);
        while at.is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            at = approval_message_at(fake, id);
        }
        match at {
            Some(at) => latencies.push(at.saturating_duration_since(*sent).as_micros().min(u128::from(u32::MAX)) as u32),
            None => missing += 1,
        }
    }
    latencies.sort_unstable();
    if latencies.is_empty() {
        println!("{what}: no runs awaiting approval ({missing} without a message)");
        return;
    }
    println!(
        "{what}: n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {missing} without a message within 10 s",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
}

fn main() {
    let seconds = env_or("LIFEBOAT_BENCH_SECONDS", 10);
    let concurrency = env_or("LIFEBOAT_BENCH_CONCURRENCY", 8) as usize;
    let cluster = journal_kind() == "cluster";
    let traffic = Arc::new(traffic());
    let distinct_alerts: usize = traffic.iter().map(|(_, n)| n).sum();
    let bytes: usize = traffic.iter().map(|(b, _)| b.len()).sum();

    // The server gets its own runtime, as in `lifeboat serve` (2 worker threads on this machine).
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("lifeboat-server").enable_all().build().unwrap();
    let client_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("bench-client").enable_all().build().unwrap();
    let dump = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/node-loss");
    let (state, _) = lifeboat::cluster::dump::load(&dump).unwrap();
    let config = Config::default();
    let hub = Arc::new(Hub::new(config.clone(), Snapshot::build(state, &config, &Default::default()), None));
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(if cluster { server.block_on(cluster_journal()) } else { Journal::file(dir.path()) });
    // In the cluster lifeboat posts each new run to Discord: the fake plays Discord (no rate limit in the way).
    let fake = cluster.then(|| Arc::new(client_rt.block_on(FakeDiscord::start(1_000_000, Duration::from_secs(1)))));
    if let Some(fake) = &fake {
        let discord = Arc::new(DiscordClient::bot(&fake.api_base, BOT_TOKEN, CHANNEL_ID));
        server.spawn(Notifier::new(journal.clone(), discord, Dur::hours(1), Dur::secs(15)).run_forever());
    }
    let intake = Arc::new(Intake::new(hub.clone(), journal.clone(), default_routes(), TOKEN));
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/alertmanager", listener.local_addr().unwrap());
    server.spawn(async move { axum::serve(listener, routes(intake)).await });

    let next = Arc::new(AtomicUsize::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency + 1).build().unwrap();
    let server_cpu_before = thread_cpu_seconds("lifeboat-server");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let prober = fake.clone().map(|fake| client_rt.spawn(probe(url.clone(), http.clone(), journal.clone(), fake, deadline)));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, traffic, next) = (http.clone(), url.clone(), traffic.clone(), next.clone());
            client_rt.spawn(async move {
                let (mut latencies, mut alerts, mut failures, mut created) = (Vec::<(bool, u32)>::new(), 0usize, 0usize, Vec::<Created>::new());
                let mut first_cycle_end = started;
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (body, n) = &traffic[i % traffic.len()];
                    let sent = Instant::now();
                    let response = http.post(&url).bearer_auth(TOKEN).header("content-type", "application/json").body(body.clone()).send().await;
                    let ok = match response {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(body) => {
                                if cluster {
                                    created.extend(runs_created(&body).into_iter().map(|id| (sent, id)));
                                }
                                true
                            }
                            Err(_) => false,
                        },
                        _ => false,
                    };
                    latencies.push((i >= traffic.len(), sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32));
                    if i < traffic.len() {
                        first_cycle_end = first_cycle_end.max(Instant::now());
                    }
                    if ok {
                        alerts += n;
                    } else {
                        failures += 1;
                    }
                }
                (latencies, alerts, failures, created, first_cycle_end)
            })
        })
        .collect();
    let (mut latencies, mut alerts, mut failures, mut created, mut first_cycle_end) = (vec![], 0, 0, vec![], started);
    for w in workers {
        let (l, a, f, c, end) = client_rt.block_on(w).unwrap();
        first_cycle_end = first_cycle_end.max(end);
        latencies.extend(l);
        alerts += a;
        failures += f;
        created.extend(c);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let server_cpu = thread_cpu_seconds("lifeboat-server") - server_cpu_before;
    let probed = prober.map(|p| client_rt.block_on(p).unwrap()).unwrap_or_default();
    // After the first cycle every notification is a repeat (the steady state of an incident).
    let mut repeats: Vec<u32> = latencies.iter().filter(|(repeat, _)| *repeat).map(|(_, l)| *l).collect();
    let mut latencies: Vec<u32> = latencies.into_iter().map(|(_, l)| l).collect();
    latencies.sort_unstable();
    repeats.sort_unstable();
    let runs = server.block_on(journal.list()).unwrap();
    let c = lifeboat::alerts::IntakeCounters::of(&hub);
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    println!("journal: {}; load average {}", journal.location(), std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim());
    println!("traffic: {} notifications cycled ({distinct_alerts} alerts, {:.1} KiB); {concurrency} concurrent connections for {seconds}s", traffic.len(), bytes as f64 / 1024.0);
    println!("requests:   {:>9} ({:.0}/s), {failures} not 200", latencies.len(), latencies.len() as f64 / elapsed);
    println!("alerts:     {:>9} ({:.0}/s)", alerts, alerts as f64 / elapsed);
    println!(
        "results:    {} unrouted, {} duplicates, {} runs created, rest resolved or nothing to do; journal holds {} runs",
        load(&c.unrouted),
        load(&c.duplicates),
        load(&c.runs_created),
        runs.len()
    );
    println!(
        "journal reads: {} listings of the unfinished runs, {} listings of given alerts' runs, {} reads of one run",
        load(&c.journal_lists),
        load(&c.journal_alert_lists),
        load(&c.journal_gets)
    );
    println!(
        "latency:    p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (per request)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    if !repeats.is_empty() {
        println!(
            "latency after the first cycle: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} requests, each a repeat)",
            percentile(&repeats, 0.5),
            percentile(&repeats, 0.9),
            percentile(&repeats, 0.99),
            percentile(&repeats, 1.0),
            repeats.len()
        );
    }
    println!("server CPU: {:.2} s in {elapsed:.1} s ({:.0}% of one core), {:.1} µs per alert", server_cpu, 100.0 * server_cpu / elapsed, 1e6 * server_cpu / alerts.max(1) as f64);
    if let Some(fake) = &fake {
        report_approval_latency("alert → Discord approval message, traffic's runs", fake, &created);
        report_approval_latency("alert → Discord approval message, probe's runs  ", fake, &probed);
        let all: Vec<Created> = created.iter().chain(&probed).cloned().collect();
        report_approval_latency("alert → Discord approval message, all          ", fake, &all);
        // The first cycle creates the incident's runs under the intake lock: the probes sent after it show the steady state.
        let steady: Vec<Created> = probed.iter().filter(|(sent, _)| *sent > first_cycle_end).cloned().collect();
        println!("first cycle answered {:.2} s after the start", first_cycle_end.saturating_duration_since(started).as_secs_f64());
        report_approval_latency("alert → Discord approval message, probe's runs after the first cycle", fake, &steady);
    }
}
