//! `waymark audit verify`: walks the whole audit chain in the database, record by
//! record, and names the first one that does not hold.

use std::path::Path;

use anyhow::{Context, Result};
use waymark_client::progress::Progress;
use waymark_domain::audit::Verifier;
use waymark_store::Store;

use crate::config::{Overrides, Settings};
use crate::serve::open_existing_store;

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the audit log end to end; exits 1 at the first
    /// altered, missing or reordered record, naming it
    Verify(Overrides),
}

/// Records read per query.
const PAGE: i64 = 5_000;

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

/// Verifies the chain: `Ok(Ok((records, head hash)))` when it holds.
pub async fn verify(
    store: &dyn Store,
) -> Result<Result<(u64, String), waymark_domain::audit::ChainBreak>> {
    let head = store
        .audit_head()
        .await
        .context("cannot read the audit head")?;
    let total = u64::try_from(head.seq).unwrap_or(0);
    let bar = Progress::new("verifying", total, "records", false);
    let finish = || bar.finish();
    let mut v = Verifier::new();
    // Up to the head read at the start: writes that land meanwhile are left
    // for the next run, so a busy database does not keep the walk going.
    while v.last_seq() < head.seq {
        let page = store
            .audit_chain(v.last_seq(), PAGE)
            .await
            .context("cannot read the audit log")?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let Err(e) = v.check(r) {
                finish();
                return Ok(Err(e));
            }
        }
        let done = u64::try_from(v.last_seq()).unwrap_or(0);
        bar.set(done, total);
    }
    finish();
    Ok(v.finish(head.seq, &head.hash).map(|n| (n, head.hash)))
}
