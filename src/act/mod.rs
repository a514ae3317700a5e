//! The only code that writes to the Kubernetes API.

pub mod cnpg;
pub mod runner;
pub mod write;
