//! Job steps: run a restore/recovery Job to its end and read what it printed;
//! rollout restarts; the Garage admin API check after a metadata restore.
//!
//! A Job's output is read from `pods/log` (what `kubectl logs` reads, through
//! the kubelet); when the log cannot be read (no kubelet answering, log
//! rotated away) the container's termination message in the pod status is
//! used instead. Restore Jobs should end with `terminationMessagePolicy:
//! FallbackToLogsOnError` or write their result to `/dev/termination-log`,
//! so the result survives in the API object itself.
//!
//! Secret outputs ([`JobOutput::SecretKey`]) go from the log text straight
//! into one Secret merge patch inside [`run_job`]: the value is never put in
//! a detail, an error, a tracing field or an output excerpt.

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, LogParams, PostParams, PropagationPolicy};
use kube::{Api, Client};
use serde_json::{json, Value};

use super::runner::RunLimits;
use crate::cluster::write::merge_patch;
use crate::plan::job::{extract, main_container, JobOutput};
use crate::plan::ObjectRef;

pub enum JobError {
    /// Nothing was done: the situation is not the one the plan expects.
    Refused(String),
    Failed(String),
}

type Result<T> = std::result::Result<T, JobError>;

fn failed(e: impl std::fmt::Display) -> JobError {
    JobError::Failed(e.to_string())
}

/// Lines of output quoted in an error.
const EXCERPT_LINES: usize = 8;
const EXCERPT_CHARS: usize = 800;
/// How much of a pod's log is read.
const LOG_LIMIT_BYTES: i64 = 1 << 20;

#[derive(Debug, PartialEq)]
enum Terminal {
    Complete,
    Failed(String),
}

fn terminal(job: &Job) -> Option<Terminal> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let holds = |t: &str| conditions.iter().find(|c| c.type_ == t && c.status == "True");
    if holds("Complete").is_some() {
        return Some(Terminal::Complete);
    }
    holds("Failed").map(|c| Terminal::Failed(format!("{}{}", c.reason.clone().unwrap_or_default(), c.message.as_ref().map_or(String::new(), |m| format!(": {m}")))))
}

fn excerpt(output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(EXCERPT_LINES)..].join(" | ");
    if tail.chars().count() > EXCERPT_CHARS {
        let skip = tail.chars().count() - EXCERPT_CHARS;
        format!("…{}", tail.chars().skip(skip).collect::<String>())
    } else {
        tail
    }
}

/// What may be quoted from a Job's output in a detail or an error.
fn shown(output: &str, secret: bool) -> String {
    if secret {
        "(output not shown: it holds a secret)".into()
    } else {
        format!("output: {}", excerpt(output))
    }
}

pub async fn run_job(client: &Client, job_ref: &ObjectRef, manifest: &Value, timeout_seconds: u64, success_marker: &str, output: &JobOutput, limits: &RunLimits) -> Result<String> {
    let ns = job_ref.namespace.as_deref().ok_or_else(|| JobError::Refused(format!("{job_ref} has no namespace")))?;
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    let secret = output.is_secret();
    let mut created = false;
    let exists = jobs.get_opt(&job_ref.name).await.map_err(|e| failed(format!("reading {job_ref}: {e}")))?.is_some();
    if !exists {
        let mut manifest = manifest.clone();
        manifest["metadata"]["name"] = json!(job_ref.name);
        manifest["metadata"]["namespace"] = json!(ns);
        let job: Job = serde_json::from_value(manifest).map_err(|e| JobError::Refused(format!("the manifest of {job_ref} is not a Job: {e}")))?;
        match jobs.create(&PostParams { field_manager: Some(crate::cluster::write::FIELD_MANAGER.into()), ..Default::default() }, &job).await {
            Ok(_) => created = true,
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(failed(format!("creating {job_ref}: {e}"))),
        }
    }
    // A Failed Job is never deleted or re-run automatically: its pod is the
    // evidence of what went wrong, and a human decides whether to retry.
    let retry_hint = format!("inspect it, then `kubectl delete job {} -n {ns}` and run the step again", job_ref.name);
    let started = Instant::now();
    let job = loop {
        let job = jobs.get(&job_ref.name).await.map_err(|e| failed(format!("reading {job_ref}: {e}")))?;
        match terminal(&job) {
            Some(Terminal::Complete) => break job,
            Some(Terminal::Failed(why)) => {
                let out = read_output(client, ns, &job, manifest).await.unwrap_or_else(|e| e);
                let already = if created { "" } else { "already existed and " };
                return Err(failed(format!("{job_ref} {already}Failed ({why}); {}; {retry_hint}", shown(&out, secret))));
            }
            None => {}
        }
        if let Some(why) = limits.stop_requested() {
            return Err(JobError::Refused(format!("{why}: {job_ref} keeps running")));
        }
        if started.elapsed() >= Duration::from_secs(timeout_seconds) {
            return Err(failed(format!("timed out after {timeout_seconds}s: {job_ref} is neither Complete nor Failed")));
        }
        tokio::time::sleep(limits.poll_interval).await;
    };
    let out = read_output(client, ns, &job, manifest).await.map_err(failed)?;
    if !out.contains(success_marker) {
        return Err(failed(format!("{job_ref} completed but its output lacks {success_marker:?}; {}", shown(&out, secret))));
    }
    let verb = if created { "ran" } else { "found completed" };
    match output {
        JobOutput::Nothing => Ok(format!("{verb} {job_ref}: output says {success_marker:?}")),
        JobOutput::Capture { label, pattern } => match extract(&out, pattern) {
            Some(value) => Ok(format!("{verb} {job_ref}: output says {success_marker:?}; {label}: {value}")),
            None => Err(failed(format!("{job_ref} completed but no {label} matches {pattern:?} in its output; {}", shown(&out, false)))),
        },
        JobOutput::SecretKey { secret: secret_ref, key, pattern } => {
            let Some(value) = extract(&out, pattern) else {
                return Err(failed(format!("{job_ref} completed but no value matches {pattern:?} in its output (output not shown: it holds a secret)")));
            };
            write_secret_key(client, secret_ref, key, value).await?;
            // The pod log holds the value: remove it with the Job.
            let params = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
            match jobs.delete(&job_ref.name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(failed(format!("{key} updated in {secret_ref} (value not shown), but deleting {job_ref}, whose log holds it, failed: {e}"))),
            }
            Ok(format!("{verb} {job_ref}: {key} updated in {secret_ref} (value not shown); {job_ref} deleted with its log"))
        }
    }
}

