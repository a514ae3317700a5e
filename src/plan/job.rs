//! Job-based steps as data: what a restore or recovery Job must print, what
//! to take from its output, and the commands a human would run instead.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::ObjectRef;

/// What a `RunJob` step takes from the Job's output once it completed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum JobOutput {
    /// Nothing beyond the success marker.
    Nothing,
    /// A value shown in the step detail, e.g. the snapshot a restore used.
    Capture { label: String, pattern: String },
    /// A secret value (e.g. a new password) written straight into a Secret
    /// key. It never appears in the step detail, errors, logs or the journal;
    /// no output excerpt is shown for such a Job; the Job (and with it the
    /// pod log holding the value) is deleted once the Secret is patched.
    SecretKey { secret: ObjectRef, key: String, pattern: String },
}

impl JobOutput {
    /// Whether the Job's output may hold a secret (then nothing of it is shown).
    pub fn is_secret(&self) -> bool {
        matches!(self, JobOutput::SecretKey { .. })
    }
}

/// Finds `pattern` (a literal with one `{}` standing for the value, e.g.
/// `new_password: "{}"`) in `text`; the value runs from the end of the prefix
/// to the suffix (to the end of the line when the suffix is empty) and never
/// spans lines. The last match wins (a re-run appends to the log).
pub fn extract<'t>(text: &'t str, pattern: &str) -> Option<&'t str> {
    let (prefix, suffix) = pattern.split_once("{}")?;
    text.lines().rev().find_map(|line| {
        let start = line.rfind(prefix)? + prefix.len();
        let rest = &line[start..];
        let value = if suffix.is_empty() { rest.trim_end() } else { &rest[..rest.find(suffix)?] };
        (!value.is_empty()).then_some(value)
    })
}

/// Checks a pattern has exactly one `{}` and something around it.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if pattern.matches("{}").count() != 1 {
        return Err(format!("pattern {pattern:?} must contain exactly one {{}} (where the value is)"));
    }
    if pattern.trim() == "{}" {
        return Err(format!("pattern {pattern:?} needs literal text around {{}}"));
    }
    Ok(())
}

fn ns_flag(object: &ObjectRef) -> String {
    object.ns_flag()
}

/// The main container: the first of the pod template.
pub fn main_container(manifest: &serde_json::Value) -> String {
    manifest["spec"]["template"]["spec"]["containers"][0]["name"].as_str().unwrap_or_default().to_string()
}

/// `kubectl` for a RunJob step: create, wait, read the output.
pub fn run_job_command(job: &ObjectRef, manifest: &serde_json::Value, timeout_seconds: u64, success_marker: &str, output: &JobOutput) -> String {
    use super::shell::quote as q;
    let ns = ns_flag(job);
    let job_name = q(&format!("job/{}", job.name)).into_owned();
    let name = q(&job.name);
    let container = q(&main_container(manifest)).into_owned();
    let yaml = serde_yaml::to_string(manifest).unwrap_or_default();
    let end = super::shell::heredoc_delimiter(&yaml);
    let mut cmd = format!(
        "kubectl create -f - <<'{end}'\n{yaml}{end}\nkubectl wait{ns} {job_name} --for=condition=Complete --timeout={timeout_seconds}s  # fails fast on condition Failed\n"
    );
    match output {
        JobOutput::SecretKey { secret, key, pattern } => {
            let sed = pattern.replace("{}", "\\([^\"]*\\)");
            let _ = writeln!(
                cmd,
                "VALUE=$(kubectl logs{ns} {job_name} -c {container} | sed -n {} | tail -1)  # the log must also say {}; never echo VALUE",
                q(&format!("s/.*{sed}.*/\\1/p")),
                super::shell::comment(success_marker)
            );
            // One word: '{"data":{' "<key as JSON>" ':"' "$(…)" '"}}' side by side.
            let json_key = serde_json::to_string(key).unwrap_or_default();
            let _ = writeln!(
                cmd,
                "kubectl patch secret {}{} --type=merge -p '{{\"data\":{{'{}':\"'\"$(printf '%s' \"$VALUE\" | base64 -w0)\"'\"}}}}'",
                q(&secret.name),
                ns_flag(secret),
                q(&json_key)
            );
            let _ = write!(cmd, "kubectl delete job {name}{ns}  # its pod log holds the value");
        }
        _ => cmd.push_str(&format!("kubectl logs{ns} {job_name} -c {container} | grep -F -- {}", q(success_marker))),
    }
    cmd
}

/// `kubectl exec` whose output goes through `sed` into the Secret, never to the terminal.
pub fn exec_to_secret_command(pod: &ObjectRef, container: &str, command: &[String], secret: &ObjectRef, key: &str, pattern: &str) -> String {
    let q = super::shell::quote;
    let sed = pattern.replace("{}", "\\([^\"]*\\)");
    let args = command.iter().map(|a| q(a)).collect::<Vec<_>>().join(" ");
    let patch = format!("{{\"data\":{{\"{key}\":\"$(printf '%s' \"$VALUE\" | base64 -w0)\"}}}}");
    format!(
        "VALUE=$(kubectl exec{ns} {pod} -c {container} -- {args} | sed -n {sed} | tail -1)  # never echo VALUE\nkubectl patch secret {secret}{sns} --type=merge -p \"{patch}\"",
        ns = ns_flag(pod),
        pod = q(&pod.name),
        container = q(container),
        sed = q(&format!("s/.*{sed}.*/\\1/p")),
        secret = q(&secret.name),
        sns = ns_flag(secret),
        patch = patch.replace('"', "\\\""),
    )
}

pub fn rollout_restart_command(object: &ObjectRef) -> String {
    let q = super::shell::quote;
    format!("kubectl rollout restart {} {}{}", q(&object.kind.to_lowercase()), q(&object.name), ns_flag(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_last_match_on_one_line() {
        let log = "starting\nnew_password: \"first\"\nnoise new_password: \"s3cr3t-Xy\" tail\n";
        assert_eq!(extract(log, "new_password: \"{}\""), Some("s3cr3t-Xy"));
        assert_eq!(extract("Restoring from snapshot: 2026-11-25T02:00:00Z\n", "Restoring from snapshot: {}"), Some("2026-11-25T02:00:00Z"));
        assert_eq!(extract("new_password: \"\"\n", "new_password: \"{}\""), None);
        assert_eq!(extract("new_password: \"unterminated\n\"", "new_password: \"{}\""), None);
        assert_eq!(extract("nothing here", "new_password: \"{}\""), None);
    }

    #[test]
    fn patterns_need_one_placeholder() {
        assert!(validate_pattern("new_password: \"{}\"").is_ok());
        assert!(validate_pattern("no placeholder").is_err());
        assert!(validate_pattern("{} and {}").is_err());
        assert!(validate_pattern("{}").is_err());
    }
}
