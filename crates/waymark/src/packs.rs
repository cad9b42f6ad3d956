//! `waymark pack list|validate|install`: the packs this binary ships and those
//! installed into the database, checking a pack folder, and installing one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use waymark_engine::catalog::{InstallError, PackCatalog};
use waymark_packs::{Pack, PackFiles, load};
use waymark_store::Store;

use crate::config::{Overrides, Settings};
use crate::serve::open_existing_store;

#[derive(Debug, clap::Subcommand)]
pub enum PackCommand {
    /// List the built-in packs and those installed into the database
    List(Overrides),
    /// Check a pack folder: YAML, types and requirements, schemas, examples, rules, plan
    Validate {
        /// The folder holding pack.yaml
        dir: PathBuf,
    },
    /// Check a pack folder and install it into the database (replacing an installed
    /// pack of the same name); running servers use it at their next lookup
    Install {
        /// The folder holding pack.yaml
        dir: PathBuf,
        #[command(flatten)]
        flags: Overrides,
    },
}

pub async fn run(config: Option<&Path>, command: PackCommand) -> Result<()> {
    match command {
        PackCommand::Validate { dir } => {
            let pack = check(&dir)?;
            println!("{} is a valid pack: {}", dir.display(), describe(&pack));
            Ok(())
        }
        PackCommand::List(flags) => {
            let settings = Settings::load(config, &flags)?;
            if settings.database_url.is_none() && !settings.data_dir.join("waymark.db").is_file() {
                for pack in waymark_packs::builtin() {
                    println!(
                        "{:<22} {:<8} {:<9} {}",
                        pack.name,
                        pack.version,
                        "built-in",
                        pack.type_names().join(", ")
                    );
                }
                println!(
                    "(no Waymark data in {}: installed packs are listed where `waymark serve` keeps its data)",
                    settings.data_dir.display()
                );
                return Ok(());
            }
            let catalog = catalog(config, &flags).await?;
            let packs = catalog
                .list()
                .await
                .context("cannot read installed packs")?;
            for (pack, builtin) in packs {
                println!(
                    "{:<22} {:<8} {:<9} {}",
                    pack.name,
                    pack.version,
                    if builtin { "built-in" } else { "installed" },
                    pack.type_names().join(", ")
                );
            }
            Ok(())
        }
        PackCommand::Install { dir, flags } => {
            let files = read(&dir)?;
            let catalog = catalog(config, &flags).await?;
            match catalog
                .install(
                    files,
                    &waymark_store::WriteContext::new("waymark pack install"),
                )
                .await
            {
                Ok(pack) => {
                    println!("installed {}", describe(&pack));
                    Ok(())
                }
                Err(InstallError::Invalid(e)) => bail!("{} was not installed: {e}", dir.display()),
                Err(e) => Err(e).context("the pack was not installed"),
            }
        }
    }
}

fn read(dir: &Path) -> Result<PackFiles> {
    PackFiles::from_dir(dir).map_err(|p| anyhow::anyhow!("{} is not a pack: {p}", dir.display()))
}

fn check(dir: &Path) -> Result<Pack> {
    let files = read(dir)?;
    load(&files).map_err(|e| anyhow::anyhow!("{} is not a valid pack: {e}", dir.display()))
}

fn describe(pack: &Pack) -> String {
    let jobs = pack.plan.as_ref().map(|p| p.jobs.len()).unwrap_or(0);
    format!(
        "{} {} ({} types: {}{})",
        pack.name,
        pack.version,
        pack.types.len(),
        pack.type_names().join(", "),
        if jobs > 0 {
            format!("; a plan of {jobs} jobs")
        } else {
            String::new()
        }
    )
}

async fn catalog(config: Option<&Path>, flags: &Overrides) -> Result<PackCatalog> {
    let settings = Settings::load(config, flags)?;
    let (store, _) = open_existing_store(&settings).await?;
    store.migrate().await.context("migrations failed")?;
    let store: Arc<dyn Store> = Arc::new(store);
    Ok(PackCatalog::new(store))
}
