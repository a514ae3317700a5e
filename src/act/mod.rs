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
mod start_order;
pub mod volsync;
mod waits;
