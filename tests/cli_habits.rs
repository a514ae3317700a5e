//! The CLI behaves like kubectl, flux and kubectl-cnpg: a closed pipe ends
//! it quietly, it completes in the usual shells, it answers to `kubectl
//! lifeboat`, lists its playbooks, and `--kubeconfig`/`--context` choose the
//! cluster that `lifeboat dump` captures for `triage --from-dump`.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
// Private (holding back a CRD): the dump records that operator as absent.
use support::controlplane::control_plane_holding_back;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node-loss");
/// Held back from this binary's apiserver: the operator "is not installed".
const ABSENT_CRD: &str = "mariadbs.k8s.mariadb.com";

fn lifeboat(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("LIFEBOAT_LOG", "warn").output().unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn a_closed_pipe_ends_the_output_without_a_panic() {
    // `lifeboat metrics | head -0`: the reader is gone before the first write.
    let mut child = Command::new(BIN).arg("metrics").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    use std::os::unix::process::ExitStatusExt as _;
    // Like any Unix filter: killed by SIGPIPE, quietly.
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}: {stderr}", out.status);
}

#[test]
fn completions_for_bash_zsh_and_fish_name_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout(&lifeboat(&["completion", shell]));
        for command in ["triage", "plan", "dump", "playbooks", "kill-switch"] {
            assert!(script.contains(command), "{shell} completion lacks {command}");
        }
    }
    let refused = lifeboat(&["completion", "tcsh"]);
    assert_eq!(refused.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn installed_as_kubectl_lifeboat_it_names_itself_so() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-lifeboat");
    std::fs::copy(BIN, &plugin).unwrap();
    let out = Command::new(&plugin).arg("--help").output().unwrap();
    let help = stdout(&out);
    assert!(help.contains("Usage: kubectl lifeboat"), "{help}");
    assert!(stdout(&lifeboat(&["--help"])).contains("Usage: lifeboat"));
}

#[test]
fn playbooks_lists_every_playbook_the_planner_knows() {
    let listed: Value = serde_json::from_str(&stdout(&lifeboat(&["playbooks", "-o", "json"]))).unwrap();
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    let mut known: Vec<&str> = lifeboat::plan::playbooks::PLAYBOOKS.to_vec();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    known.sort_unstable();
    assert_eq!(sorted, known);
    let text = stdout(&lifeboat(&["playbooks"]));
    assert!(names.iter().all(|n| text.contains(n)), "{text}");
    // Every output format parses as what it claims to be.
    let yaml: Value = serde_yaml::from_str(&stdout(&lifeboat(&["playbooks", "-o", "yaml"]))).unwrap();
    assert_eq!(yaml, listed);
}

#[test]
fn triage_speaks_text_json_and_yaml() {
    let now = "2026-12-01T12:00:00Z";
    let json: Value = serde_json::from_slice(&lifeboat(&["triage", "--from-dump", EXAMPLE, "--now", now, "-o", "json"]).stdout).unwrap();
    let yaml: Value = serde_yaml::from_slice(&lifeboat(&["triage", "--from-dump", EXAMPLE, "--now", now, "-o", "yaml"]).stdout).unwrap();
    assert_eq!(json, yaml);
    assert!(json.is_object(), "{json}");
}

/// A kubeconfig whose current context is a dead cluster, beside `test`.
fn kubeconfig_with_a_dead_current_context(path: &Path) {
    control_plane_holding_back(&[ABSENT_CRD]).write_admin_kubeconfig(path);
    let mut config: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    config["clusters"].as_array_mut().unwrap().push(json!({"name": "dead", "cluster": {"server": "https://127.0.0.1:9", "insecure-skip-tls-verify": true}}));
    config["contexts"].as_array_mut().unwrap().push(json!({"name": "dead", "context": {"cluster": "dead", "user": "admin"}}));
    config["current-context"] = json!("dead");
    std::fs::write(path, serde_json::to_vec(&config).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dump_captures_what_triage_reads_from_the_chosen_context() {
    let cp = control_plane_holding_back(&[ABSENT_CRD]);
    let example = support::example_cluster::load_except(&cp.admin_client(), "dump", &["k8s.mariadb.com/v1alpha1"]).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    kubeconfig_with_a_dead_current_context(&kubeconfig);
    let kc = kubeconfig.to_str().unwrap();
    let dump = dir.path().join("dump");

    // The current context is dead: without --context nothing is captured.
    let refused = lifeboat(&["--kubeconfig", kc, "dump", "-d", dump.to_str().unwrap()]);
    assert!(!refused.status.success());
    let captured = stdout(&lifeboat(&["--kubeconfig", kc, "--context", "test", "dump", "-d", dump.to_str().unwrap()]));

    // The operator that is not installed is recorded as absent, not as "none".
    let capture: Value = serde_yaml::from_str(&std::fs::read_to_string(dump.join("capture.yaml")).unwrap()).unwrap();
    assert_eq!(capture["absentKinds"], json!(["mariadb.MariaDB"]), "{captured}");
    assert!(capture["capturedAt"].is_string());

    // Live triage runs at its own time: the dump is evaluated at that instant too.
    let live = lifeboat(&["triage", "--kubeconfig", kc, "--context", "test", "-o", "json"]);
    assert_eq!(live.status.code(), Some(1), "the example needs attention: {}", String::from_utf8_lossy(&live.stderr));
    let live: Value = serde_json::from_slice(&live.stdout).unwrap();
    let at = live["evaluated_at"].as_str().unwrap();
    let from_dump = lifeboat(&["triage", "--from-dump", dump.to_str().unwrap(), "--now", at, "-o", "json"]);
    assert_eq!(from_dump.status.code(), Some(1), "{}", String::from_utf8_lossy(&from_dump.stderr));
    let from_dump: Value = serde_json::from_slice(&from_dump.stdout).unwrap();
    assert_eq!(from_dump, live, "triage from the dump differs from live triage");
    assert!(live.to_string().contains(&example.lost_node()), "the example's lost node is in the triage: {live}");
}