pub(crate) async fn write_secret_key(client: &Client, secret: &ObjectRef, key: &str, value: &str) -> Result<()> {
    let ns = secret.namespace.as_deref().unwrap_or_default();
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), ns, &kube::api::ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()));
    // ByteString serializes as standard base64, the encoding of Secret `data`.
    let encoded = serde_json::to_value(k8s_openapi::ByteString(value.as_bytes().to_vec())).map_err(failed)?;
    let patch = json!({"data": {key: encoded}});
    // The error names the Secret and key only: a kube error never echoes a merge patch body.
    merge_patch(&api, &secret.name, &patch).await.map(|_| ()).map_err(|e| failed(format!("writing {key} into {secret} (value not shown): {e}")))
}

/// The output of the Job's newest pod (a Complete Job: its succeeded pod).
async fn read_output(client: &Client, ns: &str, job: &Job, manifest: &Value) -> std::result::Result<String, String> {
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list =
        pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}"))).await.map_err(|e| format!("listing the pods of Job {ns}/{name}: {e}"))?;
    let complete = terminal(job) == Some(Terminal::Complete);
    let mut candidates: Vec<&Pod> = list.items.iter().filter(|p| !complete || p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded")).collect();
    candidates.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let pod = candidates.last().ok_or_else(|| format!("Job {ns}/{name} has no pod left to read its output from"))?;
    let pod_name = pod.metadata.name.clone().unwrap_or_default();
    let container = main_container(manifest);
    let params = LogParams { container: Some(container.clone()), limit_bytes: Some(LOG_LIMIT_BYTES), ..Default::default() };
    match pods.logs(&pod_name, &params).await {
        Ok(log) => Ok(log),
        Err(log_error) => {
            let message = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == container))
                .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
                .filter(|m| !m.trim().is_empty());
            match message {
                Some(m) => {
                    tracing::debug!(pod = %pod_name, error = %log_error, "pods/log unavailable: read the termination message");
                    Ok(m)
                }
                None => Err(format!("cannot read the output of pod {ns}/{pod_name}: pods/log: {log_error}; no termination message either")),
            }
        }
    }
}

/// `kubectl rollout restart`: stamps the pod template annotation with now.
pub async fn rollout_restart(client: &Client, object: &ObjectRef) -> Result<String> {
    let api = super::runner::api(client, object).await.map_err(failed)?;
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": now}}}}});
    match merge_patch(&api, &object.name, &patch).await {
        Ok(_) => Ok(format!("{object} restarted (restartedAt {now})")),
        Err(crate::cluster::write::WriteError::Api { source: kube::Error::Api(s), .. }) if s.code == 404 => Err(JobError::Refused(format!("{object} does not exist"))),
        Err(e) => Err(failed(e)),
    }
}

