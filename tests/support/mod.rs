pub mod controlplane;
pub mod fixtures;
pub mod k8s;
pub mod metrics;
pub mod fake_discord;
pub mod kubelet;
pub mod example_cluster;
pub mod players;
