//! One YAML file configures lifeboat. Every field has a default, unknown keys
//! are rejected, and values are validated at load so a typo fails at start-up
//! with the file, the key and the reason — not hours later at 3 a.m.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Address `serve` listens on.
    pub listen: String,
    /// A node is lost once it is missing, or NotReady/Unknown for this long.
    pub node_lost_grace: Dur,
    /// How often the snapshot is rebuilt even without watch events (ages move).
    pub snapshot_interval: Dur,
    /// How often an absent CRD is looked up again.
    pub discovery_interval: Dur,
    pub volsync: VolsyncConfig,
    pub backup_cron_jobs: CronJobConfig,
    pub cnpg: CnpgConfig,
    pub garage: GarageConfig,
    pub s3_restore: S3RestoreConfig,
    pub kanidm: KanidmConfig,
    pub remediation: RemediationConfig,
    pub discord: DiscordConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9847".into(),
            node_lost_grace: Dur::mins(5),
            snapshot_interval: Dur::secs(10),
            discovery_interval: Dur::secs(30),
            volsync: VolsyncConfig::default(),
            backup_cron_jobs: CronJobConfig::default(),
            cnpg: CnpgConfig::default(),
            garage: GarageConfig::default(),
            s3_restore: S3RestoreConfig::default(),
            kanidm: KanidmConfig::default(),
            remediation: RemediationConfig::default(),
            discord: DiscordConfig::default(),
        }
    }
}

