//! Scale benchmark, side by side with kube-state-metrics, live: starts the
//! test control plane (real kube-apiserver + etcd), loads a synthetic cluster
//! through the API, then runs `lifeboat serve` and kube-state-metrics against
//! it one after the other and prints, for each: time from start to the first
//! complete /metrics, CPU seconds to get there, peak and steady RSS, CPU per
//! minute under pod status churn, /metrics latency p50/p99 and body size.
//!
//!     scripts/bench-scale.sh [--scale 1.0] [--churn-rate 50] [--churn-seconds 60] [--scrapes 50]
//!                            [--tools lifeboat,lifeboat:OTHER_BINARY,kube-state-metrics]
//!
//! Figures are printed, never asserted; record them in BENCHMARKS.md.

#[allow(dead_code, unused_imports)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::{json, Value};
use support::fixtures::*;

/// Object counts at `--scale 1`: the default cluster of the issue.
struct Scale {
    nodes: usize,
    pods: usize,
    volumes: usize, // PVs, and as many PVCs
    namespaces: usize,
    cnpg: usize,
    volsync: usize, // a ReplicationSource and a ReplicationDestination each
    kustomizations: usize,
}

impl Scale {
    fn times(factor: f64) -> Self {
        let n = |base: f64| ((base * factor).round() as usize).max(1);
        Scale { nodes: n(1000.0), pods: n(20_000.0), volumes: n(10_000.0), namespaces: n(100.0), cnpg: n(50.0), volsync: n(200.0), kustomizations: n(50.0) }
    }
    fn objects(&self) -> usize {
        self.nodes + self.pods + 2 * self.volumes + self.cnpg + 2 * self.volsync + self.kustomizations
    }
}

struct Args {
    scale: f64,
    churn_rate: u32,
    churn_seconds: u64,
    scrapes: usize,
    tools: Vec<String>,
}

fn args() -> Args {
    let mut a = Args { scale: 1.0, churn_rate: 50, churn_seconds: 60, scrapes: 50, tools: vec!["lifeboat".into(), "kube-state-metrics".into()] };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scale" => a.scale = value().parse().expect("--scale: a number, e.g. 0.1"),
            "--churn-rate" => a.churn_rate = value().parse().expect("--churn-rate: updates per second"),
            "--churn-seconds" => a.churn_seconds = value().parse().expect("--churn-seconds: seconds"),
            "--scrapes" => a.scrapes = value().parse().expect("--scrapes: a count"),
            "--tools" => a.tools = value().split(',').map(String::from).collect(),
            "--bench" => {}
            other => panic!("unknown flag {other} (see the header of benches/scale.rs)"),
        }
    }
    a
}

fn ns_name(i: usize) -> String {
    format!("bench-{i:03}")
}

/// Every object of the synthetic cluster: the fixtures the tests use.
fn cluster(s: &Scale) -> Vec<Value> {
    let since = "2026-11-01T00:00:00Z";
    let mut out: Vec<Value> = (0..s.namespaces).map(|i| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_name(i)}})).collect();
    out.extend((0..s.nodes).map(|i| node(&format!("node-{i:04}"), "True", since)));
    for i in 0..s.volumes {
        let (ns, claim, node) = (ns_name(i % s.namespaces), format!("data-{i}"), format!("node-{:04}", i % s.nodes));
        out.push(pv_pinned(&format!("pv-{i}"), "kubernetes.io/hostname", &node, &ns, &claim));
        out.push(pvc(&ns, &claim, &format!("pv-{i}"), json!({"app": format!("app-{}", i % 500)})));
    }
    for i in 0..s.pods {
        let ns = ns_name(i % s.namespaces);
        let claim = format!("data-{i}");
        let claims: Vec<&str> = if i < s.volumes { vec![&claim] } else { vec![] };
        out.push(pod(&ns, &format!("pod-{i}"), &format!("node-{:04}", i % s.nodes), &claims, json!({"app": format!("app-{}", i % 500)}), None));
    }
    for i in 0..s.cnpg {
        let ns = ns_name(i % s.namespaces);
        let conditions = vec![condition("ContinuousArchiving", "True", "ContinuousArchivingSuccess", since)];
        out.push(cnpg_cluster(&ns, &format!("pg-{i}"), &format!("pg-{i}-1"), conditions, &format!("pg-{i}")));
    }
    for i in 0..s.volsync {
        let ns = ns_name(i % s.namespaces);
        out.push(replication_source(&ns, &format!("rs-{i}"), &format!("data-{i}"), "0 * * * *", false, Some(since), "Successful"));
        out.push(replication_destination(&ns, &format!("rd-{i}"), Some(&format!("data-{i}"))));
    }
    out.extend((0..s.kustomizations).map(|i| kustomization(&ns_name(i % s.namespaces), &format!("ks-{i}"), false, "True")));
    out
}

