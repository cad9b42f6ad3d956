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
        /// Account owner
        #[arg(long)]
        owner: Option<String>,
        /// Annual recurring revenue
        #[arg(long)]
        arr: Option<Number>,
        /// Next renewal date (YYYY-MM-DD)
        #[arg(long, value_parser = parse_date)]
        renewal_date: Option<String>,
        /// Health score
        #[arg(long)]
        health_score: Option<Number>,
        /// Risk score
        #[arg(long)]
        risk_score: Option<Number>,
        /// Opportunity score
        #[arg(long)]
        opportunity_score: Option<Number>,
        /// Free-form attributes as a JSON object, e.g. '{"region": "emea"}'
        #[arg(long, value_parser = parse_object)]
        attributes: Option<Map<String, Value>>,
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
        #[arg(long)]
        owner: Option<String>,
        #[arg(long)]
        arr: Option<Number>,
        /// YYYY-MM-DD
        #[arg(long, value_parser = parse_date)]
        renewal_date: Option<String>,
        #[arg(long)]
        health_score: Option<Number>,
        #[arg(long)]
        risk_score: Option<Number>,
        #[arg(long)]
        opportunity_score: Option<Number>,
        /// Free-form attributes as a JSON object (replaces them)
        #[arg(long, value_parser = parse_object)]
        attributes: Option<Map<String, Value>>,
    },
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
        ClientCommand::Create {
            name,
            owner,
            arr,
            renewal_date,
            health_score,
            risk_score,
            opportunity_score,
            attributes,
        } => {
            let new = NewClient {
                name,
                arr,
                renewal_date,
                health_score,
                risk_score,
                opportunity_score,
                owner,
                attributes,
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
        ClientCommand::Update {
            id,
            name,
            owner,
            arr,
            renewal_date,
            health_score,
            risk_score,
            opportunity_score,
            attributes,
        } => {
            let mut changes = Map::new();
            let mut set = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    changes.insert(k.to_owned(), v);
                }
            };
            set("name", name.map(Value::String));
            set("owner", owner.map(Value::String));
            set("arr", arr.map(Value::Number));
            set("renewal_date", renewal_date.map(Value::String));
            set("health_score", health_score.map(Value::Number));
            set("risk_score", risk_score.map(Value::Number));
            set("opportunity_score", opportunity_score.map(Value::Number));
            set("attributes", attributes.map(Value::Object));
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
