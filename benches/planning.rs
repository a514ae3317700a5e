//! Planning benchmark: `node-loss` for one lost node that pins hundreds of
//! PVCs (VolSync apps, S3-restore apps, CNPG and MariaDB instances, Garage,
//! Kanidm), built by copying the `examples/node-loss` cluster into numbered
//! namespaces until the lost node pins the asked number of claims.
//!
//!     cargo bench --bench planning                 # 500 claims on the lost node
//!     cargo bench --bench planning -- --pvcs 2000 --rounds 50
//!
//! Prints the state's size, the inspection time and the plan time (min, p50,
//! p99, max over the rounds). Figures are printed, never asserted; record them
//! in BENCHMARKS.md.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat::cluster::dump;
use lifeboat::config::Config;
use lifeboat::inspect::{self, garage::GarageProbe};
use lifeboat::plan::playbooks::{plan, Trigger};
use serde_json::Value;

const EXAMPLE: &str = "examples/node-loss";
const LOST_NODE: &str = "node-01-pve";

struct Args {
    pvcs: usize,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args { pvcs: 500, rounds: 30 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} needs a number"));
        match flag.as_str() {
            "--pvcs" => a.pvcs = value(),
            "--rounds" => a.rounds = value(),
            "--bench" => {}
            other => panic!("unknown argument {other}; see the header of benches/planning.rs"),
        }
    }
    a
}

/// The example's objects, one `v1/List` per file.
fn example_lists() -> Vec<(String, Vec<Value>)> {
    let mut files: Vec<_> = std::fs::read_dir(EXAMPLE).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "capture.yaml"))
        .map(|p| {
            let list: Value = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), list["items"].as_array().cloned().unwrap_or_default())
        })
        .collect()
}

/// Copy `n` of a namespaced or volume object: namespaces (wherever an object
/// names one: its own, a claimRef's, a Flux target's or owner label, a
/// Service host in an env value) and PV names get the suffix `-n`; nodes are
/// shared by every copy.
fn copy(object: &Value, n: usize, namespaces: &BTreeSet<String>, volumes: &BTreeSet<String>) -> Value {
    fn walk(v: &mut Value, key: Option<&str>, n: usize, namespaces: &BTreeSet<String>, volumes: &BTreeSet<String>) {
        match v {
            Value::Object(map) => map.iter_mut().for_each(|(k, child)| walk(child, Some(k), n, namespaces, volumes)),
            Value::Array(items) => items.iter_mut().for_each(|child| walk(child, key, n, namespaces, volumes)),
            Value::String(s) => {
                let names_namespace = key.is_some_and(|k| k == "namespace" || k == "targetNamespace" || k.ends_with(".fluxcd.io/namespace"));
                if (names_namespace && namespaces.contains(s.as_str())) || (key == Some("volumeName") && volumes.contains(s.as_str())) {
                    *s = format!("{s}-{n}");
                } else if key == Some("value") {
                    // A database host in an env value, e.g. `postgres-rw.database.svc.cluster.local`.
                    if let Some(ns) = namespaces.iter().find(|ns| s.contains(&format!(".{ns}.svc"))) {
                        *s = s.replace(&format!(".{ns}.svc"), &format!(".{ns}-{n}.svc"));
                    }
                }
            }
            _ => {}
        }
    }
    let mut copied = object.clone();
    walk(&mut copied, None, n, namespaces, volumes);
    if copied["kind"] == "PersistentVolume" {
        let name = copied["metadata"]["name"].as_str().unwrap().to_string();
        copied["metadata"]["name"] = Value::String(format!("{name}-{n}"));
    }
    copied
}

fn pins_lost_node(pv: &Value) -> bool {
    pv.to_string().contains(&format!("\"{LOST_NODE}\""))
}

/// Writes enough copies of the example that `LOST_NODE` pins at least `pvcs`
/// claims; returns how many claims it pins.
fn write_cluster(dir: &Path, pvcs: usize) -> usize {
    let lists = example_lists();
    let all = || lists.iter().flat_map(|(_, items)| items.iter());
    let namespaces: BTreeSet<String> = all().filter_map(|o| o["metadata"]["namespace"].as_str().map(String::from)).collect();
    let volumes: BTreeSet<String> = all().filter(|o| o["kind"] == "PersistentVolume").map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let per_copy = all().filter(|o| o["kind"] == "PersistentVolume" && pins_lost_node(o)).count();
    let copies = pvcs.div_ceil(per_copy);
    for (file, items) in &lists {
        let mut out = Vec::new();
        for item in items {
            if item["kind"] == "Node" {
                out.push(item.clone());
            } else {
                out.extend((0..copies).map(|n| copy(item, n, &namespaces, &volumes)));
            }
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": out});
        std::fs::write(dir.join(format!("{file}.json")), serde_json::to_vec(&list).unwrap()).unwrap();
    }
    std::fs::copy(Path::new(EXAMPLE).join("capture.yaml"), dir.join("capture.yaml")).unwrap();
    copies * per_copy
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    format!("min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} rounds)", at(0.0), at(0.5), at(0.99), at(1.0), times.len())
}

fn main() {
    let args = args();
    let dir = tempfile::tempdir().unwrap();
    let pinned = write_cluster(dir.path(), args.pvcs);
    let (state, loaded) = dump::load(dir.path()).unwrap();
    println!("cluster: {} objects; {LOST_NODE} pins {pinned} PVCs", loaded.objects);
    let config = Config::default();
    let probe = GarageProbe::default();
    let trigger = Trigger { node: Some(LOST_NODE.into()), ..Trigger::default() };
    let mut inspections = vec![];
    let mut plans = vec![];
    let (mut steps, mut edges) = (0, 0);
    for _ in 0..args.rounds {
        let started = Instant::now();
        let findings = inspect::inspect(&state, &config, &probe);
        inspections.push(started.elapsed());
        let started = Instant::now();
        let planned = plan("node-loss", &state, &findings, &trigger).expect("node-loss plans");
        plans.push(started.elapsed());
        steps = planned.steps.len();
        edges = planned.steps.iter().map(|s| s.needs.len()).sum::<usize>();
    }
    println!("plan: node-loss for {LOST_NODE}, {steps} steps, {edges} `needs` edges");
    println!("inspect: {}", summary(inspections));
    println!("plan:    {}", summary(plans));
}
