//! The annotations, taints and log markers lifeboat writes on objects or
//! reads back: one vocabulary for the inspectors, the planners and the runner.

use serde_json::Value;

/// Annotation on a Flux object a run left suspended on purpose: why, and
/// what must happen before it is resumed (visible in `kubectl describe`).
pub const KEPT_SUSPENDED_ANNOTATION: &str = "lifeboat.dev/kept-suspended";

/// Set by a human (or `lifeboat confirm-node-gone`) on the Node: it is not coming back.
pub const CONFIRMED_GONE_ANNOTATION: &str = "lifeboat.dev/confirmed-gone";
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// The CNPG instances fenced by a human, on the `Cluster`: a JSON list of
/// instance names, or `["*"]` (cloudnative-pg v1.30.0
/// `pkg/utils/labels_annotations.go`).
pub const CNPG_FENCED_INSTANCES_ANNOTATION: &str = "cnpg.io/fencedInstances";

/// What the kopia mover logs when the repository holds no snapshot for the
/// source: it exits 0, so the result is "Successful" although nothing was
/// restored (and with enableFileDeletion the volume was emptied first).
pub const NOTHING_RESTORED_MARKERS: &[&str] = &["No eligible snapshots found", "No data will be restored"];

/// Flux's "apply only if absent" marker: `kustomize.toolkit.fluxcd.io/ssa`
/// = `IfNotPresent`, as a label or an annotation, compared
/// case-insensitively (fluxcd/pkg ssa/utils/meta.go `AnyInMetadata`, ssa
/// v0.77.0; the selector is set in fluxcd/kustomize-controller v1.9.0
/// internal/controller/kustomization_controller.go).
pub fn ssa_if_not_present(object: &Value) -> bool {
    ["labels", "annotations"].iter().any(|m| object["metadata"][m][SSA_KEY].as_str().is_some_and(|v| v.eq_ignore_ascii_case(SSA_IF_NOT_PRESENT)))
}

pub const SSA_KEY: &str = "kustomize.toolkit.fluxcd.io/ssa";
pub const SSA_IF_NOT_PRESENT: &str = "IfNotPresent";