/// The API resource of each (apiVersion, kind), discovered once.
async fn resources(client: &Client, objects: &[Value]) -> HashMap<(String, String), ApiResource> {
    let mut out = HashMap::new();
    for o in objects {
        let key = (o["apiVersion"].as_str().unwrap().to_string(), o["kind"].as_str().unwrap().to_string());
        if let std::collections::hash_map::Entry::Vacant(slot) = out.entry(key) {
            let (api_version, kind) = slot.key();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let (resource, _) = kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind)).await.expect("discovery");
            slot.insert(resource);
        }
    }
    out
}

fn api(client: &Client, resources: &HashMap<(String, String), ApiResource>, o: &Value) -> Api<DynamicObject> {
    let resource = &resources[&(o["apiVersion"].as_str().unwrap().to_string(), o["kind"].as_str().unwrap().to_string())];
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// Creates every object (namespaces first), 64 requests in flight, then
/// writes the status the fixtures carry (the operator's or kubelet's part).
async fn load(client: &Client, objects: Vec<Value>) {
    let resources = resources(client, &objects).await;
    let (namespaces, rest): (Vec<Value>, Vec<Value>) = objects.into_iter().partition(|o| o["kind"] == "Namespace");
    for batch in [namespaces, rest] {
        futures::stream::iter(batch)
            .for_each_concurrent(64, |mut o| {
                let resources = &resources;
                async move {
                    let status = o.as_object_mut().unwrap().remove("status");
                    let api = api(client, resources, &o);
                    let name = o["metadata"]["name"].as_str().unwrap().to_string();
                    for owned in ["uid", "creationTimestamp"] {
                        o["metadata"].as_object_mut().unwrap().remove(owned);
                    }
                    let object: DynamicObject = serde_json::from_value(o).unwrap();
                    api.create(&PostParams::default(), &object).await.unwrap_or_else(|e| panic!("creating {name}: {e}"));
                    if let Some(status) = status {
                        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&json!({"status": status}))).await.unwrap_or_else(|e| panic!("status of {name}: {e}"));
                    }
                }
            })
            .await;
    }
}

