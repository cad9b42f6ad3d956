//! `waymark serve` and `waymark migrate`: open the store, migrate, make sure an
//! admin token exists, serve until SIGTERM or ctrl-c.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use secrecy::ExposeSecret;
use waymark_server::auth::{AdminToken, bootstrap_admin};
use waymark_server::{AppState, BuildInfo, HttpSettings};
use waymark_store::{SqlStore, Store, postgres, sqlite};

use crate::config::{LogFormat, Overrides, Settings};

pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_sha: env!("WAYMARK_GIT_SHA").to_owned(),
        build_time: env!("WAYMARK_BUILD_TIME").to_owned(),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Opens the store the settings name: PostgreSQL when a URL is given, else
/// SQLite in the data folder.
pub async fn open_store(settings: &Settings) -> Result<(SqlStore, String)> {
    match &settings.database_url {
        Some(url) => {
            let store = postgres::connect(url.expose_secret(), settings.max_connections)
                .await
                .context(
                    "cannot connect to PostgreSQL; check --database-url / WAYMARK_DATABASE_URL",
                )?;
            Ok((store, "postgres".to_owned()))
        }
        None => {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!(
                    "cannot create the data folder {}",
                    settings.data_dir.display()
                )
            })?;
            let path = settings.data_dir.join("waymark.db");
            let store = sqlite::open(&path, settings.max_connections.min(8))
                .await
                .with_context(|| format!("cannot open the SQLite database {}", path.display()))?;
            Ok((store, format!("sqlite {}", path.display())))
        }
    }
}

pub async fn migrate(config: Option<&Path>, flags: &Overrides) -> Result<()> {
    let settings = Settings::load(config, flags)?;
    let (store, label) = open_store(&settings).await?;
    store.migrate().await.context("migrations failed")?;
    eprintln!("migrations applied ({label})");
    Ok(())
}

pub async fn serve(config: Option<&Path>, flags: &Overrides) -> Result<()> {
    let settings = Settings::load(config, flags)?;
    init_logging(settings.log_format);
    let (store, label) = open_store(&settings).await?;
    store.migrate().await.context("migrations failed")?;
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data folder {}",
            settings.data_dir.display()
        )
    })?;
    let store: Arc<SqlStore> = Arc::new(store);
    let env_token = settings
        .admin_token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    match bootstrap_admin(&*store, &settings.data_dir, env_token.as_deref()).await? {
        AdminToken::Generated { secret, file } => {
            eprintln!(
                "Admin token (shown once; also saved to {}, readable only by you):\n\n    {secret}\n",
                file.display()
            );
        }
        AdminToken::FromEnv => eprintln!("Admin token: the value of WAYMARK_ADMIN_TOKEN"),
        AdminToken::Existing { file } => {
            eprintln!(
                "Admin token: as generated at first start (see {})",
                file.display()
            )
        }
    }
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another server running there? pick another with --listen",
                settings.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let state = AppState::new(
        store.clone(),
        HttpSettings {
            body_limit: settings.body_limit,
        },
        build_info(),
    );
    eprintln!("Waymark listening on http://{addr} ({label}); API docs at http://{addr}/api/docs");
    tracing::info!(%addr, backend = %label, version = env!("CARGO_PKG_VERSION"), "listening");
    waymark_server::serve(listener, state, shutdown_signal())
        .await
        .context("server failed")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
