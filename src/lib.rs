//! lifeboat: recovery-point metrics and node-loss remediation for Kubernetes
//! clusters that keep hot data on node-local disks.
//!
//! # Layers
//!
//! Each module uses only its own layer and the ones below it
//! (`tests/layers.rs` fails on an import that points up):
//!
//! 1. **cluster**: reading (`cluster`, its watches and dumps) and writing
//!    (`cluster::write`) the API, the names of objects (`ObjectRef`) and the
//!    marks lifeboat puts on them (`cluster::marks`), the config's data types
//!    (`config`), the Lease (`leader`), cron schedules (`schedule`).
//! 2. **inspect**: what the state means (`inspect`, `triage`), and the
//!    snapshot hub that holds it (`snapshot`, `probes`). The hub keeps the
//!    self-metrics of higher layers in a slot keyed by type.
//! 3. **plan**: plans and the report types of their runs, as data; the
//!    playbook registry (`plan::playbooks::TABLE`).
//! 4. **act**: executing a plan's steps.
//! 5. **journal**: the record of runs.
//! 6. **intake/discord/api**: what drives and exposes journaled runs: the
//!    `remediator` loop and its statistics (`remediator::stats`), which read
//!    the journal, the Alertmanager intake (`alerts`), `discord`,
//!    the HTTP `api`, `server` and `/metrics`.
//! 7. **runtime/cli**: `runtime` builds and runs `serve` and loads the config
//!    (asking each component to check its own section); `cli` parses the
//!    command line.

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
pub mod remediator;
pub mod runtime;
pub mod schedule;
pub mod server;
pub mod snapshot;
pub mod triage;
