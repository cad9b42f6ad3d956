//! The packs a server knows: the built-in ones, and those installed into the
//! database (by `waymark pack install` or `POST /api/v1/packs`), cached by digest so
//! every replica sees an install at its next lookup.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;
use waymark_domain::journey::JourneyTemplate;
use waymark_packs::{Pack, PackError, PackFiles, TypeDef, builtin, load};
use waymark_store::{InstalledPack, Pipeline, Store, StoreError, WriteContext};

use crate::error::EngineError;

/// Built-in and installed packs.
pub struct PackCatalog {
    store: Arc<dyn Store>,
    installed: RwLock<HashMap<String, Arc<Pack>>>,
}

/// Why a pack could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The pack does not load.
    #[error(transparent)]
    Invalid(#[from] PackError),
    /// Its name is a built-in pack's.
    #[error("`{0}` is the name of a built-in pack; give yours another name")]
    Builtin(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PackCatalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            installed: RwLock::new(HashMap::new()),
        }
    }

    /// The pack called `name`, built-in or installed.
    pub async fn get(&self, name: &str) -> Result<Option<Arc<Pack>>, StoreError> {
        if let Some(p) = builtin().iter().find(|p| p.name == name) {
            return Ok(Some(p.clone()));
        }
        let Some(digest) = self.store.installed_pack_digest(name).await? else {
            return Ok(None);
        };
        if let Some(p) = self.cached(name).filter(|p| p.digest == digest) {
            return Ok(Some(p));
        }
        let Some(row) = self.store.installed_pack(name).await? else {
            return Ok(None);
        };
        Ok(self.remember(row))
    }

    /// Every pack: built-in ones first, then installed ones, each by name.
    pub async fn list(&self) -> Result<Vec<(Arc<Pack>, bool)>, StoreError> {
        let mut all: Vec<(Arc<Pack>, bool)> = builtin().iter().map(|p| (p.clone(), true)).collect();
        for row in self.store.list_installed_packs().await? {
            let cached = self.cached(&row.name).filter(|p| p.digest == row.digest);
            if let Some(p) = cached.or_else(|| self.remember(row)) {
                all.push((p, false));
            }
        }
        Ok(all)
    }

    /// Checks and installs a pack, replacing an installed one of the same name.
    pub async fn install(
        &self,
        files: PackFiles,
        ctx: &WriteContext,
    ) -> Result<Arc<Pack>, InstallError> {
        let pack = load(&files)?;
        if builtin().iter().any(|p| p.name == pack.name) {
            return Err(InstallError::Builtin(pack.name));
        }
        let changed_generators = match self.get(&pack.name).await? {
            Some(old) => changed_generators(&old, &pack),
            None => Vec::new(),
        };
        self.store
            .install_pack(
                InstalledPack {
                    name: pack.name.clone(),
                    version: pack.version.clone(),
                    digest: pack.digest.clone(),
                    files: files.as_map().clone(),
                    installed_by: ctx.actor.clone(),
                    installed_at: OffsetDateTime::now_utc(),
                },
                &changed_generators,
                ctx,
            )
            .await?;
        let pack = Arc::new(pack);
        self.write_cache().insert(pack.name.clone(), pack.clone());
        Ok(pack)
    }

    fn cached(&self, name: &str) -> Option<Arc<Pack>> {
        self.installed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Pack>>> {
        self.installed.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads a stored pack into the cache. A stored pack that no longer loads (a
    /// newer binary with stricter checks) is logged and left out.
    fn remember(&self, row: InstalledPack) -> Option<Arc<Pack>> {
        let loaded = PackFiles::from_map(row.files)
            .map_err(|p| PackError { problems: vec![p] })
            .and_then(|f| load(&f));
        match loaded {
            Ok(p) => {
                let p = Arc::new(p);
                self.write_cache().insert(row.name, p.clone());
                Some(p)
            }
            Err(e) => {
                tracing::error!(pack = %row.name, error = %e, "an installed pack no longer loads");
                None
            }
        }
    }
}

/// The types of `new` whose generator differs from the one `old` gave them
/// (their generated artifacts go stale when `new` replaces `old`).
pub fn changed_generators(old: &Pack, new: &Pack) -> Vec<String> {
    new.types
        .iter()
        .filter(|t| {
            old.types
                .iter()
                .find(|o| o.name == t.name)
                .is_some_and(|o| o.generator_fingerprint() != t.generator_fingerprint())
        })
        .map(|t| t.name.clone())
        .collect()
}

/// The store's view of a type's pack rules.
pub fn pipeline_of(t: &TypeDef) -> Pipeline {
    Pipeline {
        requires: t.requires.clone(),
        generator: t.generator_fingerprint(),
    }
}

/// The pack of an engagement, which must exist.
pub async fn engagement_pack(catalog: &PackCatalog, pack: &str) -> Result<Arc<Pack>, EngineError> {
    catalog.get(pack).await?.ok_or_else(|| {
        EngineError::refused(
            "pack_missing",
            format!(
                "the engagement uses pack `{pack}`, which this server does not have; install it with `waymark pack install`"
            ),
        )
    })
}

/// Every journey template: the packs' (built-in, then installed) and those
/// saved over the API, each with where it comes from (a pack's name, or `api`).
pub async fn journey_templates(
    catalog: &PackCatalog,
    store: &dyn Store,
) -> Result<Vec<(JourneyTemplate, String)>, StoreError> {
    let mut out: Vec<(JourneyTemplate, String)> = Vec::new();
    for (pack, _) in catalog.list().await? {
        for t in &pack.journeys {
            if !out.iter().any(|(o, _)| o.name == t.name) {
                out.push((t.clone(), pack.name.clone()));
            }
        }
    }
    for t in store.list_journey_templates().await? {
        if !out.iter().any(|(o, _)| o.name == t.name) {
            out.push((t, "api".into()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The marketing pack with `edit` applied to its files.
    fn marketing_with(edit: impl FnOnce(&mut std::collections::BTreeMap<String, String>)) -> Pack {
        let base = builtin()
            .iter()
            .find(|p| p.name == "marketing-engagement")
            .unwrap();
        let mut files = base.files.as_map().clone();
        edit(&mut files);
        load(&PackFiles::from_map(files).unwrap()).unwrap()
    }

    #[test]
    fn a_changed_prompt_changes_its_types_generator_only() {
        let old = marketing_with(|_| {});
        let same = marketing_with(|_| {});
        assert!(changed_generators(&old, &same).is_empty());
        let new = marketing_with(|f| {
            f.get_mut("prompts/strategy.md")
                .unwrap()
                .push_str("\nName the two riskiest assumptions.\n");
        });
        assert_eq!(changed_generators(&old, &new), ["strategy"]);
    }
}
