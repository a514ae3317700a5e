//! The only code that writes to the Kubernetes API.

pub mod cnpg;
pub mod jobs;
pub mod kanidm;
pub mod kill_switch;
pub mod provisioner;
pub mod remediator;
pub mod runner;
pub mod stats;
pub mod volsync;
pub mod write;
