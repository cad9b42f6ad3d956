//! `waymark`: the server, its worker and maintenance commands, and a client of
//! its API, in one binary.

mod audit;
mod backup;
mod bench;
mod bench_cascade;
mod bench_engine;
mod bench_export;
mod bench_files;
mod bench_queue;
mod bench_search;
mod bench_soak;
mod bench_ui;
mod config;
mod packs;
mod selftest;
mod serve;
mod telemetry;
mod transfer;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use waymark_client::{
    AgentCommand, ArtifactCommand, ClientCommand, EngagementCommand, JourneyCommand, QueueCommand,
    Remote, TaskCommand, TokenCommand, UnitCommand, UserCommand, WebhookCommand,
};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WAYMARK_GIT_SHA"),
    ", built ",
    env!("WAYMARK_BUILD_TIME"),
    ")"
);

/// Waymark: versioned client artifacts, gated pipelines and journeys, and the
/// durable work inside them.
#[derive(Parser)]
#[command(name = "waymark", version = VERSION)]
struct Cli {
    /// Settings file (TOML) [env: WAYMARK_CONFIG] [default: ./waymark.toml if present]
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server: HTTP API, docs and metrics (SQLite under ./waymark-data by default)
    Serve(config::Overrides),
    /// Apply database migrations and exit
    Migrate(config::Overrides),
    /// Run workers only, against the shared database (PostgreSQL for several processes)
    Worker(config::Overrides),
    /// Clients (talks to a running server)
    Client {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Engagements (talks to a running server)
    Engagement {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: EngagementCommand,
    },
    /// Artifacts: create, version, diff, roll back, transition (talks to a running server)
    Artifact {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: ArtifactCommand,
    },
    /// Users: people who sign in (talks to a running server)
    User {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The customer-success queue: an owner's playbooks by score, rules runs, start, snooze, escalate, schedule (talks to a running server)
    Queue {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Journeys: create, send events, record metrics and sign-offs, validate, history (talks to a running server)
    Journey {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: JourneyCommand,
    },
    /// Units of work for the engine: submit (and wait), list, show, cancel (talks to a running server)
    Unit {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: UnitCommand,
    },
    /// External agents: list, show, register (talks to a running server)
    Agent {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: AgentCommand,
    },
    /// Webhook subscriptions: create, list, show, delete, deliveries (talks to a running server)
    Webhook {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// To-dos (list, add, complete, skip, delete) and the engine's tasks (runs, show, cancel, incidents, resolve) (talks to a running server)
    Task {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// API tokens: make (the secret is shown once), list, revoke (talks to a running server)
    Token {
        #[command(flatten)]
        remote: Remote,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Packs: list the built-in and installed ones, check a pack folder, install one
    Pack {
        #[command(subcommand)]
        command: packs::PackCommand,
    },
    /// A SQLite installation's data folder (the database, the stored files,
    /// the admin token) as one ZIP, taken while the server runs
    Backup(backup::BackupArgs),
    /// Put a backup into an empty data folder, checked entry by entry and
    /// audit chain verified
    Restore(backup::RestoreArgs),
    /// Every record as JSON lines in a folder, with the stored files and a
    /// manifest of counts and hashes (to move to another backend)
    Export(transfer::ExportArgs),
    /// Load an export into an empty database of either backend, checked
    /// file by file and audit chain verified
    Import(transfer::ImportArgs),
    /// The audit log: verify its hash chain end to end
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The pipeline wiring check (intake, gating, approval, stale cascade), PASS/FAIL per step
    Selftest(selftest::SelftestArgs),
    /// Benchmarks
    Bench {
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // HTTPS for the client commands and PostgreSQL TLS use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(flags) => serve::serve(cli.config.as_deref(), &flags).await,
        Command::Migrate(flags) => serve::migrate(cli.config.as_deref(), &flags).await,
        Command::Worker(flags) => serve::worker(cli.config.as_deref(), &flags).await,
        Command::Bench { command } => bench::run(command).await,
        Command::Pack { command } => packs::run(cli.config.as_deref(), command).await,
        Command::Backup(args) => backup::backup(cli.config.as_deref(), args).await,
        Command::Restore(args) => backup::restore(cli.config.as_deref(), args).await,
        Command::Export(args) => transfer::export(cli.config.as_deref(), args).await,
        Command::Import(args) => transfer::import(cli.config.as_deref(), args).await,
        Command::Audit { command } => match audit::run(cli.config.as_deref(), command).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Selftest(args) => match selftest::run(args).await {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Client { remote, command } => {
            return remote_result(waymark_client::run_client(&remote, command).await);
        }
        Command::Engagement { remote, command } => {
            return remote_result(waymark_client::run_engagement(&remote, command).await);
        }
        Command::Artifact { remote, command } => {
            return remote_result(waymark_client::run_artifact(&remote, command).await);
        }
        Command::User { remote, command } => {
            return remote_result(waymark_client::run_user(&remote, command).await);
        }
        Command::Token { remote, command } => {
            return remote_result(waymark_client::run_token(&remote, command).await);
        }
        Command::Queue { remote, command } => {
            return remote_result(waymark_client::run_queue(&remote, command).await);
        }
        Command::Task { remote, command } => {
            return remote_result(waymark_client::run_task(&remote, command).await);
        }
        Command::Journey { remote, command } => {
            return remote_result(waymark_client::run_journey(&remote, command).await);
        }
        Command::Unit { remote, command } => {
            return remote_result(waymark_client::run_unit(&remote, command).await);
        }
        Command::Agent { remote, command } => {
            return remote_result(waymark_client::run_agent(&remote, command).await);
        }
        Command::Webhook { remote, command } => {
            return remote_result(waymark_client::run_webhook(&remote, command).await);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn remote_result(result: Result<(), waymark_client::CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
