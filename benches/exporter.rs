//! Exporter benchmark: generates a synthetic cluster dump (1k nodes, 20k
//! pods, 10k PVs + 10k PVCs, 500 custom resources), loads it, and prints peak
//! RSS, load and snapshot build time, and /metrics encode time and size.
//!
//!     cargo bench --bench exporter
//!
//! Figures are printed, never asserted; record them in BENCHMARKS.md.

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use lifeboat::cluster::dump;
use lifeboat::config::Config;
use lifeboat::inspect::garage::GarageProbe;
use lifeboat::snapshot::{Hub, Snapshot};

const NODES: usize = 1_000;
const LOST_NODES: usize = 10;
const PVS: usize = 10_000;
const PODS: usize = 20_000;
const CNPG: usize = 50;
const VOLSYNC_APPS: usize = 200; // an RS and an RD each
const KUSTOMIZATIONS: usize = 50;
// Plus 100 backup CronJobs (core kind), one per namespace.
const NOW: &str = "2026-11-25T12:00:00Z";

fn write_list(dir: &Path, file: &str, items: impl Iterator<Item = String>) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join(file)).unwrap());
    write!(out, r#"{{"apiVersion":"v1","kind":"List","items":["#).unwrap();
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.write_all(b",").unwrap();
        }
        out.write_all(item.as_bytes()).unwrap();
    }
    out.write_all(b"]}").unwrap();
}

fn node_name(i: usize) -> String {
    format!("node-{i:04}")
}

