//! lifeboat: recovery-point metrics and node-loss remediation for Kubernetes
//! clusters that keep hot data on node-local disks.

pub mod act;
pub mod alerts;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod discord;
pub mod inspect;
pub mod journal;
pub mod leader;
pub mod metrics;
pub mod plan;
pub mod probes;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod snapshot;
pub mod triage;
