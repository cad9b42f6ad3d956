//! The remote side of the `waymark` binary: [`ApiClient`], a typed client of the
//! Waymark HTTP API, and the `waymark client|engagement|artifact ...` commands
//! built on it.
//!
//! Every command prints one result to stdout: a compact table or field block, or
//! with `--json` the server's JSON response pretty-printed (one document per
//! command, for `jq`). Failures come back as [`CliError`], whose `Display` is the
//! readable form (problem details, field errors, allowed values and a hint).
//!
//! ```no_run
//! # async fn demo() -> Result<(), waymark_client::CliError> {
//! let api = waymark_client::ApiClient::new("http://127.0.0.1:8080", Some("token".into()))?;
//! let artifact = api.get_artifact("art_0192...").await?;
//! println!("{}", artifact["version"]);
//! # Ok(())
//! # }
//! ```

mod api;
mod artifacts;
mod clients;
mod engagements;
mod error;
mod operations;
mod paging;
mod people;
mod playbooks;
pub mod progress;
mod render;
#[cfg(test)]
mod tests;

use std::io::Write;

pub use api::{
    ApiClient, ArtifactFilter, ContentUpdate, NewArtifact, NewClient, NewEngagement, NewToken,
    NewUser, Page, SourceRef,
};
pub use artifacts::{ArtifactCommand, ContentSource};
pub use clients::ClientCommand;
pub use engagements::EngagementCommand;
pub use error::{CliError, FieldError, Problem};
pub use operations::{AgentCommand, JourneyCommand, UnitCommand, WebhookCommand};
pub use paging::Paging;
pub use people::{TokenCommand, UserCommand};
pub use playbooks::{QueueCommand, TaskCommand};

/// Which server to talk to and how to print; shared by every remote command.
#[derive(clap::Args, Debug, Clone)]
pub struct Remote {
    /// Waymark server URL
    #[arg(
        long,
        env = "WAYMARK_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// API token
    #[arg(long, env = "WAYMARK_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print JSON (for scripts) instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

impl Remote {
    /// A client of the server these flags name.
    pub fn api(&self) -> Result<ApiClient, CliError> {
        ApiClient::new(&self.server, self.token.clone())
    }
}

/// Runs `waymark client ...`.
pub async fn run_client(remote: &Remote, cmd: ClientCommand) -> Result<(), CliError> {
    print(&clients::execute(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark journey ...`.
pub async fn run_journey(remote: &Remote, cmd: JourneyCommand) -> Result<(), CliError> {
    print(&operations::execute_journey(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark unit ...`.
pub async fn run_unit(remote: &Remote, cmd: UnitCommand) -> Result<(), CliError> {
    print(&operations::execute_unit(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark agent ...`.
pub async fn run_agent(remote: &Remote, cmd: AgentCommand) -> Result<(), CliError> {
    print(&operations::execute_agent(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark webhook ...`.
pub async fn run_webhook(remote: &Remote, cmd: WebhookCommand) -> Result<(), CliError> {
    print(&operations::execute_webhook(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark queue ...`.
pub async fn run_queue(remote: &Remote, cmd: QueueCommand) -> Result<(), CliError> {
    print(&playbooks::execute_queue(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark task ...`.
pub async fn run_task(remote: &Remote, cmd: TaskCommand) -> Result<(), CliError> {
    print(&playbooks::execute_task(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark engagement ...`.
pub async fn run_engagement(remote: &Remote, cmd: EngagementCommand) -> Result<(), CliError> {
    print(&engagements::execute(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark artifact ...`.
pub async fn run_artifact(remote: &Remote, cmd: ArtifactCommand) -> Result<(), CliError> {
    print(&artifacts::execute(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark user ...`.
pub async fn run_user(remote: &Remote, cmd: UserCommand) -> Result<(), CliError> {
    print(&people::execute_user(&remote.api()?, remote.json, cmd).await?)
}

/// Runs `waymark token ...`.
pub async fn run_token(remote: &Remote, cmd: TokenCommand) -> Result<(), CliError> {
    print(&people::execute_token(&remote.api()?, remote.json, cmd).await?)
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
fn print(output: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(err.into()),
        _ => Ok(()),
    }
}