fn generate(dir: &Path) {
    std::fs::write(dir.join("capture.yaml"), format!("capturedAt: \"{NOW}\"\n")).unwrap();
    write_list(dir, "nodes.json", (0..NODES).map(|i| {
        let (status, since) = if i < LOST_NODES { ("Unknown", "2026-11-25T11:00:00Z") } else { ("True", "2026-11-01T00:00:00Z") };
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{n}","uid":"u-n{i}","labels":{{"kubernetes.io/hostname":"{n}","kubernetes.io/os":"linux","node.kubernetes.io/instance-type":"small"}}}},"status":{{"conditions":[{{"type":"Ready","status":"{status}","reason":"KubeletReady","lastTransitionTime":"{since}"}},{{"type":"MemoryPressure","status":"False","reason":"KubeletHasSufficientMemory","lastTransitionTime":"{since}"}}]}}}}"#,
            n = node_name(i)
        )
    }));
    let ns = |i: usize| format!("ns-{}", i % 100);
    write_list(dir, "pvs.json", (0..PVS).map(|i| {
        format!(
            r#"{{"apiVersion":"v1","kind":"PersistentVolume","metadata":{{"name":"pvc-{i:08}","uid":"u-pv{i}","labels":{{"openebs.io/cas-type":"local-hostpath"}},"annotations":{{"pv.kubernetes.io/provisioned-by":"openebs.io/local"}}}},"spec":{{"capacity":{{"storage":"10Gi"}},"accessModes":["ReadWriteOnce"],"claimRef":{{"namespace":"{ns}","name":"data-{i}"}},"storageClassName":"openebs-hostpath","persistentVolumeReclaimPolicy":"Delete","local":{{"path":"/var/mnt/local-hostpath/pvc-{i:08}"}},"nodeAffinity":{{"required":{{"nodeSelectorTerms":[{{"matchExpressions":[{{"key":"kubernetes.io/hostname","operator":"In","values":["{node}"]}}]}}]}}}}}},"status":{{"phase":"Bound"}}}}"#,
            ns = ns(i),
            node = node_name(i % NODES)
        )
    }));
    write_list(dir, "pvcs.json", (0..PVS).map(|i| {
        format!(
            r#"{{"apiVersion":"v1","kind":"PersistentVolumeClaim","metadata":{{"name":"data-{i}","namespace":"{ns}","uid":"u-pvc{i}","annotations":{{"volume.kubernetes.io/selected-node":"{node}"}}}},"spec":{{"accessModes":["ReadWriteOnce"],"resources":{{"requests":{{"storage":"10Gi"}}}},"storageClassName":"openebs-hostpath","volumeName":"pvc-{i:08}"}},"status":{{"phase":"Bound"}}}}"#,
            ns = ns(i),
            node = node_name(i % NODES)
        )
    }));
    for chunk in 0..10 {
        let range = chunk * PODS / 10..(chunk + 1) * PODS / 10;
        write_list(dir, &format!("pods-{chunk}.json"), range.map(|i| {
            let volumes = if i < PVS { format!(r#"[{{"name":"data","persistentVolumeClaim":{{"claimName":"data-{i}"}}}}]"#) } else { "[]".into() };
            format!(
                r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"app-{i}-abcde","namespace":"{ns}","uid":"u-p{i}","labels":{{"app.kubernetes.io/name":"app-{i}","pod-template-hash":"5d9f8c7b6"}},"ownerReferences":[{{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"app-{i}-5d9f8c7b6","uid":"u-rs{i}","controller":true}}]}},"spec":{{"nodeName":"{node}","volumes":{volumes},"containers":[{{"name":"app","image":"registry.example/app:1.2.3","resources":{{"requests":{{"cpu":"10m"}}}}}}]}},"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True"}}],"containerStatuses":[{{"name":"app","ready":true,"restartCount":0,"state":{{"running":{{"startedAt":"2026-11-20T00:00:00Z"}}}}}}]}}}}"#,
                ns = ns(i),
                node = node_name(i % NODES)
            )
        }));
    }
    write_list(dir, "cnpg.json", (0..CNPG).map(|i| {
        format!(
            r#"{{"apiVersion":"postgresql.cnpg.io/v1","kind":"Cluster","metadata":{{"name":"pg-{i}","namespace":"ns-{i}","uid":"u-c{i}"}},"spec":{{"instances":3,"plugins":[{{"name":"barman-cloud.cloudnative-pg.io","isWALArchiver":true,"parameters":{{"barmanObjectName":"store","serverName":"pg-{i}"}}}}]}},"status":{{"currentPrimary":"pg-{i}-1","targetPrimary":"pg-{i}-1","instances":3,"readyInstances":3,"phase":"Cluster in healthy state","conditions":[{{"type":"ContinuousArchiving","status":"True","reason":"ContinuousArchivingSuccess","lastTransitionTime":"2026-11-01T00:00:00Z"}},{{"type":"LastBackupSucceeded","status":"True","reason":"LastBackupSucceeded","lastTransitionTime":"2026-11-25T03:00:00Z"}}]}}}}"#
        )
    }));
    write_list(dir, "volsync.json", (0..VOLSYNC_APPS).flat_map(|i| {
        [
            format!(
                r#"{{"apiVersion":"volsync.backube/v1alpha1","kind":"ReplicationSource","metadata":{{"name":"app-{i}","namespace":"ns-{n}","uid":"u-rs-v{i}"}},"spec":{{"sourcePVC":"data-{i}","trigger":{{"schedule":"0 * * * *"}},"kopia":{{"repository":"app-{i}-volsync"}}}},"status":{{"lastSyncTime":"2026-11-25T11:00:00Z","latestMoverStatus":{{"result":"Successful"}}}}}}"#,
                n = i % 100
            ),
            format!(
                r#"{{"apiVersion":"volsync.backube/v1alpha1","kind":"ReplicationDestination","metadata":{{"name":"app-{i}-dst","namespace":"ns-{n}","uid":"u-rd-v{i}"}},"spec":{{"trigger":{{"manual":"restore-once"}},"kopia":{{"repository":"app-{i}-volsync","destinationPVC":"data-{i}"}}}},"status":{{"lastManualSync":"restore-once"}}}}"#,
                n = i % 100
            ),
        ]
    }));
    // Most apps back up their data: a backup CronJob per namespace.
    write_list(dir, "cronjobs.json", (0..100).map(|i| {
        format!(
            r#"{{"apiVersion":"batch/v1","kind":"CronJob","metadata":{{"name":"data-backup","namespace":"ns-{i}","uid":"u-cj{i}"}},"spec":{{"schedule":"30 * * * *","jobTemplate":{{"spec":{{}}}}}},"status":{{"lastScheduleTime":"2026-11-25T11:30:00Z","lastSuccessfulTime":"2026-11-25T11:31:00Z"}}}}"#
        )
    }));
    write_list(dir, "flux.json", (0..KUSTOMIZATIONS).map(|i| {
        format!(
            r#"{{"apiVersion":"kustomize.toolkit.fluxcd.io/v1","kind":"Kustomization","metadata":{{"name":"app-{i}","namespace":"flux-system","uid":"u-k{i}"}},"spec":{{"suspend":false}},"status":{{"conditions":[{{"type":"Ready","status":"True","reason":"ReconciliationSucceeded","lastTransitionTime":"2026-11-25T00:00:00Z"}}]}}}}"#
        )
    }));
}

