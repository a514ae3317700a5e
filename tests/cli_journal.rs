//! The remediation CLI on a dump with a directory journal: submit, list,
//! show, hash-bound approve, one active run per target, abort.

use std::process::{Command, Output};

fn lifeboat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeboat")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn submit_approve_abort_through_a_directory_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().to_str().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node-loss");
    let submit = ["submit", "cnpg-instance-lost", "--namespace", "database", "--name", "postgres", "--from-dump", example, "--journal-dir", journal];
    let out = lifeboat(&submit);
    assert!(out.status.success(), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("kubectl cnpg promote postgres -n database postgres-2"), "{printed}");
    let approve_line = printed.lines().find(|l| l.starts_with("approve with: ")).expect("approval hint");
    let words: Vec<&str> = approve_line.split_whitespace().collect();
    let (id, hash) = (words[4], words[6]);

    let again = lifeboat(&submit);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again).contains("one active run at a time there"), "{}", text(&again));

    let list = lifeboat(&["runs", "--journal-dir", journal]);
    assert!(text(&list).contains(id) && text(&list).contains("AwaitingApproval"), "{}", text(&list));

    let wrong = lifeboat(&["approve", id, "--hash", "0123456789ab0123456789ab", "--journal-dir", journal]);
    assert_eq!(wrong.status.code(), Some(2));
    assert!(text(&wrong).contains("look at the plan again"), "{}", text(&wrong));

    let ok = lifeboat(&["approve", id, "--hash", hash, "--by", "alice", "--journal-dir", journal]);
    assert!(ok.status.success(), "{}", text(&ok));
    let show = lifeboat(&["runs", "show", id, "--journal-dir", journal]);
    assert!(text(&show).contains("phase: Approved") && text(&show).contains("approved by alice"), "{}", text(&show));
    let json = lifeboat(&["runs", id, "-o", "json", "--journal-dir", journal]);
    let record: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(record["status"]["approvedHash"], hash);

    let abort = lifeboat(&["abort", id, "--journal-dir", journal]);
    assert!(abort.status.success() && text(&abort).contains("Aborted"), "{}", text(&abort));
    // Aborted is terminal: the target is free for a new run.
    assert!(lifeboat(&submit).status.success());
}

/// `lifeboat approve` honours `remediation.approvalTtl` (issue 12, item 4):
/// a run requested long ago is no longer approvable, whoever asks.
#[test]
fn approve_refuses_a_run_past_its_approval_window() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("runs");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/node-loss");
    let submit = ["submit", "cnpg-instance-lost", "--namespace", "database", "--name", "postgres", "--from-dump", example, "--journal-dir", journal_dir.to_str().unwrap()];
    let out = lifeboat(&submit);
    assert!(out.status.success(), "{}", text(&out));
    let words: Vec<String> = text(&out).lines().find(|l| l.starts_with("approve with: ")).expect("approval hint").split_whitespace().map(String::from).collect();
    let (id, hash) = (&words[4], &words[6]);
    // The same run, as if requested three days ago (the file is the record).
    let file = journal_dir.join(format!("{id}.json"));
    let mut record: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    record["spec"]["requestedAt"] = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339().into();
    std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();

    let config = dir.path().join("lifeboat.yaml");
    std::fs::write(&config, "remediation:\n  approvalTtl: 1h\n").unwrap();
    let late = lifeboat(&["approve", id, "--hash", hash, "--by", "alice", "--config", config.to_str().unwrap(), "--journal-dir", journal_dir.to_str().unwrap()]);
    assert_eq!(late.status.code(), Some(2), "{}", text(&late));
    assert!(text(&late).contains("approval window"), "{}", text(&late));
    let shown = lifeboat(&["runs", "show", id, "--journal-dir", journal_dir.to_str().unwrap()]);
    assert!(text(&shown).contains("AwaitingApproval"), "{}", text(&shown));
}
