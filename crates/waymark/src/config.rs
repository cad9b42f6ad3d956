//! Settings: defaults, then a TOML file, then `WAYMARK_*` variables, then flags;
//! later wins.
//!
//! | setting | file key | variable | flag | default |
//! |---|---|---|---|---|
//! | listen address | `listen` | `WAYMARK_LISTEN` | `--listen` | `127.0.0.1:8080` |
//! | data folder | `data_dir` | `WAYMARK_DATA_DIR` | `--data-dir` | `./waymark-data` |
//! | PostgreSQL URL | `database_url` | `WAYMARK_DATABASE_URL` | `--database-url` | none (SQLite) |
//! | body limit, bytes | `body_limit` | `WAYMARK_BODY_LIMIT` | `--body-limit` | `1048576` |
//! | pool size | `max_connections` | `WAYMARK_MAX_CONNECTIONS` | `--max-connections` | `16` |
//! | log format | `log_format` | `WAYMARK_LOG_FORMAT` | `--log-format` | `json` |
//! | admin token | `admin_token` | `WAYMARK_ADMIN_TOKEN` | — | generated |
//!
//! The file is `--config FILE`, `WAYMARK_CONFIG`, or `./waymark.toml` when it
//! exists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use secrecy::SecretString;
use serde::Deserialize;

/// Where the server's data lives and how it listens.
#[derive(Deserialize)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub database_url: Option<SecretString>,
    pub body_limit: usize,
    pub max_connections: u32,
    pub log_format: LogFormat,
    pub admin_token: Option<SecretString>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "[redacted]"),
            )
            .field("body_limit", &self.body_limit)
            .field("max_connections", &self.max_connections)
            .field("log_format", &self.log_format)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "[redacted]"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Readable lines for a terminal.
    Pretty,
}

/// Flags that override the file and the environment.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on [env: WAYMARK_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    pub listen: Option<String>,
    /// Folder for the SQLite database and the admin token [env: WAYMARK_DATA_DIR] [default: ./waymark-data]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use PostgreSQL at this URL instead of SQLite [env: WAYMARK_DATABASE_URL]
    #[arg(long)]
    pub database_url: Option<String>,
    /// Largest request body accepted, in bytes [env: WAYMARK_BODY_LIMIT] [default: 1048576]
    #[arg(long)]
    pub body_limit: Option<usize>,
    /// Database connections per pool [env: WAYMARK_MAX_CONNECTIONS] [default: 16]
    #[arg(long)]
    pub max_connections: Option<u32>,
    /// Log format [env: WAYMARK_LOG_FORMAT] [default: json]
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
}

impl Settings {
    /// Loads the settings from their layers.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Settings> {
        let mut builder = config::Config::builder()
            .set_default("listen", "127.0.0.1:8080")?
            .set_default("data_dir", "./waymark-data")?
            .set_default("body_limit", 1024 * 1024)?
            .set_default("max_connections", 16)?
            .set_default("log_format", "json")?;
        let env_file = std::env::var_os("WAYMARK_CONFIG").map(PathBuf::from);
        match file.map(Path::to_path_buf).or(env_file) {
            Some(path) => {
                if !path.exists() {
                    anyhow::bail!(
                        "config file {} does not exist; create it or drop --config/WAYMARK_CONFIG",
                        path.display()
                    );
                }
                builder = builder.add_source(config::File::from(path).required(true));
            }
            None => {
                builder =
                    builder.add_source(config::File::with_name("waymark.toml").required(false));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("WAYMARK")
                .try_parsing(true)
                .ignore_empty(true),
        );
        builder = builder
            .set_override_option("listen", flags.listen.clone())?
            .set_override_option(
                "data_dir",
                flags.data_dir.as_ref().map(|d| d.display().to_string()),
            )?
            .set_override_option("database_url", flags.database_url.clone())?
            .set_override_option("body_limit", flags.body_limit.map(|b| b as u64))?
            .set_override_option("max_connections", flags.max_connections.map(u64::from))?
            .set_override_option(
                "log_format",
                flags.log_format.map(|f| match f {
                    LogFormat::Json => "json",
                    LogFormat::Pretty => "pretty",
                }),
            )?;
        let settings: Settings = builder
            .build()
            .context("reading settings")?
            .try_deserialize()
            .context("settings have the wrong shape (see `waymark serve --help`)")?;
        if settings.body_limit < 1024 {
            anyhow::bail!("body_limit must be at least 1024 bytes");
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nbody_limit = 2048\n").unwrap();
        let s = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9999");
        assert_eq!(s.body_limit, 2048);
        let flags = Overrides {
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let s = Settings::load(Some(&file), &flags).unwrap();
        assert_eq!(s.listen, "127.0.0.1:1");
        assert_eq!(s.body_limit, 2048);
        assert!(format!("{s:?}").contains("listen"));
        assert!(Settings::load(Some(&dir.path().join("missing.toml")), &flags).is_err());
    }
}
