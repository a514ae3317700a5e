use std::process::ExitCode;

use lifeboat::cli::{init_logging, parse_args, run, Command};

fn main() -> ExitCode {
    lifeboat::runtime::malloc::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("starting the async runtime");
    runtime.block_on(async {
        let cli = parse_args();
        if !matches!(cli.command, Command::Serve { .. }) {
            restore_default_sigpipe();
        }
        init_logging();
        run(cli).await
    })
}

/// A command whose reader goes away (`lifeboat metrics | head -1`) ends
/// quietly, as other command-line tools do, instead of panicking in
/// `println!`. Rust ignores SIGPIPE by default; the server keeps that (its
/// sockets report EPIPE as an error), the one-shot commands restore it.
fn restore_default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default is async-signal-safe
    // and happens before any other thread writes to stdout.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
