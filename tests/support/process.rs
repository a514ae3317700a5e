//! Child processes of a test (lifeboat serve, Prometheus, Alertmanager) that
//! die with it: killed on drop (a panicking test unwinds through the drop)
//! and, should the test binary itself die, by PR_SET_PDEATHSIG when the
//! thread that spawned them ends. Spawn from the test's own thread (the
//! `#[tokio::test]` body), not from a task or a blocking-pool thread, which
//! can end before the test does.
#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

pub struct Process {
    pub name: String,
    pub log: PathBuf,
    child: Mutex<std::process::Child>,
}

impl Process {
    /// Starts `command`, stdout and stderr to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Process {
        let file = std::fs::File::create(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        command.stdin(Stdio::null()).stdout(file.try_clone().expect("log file")).stderr(file);
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {name} ({:?}): {e}", command.get_program()));
        Process { name: name.into(), log: log.into(), child: Mutex::new(child) }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// None while running, else how it ended.
    pub fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).try_wait().ok().flatten()
    }

    /// The last lines of its log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        format!("----- last lines of {} ({})\n{}", self.name, self.log.display(), all[all.len().saturating_sub(lines)..].join("\n"))
    }

    /// Polls `url` until it answers 2xx; panics with the log if the process
    /// exits or `timeout` passes.
    pub async fn wait_http_ok(&self, url: &str, timeout: Duration) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(r) = http.get(url).timeout(Duration::from_secs(2)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(status) = self.exited() {
                panic!("{} exited ({status}) before {url} answered\n{}", self.name, self.log_tail(30));
            }
            assert!(tokio::time::Instant::now() < deadline, "{url} did not answer within {timeout:?}\n{}", self.log_tail(30));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A free loopback port (bound and released; the OS does not hand it out again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `n` distinct free loopback ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    // Hold them all bound until every one is chosen, so none repeats.
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    listeners.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// A binary from `env` (a path), else the first of `candidates` (paths or
/// names on PATH) that exists; panics naming the package to install.
pub fn find_binary(env: &str, candidates: &[&str], package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "{env}={} is not a file", path.display());
        return path;
    }
    for candidate in candidates {
        let path = Path::new(candidate);
        if path.is_absolute() {
            if path.is_file() {
                return path.into();
            }
            continue;
        }
        for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
            if dir.join(candidate).is_file() {
                return dir.join(candidate);
            }
        }
    }
    panic!(
        "none of {candidates:?} found (nor {env} set): this test needs the Debian package `{package}` \
         (scripts/install-test-deps.sh installs it; scripts/test.sh runs that)"
    );
}

impl Process {
    /// SIGTERM, what Kubernetes sends to stop a pod.
    pub fn terminate(&self) {
        let pid = self.child.lock().unwrap_or_else(|e| e.into_inner()).id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM to {}", self.name);
    }
}
