//! Not a test: `control_plane_server with-shared-plane <command> [args…]` starts one
//! control plane, runs the command with LIFEBOAT_TEST_CONTROL_PLANE naming it
//! (the test binaries' `control_plane()` then uses it instead of starting
//! their own), stops the plane when the command ends and exits with the
//! command's status. scripts/test.sh wraps `cargo test` in it; `cargo test`
//! itself runs this binary without arguments (or with a test filter), which
//! does nothing.
//!
//! The plane never outlives this process (its processes die with it,
//! PR_SET_PDEATHSIG). SIGINT, SIGTERM and SIGHUP are passed on to the
//! command's process group (cargo and the test binary it runs), and this
//! process gets SIGTERM when its parent dies, so an interrupted or killed
//! scripts/test.sh leaves nothing running.

mod support {
    pub mod controlplane;
    pub mod crds;
}

use std::process::{Command, ExitCode};
use std::sync::atomic::Ordering;

use support::controlplane::COMMAND_GROUP;

/// Passes a signal on to the command's process group; before the command
/// runs (or after it ended) it ends this process, and the plane with it.
extern "C" fn pass_on(signal: libc::c_int) {
    let group = COMMAND_GROUP.load(Ordering::SeqCst);
    // SAFETY: kill and _exit are async-signal-safe.
    unsafe {
        if group > 0 {
            libc::kill(-group, signal);
        } else {
            libc::_exit(128 + signal);
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(("with-shared-plane", command)) = args.split_first().map(|(first, rest)| (first.as_str(), rest)) else {
        return ExitCode::SUCCESS;
    };
    let Some((program, program_args)) = command.split_first() else {
        eprintln!("usage: control_plane_server with-shared-plane <command> [args…]");
        return ExitCode::from(2);
    };
    let parent = std::os::unix::process::parent_id();
    // SAFETY: pass_on is async-signal-safe; prctl only sets this process's parent-death signal.
    unsafe {
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::signal(signal, pass_on as *const () as libc::sighandler_t);
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
    }
    if std::os::unix::process::parent_id() != parent {
        return ExitCode::FAILURE; // the parent died before the signal was armed
    }
    match support::controlplane::run_beside_shared(Command::new(program).args(program_args)) {
        Ok(status) => ExitCode::from(status.code().map_or(1, |code| code as u8)),
        Err(error) => {
            eprintln!("starting the shared control plane: {error}");
            ExitCode::FAILURE
        }
    }
}
