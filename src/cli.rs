//! Command-line entry points: serve, triage, check-config, metrics.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;
use crate::plan::playbooks::{self, Trigger};
use crate::runtime::hub::current_snapshot;
use crate::runtime::Source;
// Kept at their old paths for code written before the runtime module.

#[derive(Parser, Debug)]
#[command(name = "lifeboat", version, about = "Recovery-point metrics and node-loss triage for Kubernetes on node-local storage")]
pub struct Cli {
    /// Path to the kubeconfig file (default: in-cluster, then $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current-context).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    fn connect_options(&self) -> crate::cluster::connect::ConnectOptions {
        crate::cluster::connect::ConnectOptions { kubeconfig: self.kubeconfig.clone(), context: self.context.clone() }
    }
}

/// The name the binary answers to: `kubectl lifeboat` when installed as the
/// kubectl plugin `kubectl-lifeboat`, else `lifeboat`.
pub fn display_name(argv0: &std::ffi::OsStr) -> &'static str {
    let file = std::path::Path::new(argv0).file_name().and_then(|f| f.to_str()).unwrap_or("");
    if file == "kubectl-lifeboat" {
        "kubectl lifeboat"
    } else {
        "lifeboat"
    }
}

/// Parses the command line under the name the binary was invoked as.
pub fn parse_args() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let matches = Cli::command().bin_name(display_name(&argv0)).get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[derive(clap::Args, Debug, Clone)]
pub struct SourceArgs {
    /// YAML config file (every field has a default).
    #[arg(long, env = "LIFEBOAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read the cluster from `kubectl get -A -o json|yaml` output (a file or a directory) instead of the API.
    #[arg(long)]
    pub from_dump: Option<PathBuf>,
    /// Evaluate ages at this instant (RFC3339) instead of the dump's capture time or now.
    #[arg(long)]
    pub now: Option<DateTime<Utc>>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve /metrics, /healthz and /readyz from a live cluster or a dump.
    Serve {
        #[command(flatten)]
        source: SourceArgs,
        /// Listen address (overrides `listen` in the config).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Node-loss triage: lost nodes, pinned PVs, affected workloads by recovery category.
    /// Exit code 0: nothing wrong; 1: something needs attention; 2: lifeboat could not run.
    Triage {
        #[command(flatten)]
        source: SourceArgs,
        /// Only this node's volumes and workloads.
        #[arg(long)]
        node: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Render the plan a playbook would run, from live state or a dump (a dry run).
    Plan {
        #[command(flatten)]
        target: PlanArgs,
        #[command(flatten)]
        source: SourceArgs,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Plan from live state, confirm, and execute against the cluster.
    Run {
        #[command(flatten)]
        target: PlanArgs,
        #[arg(long, env = "LIFEBOAT_CONFIG")]
        config: Option<PathBuf>,
        /// Execute without asking (the plan is still printed first).
        #[arg(long)]
        yes: bool,
    },
    /// Record a run in the journal (it then awaits approval, or runs, per the playbook's mode).
    Submit {
        #[command(flatten)]
        target: PlanArgs,
        #[command(flatten)]
        journal: JournalArgs,
        /// Plan from a dump instead of the live cluster (with --journal-dir).
        #[arg(long)]
        from_dump: Option<PathBuf>,
    },
    /// List runs, or show one (`lifeboat runs show ID`).
    Runs {
        /// `show ID` (or just `ID`) for one run.
        args: Vec<String>,
        #[command(flatten)]
        journal: JournalArgs,
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Approve a run: name the plan hash you reviewed.
    Approve {
        id: String,
        #[arg(long)]
        hash: String,
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
        #[command(flatten)]
        journal: JournalArgs,
    },
    /// Abort a run: it never starts, or stops at the next step boundary.
    Abort {
        id: String,
        #[arg(long, env = "USER", default_value = "cli")]
        by: String,
        #[command(flatten)]
        journal: JournalArgs,
    },
    /// Engage or release the cluster-wide kill switch (no remediation step starts while on).
    KillSwitch {
        #[arg(value_enum)]
        state: SwitchState,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long, env = "LIFEBOAT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config file and print the effective configuration.
    CheckConfig {
        #[arg(long, env = "LIFEBOAT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the metric catalog (name, type, labels, meaning).
    Metrics {
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the playbooks, with the arguments each needs.
    Playbooks {
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Capture from the live cluster exactly what `--from-dump` reads (kinds whose CRD is absent are skipped and recorded).
    Dump {
        /// Directory to write into (created if missing).
        #[arg(short = 'd', long, value_name = "DIR")]
        output_dir: PathBuf,
    },
    /// Print a shell completion script: `source <(lifeboat completion bash)`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct JournalArgs {
    #[arg(long, env = "LIFEBOAT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Use a local directory journal instead of RemediationRun objects in the cluster.
    #[arg(long)]
    pub journal_dir: Option<PathBuf>,
}

impl JournalArgs {
    async fn open(&self) -> anyhow::Result<(Config, crate::journal::Journal)> {
        let config = Config::load_or_default(self.config.as_deref())?;
        let journal = match &self.journal_dir {
            Some(dir) => crate::journal::Journal::file(dir.clone()),
            None => {
                let client = crate::cluster::connect::client("for the journal (or use --journal-dir)").await?;
                crate::journal::Journal::cluster(client, config.remediation.namespace())
            }
        };
        Ok((config, journal))
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct PlanArgs {
    /// A playbook name (an unknown one lists them all), e.g. node-loss, cnpg-instance-lost
    pub playbook: String,
    /// Namespace of the object the playbook is about (`lifeboat playbooks` says which need it).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The object the playbook is about (e.g. the CNPG Cluster; for s3-restore the PVC or its workload; for garage-meta-restore an optional snapshot timestamp).
    #[arg(long)]
    pub name: Option<String>,
    /// The lost node (node-loss).
    #[arg(long)]
    pub node: Option<String>,
}

impl SourceArgs {
    fn source(&self) -> Source {
        Source { from_dump: self.from_dump.clone(), now: self.now }
    }
}

impl PlanArgs {
    fn trigger(&self) -> Trigger {
        Trigger { namespace: self.namespace.clone(), name: self.name.clone(), node: self.node.clone() }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwitchState {
    On,
    Off,
    Status,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Text,
    Json,
    Yaml,
}

/// Prints `value` as JSON or YAML; false for `Output::Text` (the caller renders text).
fn print_structured<T: serde::Serialize>(output: Output, value: &T) -> anyhow::Result<bool> {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(value)?),
        Output::Text => return Ok(false),
    }
    Ok(true)
}

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

pub async fn run(cli: Cli) -> ExitCode {
    crate::cluster::connect::set_options(cli.connect_options());
    let result = match cli.command {
        Command::Serve { source, listen } => serve_command(source, listen).await.map(|_| ExitCode::SUCCESS),
        Command::Triage { source, node, output } => triage_command(source, node, output).await,
        Command::Plan { target, source, output } => plan_command(target, source, output).await,
        Command::Run { target, config, yes } => run_command(target, config, yes).await,
        Command::Submit { target, journal, from_dump } => submit_command(target, journal, from_dump).await,
        Command::Runs { args, journal, output } => {
            let id = match args.as_slice() {
                [] => None,
                [show, id] if show == "show" => Some(id.clone()),
                [id] => Some(id.clone()),
                _ => return usage_error("usage: lifeboat runs [show ID]"),
            };
            runs_command(id, journal, output).await
        }
        Command::Approve { id, hash, by, journal } => approve_command(id, hash, by, journal).await,
        Command::Abort { id, by, journal } => abort_command(id, by, journal).await,
        Command::KillSwitch { state, reason, config } => kill_switch_command(state, reason, config).await,
        Command::CheckConfig { config } => check_config(config),
        Command::Metrics { output } => print_catalog(output).map(|_| ExitCode::SUCCESS),
        Command::Playbooks { output } => print_playbooks(output).map(|_| ExitCode::SUCCESS),
        Command::Dump { output_dir } => dump_command(output_dir).await,
        Command::Completion { shell } => {
            use clap::CommandFactory;
            let argv0 = std::env::args_os().next().unwrap_or_default();
            let name = display_name(&argv0).replace(' ', "-");
            clap_complete::generate(shell, &mut Cli::command(), name, &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    result.unwrap_or_else(|error| {
        eprintln!("lifeboat: error: {error:#}");
        ExitCode::from(2)
    })
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("lifeboat: {message}");
    ExitCode::from(2)
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_default(path.as_deref())?;
    print!("{}", serde_yaml::to_string(&config)?);
    Ok(ExitCode::SUCCESS)
}

fn print_catalog(output: Output) -> anyhow::Result<()> {
    use crate::metrics::catalog::ALL;
    if print_structured(output, &ALL)? {
        return Ok(());
    }
    println!("| name | type | labels | meaning |\n|---|---|---|---|");
    for m in ALL {
        println!("| `{}` | {:?} | {} | {} |", m.name, m.kind, m.labels.join(", "), m.help);
    }
    Ok(())
}

fn print_playbooks(output: Output) -> anyhow::Result<()> {
    let catalogue = crate::plan::playbooks::catalogue();
    if print_structured(output, &catalogue)? {
        return Ok(());
    }
    println!("{:<24} {:<44} WHAT IT DOES", "PLAYBOOK", "ARGUMENTS");
    for p in &catalogue {
        println!("{:<24} {:<44} {}", p.name, p.arguments, p.summary);
    }
    Ok(())
}

async fn dump_command(dir: PathBuf) -> anyhow::Result<ExitCode> {
    let client = crate::cluster::connect::client("to capture a dump").await?;
    let summary = crate::cluster::capture::capture(&client, &dir).await?;
    for (kind, count, file) in &summary.kinds {
        eprintln!("{kind:<28} {count:>6} objects  {}", file.display());
    }
    for kind in &summary.absent {
        eprintln!("{kind:<28}   (API not served: CRD absent; recorded in {})", crate::cluster::dump::CAPTURE_FILE);
    }
    println!("{}", dir.display());
    Ok(ExitCode::SUCCESS)
}

async fn serve_command(source: SourceArgs, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let config = Config::load_or_default(source.config.as_deref())?;
    crate::runtime::Runtime::build(config, source.source(), listen).await?.run().await
}

async fn triage_command(source: SourceArgs, node: Option<String>, output: Output) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_default(source.config.as_deref())?;
    let snapshot = current_snapshot(config, &source.source()).await?;
    let report = crate::triage::triage(&snapshot.state, &snapshot.findings, node.as_deref());
    if !print_structured(output, &report)? {
        print!("{}", crate::triage::render_text(&report));
    }
    Ok(if report.anything_wrong() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

async fn plan_command(target: PlanArgs, source: SourceArgs, output: Output) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_default(source.config.as_deref())?;
    let snapshot = current_snapshot(config, &source.source()).await?;
    let plan = playbooks::plan(&target.playbook, &snapshot.state, &snapshot.findings, &target.trigger())?;
    if !print_structured(output, &serde_json::json!({"hash": plan.hash(), "plan": plan}))? {
        print!("{}", plan.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_command(target: PlanArgs, config: Option<PathBuf>, yes: bool) -> anyhow::Result<ExitCode> {
    let config = Config::load_or_default(config.as_deref())?;
    let snapshot_config = config.clone();
    let source = Source::default();
    let client = crate::cluster::connect::client("").await?;
    let namespace = snapshot_config.remediation.namespace();
    crate::remediator::direct_run::refuse_if_kill_switch(&client, &snapshot_config.remediation).await?;
    let snapshot = current_snapshot(config, &source).await?;
    let plan = playbooks::plan(&target.playbook, &snapshot.state, &snapshot.findings, &target.trigger())?;
    print!("{}", plan.render_text());
    if plan.nothing_to_do() {
        return Ok(ExitCode::SUCCESS);
    }
    let journal = crate::journal::Journal::cluster(client.clone(), namespace.clone());
    crate::remediator::direct_run::refuse_if_collides(&journal, &plan).await?;
    if !yes {
        if !std::io::stdin().is_terminal() {
            bail!("not a terminal: pass --yes to execute without confirmation");
        }
        eprint!("\nType the plan hash {} to execute it: ", plan.hash());
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != plan.hash() {
            eprintln!("not confirmed; nothing was done");
            return Ok(ExitCode::from(1));
        }
    }
    // Again after the confirmation, which may have taken a while.
    crate::remediator::direct_run::refuse_if_kill_switch(&client, &snapshot_config.remediation).await?;
    crate::remediator::direct_run::refuse_if_collides(&journal, &plan).await?;
    let limits = crate::act::runner::RunLimits::from_config(&snapshot_config.remediation);
    let report = crate::act::runner::execute(&client, &plan, &plan.hash(), &limits).await;
    println!("{}", serde_json::to_string_pretty(&report)?);
    let ok = matches!(report.outcome, crate::act::runner::Outcome::Succeeded | crate::act::runner::Outcome::NothingToDo);
    if !ok {
        eprintln!("left to do by hand:");
        for command in report.remaining_commands() {
            eprintln!("  $ {command}");
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn approve_command(id: String, hash: String, by: String, args: JournalArgs) -> anyhow::Result<ExitCode> {
    let (config, journal) = args.open().await?;
    let run = crate::remediator::approve(&journal, &id, &hash, &by, config.remediation.approval_ttl).await?;
    println!("{} approved by {by} (plan {hash})", run.id);
    Ok(ExitCode::SUCCESS)
}

async fn abort_command(id: String, by: String, args: JournalArgs) -> anyhow::Result<ExitCode> {
    let (_, journal) = args.open().await?;
    let run = crate::remediator::abort(&journal, &id, &by).await?;
    println!("{}: {:?}", run.id, run.status.phase);
    Ok(ExitCode::SUCCESS)
}

async fn submit_command(target: PlanArgs, args: JournalArgs, from_dump: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (config, journal) = args.open().await?;
    let source = Source { from_dump, now: None };
    let remediation = config.remediation.clone();
    let snapshot = current_snapshot(config, &source).await?;
    let trigger = crate::journal::RunTrigger::from(&target.trigger());
    let requested_by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    let run = crate::remediator::submit(&journal, &remediation, &snapshot.state, &snapshot.findings, &target.playbook, trigger, &requested_by).await?;
    print!("{}", run.spec.plan.render_text());
    println!("\nrun {} recorded in {}: {:?}", run.id, journal.location(), run.status.phase);
    if run.status.phase == crate::journal::Phase::AwaitingApproval {
        println!("approve with: lifeboat approve {} --hash {}", run.id, run.spec.plan_hash);
    }
    Ok(ExitCode::SUCCESS)
}

async fn runs_command(id: Option<String>, args: JournalArgs, output: Output) -> anyhow::Result<ExitCode> {
    let (_, journal) = args.open().await?;
    let Some(id) = id else {
        let runs = journal.list().await?;
        if !print_structured(output, &runs)? {
            println!("{:<48} {:<20} {:<18} {:<6} TARGET", "ID", "PLAYBOOK", "PHASE", "STEPS");
            for r in &runs {
                let phase = format!("{:?}", r.status.phase);
                println!("{:<48} {:<20} {:<18} {:<6} {}", r.id, r.spec.playbook, phase, r.status.progress(), r.spec.target);
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let run = journal.get(&id).await?.ok_or_else(|| anyhow::anyhow!("no run {id} in {}", journal.location()))?;
    if print_structured(output, &run)? {
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", run.spec.plan.render_text());
    println!("\nphase: {:?}{}", run.status.phase, run.status.message.as_deref().map_or(String::new(), |m| format!(" ({m})")));
    if let Some(by) = &run.status.approved_by {
        println!("approved by {by} for plan {}", run.status.approved_hash.as_deref().unwrap_or("?"));
    }
    for step in &run.status.steps {
        println!("  {:<10} {:<28} {}", format!("{:?}", step.state), step.id, step.detail.as_deref().unwrap_or(""));
    }
    Ok(ExitCode::SUCCESS)
}

async fn kill_switch_command(state: SwitchState, reason: String, config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use crate::act::kill_switch;
    let config = Config::load_or_default(config.as_deref())?;
    let namespace = config.remediation.namespace();
    let client = crate::cluster::connect::client("").await?;
    let by = std::env::var("USER").unwrap_or_else(|_| "cli".into());
    match state {
        SwitchState::On => kill_switch::engage(&client, &namespace, &by, &reason).await?,
        SwitchState::Off => kill_switch::release(&client, &namespace).await?,
        SwitchState::Status => {}
    }
    let on = config.remediation.kill_switch || kill_switch::engaged(&client, &namespace).await;
    println!(
        "kill switch {} (ConfigMap {namespace}/{}{})",
        if on { "ON" } else { "off" },
        kill_switch::NAME,
        if config.remediation.kill_switch { ", and remediation.killSwitch in the config" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}