/// How a playbook's runs are gated.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Plan and notify only; never execute.
    Observe,
    /// Wait for an approval naming the plan's hash.
    Approve,
    /// Execute without approval.
    Auto,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RemediationConfig {
    /// `serve` executes approved runs (as the Lease leader) only when true;
    /// it needs the opt-in remediation RBAC.
    pub execute: bool,
    /// Namespace of the RemediationRun journal and the leader Lease
    /// (default: $POD_NAMESPACE, else `lifeboat`).
    pub namespace: Option<String>,
    /// Global kill switch: no step starts while true (also: `lifeboat kill-switch on`).
    pub kill_switch: bool,
    pub default_mode: Mode,
    /// Per-playbook mode, overriding defaultMode.
    pub modes: BTreeMap<String, Mode>,
    /// Blast radius per run.
    pub max_pvc_deletions: usize,
    pub max_deletions: usize,
    /// Independent steps running at once.
    pub concurrency: usize,
    /// An approval older than this is void.
    pub approval_ttl: Dur,
    /// File holding the bearer token of the HTTP API (`/api/...`, e.g. the
    /// kill switch); a mounted Secret. Without it the API is off.
    pub api_token_file: Option<PathBuf>,
    /// File with the credentials Alertmanager sends to `POST /alertmanager`:
    /// a bearer token, or `user:password` for basic auth. Without it the
    /// webhook is off.
    pub webhook_credentials_file: Option<PathBuf>,
    /// Alert → playbook routes (default: lifeboat's alerts that have one).
    pub routes: Routes,
    /// The composed `node-loss` playbook.
    pub node_loss: NodeLossConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct NodeLossConfig {
    /// The run first waits for a human to confirm the node is gone for good
    /// (annotation `lifeboat.dev/confirmed-gone=true`, the out-of-service
    /// taint, or the Node deleted): data on it is about to be given up.
    pub confirm_node_gone: bool,
    /// How long the run waits for that confirmation.
    pub confirm_timeout: Dur,
    /// Taint the node `node.kubernetes.io/out-of-service` once confirmed, so
    /// the control plane detaches its volumes and deletes its pods.
    pub out_of_service_taint: bool,
    /// How long apps that only wait on a database, and the restored apps, are watched until Ready.
    pub watch_timeout: Dur,
    /// `once`: one approval for the whole run; `perPhase`: the run pauses
    /// before each phase that changes something until that phase is approved
    /// (same plan hash, through any approval path).
    pub approval: ApprovalScope,
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ApprovalScope {
    Once,
    PerPhase,
}

impl Default for NodeLossConfig {
    fn default() -> Self {
        Self { confirm_node_gone: true, confirm_timeout: Dur::hours(1), out_of_service_taint: false, watch_timeout: Dur::mins(30), approval: ApprovalScope::Once }
    }
}

impl Default for RemediationConfig {
    fn default() -> Self {
        Self {
            execute: false,
            namespace: None,
            kill_switch: false,
            default_mode: Mode::Approve,
            modes: BTreeMap::new(),
            max_pvc_deletions: 5,
            max_deletions: 20,
            concurrency: 4,
            approval_ttl: Dur::hours(1),
            api_token_file: None,
            webhook_credentials_file: None,
            routes: Routes::default(),
            node_loss: NodeLossConfig::default(),
        }
    }
}

impl RemediationConfig {
    pub fn namespace(&self) -> String {
        self.namespace.clone().or_else(|| std::env::var("POD_NAMESPACE").ok()).unwrap_or_else(|| "lifeboat".into())
    }

    pub fn mode_of(&self, playbook: &str) -> Mode {
        self.modes.get(playbook).copied().unwrap_or(self.default_mode)
    }
}

/// Discord notifications and approvals (`src/discord`). Secrets come from
/// files (mounted Secrets), never from this file. Bot mode (buttons) needs
/// `botTokenFile`, `channelId`, the application's public key and approvers;
/// webhook-only mode needs just `webhookUrlFile`. Neither: Discord is off.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiscordConfig {
    /// File holding the bot token (sent as `Authorization: Bot <token>`).
    pub bot_token_file: Option<PathBuf>,
    /// Channel the bot posts to (a snowflake id).
    pub channel_id: Option<String>,
    /// The application's public key (hex) that signs interactions...
    pub public_key: Option<String>,
    /// ...or a file holding it.
    pub public_key_file: Option<PathBuf>,
    /// Who may press Approve / Reject.
    pub approvers: DiscordApprovers,
    /// File holding a channel webhook URL (webhook-only mode: no buttons).
    pub webhook_url_file: Option<PathBuf>,
    /// Discord's API base.
    pub api_base: String,
    /// While a run executes, its message is edited at most this often for the elapsed time
    /// (a step starting or ending edits it at once).
    pub edit_interval: Dur,
    /// Bot mode: serve `POST /discord/interactions` on this address alone
    /// (e.g. `0.0.0.0:9848`), so only it is exposed to Discord. Unset: on `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Bot mode: how clicks and slash commands arrive (see docs/discord-gateway.md).
    /// Left out of the printed default like `listen`, which keeps it optional.
    #[serde(skip_serializing_if = "DiscordTransport::is_default")]
    pub transport: DiscordTransport,
    /// Gateway mode: the guild (server) whose members get the `/lifeboat` slash commands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<String>,
}

/// How Discord delivers interactions in bot mode.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DiscordTransport {
    /// The leader holds an outbound Gateway websocket: no public endpoint.
    #[default]
    Gateway,
    /// Discord POSTs signed interactions to `/discord/interactions` (public HTTPS).
    Http,
}