/// Peak and current resident set size from /proc (Linux), in MiB.
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let dump_bytes: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let (baseline_peak, _) = rss_mib();

    let started = Instant::now();
    let (state, summary) = dump::load(dir.path()).unwrap();
    let load = started.elapsed();
    let (load_peak, after_load) = rss_mib();

    let config = Config::default();
    let started = Instant::now();
    let snapshot = Snapshot::build(state, &config, &GarageProbe::default());
    let build = started.elapsed();
    let hub = Arc::new(Hub::new(config, snapshot, None));

    let mut encode_ms = Vec::new();
    let mut size = 0;
    for _ in 0..20 {
        let started = Instant::now();
        let body = lifeboat::metrics::render(&hub).unwrap();
        encode_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        size = body.len();
    }
    encode_ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (peak, current) = rss_mib();

    let mut report = String::new();
    let snap = hub.snapshot();
    writeln!(report, "synthetic cluster: {NODES} nodes ({LOST_NODES} lost), {PODS} pods, {PVS} PVs + {PVS} PVCs, {} custom resources", CNPG + 2 * VOLSYNC_APPS + KUSTOMIZATIONS)
        .unwrap();
    writeln!(report, "dump: {} objects in {} files, {:.1} MiB", summary.objects, summary.files, dump_bytes as f64 / 1048576.0).unwrap();
    writeln!(
        report,
        "findings: {} lost volumes, {} blocked pods, {} PVC protection rows",
        snap.findings.lost_volumes.len(),
        snap.findings.blocked_pods.len(),
        snap.findings.protection.len()
    )
    .unwrap();
    writeln!(report, "dump load:        {:>8.1} ms", load.as_secs_f64() * 1000.0).unwrap();
    writeln!(report, "snapshot build:   {:>8.1} ms (findings)", build.as_secs_f64() * 1000.0).unwrap();
    writeln!(report, "/metrics encode:  {:>8.2} ms median, {:.2} ms max of 20; {:.2} MiB, {} lines", encode_ms[10], encode_ms[19], size as f64 / 1048576.0, hub_lines(&hub))
        .unwrap();
    writeln!(report, "RSS before load:  {:>8.1} MiB peak", baseline_peak).unwrap();
    writeln!(report, "RSS after load:   {:>8.1} MiB (peak during load {:.1} MiB)", after_load, load_peak).unwrap();
    writeln!(report, "RSS at the end:   {:>8.1} MiB (peak {:.1} MiB)", current, peak).unwrap();
    print!("{report}");
}

fn hub_lines(hub: &Arc<Hub>) -> usize {
    lifeboat::metrics::render(hub).unwrap().lines().count()
}
