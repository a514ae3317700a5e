//! The metadata the cache keeps of each object: what some finding, plan or
//! metric reads, in a compact form. Watch events and dumps decode
//! `k8s_openapi`'s `ObjectMeta` (the watcher needs its resourceVersion) and
//! are converted to [`Meta`] before they are cached.
//!
//! Dropped on the way: managed fields, uid, resourceVersion, generation,
//! generateName, finalizers, every annotation but [`KEPT_ANNOTATIONS`]
//! (last-applied configuration can be larger than the rest of the object),
//! owner uids. Writes never use the cache: they re-read the live object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Serialize};

use super::intern::{intern, Atom};
use super::marks;

/// Annotations some reader looks at; every other one is dropped from the cache.
pub const KEPT_ANNOTATIONS: &[&str] = &[marks::KEPT_SUSPENDED_ANNOTATION, marks::CONFIRMED_GONE_ANNOTATION, marks::CNPG_FENCED_INSTANCES_ANNOTATION, marks::SSA_KEY];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "ObjectMeta", into = "ObjectMeta")]
pub struct Meta {
    pub name: Option<Box<str>>,
    pub namespace: Option<Atom>,
    pub labels: Option<Labels>,
    pub annotations: Option<Annotations>,
    pub owner_references: Option<Box<[Owner]>>,
    pub creation_timestamp: Option<Time>,
    pub deletion_timestamp: Option<Time>,
}

/// An owner reference without its uid and blockOwnerDeletion. It keeps its
/// apiVersion: a kind alone does not say which operator owns the object
/// (s3-restore stops a StatefulSet through its kaniop.rs `Kanidm`).
#[derive(Clone, Debug, PartialEq)]
pub struct Owner {
    pub api_version: Atom,
    pub kind: Atom,
    pub name: Atom,
    pub controller: Option<bool>,
}

/// A string map sorted by key (the order a `BTreeMap` iterates and
/// serializes in), keys and values interned: labels, resource quantities.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InternedMap(Box<[(Atom, Atom)]>);
pub type Labels = InternedMap;

/// The kept annotations, sorted by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Annotations(Box<[(Atom, Box<str>)]>);

/// A small sorted map shared by labels and annotations.
macro_rules! sorted_pairs {
    ($ty:ident, $value:ty) => {
        impl $ty {
            pub fn get(&self, key: &str) -> Option<&str> {
                let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
                Some(&self.0[i].1)
            }
            pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
                self.0.iter().map(|(k, v)| (k.as_str(), &**v))
            }
            pub fn len(&self) -> usize {
                self.0.len()
            }
            pub fn is_empty(&self) -> bool {
                self.0.is_empty()
            }
            pub fn insert(&mut self, key: String, value: String) {
                let mut pairs: BTreeMap<String, String> = self.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                pairs.insert(key, value);
                *self = pairs.into_iter().collect();
            }
            pub fn remove(&mut self, key: &str) {
                *self = self.iter().filter(|(k, _)| *k != key).map(|(k, v)| (k.to_string(), v.to_string())).collect();
            }
        }
        impl FromIterator<(String, String)> for $ty {
            fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
                let mut pairs: Vec<(Atom, $value)> = pairs.into_iter().map(|(k, v)| (intern(&k), <$value>::from(v.as_str()))).collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs.dedup_by(|later, earlier| later.0 == earlier.0);
                $ty(pairs.into_boxed_slice())
            }
        }
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.iter())
            }
        }
    };
}
sorted_pairs!(InternedMap, Atom);

impl<'de> Deserialize<'de> for InternedMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(BTreeMap::<String, String>::deserialize(deserializer)?.into_iter().collect())
    }
}
sorted_pairs!(Annotations, Box<str>);

impl From<ObjectMeta> for Meta {
    fn from(meta: ObjectMeta) -> Self {
        let labels: Option<Labels> = meta.labels.map(|labels| labels.into_iter().collect());
        let annotations: Option<Annotations> =
            meta.annotations.map(|all| all.into_iter().filter(|(key, _)| KEPT_ANNOTATIONS.contains(&key.as_str())).collect()).filter(|kept: &Annotations| !kept.is_empty());
        let owners = meta.owner_references.map(|owners| {
            owners
                .into_iter()
                .map(|o| Owner { api_version: intern(&o.api_version), kind: intern(&o.kind), name: intern(&o.name), controller: o.controller })
                .collect::<Box<[Owner]>>()
        });
        Meta {
            name: meta.name.map(String::into_boxed_str),
            namespace: meta.namespace.as_deref().map(intern),
            labels,
            annotations,
            owner_references: owners,
            creation_timestamp: meta.creation_timestamp,
            deletion_timestamp: meta.deletion_timestamp,
        }
    }
}

