//! `waymark engagement ...`: a body of work for one client, run with one pack.

use serde_json::Value;

use crate::api::{ApiClient, NewEngagement};
use crate::error::CliError;
use crate::paging::Paging;
use crate::render;

#[derive(clap::Subcommand, Debug)]
pub enum EngagementCommand {
    /// Create an engagement
    Create {
        /// Client id (cli_…)
        #[arg(long = "client")]
        client_id: String,
        /// Engagement name
        #[arg(long)]
        name: String,
        /// The pack that defines its artifact types, e.g. `marketing`
        #[arg(long)]
        pack: String,
    },
    /// List engagements
    List {
        /// Only this client's engagements
        #[arg(long = "client")]
        client_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one engagement
    Get {
        /// Engagement id (eng_…)
        id: String,
    },
}

const FIELDS: &[&str] = &["id", "client_id", "name", "pack", "created_at"];

pub(crate) async fn execute(
    api: &ApiClient,
    json: bool,
    cmd: EngagementCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        EngagementCommand::Create {
            client_id,
            name,
            pack,
        } => {
            let new = NewEngagement {
                client_id,
                name,
                pack,
            };
            (api.create_engagement(&new).await?, |v| {
                render::fields(v, FIELDS)
            })
        }
        EngagementCommand::List { client_id, paging } => {
            let client_id = client_id.as_deref();
            (
                paging
                    .fetch(async |page| api.list_engagements(client_id, page).await)
                    .await?,
                |v| render::list(v, FIELDS),
            )
        }
        EngagementCommand::Get { id } => (api.get_engagement(&id).await?, |v| {
            render::fields(v, FIELDS)
        }),
    };
    Ok(if json {
        render::json(&body)
    } else {
        human(&body)
    })
}
