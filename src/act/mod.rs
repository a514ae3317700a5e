//! Executing plans against the Kubernetes API (writes go through
//! [`crate::cluster::write`]).

mod actions;
pub mod cnpg;
mod delete_pvc;
mod guards;
pub mod jobs;
pub mod kanidm;
pub mod kill_switch;
mod nodes;
mod objects;
mod preconditions;
pub mod provisioner;
mod restore;
pub mod runner;
pub mod volsync;
mod waits;
// Where the write path was before it moved down to the cluster layer.
pub use crate::cluster::write;
// The old paths, for code written before the remediator moved above the
// journal it reads (allowed in tests/layers.rs until the branches are merged).
pub use crate::remediator::{self as remediator, stats};
