//! Walking the audit chain: every record from the first to the head read at
//! the start, each checked by `domain::audit::Verifier`. `waymark audit
//! verify` and the admin's "verify chain" page both come here.

use waymark_domain::audit::{ChainBreak, Verifier};
use waymark_store::{Store, StoreError};

/// Records read per query.
const PAGE: i64 = 5_000;

/// What a walk found: the records checked and the head hash, or the first
/// record that does not hold.
pub type Verdict = Result<(u64, String), ChainBreak>;

/// Verifies the chain up to the head read at the start (writes that land
/// meanwhile are left for the next run, so a busy database does not keep the
/// walk going). `progress(done, total)` is called after each page.
pub async fn verify(
    store: &dyn Store,
    mut progress: impl FnMut(u64, u64),
) -> Result<Verdict, StoreError> {
    let head = store.audit_head().await?;
    let total = u64::try_from(head.seq).unwrap_or(0);
    let mut v = Verifier::new();
    while v.last_seq() < head.seq {
        let page = store.audit_chain(v.last_seq(), PAGE).await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            if let Err(e) = v.check(r) {
                return Ok(Err(e));
            }
        }
        progress(u64::try_from(v.last_seq()).unwrap_or(0), total);
    }
    Ok(v.finish(head.seq, &head.hash).map(|n| (n, head.hash)))
}
