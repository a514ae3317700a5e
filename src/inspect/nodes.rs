//! Lost nodes, the volumes pinned to them, and the pods wedged on those volumes.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cluster::resources::*;
use crate::cluster::{label, name, namespace, ClusterState};
use crate::config::Config;

const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Ready,
    /// Ready is False or Unknown (or missing) since `since`.
    NotReady,
    /// No Node object, yet volumes or pods still name it.
    Missing,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeFinding {
    pub node: String,
    pub availability: Availability,
    /// Ready condition's reason (e.g. NodeStatusUnknown), if any.
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Unavailable for longer than the grace (missing nodes are lost at once).
    pub lost: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PinnedVolume {
    pub persistent_volume: String,
    pub node: String,
    pub claim_namespace: Option<String>,
    pub claim_name: Option<String>,
    pub storage_class: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct BlockedPod {
    pub namespace: String,
    pub pod: String,
    pub claim: String,
    pub node: String,
    pub phase: String,
}

/// Node availability for every node that is not Ready, or missing.
pub fn node_findings(state: &ClusterState, config: &Config, pinned: &BTreeMap<String, String>) -> Vec<NodeFinding> {
    let grace = config.node_lost_grace.chrono();
    let mut findings = Vec::new();
    for node in &state.nodes {
        let ready = find_condition(&node.status.conditions, "Ready");
        if ready.is_some_and(|c| c.status == "True") {
            continue;
        }
        let since = ready.and_then(|c| c.last_transition_time).or(crate::cluster::created_at(&node.metadata));
        findings.push(NodeFinding {
            node: name(&node.metadata).to_string(),
            availability: Availability::NotReady,
            reason: ready.and_then(|c| c.reason.as_deref().map(String::from)),
            since,
            lost: since.is_none_or(|s| state.now - s >= grace),
        });
    }
    let known: BTreeSet<&str> = state.nodes.iter().map(|n| name(&n.metadata)).collect();
    let referenced = pinned.values().map(String::as_str).chain(state.pods.iter().filter_map(|p| p.spec.node_name.as_deref()));
    let missing: BTreeSet<&str> = referenced.filter(|n| !known.contains(n)).collect();
    for node in missing {
        findings.push(NodeFinding { node: node.to_string(), availability: Availability::Missing, reason: None, since: None, lost: true });
    }
    findings.sort_by(|a, b| a.node.cmp(&b.node));
    findings
}

/// PV name → the single node its required affinity allows, for every PV that
/// is pinned to one node (local, hostpath, topolvm, ...: any key, any operator).
pub fn pinned_nodes(state: &ClusterState) -> BTreeMap<String, String> {
    state.persistent_volumes.iter().filter_map(|pv| Some((name(&pv.metadata).to_string(), pinned_node(pv, state)?))).collect()
}

fn pinned_node(pv: &PersistentVolume, state: &ClusterState) -> Option<String> {
    let required = pv.spec.node_affinity.as_ref()?.required.as_ref()?;
    let mut candidates = BTreeSet::new();
    for term in &required.node_selector_terms {
        candidates.extend(term_candidates(term, state));
    }
    if candidates.len() == 1 {
        candidates.into_iter().next()
    } else {
        None
    }
}

/// Nodes a selector term can match: existing nodes whose labels satisfy it,
/// plus nodes it names explicitly. A name in an `In` list that no existing
/// node carries is a node that is gone — it must still count, or a PV pinned
/// to a deleted node would look unpinned.
fn term_candidates(term: &NodeSelectorTerm, state: &ClusterState) -> BTreeSet<String> {
    // Fast path, the common case (OpenEBS, local PVs): only `In` lists of node
    // names; the term's nodes are exactly the names in all of them.
    let only_names = term.match_fields.is_empty() && !term.match_expressions.is_empty() && term.match_expressions.iter().all(|e| e.operator == "In" && names_a_node(&e.key));
    if only_names {
        let mut lists = term.match_expressions.iter().map(|e| e.values.iter().cloned().collect::<BTreeSet<String>>());
        let first = lists.next().unwrap_or_default();
        return lists.fold(first, |a, b| a.intersection(&b).cloned().collect());
    }
    let mut out = BTreeSet::new();
    for node in &state.nodes {
        if term_matches_node(term, node) {
            out.insert(name(&node.metadata).to_string());
        }
    }
    let named = term
        .match_expressions
        .iter()
        .filter(|e| e.operator == "In" && names_a_node(&e.key))
        .chain(term.match_fields.iter().filter(|f| f.operator == "In" && f.key == "metadata.name"));
    // Every requirement of a term must hold, so its nodes lie within each In list.
    let named_lists: Vec<BTreeSet<&String>> = named.map(|e| e.values.iter().collect()).collect();
    let Some(named_nodes) = named_lists.into_iter().reduce(|a, b| a.intersection(&b).cloned().collect()) else {
        return out;
    };
    let label_matched_any = !out.is_empty();
    for value in named_nodes {
        let exists = state.node(value).is_some();
        // A gone node always counts; an existing one only when no node carried
        // the labels (the snapshot lacks them, the name is the best evidence).
        if !exists || !label_matched_any {
            out.insert(value.clone());
        }
    }
    out
}

/// Keys whose values are node names: the hostname label and the per-node
/// topology keys CSI drivers use (`topology.topolvm.io/node`,
/// `openebs.io/nodename`, ...). A zone or rack key names many nodes.
fn names_a_node(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    let last = key.rsplit('/').next().unwrap_or(&key);
    key == HOSTNAME_LABEL || last == "node" || last == "nodename" || last == "hostname" || last.ends_with("-node")
}

fn term_matches_node(term: &NodeSelectorTerm, node: &Node) -> bool {
    if term.match_expressions.is_empty() && term.match_fields.is_empty() {
        return false; // an empty term matches no objects
    }
    let node_name = name(&node.metadata);
    let value_of = |key: &str| -> Option<String> { label(&node.metadata, key).map(str::to_string).or_else(|| (key == HOSTNAME_LABEL).then(|| node_name.to_string())) };
    let expressions_hold = term.match_expressions.iter().all(|req| requirement_holds(req, value_of(&req.key)));
    let fields_hold = term.match_fields.iter().all(|req| {
        let value = (req.key == "metadata.name").then(|| node_name.to_string());
        requirement_holds(req, value)
    });
    expressions_hold && fields_hold
}

fn requirement_holds(req: &NodeSelectorRequirement, value: Option<String>) -> bool {
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| req.values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !req.values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(|v| v.parse::<i64>().ok()), req.values.first().and_then(|b| b.parse::<i64>().ok())) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

pub fn pinned_volumes_on(state: &ClusterState, pinned: &BTreeMap<String, String>, lost: &BTreeSet<String>) -> Vec<PinnedVolume> {
    state
        .persistent_volumes
        .iter()
        .filter_map(|pv| {
            let node = pinned.get(name(&pv.metadata))?;
            lost.contains(node).then(|| PinnedVolume {
                persistent_volume: name(&pv.metadata).to_string(),
                node: node.clone(),
                claim_namespace: pv.spec.claim_ref.as_ref().and_then(|c| c.namespace.clone()),
                claim_name: pv.spec.claim_ref.as_ref().and_then(|c| c.name.clone()),
                storage_class: pv.spec.storage_class_name.as_deref().map(String::from),
            })
        })
        .collect()
}

/// Pods (not finished) that mount a claim whose volume is pinned to a lost node.
pub fn blocked_pods(state: &ClusterState, lost_volumes: &[PinnedVolume]) -> Vec<BlockedPod> {
    let mut out = Vec::new();
    for volume in lost_volumes {
        let (Some(ns), Some(claim)) = (&volume.claim_namespace, &volume.claim_name) else { continue };
        for pod in state.pods_using_claim(ns, claim) {
            let phase = pod.status.phase.as_deref().unwrap_or("Unknown").to_string();
            if phase == "Succeeded" || phase == "Failed" {
                continue;
            }
            out.push(BlockedPod { namespace: namespace(&pod.metadata).to_string(), pod: name(&pod.metadata).to_string(), claim: claim.clone(), node: volume.node.clone(), phase });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod, &a.claim).cmp(&(&b.namespace, &b.pod, &b.claim)));
    out
}

/// How the state shows the node is gone for good, if it does: no Node
/// object, or the confirmation a human gives (the annotation, or the
/// out-of-service taint) — the same test the runner makes live.
pub fn confirmed_gone(state: &ClusterState, node: &str) -> Option<&'static str> {
    use crate::cluster::marks::{CONFIRMED_GONE_ANNOTATION, OUT_OF_SERVICE_TAINT};
    let Some(n) = state.node(node) else { return Some("no Node object") };
    if n.metadata.annotations.as_ref().and_then(|a| a.get(CONFIRMED_GONE_ANNOTATION)).is_some_and(|v| v == "true") {
        return Some("annotated lifeboat.dev/confirmed-gone=true");
    }
    n.spec.taints.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT).then_some("tainted node.kubernetes.io/out-of-service")
}