/// Pod status updates at `rate` per second for `seconds` (what kubelets
/// send all day), round robin over the pods.
async fn churn(client: &Client, s: &Scale, rate: u32, seconds: u64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
    let total = rate as u64 * seconds;
    let mut inflight = futures::stream::FuturesUnordered::new();
    for n in 0..total {
        tick.tick().await;
        let i = (n as usize * 7919) % s.pods;
        let pods: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns_name(i % s.namespaces), &ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&()));
        let phase = if n % 2 == 0 { "Running" } else { "Pending" };
        // A message unique to this update: an update equal to the stored
        // object is not written and sends no watch event (a later tool's
        // churn would otherwise repeat an earlier one's values).
        let status = json!({"status": {"phase": phase, "message": format!("churn {}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default())}});
        inflight.push(async move {
            if let Err(e) = pods.patch_status(&format!("pod-{i}"), &PatchParams::default(), &Patch::Merge(&status)).await {
                eprintln!("churn: pod-{i}: {e}");
            }
        });
        while inflight.len() > 32 {
            inflight.next().await;
        }
    }
    while inflight.next().await.is_some() {}
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// (VmRSS, VmHWM) in bytes, and user+system CPU seconds, from /proc.
fn usage(pid: u32) -> (u64, u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0) * 1024;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // utime and stime are fields 14 and 15 of stat; after ")" they are 11 and 12 (0-based).
    (kib("VmRSS:"), kib("VmHWM:"), (ticks(11) + ticks(12)) / hz)
}

/// Resident (RssAnon, RssFile) in bytes: heap and stacks, against the
/// mapped binary and libraries (a debug build's code is a fixed part of RSS).
fn rss_split(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok()).unwrap_or(0) * 1024;
    (kib("RssAnon:"), kib("RssFile:"))
}

struct Tool {
    name: &'static str,
    child: Child,
    metrics_url: String,
    /// Whether a /metrics body shows every object of the cluster.
    complete: fn(&str, &Scale) -> bool,
}

fn count_prefix(body: &str, prefix: &str) -> usize {
    body.lines().filter(|l| l.starts_with(prefix)).count()
}

fn lifeboat_value(body: &str, kind: &str) -> usize {
    let prefix = format!("lifeboat_objects{{kind=\"{kind}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0) as usize
}

fn lifeboat_complete(body: &str, s: &Scale) -> bool {
    lifeboat_value(body, "core.Pod") >= s.pods
        && lifeboat_value(body, "core.Node") >= s.nodes
        && lifeboat_value(body, "core.PersistentVolume") >= s.volumes
        && lifeboat_value(body, "core.PersistentVolumeClaim") >= s.volumes
}

fn ksm_complete(body: &str, s: &Scale) -> bool {
    count_prefix(body, "kube_pod_info{") >= s.pods
        && count_prefix(body, "kube_node_info{") >= s.nodes
        && count_prefix(body, "kube_persistentvolume_info{") >= s.volumes
        && count_prefix(body, "kube_persistentvolumeclaim_info{") >= s.volumes
}

fn start_lifeboat(bin: &Path, kubeconfig: &Path, log: &Path) -> Tool {
    let port = free_port();
    let child = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    Tool { name: "lifeboat", child, metrics_url: format!("http://127.0.0.1:{port}/metrics"), complete: lifeboat_complete }
}

/// KSM with what a user enables for the same questions: nodes, pods, PVs,
/// PVCs, plus custom-resource-state for the CNPG Cluster and VolSync
/// ReplicationSource (the recovery-point fields lifeboat reads).
fn start_ksm(bin: &Path, kubeconfig: &Path, dir: &Path) -> Tool {
    let port = free_port();
    let crs = dir.join("ksm-custom-resource-state.yaml");
    std::fs::write(&crs, KSM_CUSTOM_RESOURCE_STATE).unwrap();
    let child = Command::new(bin)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--telemetry-port={}", free_port()))
        .arg("--host=127.0.0.1")
        .arg("--resources=nodes,pods,persistentvolumes,persistentvolumeclaims")
        // Off by default in KSM (pkg/options/options.go, v2.20.0); on here so the gzip size compares.
        .arg("--enable-gzip-encoding")
        .arg(format!("--custom-resource-state-config-file={}", crs.display()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("kube-state-metrics.log")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    Tool { name: "kube-state-metrics", child, metrics_url: format!("http://127.0.0.1:{port}/metrics"), complete: ksm_complete }
}

/// Custom-resource-state config (format: kube-state-metrics
/// docs/metrics/extend/customresourcestate-metrics.md, v2.20.0).
const KSM_CUSTOM_RESOURCE_STATE: &str = r#"kind: CustomResourceStateMetrics
spec:
  resources:
    - groupVersionKind: {group: postgresql.cnpg.io, version: v1, kind: Cluster}
      metrics:
        - name: cnpg_cluster_condition
          help: CNPG Cluster conditions
          each:
            type: Gauge
            gauge:
              path: [status, conditions]
              labelsFromPath: {type: [type]}
              valueFrom: [status]
    - groupVersionKind: {group: volsync.backube, version: v1alpha1, kind: ReplicationSource}
      metrics:
        - name: volsync_last_sync_time
          help: VolSync ReplicationSource last sync time
          each:
            type: Gauge
            gauge:
              path: [status, lastSyncTime]
"#;

#[derive(Default)]
struct Figures {
    to_complete: Duration,
    cpu_to_complete: f64,
    peak_rss: u64,
    steady_rss: u64,
    steady_anon_file: (u64, u64),
    /// lifeboat's `lifeboat_snapshot_build_duration_seconds` after the churn.
    snapshot_build: Option<f64>,
    cpu_per_minute_churn: f64,
    p50: Duration,
    p99: Duration,
    body_bytes: usize,
    gzip_bytes: Option<usize>,
}

async fn measure(mut tool: Tool, s: &Scale, a: &Args, client: &Client) -> Figures {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let pid = tool.child.id();
    let started = Instant::now();
    let mut f = Figures::default();
    loop {
        if let Ok(Some(status)) = tool.child.try_wait() {
            panic!("{} exited with {status} before serving a complete /metrics (see its log)", tool.name);
        }
        if let Ok(r) = http.get(&tool.metrics_url).send().await {
            if r.text().await.is_ok_and(|body| (tool.complete)(&body, s)) {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(1800), "{}: no complete /metrics in 30 minutes", tool.name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.to_complete = started.elapsed();
    f.cpu_to_complete = usage(pid).2;

    let cpu_before = usage(pid).2;
    let churn_started = Instant::now();
    churn(client, s, a.churn_rate, a.churn_seconds).await;
    f.cpu_per_minute_churn = (usage(pid).2 - cpu_before) * 60.0 / churn_started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut latencies = Vec::with_capacity(a.scrapes);
    for _ in 0..a.scrapes {
        let t = Instant::now();
        let body = http.get(&tool.metrics_url).send().await.unwrap().bytes().await.unwrap();
        latencies.push(t.elapsed());
        f.body_bytes = body.len();
        let text = String::from_utf8_lossy(&body);
        f.snapshot_build = text.lines().find_map(|l| l.strip_prefix("lifeboat_snapshot_build_duration_seconds ")?.trim().parse().ok());
    }
    latencies.sort();
    f.p50 = latencies[latencies.len() / 2];
    f.p99 = latencies[((latencies.len() * 99).div_ceil(100)).saturating_sub(1)];
    let gzipped = http.get(&tool.metrics_url).header("accept-encoding", "gzip").send().await.unwrap();
    if gzipped.headers().get("content-encoding").is_some_and(|v| v == "gzip") {
        f.gzip_bytes = Some(gzipped.bytes().await.unwrap().len());
    }
    let (rss, hwm, _) = usage(pid);
    (f.steady_rss, f.peak_rss) = (rss, hwm);
    f.steady_anon_file = rss_split(pid);
    let _ = tool.child.kill();
    let _ = tool.child.wait();
    f
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn bin(env: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(env).map(PathBuf::from).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let a = args();
    let s = Scale::times(a.scale);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let lifeboat = bin("LIFEBOAT_BIN", root.join("target/release/lifeboat"));
    let ksm = bin("KSM_BIN", root.join("target/kube-state-metrics/v2.20.0/bin/kube-state-metrics"));
    // Kept after the run: the tools' logs are in it.
    let dir = tempfile::Builder::new().prefix("lifeboat-bench-scale-").tempdir().unwrap().keep();
    println!("logs in {}", dir.display());
    let plane = support::controlplane::control_plane();
    let kubeconfig = dir.join("kubeconfig");
    plane.write_admin_kubeconfig(&kubeconfig);
    let client = plane.admin_client();

    let objects = cluster(&s);
    println!(
        "loading {} objects ({} nodes, {} pods, {} PV + {} PVC, {} custom resources) through the API; load {}",
        s.objects(),
        s.nodes,
        s.pods,
        s.volumes,
        s.volumes,
        s.cnpg + 2 * s.volsync + s.kustomizations,
        load_average()
    );
    let t = Instant::now();
    load(&client, objects).await;
    println!("loaded in {:.1} s; load {}", t.elapsed().as_secs_f64(), load_average());

    let mut results = Vec::new();
    for (i, tool) in a.tools.iter().enumerate() {
        let log = dir.join(format!("{i}-lifeboat.log"));
        let load_at_start = load_average();
        // `lifeboat:PATH` runs another lifeboat binary (e.g. a build of main, for a before/after).
        let started = match tool.split_once(':') {
            _ if tool == "lifeboat" => start_lifeboat(&lifeboat, &kubeconfig, &log),
            Some(("lifeboat", path)) => start_lifeboat(Path::new(path), &kubeconfig, &log),
            _ if tool == "kube-state-metrics" => start_ksm(&ksm, &kubeconfig, &dir),
            _ => panic!("unknown tool {tool}: lifeboat, lifeboat:PATH or kube-state-metrics"),
        };
        println!("running {tool} (load {load_at_start}) ...");
        let f = measure(started, &s, &a, &client).await;
        results.push((tool.clone(), f, format!("{load_at_start} → {}", load_average())));
    }

    println!("\nscale {} ({} objects), churn {} pod status updates/s for {} s, {} scrapes", a.scale, s.objects(), a.churn_rate, a.churn_seconds, a.scrapes);
    println!("| | {} |", results.iter().map(|r| r.0.as_str()).collect::<Vec<_>>().join(" | "));
    println!("|---|{}", "---|".repeat(results.len()));
    let row = |what: &str, cell: &dyn Fn(&Figures) -> String| {
        println!("| {what} | {} |", results.iter().map(|r| cell(&r.1)).collect::<Vec<_>>().join(" | "));
    };
    row("start → first complete /metrics", &|f| format!("{:.1} s", f.to_complete.as_secs_f64()));
    row("CPU to sync", &|f| format!("{:.1} s", f.cpu_to_complete));
    row("peak RSS", &|f| mib(f.peak_rss));
    row("steady RSS (after churn)", &|f| mib(f.steady_rss));
    row("steady RSS per object", &|f| format!("{} B", f.steady_rss / s.objects() as u64));
    row("steady RSS: anonymous (heap, stacks) / file (binary, libraries)", &|f| format!("{} / {}", mib(f.steady_anon_file.0), mib(f.steady_anon_file.1)));
    row("CPU per minute under churn", &|f| format!("{:.2} s", f.cpu_per_minute_churn));
    row("snapshot build (last, after the churn)", &|f| f.snapshot_build.map_or("-".into(), |b| format!("{:.0} ms", b * 1000.0)));
    row("/metrics p50 / p99", &|f| format!("{} / {}", ms(f.p50), ms(f.p99)));
    row("/metrics body (gzip)", &|f| format!("{} KB ({})", f.body_bytes / 1000, f.gzip_bytes.map_or("no gzip".into(), |g| format!("{} KB", g / 1000))));
    println!("| load average (1/5/15 min) at start → end | {} |", results.iter().map(|r| r.2.as_str()).collect::<Vec<_>>().join(" | "));
    let lifeboat_result = results.iter().find(|r| r.0 == "lifeboat");
    let ksm_result = results.iter().find(|r| r.0 == "kube-state-metrics");
    if let (Some((_, l, _)), Some((_, k, _))) = (lifeboat_result, ksm_result) {
        println!(
            "\nratios kube-state-metrics / lifeboat: peak RSS {:.1}×, steady RSS {:.1}×, p99 {:.0}×, time to complete {:.1}×",
            k.peak_rss as f64 / l.peak_rss as f64,
            k.steady_rss as f64 / l.steady_rss as f64,
            k.p99.as_secs_f64() / l.p99.as_secs_f64(),
            k.to_complete.as_secs_f64() / l.to_complete.as_secs_f64()
        );
    }
}
