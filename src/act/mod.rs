//! The only code that writes to the Kubernetes API.

pub mod write;
