//! One process-wide pool of shared strings for the values the cache repeats
//! across thousands of objects: namespaces, label keys and values, owner
//! kinds and apiVersions, condition types and statuses. Each distinct value
//! is allocated once and every cached object holds a reference to it.
//!
//! The pool is bounded by what the cache still uses: once it has doubled
//! since the last sweep, values no object refers to any more are dropped.

use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, LazyLock, Mutex};

/// An interned, immutable string. Compares, hashes and orders as its text.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Atom(Arc<str>);

impl Atom {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Atom {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Atom {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Atom {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Default for Atom {
    fn default() -> Self {
        intern("")
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Atom {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Atom> for str {
    fn eq(&self, other: &Atom) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Atom> for &str {
    fn eq(&self, other: &Atom) -> bool {
        *self == &*other.0
    }
}

impl From<&str> for Atom {
    fn from(text: &str) -> Self {
        intern(text)
    }
}

impl From<String> for Atom {
    fn from(text: String) -> Self {
        intern(&text)
    }
}

impl From<Atom> for String {
    fn from(atom: Atom) -> Self {
        atom.0.to_string()
    }
}

impl serde::Serialize for Atom {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Atom {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(intern(&text))
    }
}

/// Values are dropped from the pool only above this many, so a small
/// cluster never sweeps.
const FIRST_SWEEP: usize = 4096;

struct Pool {
    values: HashSet<Arc<str>>,
    sweep_at: usize,
}

static POOL: LazyLock<Mutex<Pool>> = LazyLock::new(|| Mutex::new(Pool { values: HashSet::new(), sweep_at: FIRST_SWEEP }));

/// The shared copy of `text`, added to the pool if it is new.
pub fn intern(text: &str) -> Atom {
    let mut pool = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(shared) = pool.values.get(text) {
        return Atom(shared.clone());
    }
    if pool.values.len() >= pool.sweep_at {
        // Only the pool itself holds these: no cached object uses them.
        pool.values.retain(|value| Arc::strong_count(value) > 1);
        pool.sweep_at = (pool.values.len() * 2).max(FIRST_SWEEP);
    }
    let shared: Arc<str> = Arc::from(text);
    pool.values.insert(shared.clone());
    Atom(shared)
}

/// How many distinct values the pool holds (for the memory report).
pub fn pooled() -> usize {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).values.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_texts_share_one_allocation() {
        let a = intern("intern-test/app=forgejo");
        let b = intern(&String::from("intern-test/app=forgejo"));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "intern-test/app=forgejo");
        assert_ne!(intern("intern-test/a"), intern("intern-test/b"));
    }

    #[test]
    fn values_no_object_holds_are_swept_once_the_pool_has_doubled() {
        let kept = intern("intern-test/kept");
        drop(intern("intern-test/dropped"));
        // Enough new values to pass any sweep threshold, none of them kept.
        for i in 0..(FIRST_SWEEP * 4 + pooled()) {
            drop(intern(&format!("intern-test/filler-{i}")));
        }
        assert!(pooled() < FIRST_SWEEP * 4, "the pool was swept: {} values", pooled());
        let pool = POOL.lock().unwrap();
        assert!(pool.values.contains("intern-test/kept"), "a value still held survives the sweep");
        assert!(!pool.values.contains("intern-test/dropped"), "a value nothing holds is dropped");
        drop(pool);
        assert_eq!(kept, "intern-test/kept");
    }
}
