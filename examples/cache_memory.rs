//! Bytes per cached object, counted by the allocator: builds N objects of
//! each shape through the same conversion the watch cache and the dump
//! loader use (decode the wire form, `LeanObject::from_wire`) and prints
//! what they keep on the heap, next to the same objects holding the decoded
//! `ObjectMeta` stripped as the cache did before it had a `Meta` of its own
//! (managed fields, uid, resourceVersion, ... dropped). Spec and status are
//! the same in both columns: they are made compact while decoding.
//!
//!     cargo run --example cache_memory [-- --objects 10000]
//!
//! Figures are printed, never asserted; record them in BENCHMARKS.md.

#[path = "../tests/support/fixtures.rs"]
mod fixtures;

use std::alloc::{GlobalAlloc, Layout, System};
use std::mem::size_of;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use lifeboat::cluster::intern;
use lifeboat::cluster::resources::*;
use serde_json::{json, Value};

/// Counts the bytes live on the heap.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// What the cache did to `ObjectMeta` before it had a form of its own.
fn strip_as_before(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.annotations = meta.annotations.take().map(|mut a| {
        a.retain(|k, _| KEPT_ANNOTATIONS.contains(&k.as_str()));
        a
    });
    meta.annotations = meta.annotations.take().filter(|a| !a.is_empty());
    (meta.uid, meta.resource_version, meta.generate_name, meta.generation) = (None, None, None, None);
    for owner in meta.owner_references.iter_mut().flatten() {
        owner.uid = String::new();
    }
}

/// Bytes per object kept on the heap by `keep` (plus the `Arc` slot a
/// snapshot list holds per object), for `n` objects made by `make`.
fn per_object<T>(n: usize, make: impl Fn(usize) -> Value, keep: impl Fn(Value) -> T) -> f64 {
    let before = live();
    let inputs: Vec<Value> = (0..n).map(&make).collect();
    let mut kept: Vec<Arc<T>> = Vec::with_capacity(n);
    for input in inputs {
        // Each input is freed here: only what `keep` retains counts.
        kept.push(Arc::new(keep(input)));
    }
    let bytes = live() - before;
    drop(kept);
    bytes as f64 / n as f64
}

fn row<K: LeanObject>(label: &str, n: usize, make: impl Fn(usize) -> Value, wire_meta: impl Fn(&mut K::Wire) -> &mut ObjectMeta) {
    let before = per_object(n, &make, |v| {
        let mut wire: K::Wire = serde_json::from_value(v).expect("decodes");
        strip_as_before(wire_meta(&mut wire));
        wire
    });
    let after = per_object(n, &make, |v| K::from_wire(serde_json::from_value(v).expect("decodes")));
    println!("| {label} | {:.0} B ({} inline) | {:.0} B ({} inline) | {:.0}% |", before, size_of::<K::Wire>(), after, size_of::<K>(), 100.0 * (1.0 - after / before));
}

fn ns(i: usize) -> String {
    format!("bench-{:03}", i % 100)
}

/// A pod as a Deployment's ReplicaSet and the kubelet leave it.
fn realistic_pod(i: usize) -> Value {
    let node = format!("node-{:04}", i % 1000);
    let app = format!("app-{}", i % 500);
    let rs = format!("{app}-7d9f8c6b5");
    let since = "2026-11-01T00:00:00Z";
    let conditions: Vec<Value> = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        .iter()
        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": since}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": format!("{rs}-{i:05x}"), "namespace": ns(i), "uid": format!("5f0c{i:08}-aaaa-bbbb-cccc-0123456789ab"),
            "resourceVersion": format!("{}", 100000 + i), "generateName": format!("{rs}-"), "creationTimestamp": since,
            "labels": {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": app, "pod-template-hash": "7d9f8c6b5"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": since},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs, "uid": "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": since, "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
        },
        "spec": {"nodeName": node, "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{i}")}}, {"name": "kube-api-access-abcde", "projected": {}}],
                 "containers": [{"name": "app", "image": "registry.example/app:1"}]},
        "status": {"phase": "Running", "conditions": conditions,
                   "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {"startedAt": since}}, "lastState": {}}]}
    })
}

fn main() {
    let mut n = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--objects" => n = args.next().and_then(|v| v.parse().ok()).expect("--objects: a count"),
            other => panic!("unknown flag {other}; usage: cargo run --example cache_memory [-- --objects N]"),
        }
    }
    let since = "2026-11-01T00:00:00Z";
    println!("Heap bytes per object ({n} objects of each shape; inline = size_of the struct, counted in the heap figure through its Arc):\n");
    println!("| object | with ObjectMeta (stripped) | with Meta | saved |");
    println!("|---|---|---|---|");
    // The shapes of benches/scale.rs (tests/support/fixtures.rs).
    row::<Pod>(
        "Pod (scale bench fixture)",
        n,
        |i| fixtures::pod(&ns(i), &format!("pod-{i}"), &format!("node-{:04}", i % 1000), &[&format!("data-{i}")], json!({"app": format!("app-{}", i % 500)}), None),
        |w| &mut w.metadata,
    );
    row::<Pod>("Pod (Deployment, Running, 5 conditions)", n, realistic_pod, |w| &mut w.metadata);
    row::<Node>("Node (fixture)", n, |i| fixtures::node(&format!("node-{i:04}"), "True", since), |w| &mut w.metadata);
    row::<PersistentVolume>(
        "PersistentVolume (pinned, fixture)",
        n,
        |i| fixtures::pv_pinned(&format!("pv-{i}"), "kubernetes.io/hostname", &format!("node-{:04}", i % 1000), &ns(i), &format!("data-{i}")),
        |w| &mut w.metadata,
    );
    row::<PersistentVolumeClaim>(
        "PersistentVolumeClaim (fixture)",
        n,
        |i| fixtures::pvc(&ns(i), &format!("data-{i}"), &format!("pv-{i}"), json!({"app": format!("app-{}", i % 500)})),
        |w| &mut w.metadata,
    );
    println!("\nInterned values in the pool: {}", intern::pooled());
}