/// A PersistentVolume pinned to a gone node that no claim holds any more
/// (Released or Available): the local-PV provisioner deletes a volume by
/// running a helper pod on its node, so nothing will ever remove it.
#[derive(Clone, Debug, Serialize)]
pub struct StrandedVolume {
    pub persistent_volume: String,
    pub node: String,
    pub phase: String,
    pub gone: &'static str,
}

pub fn stranded_volumes(state: &ClusterState, lost_volumes: &[PinnedVolume]) -> Vec<StrandedVolume> {
    lost_volumes
        .iter()
        .filter_map(|v| {
            let pv = state.persistent_volumes.iter().find(|pv| name(&pv.metadata) == v.persistent_volume)?;
            let phase = pv.status.phase.as_deref().unwrap_or_default().to_string();
            let unbound = phase == "Released" || phase == "Available";
            let gone = confirmed_gone(state, &v.node)?;
            unbound.then(|| StrandedVolume { persistent_volume: v.persistent_volume.clone(), node: v.node.clone(), phase, gone })
        })
        .collect()
}

/// A pod being deleted on a lost node whose claims are on network storage
/// (a volume not pinned to any node, e.g. NFS or another RWX class): its
/// kubelet never confirms the deletion, so it stays Terminating — and keeps
/// its RWO claims attached — until it is force-deleted or the node gets the
/// out-of-service taint (the pod GC then deletes it:
/// kubernetes/kubernetes pkg/controller/podgc/gc_controller.go
/// `gcTerminating`, non-graceful node shutdown, GA in v1.28).
#[derive(Clone, Debug, Serialize)]
pub struct TerminatingPod {
    pub namespace: String,
    pub pod: String,
    pub node: String,
    pub claims: Vec<String>,
}

pub fn terminating_on_network_storage(state: &ClusterState, pinned: &BTreeMap<String, String>, lost: &BTreeSet<String>) -> Vec<TerminatingPod> {
    let mut out = vec![];
    for pod in &state.pods {
        let Some(node) = pod.spec.node_name.as_deref().filter(|n| lost.contains(*n)) else { continue };
        if pod.metadata.deletion_timestamp.is_none() {
            continue;
        }
        let ns = namespace(&pod.metadata);
        let claims: Vec<String> = pod
            .spec
            .volumes
            .iter()
            .filter_map(|v| v.persistent_volume_claim.as_ref().map(|c| c.claim_name.clone()))
            .filter(|c| state.pvc(ns, c).and_then(|p| p.spec.volume_name.as_deref()).is_some_and(|pv| !pinned.contains_key(pv)))
            .collect();
        if !claims.is_empty() {
            out.push(TerminatingPod { namespace: ns.to_string(), pod: name(&pod.metadata).to_string(), node: node.to_string(), claims });
        }
    }
    out.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    out
}
