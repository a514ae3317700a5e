//! The one list of every metric lifeboat exports. The encoder takes its help
//! text and type from here, and tests check the alert rules, the dashboard and
//! the README's reference table against it, so none of them can drift.

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gauge,
    Counter,
}

#[derive(Debug, serde::Serialize)]
pub struct MetricDef {
    /// The sample name as Prometheus stores it (counters end in `_total`).
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

macro_rules! metrics {
    ($($ident:ident = $name:literal, $kind:ident, [$($label:literal),*], $help:literal;)*) => {
        $(pub const $ident: MetricDef = MetricDef { name: $name, kind: Kind::$kind, labels: &[$($label),*], help: $help };)*
        pub const ALL: &[&MetricDef] = &[$(&$ident),*];
    };
}

metrics! {
    BUILD_INFO = "lifeboat_build_info", Gauge, ["version"], "Always 1; the running lifeboat version.";
    WATCH_UP = "lifeboat_watch_up", Gauge, ["kind"], "1 while the kind's watch is healthy; 0 when its API is not served (CRD not installed) or the watch is failing.";
    WATCH_EVENTS = "lifeboat_watch_events_total", Counter, ["kind"], "Watch events received for the kind.";
    WATCH_ERRORS = "lifeboat_watch_errors_total", Counter, ["kind"], "Watch and discovery errors for the kind.";
    OBJECTS = "lifeboat_objects", Gauge, ["kind"], "Objects of the kind in the current snapshot.";
    SNAPSHOT_AGE = "lifeboat_snapshot_age_seconds", Gauge, [], "Seconds since the snapshot the metrics describe was built.";
    SNAPSHOT_BUILD = "lifeboat_snapshot_build_duration_seconds", Gauge, [], "Time taken to build the current snapshot and its findings.";
    SCRAPE_DURATION = "lifeboat_scrape_duration_seconds", Gauge, [], "Time the previous /metrics encode took.";

    NODE_UNAVAILABLE = "lifeboat_node_unavailable", Gauge, ["node", "reason"], "1 for a node that is NotReady/Unknown (reason not_ready) or has no Node object while volumes or pods still name it (reason missing).";
    NODE_UNAVAILABLE_SINCE = "lifeboat_node_unavailable_since_timestamp_seconds", Gauge, ["node"], "When a NotReady node's Ready condition last changed.";
    NODE_LOST = "lifeboat_node_lost", Gauge, ["node", "reason"], "1 once an unavailable node has been so for longer than nodeLostGrace (missing nodes at once); 0 while within the grace.";
    NODE_PINNED_VOLUMES = "lifeboat_node_pinned_volumes", Gauge, ["node"], "PersistentVolumes whose required node affinity pins them to this unavailable node.";
    VOLUME_ON_LOST_NODE = "lifeboat_volume_pinned_to_lost_node", Gauge, ["persistentvolume", "node", "namespace", "persistentvolumeclaim", "storageclass"], "1 for every PV pinned (by any node-affinity key) to a lost node.";
    POD_BLOCKED = "lifeboat_pod_blocked_on_lost_volume", Gauge, ["namespace", "pod", "persistentvolumeclaim", "node"], "1 for every unfinished pod that mounts a claim whose volume is pinned to a lost node.";

    CNPG_ARCHIVING_OK = "lifeboat_cnpg_continuous_archiving_ok", Gauge, ["namespace", "cluster"], "1 when the ContinuousArchiving condition is True, 0 when False (absent when not reported).";
    CNPG_ARCHIVING_SINCE = "lifeboat_cnpg_continuous_archiving_since_timestamp_seconds", Gauge, ["namespace", "cluster"], "When ContinuousArchiving last changed state.";
    CNPG_LAST_BACKUP_STATE = "lifeboat_cnpg_last_backup_state", Gauge, ["namespace", "cluster", "state"], "1 for the current state of LastBackupSucceeded: succeeded, failed, in_progress (reason BackupStarted) or unknown.";
    CNPG_LAST_BACKUP = "lifeboat_cnpg_last_successful_backup_timestamp_seconds", Gauge, ["namespace", "cluster", "source"], "Last successful base backup, from the barman-cloud ObjectStore (source objectstore) or the Cluster status (source cluster_status).";
    CNPG_FIRST_RECOVERABILITY = "lifeboat_cnpg_first_recoverability_point_timestamp_seconds", Gauge, ["namespace", "cluster", "source"], "Earliest point in time the cluster can be recovered to.";
    CNPG_BACKUP_STALE = "lifeboat_cnpg_backup_stale", Gauge, ["namespace", "cluster"], "1 when there is no successful base backup within lifeboat_cnpg_backup_max_age_seconds (or none at all).";
    CNPG_BACKUP_MAX_AGE = "lifeboat_cnpg_backup_max_age_seconds", Gauge, ["namespace", "cluster"], "Allowed backup age: twice the ScheduledBackup interval plus an hour, else cnpg.maxBackupAge.";
    CNPG_PRIMARY_ON_LOST_NODE = "lifeboat_cnpg_primary_on_lost_node", Gauge, ["namespace", "cluster", "pod", "node"], "1 when the current primary instance lives on a lost node.";
    CNPG_INSTANCES = "lifeboat_cnpg_instances", Gauge, ["namespace", "cluster"], "Instances the cluster should have (spec.instances).";
    CNPG_READY_INSTANCES = "lifeboat_cnpg_ready_instances", Gauge, ["namespace", "cluster"], "Instances reported ready.";
    CNPG_DANGLING_PVCS = "lifeboat_cnpg_dangling_pvcs", Gauge, ["namespace", "cluster"], "PVCs CNPG reports as dangling (status.danglingPVC).";

    MARIADB_GALERA_READY = "lifeboat_mariadb_galera_ready", Gauge, ["namespace", "name"], "1 when the MariaDB GaleraReady condition is True.";
    MARIADB_INSTANCES_LOST = "lifeboat_mariadb_instances_on_lost_nodes", Gauge, ["namespace", "name"], "Galera instances whose storage is on a lost node.";
    MARIADB_FORCE_BOOTSTRAP = "lifeboat_mariadb_force_bootstrap_set", Gauge, ["namespace", "name", "pod"], "1 while spec.galera.recovery.forceClusterBootstrapInPod is set; the operator never clears it.";

    VOLSYNC_LAST_SYNC = "lifeboat_volsync_last_sync_timestamp_seconds", Gauge, ["namespace", "name", "role"], "status.lastSyncTime of a ReplicationSource (role source) or ReplicationDestination (role destination).";
    VOLSYNC_INTERVAL = "lifeboat_volsync_schedule_interval_seconds", Gauge, ["namespace", "name", "role"], "Longest gap between runs of the object's cron schedule.";
    VOLSYNC_STALE = "lifeboat_volsync_stale", Gauge, ["namespace", "name"], "1 for a ReplicationSource with no sync within staleIntervals x interval + staleGrace, never synced, or paused (a paused kopia source looks fresh but is not).";
    VOLSYNC_PAUSED = "lifeboat_volsync_paused", Gauge, ["namespace", "name", "role"], "1 when spec.paused is true.";
    VOLSYNC_MOVER_FAILED = "lifeboat_volsync_mover_failed", Gauge, ["namespace", "name", "role"], "1 when the latest mover result is Failed or Synchronizing reports Error.";
    VOLSYNC_SYNC_STARTED = "lifeboat_volsync_sync_started_timestamp_seconds", Gauge, ["namespace", "name", "role"], "Start of the sync in progress (only while one runs).";
    VOLSYNC_SYNC_STUCK = "lifeboat_volsync_sync_stuck", Gauge, ["namespace", "name", "role"], "1 when a sync has been in progress longer than volsync.stuckAfter.";
    VOLSYNC_CACHE_ON_LOST_NODE = "lifeboat_volsync_cache_pvc_on_lost_node", Gauge, ["namespace", "name", "role", "persistentvolumeclaim", "node"], "1 when the mover's cache PVC is pinned to a lost node: syncs silently stop.";
    VOLSYNC_ORPHANED = "lifeboat_volsync_destination_orphaned", Gauge, ["namespace", "name"], "1 for a ReplicationDestination whose source and app PVC are gone (stale; safe to clean up).";

    GARAGE_PODS = "lifeboat_garage_pods", Gauge, ["namespace"], "Pods matching garage.podSelector in garage.namespace.";
    GARAGE_SIDECAR_PRESENT = "lifeboat_garage_meta_backup_sidecar_present", Gauge, ["namespace", "pod"], "1 when the Garage pod has the metadata-backup container.";
    GARAGE_SIDECAR_RUNNING = "lifeboat_garage_meta_backup_sidecar_running", Gauge, ["namespace", "pod"], "1 when the metadata-backup container is running.";
    GARAGE_SIDECAR_RESTARTS = "lifeboat_garage_meta_backup_sidecar_restarts", Gauge, ["namespace", "pod"], "Restart count of the metadata-backup container (it exits on any failed sync).";
    GARAGE_SNAPSHOT = "lifeboat_garage_meta_snapshot_timestamp_seconds", Gauge, [], "Newest snapshots/<timestamp>/ in the configured metadata backup directory.";
    GARAGE_SNAPSHOT_PROBE_OK = "lifeboat_garage_meta_snapshot_probe_ok", Gauge, [], "1 when the configured metadata backup directory could be read and holds a snapshot.";
    GARAGE_ADMIN_HEALTHY = "lifeboat_garage_admin_healthy", Gauge, [], "1 when the Garage admin API reports healthy (only when garage.adminUrl is set).";

    FLUX_SUSPENDED = "lifeboat_flux_suspended", Gauge, ["kind", "namespace", "name"], "1 when a Kustomization or HelmRelease has spec.suspend true.";
    FLUX_READY = "lifeboat_flux_ready", Gauge, ["kind", "namespace", "name"], "1 when Ready is True, 0 otherwise (a suspended object keeps its last Ready).";

    CRONJOB_LAST_SUCCESS = "lifeboat_backup_cronjob_last_success_timestamp_seconds", Gauge, ["namespace", "cronjob"], "Last successful run of an app backup CronJob.";
    CRONJOB_INTERVAL = "lifeboat_backup_cronjob_interval_seconds", Gauge, ["namespace", "cronjob"], "Longest gap between scheduled runs of the backup CronJob.";
    CRONJOB_STALE = "lifeboat_backup_cronjob_stale", Gauge, ["namespace", "cronjob"], "1 when no run succeeded within staleIntervals x interval + staleGrace, or the CronJob is suspended.";

    PVC_PROTECTION = "lifeboat_pvcs", Gauge, ["namespace", "source", "node_local"], "PVCs by the recovery source that protects them (cnpg, galera, volsync, garage_meta_backup, backup_cronjob, scratch, none) and whether their volume is node-local (true/false). Per-PVC detail: lifeboat triage -o json.";
    PVC_SOURCE_STALE = "lifeboat_pvc_recovery_source_stale", Gauge, ["namespace", "persistentvolumeclaim", "source"], "1 for a PVC whose recovery source exists but does not look able to restore now (archiving failing, sync stale, backup failing); only such PVCs are listed.";
    PVC_UNPROTECTED = "lifeboat_pvc_unprotected", Gauge, ["namespace", "persistentvolumeclaim", "node"], "1 for a node-local PVC with no recovery source at all.";
    REMEDIATION_LEADER = "lifeboat_remediation_leader", Gauge, [], "1 while this instance holds the leader Lease and may execute runs (only with remediation.execute).";
    REMEDIATION_RUNS = "lifeboat_remediation_runs", Gauge, ["playbook", "phase"], "Runs in the RemediationRun journal by playbook and phase (awaiting_approval, approved, running, succeeded, nothing_to_do, stopped, rejected, aborted, failed).";
    REMEDIATION_ACTIVE = "lifeboat_remediation_active_runs", Gauge, [], "Runs awaiting approval, approved or running.";
    REMEDIATION_STEPS = "lifeboat_remediation_steps", Gauge, ["playbook", "state"], "Steps of the journaled runs by state (pending, running, succeeded, refused, failed, not_run).";
    REMEDIATION_TIME_IN_PHASE = "lifeboat_remediation_time_in_phase_seconds", Gauge, ["playbook", "phase"], "For runs not finished: seconds since each entered its current phase, summed per playbook and phase (an approval waiting for hours shows here).";
    JOURNAL_UNDECODABLE = "lifeboat_journal_undecodable_runs", Gauge, [], "RemediationRuns the last journal listing skipped because they could not be decoded (written by another lifeboat version or edited by hand): every other run goes on; fix or move these aside (the log names them).";
    ALERTMANAGER_REQUESTS = "lifeboat_alertmanager_requests_total", Counter, ["result"], "Webhook requests by result: accepted, or rejected (auth, content type, size, malformed or unknown payload).";
    ALERTMANAGER_ALERTS = "lifeboat_alertmanager_alerts_total", Counter, ["result"], "Alerts received by what they did: run (a run was recorded), duplicate (repeat, HA pair or busy target), unrouted, nothing_to_do (no plan), resolved, cleared (a run awaiting approval marked condition cleared).";
    REMEDIATION_ACTIVE_STEPS = "lifeboat_remediation_active_steps", Gauge, ["playbook", "state"], "Steps of the runs not finished (awaiting approval, approved, running) by state (pending, running, succeeded, refused, failed, not_run): the progress of what is under way.";
    REMEDIATION_APPROVAL_WAIT = "lifeboat_remediation_approval_wait_seconds", Gauge, ["playbook"], "For each playbook with a run awaiting approval: the longest time one has been waiting at its approval gate (since requested, or since it paused at a per-phase gate).";
    REMEDIATION_APPROVAL_WINDOW = "lifeboat_remediation_approval_window_seconds", Gauge, [], "remediation.approvalTtl: how long after reaching its approval gate a run can still be approved.";
    REMEDIATION_LAST_FINISHED = "lifeboat_remediation_last_finished_timestamp_seconds", Gauge, ["playbook", "phase"], "When the newest run of the playbook that ended in this phase finished (terminal phases: succeeded, nothing_to_do, stopped, rejected, aborted, failed).";
    REMEDIATION_KILL_SWITCH = "lifeboat_remediation_kill_switch_engaged", Gauge, [], "1 while the kill switch is engaged (ConfigMap lifeboat-kill-switch, remediation.killSwitch, or the ConfigMap cannot be read): no remediation step starts.";
    REMEDIATION_FLUX_KEPT_SUSPENDED = "lifeboat_remediation_flux_kept_suspended", Gauge, ["kind", "namespace", "name"], "1 for a Kustomization or HelmRelease a remediation run left suspended on purpose (spec.suspend true and annotation lifeboat.dev/kept-suspended): resume it once its follow-ups are done.";
    CONFIG_PROBLEM = "lifeboat_backup_config_problem", Gauge, ["kind", "namespace", "name", "problem"], "1 per backup configuration that cannot deliver what it appears to (cron_dialect, no_destination, object_store_missing, invalid_schedule).";
}

pub fn find(name: &str) -> Option<&'static MetricDef> {
    ALL.iter().copied().find(|m| m.name == name)
}
