//! Bad input gets an error that names the file and the problem, never a panic.

use std::path::Path;
use std::process::Command;

use lifeboat::cluster::dump;
use lifeboat::config::Config;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn malformed_yaml_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "broken.yaml", "apiVersion: v1\nkind: List\nitems: [\n");
    let err = dump::load(&path).unwrap_err().to_string();
    assert!(err.contains("broken.yaml") && err.contains("not valid YAML"), "{err}");
}

#[test]
fn malformed_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.json", r#"{"apiVersion": "v1", "kind": "List", "items": []}"#);
    write(dir.path(), "b.json", r#"{"apiVersion": "v1", "kind": "List", "items": [}"#);
    let err = dump::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("b.json") && err.contains("not valid JSON"), "{err}");
}

#[test]
fn wrong_field_type_names_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "pvs.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: PersistentVolume\n  metadata: {name: pv-bad}\n  spec: {nodeAffinity: {required: {nodeSelectorTerms: \"not a list\"}}}\n",
    );
    let err = dump::load(&path).unwrap_err().to_string();
    assert!(err.contains("pvs.yaml") && err.contains("item 1") && err.contains("PersistentVolume pv-bad"), "{err}");
}

#[test]
fn object_without_kind_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "x.yaml", "metadata: {name: x}\n");
    let err = dump::load(&path).unwrap_err().to_string();
    assert!(err.contains("missing apiVersion or kind"), "{err}");
}

#[test]
fn unknown_kinds_are_counted_not_fatal_and_multi_document_yaml_loads() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "mixed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: d}\n---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n---\n",
    );
    let (state, summary) = dump::load(&path).unwrap();
    assert_eq!(state.nodes.len(), 1);
    assert_eq!(summary.ignored.get("v1/ConfigMap"), Some(&1));
}

#[test]
fn missing_path_and_empty_directory_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(dump::load(&dir.path().join("nope")).unwrap_err().to_string().contains("cannot read"));
    assert!(dump::load(dir.path()).unwrap_err().to_string().contains("no YAML or JSON files"));
}

#[test]
fn bad_capture_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "nodes.yaml", "apiVersion: v1\nkind: List\nitems: []\n");
    write(dir.path(), "capture.yaml", "capturedAt: yesterday\n");
    let err = dump::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("capture.yaml"), "{err}");
}

#[test]
fn config_errors_name_the_key() {
    let unknown = Config::parse("nodeLostGrase: 5m\n").unwrap_err();
    assert!(unknown.contains("nodeLostGrase"), "{unknown}");
    let unit = Config::parse("nodeLostGrace: 5 minutes\n").unwrap_err();
    assert!(unit.contains("unknown unit"), "{unit}");
    let zero = Config::parse("volsync:\n  staleIntervals: 0\n").unwrap_err();
    assert!(zero.contains("volsync.staleIntervals"), "{zero}");
    let url = Config::parse("garage:\n  adminUrl: ftp://garage\n").unwrap_err();
    assert!(url.contains("garage.adminUrl"), "{url}");
    let token = Config::parse("garage:\n  adminTokenFile: /t\n").unwrap_err();
    assert!(token.contains("adminTokenFile"), "{token}");
    let ok = Config::parse("nodeLostGrace: 1h30m\nbackupCronJobs:\n  nameContains: dump\n").unwrap();
    assert_eq!(ok.node_lost_grace.0.as_secs(), 5400);
    assert_eq!(Config::parse("").unwrap(), Config::default());
}

fn lifeboat() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lifeboat"))
}

#[test]
fn cli_reports_bad_config_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lifeboat.yaml", "listen: nowhere\n");
    let out = lifeboat().args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lifeboat.yaml") && stderr.contains("listen"), "{stderr}");
}

#[test]
fn cli_reports_bad_dump_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "bad.yaml", ": : :\n");
    let out = lifeboat().args(["triage", "--from-dump"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.yaml"));
}

#[test]
fn remediation_config_is_validated() {
    let err = Config::parse("remediation:\n  modes:\n    cnpg-instance-lsot: auto\n").unwrap_err();
    assert!(err.contains("remediation.modes") && err.contains("cnpg-instance-lsot"), "{err}");
    let err = Config::parse("remediation:\n  defaultMode: yolo\n").unwrap_err();
    assert!(err.contains("yolo"), "{err}");
    let ok = Config::parse("remediation:\n  defaultMode: observe\n  modes:\n    stale-cleanup: auto\n").unwrap();
    assert_eq!(ok.remediation.mode_of("stale-cleanup"), lifeboat::config::Mode::Auto);
    assert_eq!(ok.remediation.mode_of("cnpg-instance-lost"), lifeboat::config::Mode::Observe);
}

#[test]
fn webhook_routes_are_validated() {
    let err = Config::parse("remediation:\n  routes:\n  - alertname: X\n    playbook: nope\n").unwrap_err();
    assert!(err.contains("unknown playbook \"nope\""), "{err}");
    let err = Config::parse("remediation:\n  routes:\n  - alertname: X\n    playbook: stale-cleanup\n    params: {cluster: cluster}\n").unwrap_err();
    assert!(err.contains("unknown parameter \"cluster\""), "{err}");
    assert_eq!(Config::default().remediation.routes, lifeboat::alerts::default_routes());
}

#[test]
fn job_playbook_config_is_validated() {
    let err = Config::parse("s3Restore:\n  apps:\n    kanidm: {}\n").unwrap_err();
    assert!(err.contains("s3Restore.apps") && err.contains("<namespace>/<pvc>") && err.contains("no template"), "{err}");
    let bad_template = "s3Restore:\n  defaultTemplate:\n    kind: Pod\n    spec: {}\n";
    assert!(Config::parse(bad_template).unwrap_err().contains("s3Restore.defaultTemplate: must be a batch/v1 Job"));
    let typo = "s3Restore:\n  defaultTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: r, image: i, args: ['{{pcv}}']}]\n";
    let err = Config::parse(typo).unwrap_err();
    assert!(err.contains("unknown placeholder(s) pcv"), "{err}");
    let ok = "s3Restore:\n  defaultTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{name: r, image: i, args: ['{{pvc}} ${SHELL_VAR}']}]\n";
    assert!(Config::parse(ok).is_ok(), "shell ${{}} is not a placeholder");
    assert!(Config::parse("s3Restore:\n  sucessMarker: x\n").unwrap_err().contains("sucessMarker"), "unknown keys are refused");
    let err = Config::parse("kanidm:\n  flux: kustomization/kanidm\n  oidcClients: [Deployment/forgejo]\n").unwrap_err();
    assert!(err.contains("kanidm.flux") && err.contains("kanidm.oidcClients"), "{err}");
    let err = Config::parse("garage:\n  restore:\n    workload: garage\n    backup: {s3: {}}\n").unwrap_err();
    assert!(err.contains("s3") || err.contains("workload"), "{err}");
    let ok = Config::parse("garage:\n  restore:\n    backup: {nfs: {server: nas, path: /mnt/meta-backup}}\n").unwrap();
    assert_eq!(ok.garage.restore.backup, Some(lifeboat::config::GarageBackupSource::Nfs { server: "nas".into(), path: "/mnt/meta-backup".into() }));
    let ok = Config::parse("garage:\n  restore:\n    backup: {pvc: {claimName: meta-backup}}\n").unwrap();
    assert!(matches!(ok.garage.restore.backup, Some(lifeboat::config::GarageBackupSource::Pvc { .. })));
    assert!(Config::parse("garage:\n  restore:\n    workload: Job/garage\n").unwrap_err().contains("garage.restore.workload"));
}
