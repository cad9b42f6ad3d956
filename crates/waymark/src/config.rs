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
//! | public URL (links in mail, event `source`) | `public_url` | `WAYMARK_PUBLIC_URL` | `--public-url` | `http://<listen address>` |
//! | SMTP relay for mail | `smtp_url` | `WAYMARK_SMTP_URL` | — | none (no mail) |
//! | mail sender | `mail_from` | `WAYMARK_MAIL_FROM` | — | `Waymark <waymark@localhost>` |
//! | webhook attempts per delivery | `webhook_max_attempts` | `WAYMARK_WEBHOOK_MAX_ATTEMPTS` | — | `12` |
//! | first webhook retry wait, ms | `webhook_backoff_ms` | `WAYMARK_WEBHOOK_BACKOFF_MS` | — | `5000` |
//! | tasks a worker runs at once (0: no embedded workers in `serve`) | `worker_concurrency` | `WAYMARK_WORKER_CONCURRENCY` | — | `16` |
//! | worker lease, seconds (a killed worker's tasks run again after it) | `worker_lease_s` | `WAYMARK_WORKER_LEASE_S` | — | `30` |
//! | how often the queue rules run, seconds (0: only on signal changes and on request) | `queue_refresh_s` | `WAYMARK_QUEUE_REFRESH_S` | — | `3600` |
//! | LLM provider (`ollama` or `openai`) | `llm_provider` | `WAYMARK_LLM_PROVIDER` | — | none (templates answer) |
//! | LLM URL | `llm_url` | `WAYMARK_LLM_URL` | — | `http://127.0.0.1:11434` (ollama), `https://api.openai.com/v1` (openai) |
//! | LLM model (required with a provider) | `llm_model` | `WAYMARK_LLM_MODEL` | — | none |
//! | LLM API key | `llm_api_key` | `WAYMARK_LLM_API_KEY` | — | none |
//! | LLM call timeout, seconds | `llm_timeout_s` | `WAYMARK_LLM_TIMEOUT_S` | — | `60` |
//! | stream LLM answers | `llm_stream` | `WAYMARK_LLM_STREAM` | — | `true` |
//! | largest uploaded file, bytes | `upload_limit` | `WAYMARK_UPLOAD_LIMIT` | — | `52428800` (50 MiB) |
//! | S3-compatible bucket for uploaded files | `s3_bucket` | `WAYMARK_S3_BUCKET` | — | none (`<data folder>/files`) |
//! | S3 endpoint (a non-AWS service) | `s3_endpoint` | `WAYMARK_S3_ENDPOINT` | — | AWS |
//! | S3 region | `s3_region` | `WAYMARK_S3_REGION` | — | `us-east-1` |
//! | S3 access key id / secret | `s3_access_key_id`, `s3_secret_access_key` | `WAYMARK_S3_ACCESS_KEY_ID`, `WAYMARK_S3_SECRET_ACCESS_KEY` | — | none (the environment's credentials) |
//! | OpenTelemetry collector (OTLP/HTTP; spans go to `<URL>/v1/traces`) | `otlp_endpoint` | `WAYMARK_OTLP_ENDPOINT` | `--otlp-endpoint` | none (no span export) |
//!
//! The file is `--config FILE`, `WAYMARK_CONFIG`, or `./waymark.toml` when it
//! exists.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use waymark_llm::{LlmSettings, ProviderKind};

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
    /// Where people reach this server (links in mail and review links, the
    /// `source` of events); `http://<listen address>` when unset.
    pub public_url: Option<String>,
    /// The SMTP relay mail goes through (may carry a password); no mail when unset.
    pub smtp_url: Option<SecretString>,
    /// The sender of mail.
    pub mail_from: String,
    /// Attempts per webhook delivery before it is given up.
    pub webhook_max_attempts: u32,
    /// The wait before the first webhook retry, in milliseconds; it doubles
    /// with each failed attempt, up to an hour.
    pub webhook_backoff_ms: u64,
    /// Tasks the embedded workers run at once; 0 runs none in `serve`.
    pub worker_concurrency: usize,
    /// How long a worker's claim holds a task before a heartbeat must extend
    /// it; a killed worker's tasks are retried elsewhere after this long.
    pub worker_lease_s: u64,
    /// How often `serve` runs the queue rules over every client, in seconds;
    /// 0 runs them only when signals change and on request.
    pub queue_refresh_s: u64,
    /// The LLM provider, `ollama` or `openai`; none when unset (the
    /// deterministic templates answer).
    pub llm_provider: Option<String>,
    /// The provider's URL (Ollama: the server root; OpenAI-compatible: the API
    /// base ending in `/v1`); the provider's usual URL when unset.
    pub llm_url: Option<String>,
    /// The model to ask; required when a provider is set.
    pub llm_model: Option<String>,
    /// Sent as `Authorization: Bearer`.
    pub llm_api_key: Option<SecretString>,
    /// How long one LLM call may take, reading a streamed answer included.
    pub llm_timeout_s: u64,
    /// Whether to ask the provider to stream its answers.
    pub llm_stream: bool,
    /// The OpenTelemetry collector spans are exported to over OTLP/HTTP (at
    /// `<URL>/v1/traces`); no export when unset.
    pub otlp_endpoint: Option<String>,
    /// The largest file `POST /api/v1/files` accepts, in bytes.
    pub upload_limit: u64,
    /// An S3-compatible bucket for uploaded files; a folder under the data
    /// folder when unset. Several servers need a bucket they all reach.
    pub s3_bucket: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<SecretString>,
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
            .field("public_url", &self.public_url)
            .field("smtp_url", &self.smtp_url.as_ref().map(|_| "[redacted]"))
            .field("mail_from", &self.mail_from)
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_backoff_ms", &self.webhook_backoff_ms)
            .field("worker_concurrency", &self.worker_concurrency)
            .field("worker_lease_s", &self.worker_lease_s)
            .field("queue_refresh_s", &self.queue_refresh_s)
            .field("llm_provider", &self.llm_provider)
            .field("llm_url", &self.llm_url)
            .field("llm_model", &self.llm_model)
            .field(
                "llm_api_key",
                &self.llm_api_key.as_ref().map(|_| "[redacted]"),
            )
            .field("llm_timeout_s", &self.llm_timeout_s)
            .field("llm_stream", &self.llm_stream)
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("upload_limit", &self.upload_limit)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("s3_region", &self.s3_region)
            .field("s3_access_key_id", &self.s3_access_key_id)
            .field(
                "s3_secret_access_key",
                &self.s3_secret_access_key.as_ref().map(|_| "[redacted]"),
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
    /// Where people reach this server, for links in mail [env: WAYMARK_PUBLIC_URL] [default: http://<listen address>]
    #[arg(long)]
    pub public_url: Option<String>,
    /// Export spans to this OpenTelemetry collector over OTLP/HTTP, at <URL>/v1/traces [env: WAYMARK_OTLP_ENDPOINT] [default: none]
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
}