/// The Garage admin API after a metadata restore: cluster healthy, and at
/// least `min_buckets` buckets listed (an empty list means the metadata did
/// not come back). Retried until healthy or `timeout`.
pub async fn verify_garage(admin_url: &str, token_file: Option<&str>, min_buckets: usize, timeout: Duration, limits: &RunLimits) -> Result<String> {
    let token = match token_file {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| JobError::Refused(format!("cannot read the Garage admin token file {path}: {e}")))?.trim().to_string()),
        None => None,
    };
    let Some(token) = token else {
        return Err(JobError::Refused("no Garage admin token file configured (garage.adminTokenFile): cannot list buckets".into()));
    };
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().map_err(failed)?;
    let base = admin_url.trim_end_matches('/');
    let started = Instant::now();
    loop {
        let last = match garage_state(&http, base, &token).await {
            Ok((status, buckets)) if status == "healthy" && buckets >= min_buckets.max(1) => {
                return Ok(format!("Garage cluster healthy, {buckets} bucket(s) listed (expected at least {})", min_buckets.max(1)));
            }
            Ok((status, buckets)) => format!("cluster {status}, {buckets} bucket(s) listed, expected at least {}", min_buckets.max(1)),
            Err(e) => e,
        };
        if let Some(why) = limits.stop_requested() {
            return Err(JobError::Refused(format!("{why}: Garage not verified")));
        }
        if started.elapsed() >= timeout {
            return Err(failed(format!("Garage not verified after {}s: {last}", timeout.as_secs())));
        }
        tokio::time::sleep(limits.poll_interval).await;
    }
}

/// `garage repair -a --yes tables` through the admin API: deuxfleurs-org/garage
/// v2.x `src/api/admin/api.rs` (`LocalLaunchRepairOperationRequest { repairType }`,
/// `RepairType::Tables`), `POST /v2/LaunchRepairOperation?node=*`, answered with a
/// `MultiResponse` (`success`/`error` per node). After a metadata restore the
/// tables must be re-synced with the other nodes (doc/book/operations/recovering.md).
pub async fn repair_garage_tables(admin_url: &str, token_file: Option<&str>) -> Result<String> {
    let Some(path) = token_file else {
        return Err(JobError::Refused("no Garage admin token file configured (garage.adminTokenFile): cannot launch the table repair".into()));
    };
    let token = std::fs::read_to_string(path).map_err(|e| JobError::Refused(format!("cannot read the Garage admin token file {path}: {e}")))?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(failed)?;
    let url = format!("{}/v2/LaunchRepairOperation?node=*", admin_url.trim_end_matches('/'));
    let response =
        http.post(&url).bearer_auth(token.trim()).json(&json!({"repairType": "tables"})).send().await.map_err(|e| failed(format!("LaunchRepairOperation unreachable: {e}")))?;
    if !response.status().is_success() {
        return Err(failed(format!("LaunchRepairOperation answered {}", response.status())));
    }
    let body: Value = response.json().await.map_err(|e| failed(format!("LaunchRepairOperation: unexpected body: {e}")))?;
    let nodes = |k: &str| body[k].as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let (ok, errors) = (nodes("success"), body["error"].as_object().cloned().unwrap_or_default());
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(|(n, e)| format!("{n}: {}", e.as_str().unwrap_or_default())).collect();
        return Err(failed(format!("table repair refused on {} node(s): {}", errors.len(), list.join("; "))));
    }
    if ok.is_empty() {
        return Err(failed("table repair launched on no node (empty success list)"));
    }
    Ok(format!("table repair launched on {} node(s) (garage repair -a --yes tables)", ok.len()))
}

async fn garage_state(http: &reqwest::Client, base: &str, token: &str) -> std::result::Result<(String, usize), String> {
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth(token).send();
    let health = get("/v2/GetClusterHealth").await.map_err(|e| format!("GetClusterHealth unreachable: {e}"))?;
    if !health.status().is_success() {
        return Err(format!("GetClusterHealth answered {}", health.status()));
    }
    let health: Value = health.json().await.map_err(|e| format!("GetClusterHealth: unexpected body: {e}"))?;
    let status = health["status"].as_str().unwrap_or("unknown").to_string();
    let buckets = get("/v2/ListBuckets").await.map_err(|e| format!("ListBuckets unreachable: {e}"))?;
    if !buckets.status().is_success() {
        return Err(format!("ListBuckets answered {}", buckets.status()));
    }
    let buckets: Value = buckets.json().await.map_err(|e| format!("ListBuckets: unexpected body: {e}"))?;
    let count = buckets.as_array().map(Vec::len).ok_or("ListBuckets: expected a JSON list")?;
    Ok((status, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_keep_the_last_lines_and_secrets_show_nothing() {
        let out = (1..=20).map(|i| format!("line {i}")).collect::<Vec<_>>().join("\n");
        let e = excerpt(&out);
        assert!(e.starts_with("line 13") && e.ends_with("line 20"), "{e}");
        assert_eq!(shown("new_password: \"x\"", true), "(output not shown: it holds a secret)");
    }
}
