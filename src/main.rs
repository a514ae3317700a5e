use std::process::ExitCode;

use clap::Parser;
use lifeboat::cli::{init_logging, run, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    run(cli).await
}