impl Settings {
    /// Loads the settings from their layers.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<Settings> {
        let mut builder = config::Config::builder()
            .set_default("listen", "127.0.0.1:8080")?
            .set_default("data_dir", "./waymark-data")?
            .set_default("body_limit", 1024 * 1024)?
            .set_default("max_connections", 16)?
            .set_default("log_format", "json")?
            .set_default("mail_from", "Waymark <waymark@localhost>")?
            .set_default("webhook_max_attempts", 12)?
            .set_default("webhook_backoff_ms", 5000)?
            .set_default("worker_concurrency", 16)?
            .set_default("worker_lease_s", 30)?
            .set_default("queue_refresh_s", 3600)?
            .set_default("llm_timeout_s", 60)?
            .set_default("llm_stream", true)?
            .set_default("upload_limit", 50 * 1024 * 1024)?
            .set_default("s3_region", "us-east-1")?;
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
            )?
            .set_override_option("public_url", flags.public_url.clone())?
            .set_override_option("otlp_endpoint", flags.otlp_endpoint.clone())?;
        let settings: Settings = builder
            .build()
            .context("reading settings")?
            .try_deserialize()
            .context("settings have the wrong shape (see `waymark serve --help`)")?;
        if settings.body_limit < 1024 {
            anyhow::bail!("body_limit must be at least 1024 bytes");
        }
        if let Some(url) = &settings.public_url {
            check_public_url(url)?;
        }
        if settings.worker_concurrency > 1024 {
            anyhow::bail!("worker_concurrency must be from 0 to 1024");
        }
        if settings.queue_refresh_s != 0 && !(60..=86_400 * 7).contains(&settings.queue_refresh_s) {
            anyhow::bail!(
                "queue_refresh_s must be 0 (no scheduled runs) or from 60 to 604800 seconds"
            );
        }
        if !(2..=3600).contains(&settings.worker_lease_s) {
            anyhow::bail!("worker_lease_s must be from 2 to 3600 seconds");
        }
        if !(1..=100).contains(&settings.webhook_max_attempts) {
            anyhow::bail!("webhook_max_attempts must be from 1 to 100");
        }
        if !(1..=3_600_000).contains(&settings.webhook_backoff_ms) {
            anyhow::bail!("webhook_backoff_ms must be from 1 to 3600000 (an hour)");
        }
        if !(1024..=1 << 40).contains(&settings.upload_limit) {
            anyhow::bail!("upload_limit must be from 1024 bytes to 1 TiB");
        }
        settings.llm()?;
        settings.otlp_traces_url()?;
        settings.blob_settings()?;
        Ok(settings)
    }

    /// Where uploaded files go: the S3-compatible bucket when `s3_bucket` is
    /// set, else `<data folder>/files`.
    pub fn blob_settings(&self) -> Result<waymark_engine::blobs::BlobSettings> {
        use waymark_engine::blobs::{BlobSettings, S3Settings};
        let bucket = self
            .s3_bucket
            .as_deref()
            .map(str::trim)
            .filter(|b| !b.is_empty());
        let Some(bucket) = bucket else {
            return Ok(BlobSettings::Local {
                root: self.data_dir.join("files"),
            });
        };
        let endpoint = self
            .s3_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if let Some(e) = endpoint {
            let ok = reqwest::Url::parse(e)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some());
            if !ok {
                anyhow::bail!(
                    "s3_endpoint (WAYMARK_S3_ENDPOINT) {e:?} must be an http or https URL, \
                     such as http://127.0.0.1:9000"
                );
            }
        }
        Ok(BlobSettings::S3(S3Settings {
            bucket: bucket.to_owned(),
            endpoint: endpoint.map(|e| e.trim_end_matches('/').to_owned()),
            region: self.s3_region.trim().to_owned(),
            access_key_id: self
                .s3_access_key_id
                .clone()
                .filter(|k| !k.trim().is_empty()),
            secret_access_key: self
                .s3_secret_access_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned())
                .filter(|k| !k.trim().is_empty()),
        }))
    }

    /// The object store of uploaded files, with its staging folder under the
    /// data folder.
    pub fn blobs(&self) -> Result<waymark_engine::blobs::Blobs> {
        let settings = self.blob_settings()?;
        waymark_engine::blobs::Blobs::open(&settings, &self.data_dir.join("staging")).with_context(
            || match &settings {
                waymark_engine::blobs::BlobSettings::Local { root } => format!(
                    "cannot use {} for uploaded files; check the data folder's permissions",
                    root.display()
                ),
                waymark_engine::blobs::BlobSettings::S3(s) => format!(
                    "cannot use S3 bucket {} for uploaded files; check s3_* settings",
                    s.bucket
                ),
            },
        )
    }

    /// Where spans are exported: `<otlp_endpoint>/v1/traces`, or `None` when no
    /// endpoint is set (blank counts as unset). The endpoint must be an
    /// absolute `http` or `https` URL with a host.
    pub fn otlp_traces_url(&self) -> Result<Option<String>> {
        let Some(endpoint) = self
            .otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        else {
            return Ok(None);
        };
        let ok = reqwest::Url::parse(endpoint).is_ok_and(|parsed| {
            matches!(parsed.scheme(), "http" | "https")
                && parsed.host_str().is_some_and(|h| !h.is_empty())
                && parsed.query().is_none()
        });
        if !ok {
            anyhow::bail!(
                "otlp_endpoint (WAYMARK_OTLP_ENDPOINT) {endpoint:?} must be an http or https URL \
                 with a host and no query, such as http://127.0.0.1:4318"
            );
        }
        Ok(Some(format!(
            "{}/v1/traces",
            endpoint.trim_end_matches('/')
        )))
    }

    /// The LLM provider to use, if one is set: `llm_provider` must be `ollama`
    /// or `openai`, and `llm_model` is then required.
    pub fn llm(&self) -> Result<Option<LlmSettings>> {
        let Some(name) = self.llm_provider.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if name.is_empty() {
            return Ok(None);
        }
        let provider: ProviderKind = name
            .parse()
            .map_err(|e| anyhow::anyhow!("llm_provider (WAYMARK_LLM_PROVIDER): {e}"))?;
        let model = self
            .llm_model
            .as_deref()
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "llm_model (WAYMARK_LLM_MODEL) is required when llm_provider is {provider}; \
                     set it to the model to ask, e.g. {}",
                    match provider {
                        ProviderKind::Ollama => "llama3.2",
                        ProviderKind::OpenAi => "gpt-4o-mini",
                    }
                )
            })?;
        let url = match self.llm_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => url.trim_end_matches('/').to_owned(),
            _ => provider.default_url().to_owned(),
        };
        check_llm_url(&url, provider)?;
        if !(1..=86_400).contains(&self.llm_timeout_s) {
            anyhow::bail!("llm_timeout_s must be from 1 to 86400 (a day)");
        }
        Ok(Some(LlmSettings {
            provider,
            url,
            model: model.to_owned(),
            api_key: self
                .llm_api_key
                .as_ref()
                .map(|k| k.expose_secret().trim().to_owned())
                .filter(|k| !k.is_empty()),
            timeout: std::time::Duration::from_secs(self.llm_timeout_s),
            stream: self.llm_stream,
        }))
    }

    /// The public URL: as set, else `http://` and the address the server is
    /// bound to (`addr`, which knows the port when `listen` asked for port 0),
    /// with a wildcard address (`0.0.0.0`, `[::]`) shown as loopback.
    pub fn public_url(&self, addr: std::net::SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim().trim_end_matches('/').to_owned(),
            None => {
                let mut addr = addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(match addr.ip() {
                        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                    });
                }
                format!("http://{addr}")
            }
        }
    }
}

