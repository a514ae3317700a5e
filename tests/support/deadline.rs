//! Per-test deadlines: a wedged end-to-end test (a player that stopped, a
//! wait the runner never sees end) fails with its name instead of hanging
//! the suite. [`Deadline`] is a guard: when it is still alive at the limit,
//! it names the test and ends the test binary (the runtime may be the thing
//! that is stuck, so nothing less reliable will do). [`within`] is the
//! async form for a single await.
//!
//! A helper task of the test (a player) that fails raises an [`Alarm`]: the
//! test then has [`GRACE`] to end by itself (and report the failure through
//! its own assertions) before the deadline fires with that failure named.
#![allow(dead_code)]

use std::future::Future;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test whose helper failed may still run.
pub const GRACE: Duration = Duration::from_secs(30);

/// The limit for one end-to-end test, `LIFEBOAT_TEST_DEADLINE_SECS` or 600 s:
/// far beyond what a passing test takes on a loaded machine, so it only ever
/// fires on a hang.
pub fn default_limit() -> Duration {
    let secs = std::env::var("LIFEBOAT_TEST_DEADLINE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    Duration::from_secs(secs)
}

enum Event {
    Done,
    Failed(String),
}

pub struct Deadline {
    events: mpsc::Sender<Event>,
}

impl Drop for Deadline {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Done);
    }
}

/// Raised by a helper task that failed while its test still runs.
#[derive(Clone)]
pub struct Alarm(mpsc::Sender<Event>);

impl Alarm {
    pub fn raise(&self, what: &str) {
        let _ = self.0.send(Event::Failed(what.to_string()));
    }
}

impl Deadline {
    /// A deadline for the calling test (libtest names each test's thread
    /// after the test).
    pub fn for_this_test() -> Deadline {
        let name = std::thread::current().name().unwrap_or("a test").to_string();
        Deadline::new(&name, default_limit())
    }

    pub fn new(name: &str, limit: Duration) -> Deadline {
        Deadline::with_action(name, limit, GRACE, || std::process::exit(101))
    }

    /// As [`Deadline::new`], with the grace after an alarm and what to do
    /// once the message is printed (the self-tests pass something gentler
    /// than exiting).
    pub fn with_action(name: &str, limit: Duration, grace: Duration, expire: impl FnOnce() + Send + 'static) -> Deadline {
        let (events, watched) = mpsc::channel();
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("deadline {name}"))
            .spawn(move || {
                let mut until = Instant::now() + limit;
                let mut failure = None;
                loop {
                    match watched.recv_timeout(until.saturating_duration_since(Instant::now())) {
                        Ok(Event::Done) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Ok(Event::Failed(what)) => {
                            until = until.min(Instant::now() + grace);
                            failure.get_or_insert(what);
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                    }
                }
                match failure {
                    Some(what) => eprintln!("\nDEADLINE: test `{name}` still running {grace:?} after a helper failed: {what}; ending the test binary"),
                    None => {
                        eprintln!("\nDEADLINE: test `{name}` still running after {limit:?}: it is wedged; ending the test binary (LIFEBOAT_TEST_DEADLINE_SECS changes the limit)")
                    }
                }
                expire();
            })
            .expect("spawn the deadline watchdog");
        Deadline { events }
    }

    /// For a helper task to report its failure.
    pub fn alarm(&self) -> Alarm {
        Alarm(self.events.clone())
    }
}

/// `body`, or a panic naming `what` if it does not finish within `limit`.
pub async fn within<F: Future>(what: &str, limit: Duration, body: F) -> F::Output {
    match tokio::time::timeout(limit, body).await {
        Ok(output) => output,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}
