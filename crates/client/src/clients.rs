//! `waymark client ...`: the organisations work is delivered to.

use serde_json::{Map, Number, Value};

use crate::api::{ApiClient, NewClient};
use crate::error::CliError;
use crate::paging::Paging;
use crate::render;

#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// Create a client
    Create {
        /// The client's name
        name: String,
        #[command(flatten)]
        fields: ClientFields,
    },
    /// List clients
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show one client
    Get {
        /// Client id (cli_…)
        id: String,
    },
    /// Change a client's fields (only those given)
    Update {
        /// Client id (cli_…)
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        fields: ClientFields,
    },
}

/// A client's fields other than its name, as `create` and `update` take them.
#[derive(clap::Args, Debug, serde::Serialize)]
pub struct ClientFields {
    /// Account owner
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
    /// Annual recurring revenue
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    arr: Option<Number>,
    /// Next renewal date (YYYY-MM-DD)
    #[arg(long, value_parser = parse_date)]
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_date: Option<String>,
    /// Health score
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    health_score: Option<Number>,
    /// Risk score
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    risk_score: Option<Number>,
    /// Opportunity score
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    opportunity_score: Option<Number>,
    /// Free-form attributes as a JSON object, e.g. '{"region": "emea"}'
    /// (replaces them on update)
    #[arg(long, value_parser = parse_object)]
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<Map<String, Value>>,
}

const FIELDS: &[&str] = &[
    "id",
    "name",
    "owner",
    "arr",
    "renewal_date",
    "health_score",
    "risk_score",
    "opportunity_score",
    "attributes",
    "created_at",
    "updated_at",
];
const COLUMNS: &[&str] = &[
    "id",
    "name",
    "owner",
    "arr",
    "renewal_date",
    "health_score",
    "updated_at",
];

pub(crate) async fn execute(
    api: &ApiClient,
    json: bool,
    cmd: ClientCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        ClientCommand::Create { name, fields } => {
            let new = NewClient {
                name,
                arr: fields.arr,
                renewal_date: fields.renewal_date,
                health_score: fields.health_score,
                risk_score: fields.risk_score,
                opportunity_score: fields.opportunity_score,
                owner: fields.owner,
                attributes: fields.attributes,
            };
            (api.create_client(&new).await?, |v| {
                render::fields(v, FIELDS)
            })
        }
        ClientCommand::List { paging } => (
            paging
                .fetch(async |page| api.list_clients(page).await)
                .await?,
            |v| render::list(v, COLUMNS),
        ),
        ClientCommand::Get { id } => (api.get_client(&id).await?, |v| render::fields(v, FIELDS)),
        ClientCommand::Update { id, name, fields } => {
            let mut changes = match serde_json::to_value(&fields) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            if let Some(name) = name {
                changes.insert("name".into(), Value::String(name));
            }
            if changes.is_empty() {
                return Err(CliError::input(
                    "name what to change, e.g. --owner usr_… or --health-score 62",
                ));
            }
            (
                api.send_json(
                    reqwest::Method::PATCH,
                    &["clients", &id],
                    &Value::Object(changes),
                )
                .await?,
                |v| render::fields(v, FIELDS),
            )
        }
    };
    Ok(render::output(json, &body, human))
}

/// A `YYYY-MM-DD` date, checked locally.
fn parse_date(s: &str) -> Result<String, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, format)
        .map(|_| s.to_owned())
        .map_err(|_| "expected a date as YYYY-MM-DD, e.g. 2026-09-30".to_owned())
}

/// A JSON object given on the command line.
pub(crate) fn parse_object(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object ({...})".to_owned()),
        Err(err) => Err(format!("not valid JSON: {err}")),
    }
}
