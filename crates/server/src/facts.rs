//! What never changes about a record, remembered so that a write does not
//! read it again: an artifact's engagement and type, an engagement's pack.
//! Nothing updates these columns or deletes these rows, so a remembered fact
//! is never wrong; the store still checks everything that
//! can change (status, version, leases) in the write's own transaction.

use std::collections::HashMap;
use std::sync::Mutex;

use waymark_domain::{ArtifactId, EngagementId};
use waymark_store::ArtifactSummary;

/// Entries kept per map before it starts over.
const CAPACITY: usize = 50_000;

/// An artifact's fixed facts.
#[derive(Debug, Clone)]
pub struct ArtifactFacts {
    pub engagement_id: Option<EngagementId>,
    pub artifact_type: String,
}

impl From<&ArtifactSummary> for ArtifactFacts {
    fn from(a: &ArtifactSummary) -> Self {
        Self {
            engagement_id: a.engagement_id,
            artifact_type: a.artifact_type.clone(),
        }
    }
}

#[derive(Default)]
pub struct Facts {
    artifacts: Mutex<HashMap<ArtifactId, ArtifactFacts>>,
    engagement_packs: Mutex<HashMap<EngagementId, String>>,
}

impl Facts {
    pub fn artifact(&self, id: ArtifactId) -> Option<ArtifactFacts> {
        lock(&self.artifacts).get(&id).cloned()
    }

    pub fn remember_artifact(&self, id: ArtifactId, facts: ArtifactFacts) {
        insert(&self.artifacts, id, facts);
    }

    pub fn engagement_pack(&self, id: EngagementId) -> Option<String> {
        lock(&self.engagement_packs).get(&id).cloned()
    }

    pub fn remember_engagement_pack(&self, id: EngagementId, pack: String) {
        insert(&self.engagement_packs, id, pack);
    }
}

fn lock<K, V>(m: &Mutex<HashMap<K, V>>) -> std::sync::MutexGuard<'_, HashMap<K, V>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn insert<K: std::hash::Hash + Eq, V>(m: &Mutex<HashMap<K, V>>, k: K, v: V) {
    let mut m = lock(m);
    if m.len() >= CAPACITY {
        m.clear();
    }
    m.insert(k, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_map_starts_over_and_keeps_the_newest() {
        let facts = Facts::default();
        let ids: Vec<EngagementId> = (0..=CAPACITY).map(|_| EngagementId::new()).collect();
        for id in &ids {
            facts.remember_engagement_pack(*id, "p".into());
        }
        assert_eq!(lock(&facts.engagement_packs).len(), 1);
        assert_eq!(facts.engagement_pack(ids[CAPACITY]).as_deref(), Some("p"));
        assert_eq!(facts.engagement_pack(ids[0]), None);
    }
}
