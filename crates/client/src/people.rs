//! `waymark user ...` and `waymark token ...`: people and their API tokens.

use std::io::BufRead;

use serde_json::Value;

use crate::api::{ApiClient, NewToken, NewUser};
use crate::error::CliError;
use crate::paging::Paging;
use crate::render;

#[derive(clap::Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user (admins only)
    Create {
        /// Their email, which they sign in to the web UI with
        #[arg(long)]
        email: String,
        /// Their name
        #[arg(long)]
        name: String,
        /// admin, operator or client
        #[arg(long)]
        role: String,
        /// The client a client user belongs to (cli_…)
        #[arg(long)]
        client_id: Option<String>,
        /// Read a web UI password (12 characters or more) from the first line of stdin
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users (admins and operators)
    List {
        /// Only this client's users
        #[arg(long)]
        client_id: Option<String>,
        /// Only users with this role
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
}

#[derive(clap::Subcommand, Debug)]
pub enum TokenCommand {
    /// Make an API token; its secret is printed this once
    Create {
        /// What the token is for, e.g. `ci`
        #[arg(long)]
        name: String,
        /// The user it acts for (usr_…); yourself when omitted, unless you are an admin
        #[arg(long, conflicts_with = "agent_id")]
        user_id: Option<String>,
        /// The agent it acts for (admins only)
        #[arg(long)]
        agent_id: Option<String>,
        /// Role of a standalone admin-made token: admin, operator (default) or agent
        #[arg(long)]
        role: Option<String>,
        /// When it stops working, RFC 3339 (e.g. 2026-12-31T23:59:59Z)
        #[arg(long)]
        expires_at: Option<String>,
    },
    /// List tokens (never their secrets): all for admins, your own otherwise
    List {
        /// Only this user's tokens
        #[arg(long)]
        user_id: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Revoke a token at once
    Revoke {
        /// Token id (tok_…)
        id: String,
    },
}

const USER_FIELDS: &[&str] = &[
    "id",
    "email",
    "name",
    "role",
    "client_id",
    "has_password",
    "created_at",
];
const USER_COLUMNS: &[&str] = &["id", "email", "name", "role", "client_id", "created_at"];
const TOKEN_FIELDS: &[&str] = &[
    "id",
    "name",
    "role",
    "kind",
    "user_id",
    "agent_id",
    "client_id",
    "created_at",
    "expires_at",
    "revoked_at",
];
const TOKEN_COLUMNS: &[&str] = &[
    "id",
    "name",
    "role",
    "kind",
    "user_id",
    "agent_id",
    "expires_at",
    "revoked_at",
];

pub(crate) async fn execute_user(
    api: &ApiClient,
    json: bool,
    cmd: UserCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        UserCommand::Create {
            email,
            name,
            role,
            client_id,
            password_stdin,
        } => {
            let password = if password_stdin {
                Some(read_password(std::io::stdin().lock())?)
            } else {
                None
            };
            let new = NewUser {
                email,
                name,
                role,
                client_id,
                password,
            };
            (api.create_user(&new).await?, |v| {
                render::fields(v, USER_FIELDS)
            })
        }
        UserCommand::List {
            client_id,
            role,
            paging,
        } => (
            paging
                .fetch(async |page| {
                    api.list_users(client_id.as_deref(), role.as_deref(), page)
                        .await
                })
                .await?,
            |v| render::list(v, USER_COLUMNS),
        ),
    };
    Ok(render::output(json, &body, human))
}

pub(crate) async fn execute_token(
    api: &ApiClient,
    json: bool,
    cmd: TokenCommand,
) -> Result<String, CliError> {
    let (body, human): (Value, fn(&Value) -> String) = match cmd {
        TokenCommand::Create {
            name,
            user_id,
            agent_id,
            role,
            expires_at,
        } => {
            let new = NewToken {
                name,
                user_id,
                agent_id,
                expires_at,
                role,
            };
            (api.create_token(&new).await?, created_token)
        }
        TokenCommand::List { user_id, paging } => (
            paging
                .fetch(async |page| api.list_tokens(user_id.as_deref(), page).await)
                .await?,
            |v| render::list(v, TOKEN_COLUMNS),
        ),
        TokenCommand::Revoke { id } => (api.revoke_token(&id).await?, |v| {
            render::fields(v, TOKEN_FIELDS)
        }),
    };
    Ok(render::output(json, &body, human))
}

/// A new token's fields, then its secret and that it will not be shown again.
fn created_token(value: &Value) -> String {
    let fields: Vec<&str> = TOKEN_FIELDS
        .iter()
        .copied()
        .filter(|f| *f != "revoked_at")
        .collect();
    let mut out = render::fields(value, &fields);
    out.push_str(&format!(
        "\ntoken: {}\nThis secret will not be shown again: store it now (e.g. as WAYMARK_TOKEN).\n",
        render::plain(&value["token"])
    ));
    out
}

/// The first line of `input`, without its line ending.
fn read_password(mut input: impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| CliError::input(format!("--password-stdin: cannot read stdin: {e}")))?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        return Err(CliError::input(
            "--password-stdin: stdin had no password (pipe one in, e.g. `printf %s \"$PW\" | waymark user create ...`)",
        ));
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_password_is_the_first_line() {
        assert_eq!(
            read_password(&b"correct horse battery\nnext"[..]).unwrap(),
            "correct horse battery"
        );
        assert_eq!(
            read_password(&b"pw-no-newline"[..]).unwrap(),
            "pw-no-newline"
        );
        assert!(read_password(&b"\n"[..]).is_err());
    }

    #[test]
    fn a_new_token_shows_its_secret_once_with_a_warning() {
        let out = created_token(&json!({
            "id": "tok_1", "token": "wm_secret", "name": "ci", "role": "operator",
            "kind": "api", "created_at": "2026-01-01T00:00:00Z"
        }));
        assert!(out.contains("token: wm_secret"), "{out}");
        assert!(out.contains("will not be shown again"), "{out}");
        assert_eq!(out.matches("wm_secret").count(), 1, "{out}");
    }
}