impl From<Meta> for ObjectMeta {
    fn from(meta: Meta) -> Self {
        let map = |pairs: Vec<(&str, &str)>| pairs.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>();
        ObjectMeta {
            name: meta.name.map(String::from),
            namespace: meta.namespace.map(String::from),
            labels: meta.labels.as_ref().map(|l| map(l.iter().collect())),
            annotations: meta.annotations.as_ref().map(|a| map(a.iter().collect())),
            owner_references: meta.owner_references.map(|owners| {
                owners
                    .iter()
                    .map(|o| OwnerReference {
                        api_version: o.api_version.to_string(),
                        kind: o.kind.to_string(),
                        name: o.name.to_string(),
                        controller: o.controller,
                        ..Default::default()
                    })
                    .collect()
            }),
            creation_timestamp: meta.creation_timestamp,
            deletion_timestamp: meta.deletion_timestamp,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire() -> ObjectMeta {
        serde_json::from_value(serde_json::json!({
            "name": "forgejo-0", "namespace": "utils", "uid": "5678", "resourceVersion": "42", "generation": 3,
            "generateName": "forgejo-", "creationTimestamp": "2026-01-01T00:00:00Z", "deletionTimestamp": "2026-01-02T00:00:00Z",
            "finalizers": ["kubernetes.io/pvc-protection"],
            "labels": {"app": "forgejo", "kustomize.toolkit.fluxcd.io/name": "apps", "a": "first"},
            "annotations": {"lifeboat.dev/confirmed-gone": "true", "kubectl.kubernetes.io/last-applied-configuration": "{…}", "cnpg.io/fencedInstances": "[\"pg-1\"]"},
            "ownerReferences": [{"apiVersion": "kaniop.rs/v1beta1", "kind": "Kanidm", "name": "kanidm", "uid": "1234", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
        }))
        .unwrap()
    }

    #[test]
    fn a_converted_meta_keeps_exactly_what_readers_use() {
        let meta = Meta::from(wire());
        assert_eq!(meta.name.as_deref(), Some("forgejo-0"));
        assert_eq!(meta.namespace.as_deref(), Some("utils"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("a", "first"), ("app", "forgejo"), ("kustomize.toolkit.fluxcd.io/name", "apps")]);
        assert_eq!(labels.get("app"), Some("forgejo"));
        assert_eq!(labels.get("missing"), None);
        assert_eq!(meta.creation_timestamp.as_ref().map(|t| t.0.to_string()).as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(meta.deletion_timestamp.is_some());

        // Back to the wire form: what is left is what the cache keeps.
        let back = ObjectMeta::from(meta);
        assert_eq!((back.uid, back.resource_version, back.generation, back.generate_name), (None, None, None, None));
        assert_eq!((back.finalizers, back.managed_fields), (None, None));
    }

    #[test]
    fn only_the_annotations_readers_look_at_are_kept() {
        let meta = Meta::from(wire());
        let kept = meta.annotations.unwrap();
        assert_eq!(kept.iter().collect::<Vec<_>>(), vec![("cnpg.io/fencedInstances", "[\"pg-1\"]"), ("lifeboat.dev/confirmed-gone", "true")]);
        let none_kept = Meta::from(ObjectMeta { annotations: Some([("other".to_string(), "x".to_string())].into()), ..Default::default() });
        assert_eq!(none_kept.annotations, None, "no annotation kept: none at all");
    }

    #[test]
    fn a_cached_owner_keeps_its_api_version_kind_name_and_controller_flag() {
        let meta = Meta::from(wire());
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.controller), ("kaniop.rs/v1beta1", "Kanidm", "kanidm", Some(true)));
        let back = ObjectMeta::from(meta).owner_references.unwrap();
        assert_eq!(back[0].uid, "", "the owner's uid is not kept");
    }

    #[test]
    fn repeated_values_share_one_allocation() {
        let (a, b) = (Meta::from(wire()), Meta::from(wire()));
        let ptr = |m: &Meta| m.namespace.as_ref().unwrap().as_ptr();
        assert_eq!(ptr(&a), ptr(&b));
        let value = |m: &Meta| m.labels.as_ref().unwrap().get("app").unwrap().as_ptr();
        assert_eq!(value(&a), value(&b));
    }

    #[test]
    fn serializes_as_object_meta_does() {
        let meta = Meta::from(wire());
        let json = serde_json::to_value(&meta).unwrap();
        assert_eq!(json["labels"], serde_json::json!({"a": "first", "app": "forgejo", "kustomize.toolkit.fluxcd.io/name": "apps"}));
        assert_eq!(json["annotations"]["lifeboat.dev/confirmed-gone"], "true");
        assert_eq!(serde_json::from_value::<Meta>(json).unwrap(), meta, "decodes back to the same");
    }

    /// The Node confirmation (node-loss), the CNPG fence (failover) and
    /// Flux's ssa marker (VolSync restore) are read from the snapshot; the
    /// cache used to drop all three.
    #[test]
    fn annotations_readers_act_on_survive_a_dump_load() {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "annotations": {"lifeboat.dev/confirmed-gone": "true"}}},
            {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg", "namespace": "db", "annotations": {"cnpg.io/fencedInstances": "[\"pg-1\"]"}}},
            {"apiVersion": "volsync.backube/v1alpha1", "kind": "ReplicationDestination",
             "metadata": {"name": "rd", "namespace": "app", "annotations": {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent", "other": "dropped"}}}
        ]});
        let state = crate::cluster::dump::parse_str("fixture", &list.to_string(), chrono::Utc::now()).unwrap();
        assert_eq!(crate::inspect::nodes::confirmed_gone(&state, "n1"), Some("annotated lifeboat.dev/confirmed-gone=true"));
        let fenced = state.cnpg_clusters[0].metadata.annotations.as_ref().and_then(|a| a.get(marks::CNPG_FENCED_INSTANCES_ANNOTATION));
        assert_eq!(fenced, Some("[\"pg-1\"]"));
        let rd = &state.replication_destinations[0];
        assert!(marks::ssa_if_not_present(&serde_json::json!({ "metadata": rd.metadata })));
        assert_eq!(rd.metadata.annotations.as_ref().map(|a| a.len()), Some(1));
    }

    #[test]
    fn labels_edit_like_a_map() {
        let mut labels: Labels = [("b".to_string(), "2".to_string()), ("a".to_string(), "1".to_string())].into_iter().collect();
        labels.insert("c".into(), "3".into());
        labels.remove("b");
        assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("a", "1"), ("c", "3")]);
    }
}
