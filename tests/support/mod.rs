pub mod fixtures;
pub mod metrics;