impl DiscordTransport {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Default for DiscordConfig {
    fn default() -> Self {
        Self {
            bot_token_file: None,
            channel_id: None,
            public_key: None,
            public_key_file: None,
            approvers: DiscordApprovers::default(),
            webhook_url_file: None,
            api_base: "https://discord.com/api/v10".into(),
            edit_interval: Dur::secs(15),
            listen: None,
            transport: DiscordTransport::Gateway,
            guild_id: None,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct DiscordApprovers {
    /// User ids.
    pub users: Vec<String>,
    /// Role ids (from the clicking member's roles).
    pub roles: Vec<String>,
}

impl DiscordConfig {
    pub fn enabled(&self) -> bool {
        self.bot_token_file.is_some() || self.webhook_url_file.is_some()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct VolsyncConfig {
    /// Stale when no successful sync within this many schedule intervals...
    pub stale_intervals: u32,
    /// ...plus this much slack.
    pub stale_grace: Dur,
    /// A sync in progress for longer than this is stuck.
    pub stuck_after: Dur,
}

impl Default for VolsyncConfig {
    fn default() -> Self {
        Self { stale_intervals: 2, stale_grace: Dur::mins(30), stuck_after: Dur::hours(6) }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CronJobConfig {
    /// A CronJob is an app backup when its name contains this (case-insensitive)...
    pub name_contains: String,
    /// ...or when it carries all of these labels.
    pub match_labels: BTreeMap<String, String>,
    pub stale_intervals: u32,
    pub stale_grace: Dur,
}

impl Default for CronJobConfig {
    fn default() -> Self {
        Self { name_contains: "backup".into(), match_labels: BTreeMap::new(), stale_intervals: 2, stale_grace: Dur::hours(1) }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CnpgConfig {
    /// Used when a cluster has no ScheduledBackup to derive an interval from.
    pub max_backup_age: Dur,
}

impl Default for CnpgConfig {
    fn default() -> Self {
        Self { max_backup_age: Dur::hours(26) }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GarageConfig {
    pub namespace: String,
    /// Labels selecting the Garage pods.
    pub pod_selector: BTreeMap<String, String>,
    /// The metadata-backup sidecar's container name.
    pub backup_container: String,
    /// Optional: the meta-backup directory (e.g. the NFS mirror) mounted into
    /// lifeboat read-only; its `snapshots/<RFC3339>/` entries give the age of
    /// the newest metadata snapshot.
    pub backup_dir: Option<PathBuf>,
    /// Optional: Garage admin API base URL, e.g. `http://garage.volsync-system.svc:3903`.
    pub admin_url: Option<String>,
    /// File holding the admin token (a mounted Secret), never the token itself.
    pub admin_token_file: Option<PathBuf>,
    pub poll_interval: Dur,
    /// The `garage-meta-restore` playbook.
    pub restore: GarageRestoreConfig,
}

impl Default for GarageConfig {
    fn default() -> Self {
        Self {
            namespace: "volsync-system".into(),
            pod_selector: BTreeMap::from([("app.kubernetes.io/name".to_string(), "garage".to_string())]),
            backup_container: "backup-sync".into(),
            backup_dir: None,
            admin_url: None,
            admin_token_file: None,
            poll_interval: Dur::secs(60),
            restore: GarageRestoreConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct GarageRestoreConfig {
    /// The Garage workload (`Kind/name` in `garage.namespace`), scaled to 0 and back to 1.
    pub workload: String,
    /// The metadata PVC the restore Job fills.
    pub meta_pvc: String,
    /// Where the metadata backup lives (`snapshots/<RFC3339>/data.mdb` plus
    /// the small config files); without it the playbook plans nothing.
    /// Written `{nfs: {server, path}}` or `{pvc: {claimName}}`.
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub backup: Option<GarageBackupSource>,
    /// Image with a POSIX shell for the restore Job.
    pub image: String,
    /// User, group and fsGroup the restore Job runs as (Garage's own).
    pub run_as: i64,
    pub timeout: Dur,
}

impl Default for GarageRestoreConfig {
    fn default() -> Self {
        Self { workload: "Deployment/garage".into(), meta_pvc: "garage-meta".into(), backup: None, image: "alpine:3".into(), run_as: 10000, timeout: Dur::mins(10) }
    }
}

/// The metadata backup: an NFS export or a PVC in `garage.namespace`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum GarageBackupSource {
    Nfs { server: String, path: String },
    Pvc { claim_name: String },
}

/// `s3-restore`: apps whose only recovery point is a backup their own
/// CronJob ships to S3 (the Kanidm pattern).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct S3RestoreConfig {
    /// Job template for apps without their own; `{{namespace}}`, `{{pvc}}`,
    /// `{{jobName}}` and `{{app}}` are replaced in every string.
    pub default_template: Option<serde_json::Value>,
    /// Per app, keyed `<namespace>/<pvc>`.
    pub apps: BTreeMap<String, S3RestoreApp>,
    /// The restore Job's output must contain this.
    pub success_marker: String,
    pub timeout: Dur,
}

impl Default for S3RestoreConfig {
    fn default() -> Self {
        Self { default_template: None, apps: BTreeMap::new(), success_marker: "Restore Success".into(), timeout: Dur::mins(30) }
    }
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct S3RestoreApp {
    pub template: Option<serde_json::Value>,
    pub success_marker: Option<String>,
    /// The schedule on which the app itself writes the backup files the
    /// CronJob ships (Kanidm: `online_backup.schedule`, seconds-first cron,
    /// kanidm's default `@daily`): the recovery point is its newest run
    /// before the CronJob's last success.
    pub online_backup_schedule: Option<String>,
}

/// `kanidm-credential-reset`: the kaniop-managed Kanidm whose admin
/// passwords are reset offline (`kanidmd recover-account`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct KanidmConfig {
    pub namespace: String,
    /// The `Kanidm` resource: StatefulSet `<name>-<replicaGroup>`, Secret `<name>-admin-passwords`.
    pub name: String,
    pub replica_group: String,
    /// OIDC consumers bounced afterwards, `Kind/namespace/name` (Deployment or StatefulSet).
    pub oidc_clients: Vec<String>,
    pub timeout: Dur,
}

impl Default for KanidmConfig {
    fn default() -> Self {
        Self { namespace: "identity".into(), name: "kanidm".into(), replica_group: "default".into(), oidc_clients: vec![], timeout: Dur::mins(5) }
    }
}

impl Config {
    /// Problems in the sections the config itself owns (each component checks
    /// its own: see `Config::parse`).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!("listen: {:?} is not an address like 0.0.0.0:9847", self.listen));
        }
        if self.discord.listen.as_deref().is_some_and(|d| d.parse::<std::net::SocketAddr>().ok() == self.listen.parse().ok()) {
            problems.push(format!("discord.listen: {:?} is also `listen`: give Discord a port of its own", self.listen));
        }
        for (key, value) in [
            ("nodeLostGrace", self.node_lost_grace),
            ("snapshotInterval", self.snapshot_interval),
            ("discoveryInterval", self.discovery_interval),
            ("volsync.stuckAfter", self.volsync.stuck_after),
            ("cnpg.maxBackupAge", self.cnpg.max_backup_age),
            ("garage.pollInterval", self.garage.poll_interval),
        ] {
            if value.0.is_zero() {
                problems.push(format!("{key}: must be longer than 0s"));
            }
        }
        if self.volsync.stale_intervals == 0 {
            problems.push("volsync.staleIntervals: must be at least 1".into());
        }
        if self.backup_cron_jobs.stale_intervals == 0 {
            problems.push("backupCronJobs.staleIntervals: must be at least 1".into());
        }
        if self.backup_cron_jobs.name_contains.is_empty() && self.backup_cron_jobs.match_labels.is_empty() {
            problems.push("backupCronJobs: set nameContains or matchLabels, or every CronJob counts as a backup".into());
        }
        if self.garage.backup_container.is_empty() {
            problems.push("garage.backupContainer: must not be empty".into());
        }
        if self.garage.pod_selector.is_empty() {
            problems.push("garage.podSelector: must select at least one label".into());
        }
        if let Some(url) = &self.garage.admin_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                Ok(u) => problems.push(format!("garage.adminUrl: scheme {:?} is not http or https", u.scheme())),
                Err(e) => problems.push(format!("garage.adminUrl: {url:?}: {e}")),
            }
        }
        if self.garage.admin_token_file.is_some() && self.garage.admin_url.is_none() {
            problems.push("garage.adminTokenFile: set garage.adminUrl too, or the token is never used".into());
        }
        for route in self.remediation.routes.iter() {
            if let Some(field) = route.params.keys().find(|k| !["namespace", "name", "node"].contains(&k.as_str())) {
                problems.push(format!("remediation.routes: alert {:?}: unknown parameter {field:?} (namespace, name, node)", route.alertname));
            }
        }
        if self.remediation.concurrency == 0 {
            problems.push("remediation.concurrency: must be at least 1".into());
        }
        if self.remediation.approval_ttl.0.is_zero() {
            problems.push("remediation.approvalTtl: must be longer than 0s".into());
        }
        problems
    }
}

/// Which alert starts which playbook, and which labels fill its trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    pub alertname: String,
    /// Extra label equality matchers.
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    pub playbook: String,
    /// Trigger field ← alert label, e.g. `{namespace: namespace, name: cluster}`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// `remediation.routes`. Its default, every playbook's own routes, is the
/// playbook registry's to give (`impl Default for Routes` in `plan::playbooks`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Routes(pub Vec<Route>);

impl std::ops::Deref for Routes {
    type Target = Vec<Route>;
    fn deref(&self) -> &Vec<Route> {
        &self.0
    }
}

impl PartialEq<Vec<Route>> for Routes {
    fn eq(&self, other: &Vec<Route>) -> bool {
        &self.0 == other
    }
}

impl Route {
    /// A route on the alert's name alone.
    pub fn new(alertname: &str, playbook: &str, params: &[(&str, &str)]) -> Self {
        Route { alertname: alertname.into(), matchers: BTreeMap::new(), playbook: playbook.into(), params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }
}

/// `Deployment/garage` → (kind, name); Deployment or StatefulSet only.
pub fn kind_and_name(text: &str) -> Result<(&str, &str), String> {
    match text.split_once('/') {
        Some((kind @ ("Deployment" | "StatefulSet"), name)) if !name.is_empty() && !name.contains('/') => Ok((kind, name)),
        _ => Err(format!("{text:?} must be Deployment/<name> or StatefulSet/<name>")),
    }
}

/// `Kustomization/kanidm` → (kind, name).
pub fn flux_kind_and_name(text: &str) -> Result<(&str, &str), String> {
    match text.split_once('/') {
        Some((kind @ ("Kustomization" | "HelmRelease"), name)) if !name.is_empty() && !name.contains('/') => Ok((kind, name)),
        _ => Err(format!("{text:?} must be Kustomization/<name> or HelmRelease/<name>")),
    }
}

/// `Deployment/utils/forgejo` → (kind, namespace, name).
pub fn oidc_client(text: &str) -> Result<(&str, &str, &str), String> {
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [kind @ ("Deployment" | "StatefulSet"), ns, name] if !ns.is_empty() && !name.is_empty() => Ok((kind, ns, name)),
        _ => Err(format!("{text:?} must be Deployment/<namespace>/<name> or StatefulSet/<namespace>/<name>")),
    }
}

/// A duration written as `90s`, `5m`, `1h30m`, `2d` in the config file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn mins(m: u64) -> Self {
        Dur(Duration::from_secs(m * 60))
    }
    pub const fn hours(h: u64) -> Self {
        Dur(Duration::from_secs(h * 3600))
    }
    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = 0u64;
        let mut digits = String::new();
        for c in text.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                _ => return Err(format!("{text:?}: unknown unit {c:?} (use s, m, h or d, e.g. 1h30m)")),
            };
            let n: u64 = digits.parse().map_err(|_| format!("{text:?}: expected a number before {c:?}"))?;
            total = total.saturating_add(n.saturating_mul(unit));
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(format!("{text:?}: missing unit after {digits} (use s, m, h or d)"));
        }
        Ok(Dur(Duration::from_secs(total)))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.0.as_secs();
        if s == 0 {
            return write!(f, "0s");
        }
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
            if s >= size {
                write!(f, "{}{unit}", s / size)?;
                s %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}
