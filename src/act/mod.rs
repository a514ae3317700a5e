//! The only code that writes to the Kubernetes API.

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
pub mod remediator;
mod restore;
pub mod runner;
pub mod stats;
pub mod volsync;
mod waits;
pub mod write;
