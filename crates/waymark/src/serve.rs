//! `waymark serve` and `waymark migrate`: open the store, migrate, make sure an
//! admin token exists, serve (and deliver webhooks and mail) until SIGTERM or
//! ctrl-c; on the way out, send the spans still batched when they are exported
//! (see `telemetry`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use secrecy::ExposeSecret;
use waymark_engine::delivery::{self, DeliverySettings};
use waymark_engine::mail::Mailer;
use waymark_engine::run::{self as engine, EngineSettings};
use waymark_server::auth::{AdminToken, bootstrap_admin};
use waymark_server::{AppState, BuildInfo, HttpSettings};
use waymark_store::{SqlStore, Store, postgres, sqlite};

use crate::config::{Overrides, Settings};
use crate::telemetry::Telemetry;

pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_sha: env!("WAYMARK_GIT_SHA").to_owned(),
        build_time: env!("WAYMARK_BUILD_TIME").to_owned(),
    }
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

/// Opens the store of an existing installation, for the local commands that
/// read or change its data (`audit verify`, `pack install`): a data folder
/// without a database, or a database Waymark never migrated, is refused with
/// what to do, instead of being made into an empty installation.
pub async fn open_existing_store(settings: &Settings) -> Result<(SqlStore, String)> {
    if settings.database_url.is_none() {
        let path = settings.data_dir.join("waymark.db");
        if !path.is_file() {
            bail!(
                "no Waymark data in {}: there is no waymark.db there. Run this where `waymark serve` \
                 keeps its data, or name that folder with --data-dir (WAYMARK_DATA_DIR); \
                 `waymark migrate` makes a new, empty installation",
                settings.data_dir.display()
            );
        }
    }
    let (store, label) = open_store(settings).await?;
    if !store.holds_data().await? {
        store.close().await;
        bail!(
            "the database ({label}) holds no Waymark data: check --database-url \
             (WAYMARK_DATABASE_URL), or run `waymark migrate` to make a new, empty installation"
        );
    }
    Ok((store, label))
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
    let telemetry = Telemetry::init(settings.log_format, settings.otlp_traces_url()?.as_deref())?;
    let served = serve_until_stopped(settings).await;
    telemetry.shutdown().await;
    served
}

/// The server with its workers and deliveries, until SIGTERM or ctrl-c.
async fn serve_until_stopped(settings: Settings) -> Result<()> {
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
    let public_url = settings.public_url(addr);
    let smtp_url = settings
        .smtp_url
        .as_ref()
        .map(|u| u.expose_secret().to_owned());
    if let Some(url) = &smtp_url {
        // Refuse to start with a mail setting that could never work.
        Mailer::from_url(url, &settings.mail_from)
            .context("smtp_url / mail_from (WAYMARK_SMTP_URL / WAYMARK_MAIL_FROM)")?;
    }
    let state = AppState::new(
        store.clone(),
        HttpSettings {
            body_limit: settings.body_limit,
            public_url: public_url.clone(),
            upload_limit: settings.upload_limit,
        },
        build_info(),
    )
    .with_llm(waymark_llm::Llm::new(settings.llm()?))
    .with_blobs(settings.blobs()?);
    let deliveries = DeliverySettings {
        max_attempts: settings.webhook_max_attempts,
        backoff_base: Duration::from_millis(settings.webhook_backoff_ms),
        smtp_url,
        mail_from: settings.mail_from.clone(),
        public_url: public_url.clone(),
        user_agent: format!("waymark/{}", build_info().version),
        ..DeliverySettings::default()
    };
    // One signal stops both the server and the delivery loop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop = Arc::new(stop);
    let signal = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = signal.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut engine = engine_settings(&settings, settings.worker_concurrency)?;
    engine.public_url = Some(public_url.clone());
    let working = (settings.worker_concurrency > 0).then(|| {
        tokio::spawn(engine::run(
            store.clone(),
            engine,
            until_stopped(stopped.clone()),
        ))
    });
    let scheduling = (settings.queue_refresh_s > 0).then(|| {
        tokio::spawn(waymark_engine::queue::run_schedule(
            store.clone(),
            state.packs.clone(),
            Duration::from_secs(settings.queue_refresh_s),
            state.changes.clone(),
            until_stopped(stopped.clone()),
        ))
    });
    let delivering = tokio::spawn(delivery::run(
        store.clone(),
        state.changes.subscribe(),
        deliveries,
        until_stopped(stopped.clone()),
    ));
    eprintln!("Waymark listening on http://{addr} ({label}); API docs at http://{addr}/api/docs");
    if public_url != format!("http://{addr}") {
        eprintln!("Links in mail point at {public_url}");
    }
    tracing::info!(%addr, %public_url, backend = %label, version = env!("CARGO_PKG_VERSION"), "listening");
    let served = waymark_server::serve(listener, state, until_stopped(stopped)).await;
    // Whatever ended the server ends deliveries too; attempts in flight finish.
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(30), delivering)
        .await
        .is_err()
    {
        tracing::warn!("deliveries did not stop within 30 s");
    }
    if let Some(scheduling) = scheduling {
        let _ = tokio::time::timeout(Duration::from_secs(30), scheduling).await;
    }
    if let Some(working) = working
        && tokio::time::timeout(Duration::from_secs(30), working)
            .await
            .is_err()
    {
        tracing::warn!("workers did not stop within 30 s; their tasks' leases will expire");
    }
    served.context("server failed")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `waymark worker`: the embedded workers alone, until SIGTERM or ctrl-c; any
/// number of them share a PostgreSQL database's queue.
pub async fn worker(config: Option<&Path>, flags: &Overrides) -> Result<()> {
    let settings = Settings::load(config, flags)?;
    let telemetry = Telemetry::init(settings.log_format, settings.otlp_traces_url()?.as_deref())?;
    let worked = work_until_stopped(settings).await;
    telemetry.shutdown().await;
    worked
}

/// The embedded workers, until SIGTERM or ctrl-c.
async fn work_until_stopped(settings: Settings) -> Result<()> {
    let (store, label) = open_store(&settings).await?;
    store.migrate().await.context("migrations failed")?;
    let store: Arc<SqlStore> = Arc::new(store);
    let concurrency = settings.worker_concurrency.max(1);
    let engine_settings = engine_settings(&settings, concurrency)?;
    eprintln!(
        "Waymark worker {} running up to {concurrency} tasks at once ({label})",
        engine_settings.name
    );
    tracing::info!(worker = %engine_settings.name, concurrency, backend = %label, "worker started");
    engine::run(store.clone(), engine_settings, shutdown_signal()).await;
    store.close().await;
    tracing::info!("worker stopped");
    Ok(())
}

/// The embedded workers' settings from the server's.
fn engine_settings(settings: &Settings, concurrency: usize) -> Result<EngineSettings> {
    Ok(EngineSettings {
        concurrency,
        lease: Duration::from_secs(settings.worker_lease_s),
        llm: waymark_llm::Llm::new(settings.llm()?),
        // A worker has no address of its own: the servers' public URL, if set.
        public_url: settings
            .public_url
            .as_ref()
            .map(|u| u.trim().trim_end_matches('/').to_owned()),
        blobs: Some(settings.blobs()?),
        ..EngineSettings::default()
    })
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
