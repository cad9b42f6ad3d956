//! `waymark audit verify`: walks the whole audit chain in the database, record by
//! record, and names the first one that does not hold.

use std::path::Path;

use anyhow::{Context, Result};
use waymark_client::progress::Progress;
use waymark_store::Store;

use crate::config::{Overrides, Settings};
use crate::serve::open_existing_store;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit log end to end; exits 1 at the first
    /// altered, missing or reordered record, naming it
    Verify(Overrides),
}

/// Runs the command: `Ok(true)` when the chain holds.
pub async fn run(config: Option<&Path>, command: AuditCommand) -> Result<bool> {
    let AuditCommand::Verify(flags) = command;
    let settings = Settings::load(config, &flags)?;
    let (store, label) = open_existing_store(&settings).await?;
    store.migrate().await.context("migrations failed")?;
    let outcome = verify(&store).await;
    store.close().await;
    match outcome? {
        Ok((count, head)) => {
            println!("audit chain intact: {count} records, head {head} ({label})");
            Ok(true)
        }
        Err(broken) => {
            println!("audit chain BROKEN at record {}: {broken}", broken.seq());
            println!(
                "the records from {} on cannot be trusted; compare them with a backup",
                broken.seq()
            );
            Ok(false)
        }
    }
}

/// Verifies the chain with a progress bar: `Ok(Ok((records, head hash)))`
/// when it holds (the walk is `engine::audit::verify`).
pub async fn verify(
    store: &dyn Store,
) -> Result<Result<(u64, String), waymark_domain::audit::ChainBreak>> {
    let total = store
        .audit_head()
        .await
        .context("cannot read the audit head")?
        .seq;
    let bar = Progress::new(
        "verifying",
        u64::try_from(total).unwrap_or(0),
        "records",
        false,
    );
    let verdict = waymark_engine::audit::verify(store, |done, total| bar.set(done, total))
        .await
        .context("cannot read the audit log");
    bar.finish();
    verdict
}