/// A public URL must be absolute `http` or `https` with a host.
fn check_public_url(url: &str) -> Result<()> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| {
        anyhow::anyhow!(
            "public_url {url:?} is not an absolute URL such as https://waymark.example.com ({e})"
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        anyhow::bail!(
            "public_url {url:?} must be an http or https URL with a host, such as https://waymark.example.com"
        );
    }
    Ok(())
}

/// An LLM URL must be absolute `http` or `https` with a host.
fn check_llm_url(url: &str, provider: ProviderKind) -> Result<()> {
    let ok = reqwest::Url::parse(url).is_ok_and(|parsed| {
        matches!(parsed.scheme(), "http" | "https")
            && parsed.host_str().is_some_and(|h| !h.is_empty())
    });
    if !ok {
        anyhow::bail!(
            "llm_url (WAYMARK_LLM_URL) {url:?} must be an http or https URL with a host, \
             such as {}",
            provider.default_url()
        );
    }
    Ok(())
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

    #[test]
    fn delivery_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        std::fs::write(
            &file,
            "listen = \"0.0.0.0:8080\"\nsmtp_url = \"smtp://u:hunter2@mail:25\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), &Overrides::default()).unwrap();
        assert_eq!(s.mail_from, "Waymark <waymark@localhost>");
        assert_eq!((s.webhook_max_attempts, s.webhook_backoff_ms), (12, 5000));
        assert_eq!(
            s.public_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        let flags = Overrides {
            public_url: Some("https://waymark.example.com/".into()),
            ..Default::default()
        };
        let s = Settings::load(Some(&file), &flags).unwrap();
        assert_eq!(
            s.public_url("0.0.0.0:8080".parse().unwrap()),
            "https://waymark.example.com"
        );
        for bad in [
            "public_url = \"waymark.example.com\"",
            "public_url = \"ftp://x\"",
            "webhook_max_attempts = 0",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(
                Settings::load(Some(&file), &Overrides::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn otlp_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        let load = |toml: &str, flags: &Overrides| {
            std::fs::write(&file, toml).unwrap();
            Settings::load(Some(&file), flags)
        };
        let none = Overrides::default();
        assert_eq!(load("", &none).unwrap().otlp_traces_url().unwrap(), None);
        assert_eq!(
            load("otlp_endpoint = \"  \"", &none)
                .unwrap()
                .otlp_traces_url()
                .unwrap(),
            None,
            "blank is unset"
        );
        let s = load("otlp_endpoint = \"http://collector:4318/\"", &none).unwrap();
        assert_eq!(
            s.otlp_traces_url().unwrap().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        let flags = Overrides {
            otlp_endpoint: Some("https://otel.example.com/otlp".into()),
            ..Default::default()
        };
        let s = load("otlp_endpoint = \"http://collector:4318\"", &flags).unwrap();
        assert_eq!(
            s.otlp_traces_url().unwrap().as_deref(),
            Some("https://otel.example.com/otlp/v1/traces")
        );
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://c:4318/?x=1",
        ] {
            let e = load(&format!("otlp_endpoint = \"{bad}\""), &none).unwrap_err();
            assert!(
                format!("{e:#}").contains("WAYMARK_OTLP_ENDPOINT"),
                "{bad}: {e:#}"
            );
        }
    }

    #[test]
    fn llm_settings() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.toml");
        let load = |toml: &str| {
            std::fs::write(&file, toml).unwrap();
            Settings::load(Some(&file), &Overrides::default())
        };
        let s = load("").unwrap();
        assert!(s.llm().unwrap().is_none(), "no provider by default");
        assert_eq!((s.llm_timeout_s, s.llm_stream), (60, true));

        let s = load("llm_provider = \"ollama\"\nllm_model = \"llama3.2\"\n").unwrap();
        let llm = s.llm().unwrap().unwrap();
        assert_eq!(llm.provider, ProviderKind::Ollama);
        assert_eq!(llm.url, "http://127.0.0.1:11434");
        assert_eq!(llm.model, "llama3.2");
        assert_eq!(llm.api_key, None);
        assert_eq!(llm.timeout, std::time::Duration::from_secs(60));
        assert!(llm.stream);

        let s = load(
            "llm_provider = \"openai\"\nllm_model = \"gpt-4o-mini\"\n\
             llm_api_key = \"sk-hunter2\"\nllm_timeout_s = 5\nllm_stream = false\n",
        )
        .unwrap();
        let llm = s.llm().unwrap().unwrap();
        assert_eq!(llm.provider, ProviderKind::OpenAi);
        assert_eq!(llm.url, "https://api.openai.com/v1");
        assert_eq!(llm.api_key.as_deref(), Some("sk-hunter2"));
        assert_eq!(llm.timeout, std::time::Duration::from_secs(5));
        assert!(!llm.stream);
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{llm:?}").contains("hunter2"));

        let s = load(
            "llm_provider = \"openai\"\nllm_model = \"m\"\nllm_url = \"http://vllm:8000/v1/\"\n",
        )
        .unwrap();
        assert_eq!(s.llm().unwrap().unwrap().url, "http://vllm:8000/v1");

        let e = load("llm_provider = \"ollama\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("WAYMARK_LLM_MODEL"), "{e:#}");
        let e = load("llm_provider = \"claude\"\nllm_model = \"m\"\n").unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("ollama") && e.contains("openai"), "{e}");
        for bad in [
            "llm_provider = \"ollama\"\nllm_model = \"m\"\nllm_url = \"localhost:11434\"",
            "llm_provider = \"ollama\"\nllm_model = \"m\"\nllm_timeout_s = 0",
        ] {
            assert!(load(bad).is_err(), "{bad}");
        }
    }
}
