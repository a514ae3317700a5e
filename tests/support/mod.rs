pub mod controlplane;
pub mod fake_discord;
pub mod fixtures;
pub mod k8s;
pub mod kubelet;
pub mod metrics;
pub mod process;
