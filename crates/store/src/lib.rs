//! Waymark's storage.
//!
//! [`Store`] is the one interface the server talks to; [`SqlStore`] implements it
//! on SQLite ([`sqlite::open`]) and on PostgreSQL ([`postgres::connect`]). Both
//! backends run the same statements wherever the dialects agree, and the same
//! contract suite (`tests/contract.rs`) runs against both.
//!
//! Domain rules (which transitions are legal, when content is editable, how
//! hashes are computed) live in `waymark-domain`; the store calls them inside its
//! transactions so that a rule and the write it allows are atomic.

mod desk;
mod error;
mod exports;
mod files;
mod journey;
mod log;
mod model;
mod people;
mod playbook;
pub mod postgres;
mod review;
mod search;
mod sql;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;
mod work;

use async_trait::async_trait;

pub use desk::*;
pub use error::StoreError;
pub use exports::*;
pub use files::*;
pub use journey::*;
pub use log::*;
pub use model::*;
pub use people::*;
pub use playbook::*;
pub use review::*;
pub use search::*;
pub use sql::SqlStore;
pub use sql::dump::{DumpColumn, DumpTable, Loader, schema_version};
pub use work::*;

use waymark_domain::lifecycle::ArtifactStatus;
use waymark_domain::{ArtifactId, ClientId, EngagementId};

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything Waymark keeps. Implementations are cheap to share (`Arc<dyn Store>`).
///
/// Every write appends, in its own transaction, one hash-chained audit record
/// and the events it raises (see [`LogStore`]).
#[async_trait]
pub trait Store:
    PeopleStore
    + ReviewStore
    + LogStore
    + WorkStore
    + JourneyStore
    + DeskStore
    + PlaybookStore
    + FileStore
    + ExportStore
    + SearchStore
    + Send
    + Sync
    + 'static
{
    /// Which database this store runs on.
    fn backend(&self) -> Backend;
    /// Checks that the database answers.
    async fn ping(&self) -> Result<()>;
    /// Connection pool gauges, for `/metrics`.
    fn pool_stats(&self) -> Vec<PoolStats>;
    /// Closes the pools, waiting for connections in use.
    async fn close(&self);
    /// Refreshes the query planner's statistics (`ANALYZE`), as the database's own
    /// maintenance would; worth running after a bulk load.
    async fn optimize(&self) -> Result<()>;

    // --- tokens -------------------------------------------------------------

    /// The token whose secret hashes to `secret_hash`, revoked or not.
    async fn token_by_hash(&self, secret_hash: &[u8]) -> Result<Option<TokenRecord>>;
    /// Makes `token` the one live token called `token.name`: nothing changes when
    /// a live token of that name already has this hash; otherwise the others of
    /// that name are revoked and this one is stored. Answers whether it stored one.
    async fn replace_named_token(&self, token: NewToken) -> Result<bool>;
    /// Whether a live (not revoked, not expired) token called `name` exists.
    async fn live_token_named(&self, name: &str) -> Result<bool>;

    // --- clients and engagements ---------------------------------------------

    async fn create_client(&self, new: NewClient, ctx: &WriteContext) -> Result<Created<Client>>;
    async fn get_client(&self, id: ClientId) -> Result<Client>;
    async fn list_clients(&self, page: PageRequest) -> Result<Page<Client>>;
    async fn update_client(
        &self,
        id: ClientId,
        patch: ClientPatch,
        ctx: &WriteContext,
    ) -> Result<Client>;

    async fn create_engagement(
        &self,
        new: NewEngagement,
        ctx: &WriteContext,
    ) -> Result<Created<Engagement>>;
    async fn get_engagement(&self, id: EngagementId) -> Result<Engagement>;
    async fn list_engagements(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Engagement>>;

    // --- artifacts -------------------------------------------------------------

    /// Creates an artifact at version 1 in `draft`. With a pipeline, refuses a
    /// gated type ([`StoreError::Gated`]) in the same transaction as the insert.
    async fn create_artifact(
        &self,
        new: NewArtifact,
        ctx: &WriteContext,
    ) -> Result<Created<Artifact>>;
    /// The artifact with its latest version.
    async fn get_artifact(&self, id: ArtifactId) -> Result<Artifact>;
    /// The artifact without its content and sources (one cheap read).
    async fn get_artifact_summary(&self, id: ArtifactId) -> Result<ArtifactSummary>;
    async fn list_artifacts(
        &self,
        filter: ArtifactFilter,
        page: PageRequest,
    ) -> Result<Page<ArtifactSummary>>;
    /// Writes a new version when the latest is `expected_version` and the status
    /// allows editing. A stale artifact goes back to `draft`. When the content hash
    /// changed, the stale cascade runs in the same transaction.
    async fn write_content(
        &self,
        id: ArtifactId,
        expected_version: i64,
        write: NewVersion,
        ctx: &WriteContext,
    ) -> Result<Written>;
    /// Writes a new version whose content equals version `to_version`, with that
    /// version's sources; the cascade runs as for [`Store::write_content`].
    async fn rollback(
        &self,
        id: ArtifactId,
        expected_version: i64,
        to_version: i64,
        pipeline: Option<Pipeline>,
        ctx: &WriteContext,
    ) -> Result<Written>;
    async fn list_versions(&self, id: ArtifactId, page: PageRequest) -> Result<Page<Version>>;
    async fn get_version(&self, id: ArtifactId, version: i64) -> Result<Version>;
    /// Moves the artifact to `to` when the lifecycle allows it. Re-approving a
    /// stale artifact is refused while an upstream artifact is not approved
    /// ([`StoreError::Gated`]); it re-bases the artifact: a new version with
    /// the same content, built on the latest version of each of its sources.
    /// `overridden`: an admin approves past the type's approval policy, which
    /// history (`approval_overridden`) and the audit log
    /// (`artifact.approval_override`) record as such.
    async fn transition(
        &self,
        id: ArtifactId,
        to: ArtifactStatus,
        reason: Option<String>,
        pipeline: Option<Pipeline>,
        overridden: bool,
        ctx: &WriteContext,
    ) -> Result<Artifact>;
    async fn history(&self, id: ArtifactId, page: PageRequest) -> Result<Page<HistoryEntry>>;
    /// Upstream and downstream of an artifact, at most `limit` of each.
    async fn lineage(&self, id: ArtifactId, limit: usize) -> Result<Lineage>;

    // --- pipelines -------------------------------------------------------------

    /// The current artifact of each type in the engagement: the newest one not
    /// cancelled or archived.
    async fn current_artifacts(&self, engagement_id: EngagementId) -> Result<Vec<ArtifactSummary>>;
    /// Records the deliverables of the engagement's generation plan (`None`: all).
    async fn save_plan(
        &self,
        engagement_id: EngagementId,
        deliverables: Option<Vec<String>>,
        ctx: &WriteContext,
    ) -> Result<PlanRecord>;
    async fn get_plan(&self, engagement_id: EngagementId) -> Result<Option<PlanRecord>>;

    // --- packs -----------------------------------------------------------------

    /// Installs a pack, replacing an installed one of the same name. The
    /// generated artifacts of `changed_generators` (types whose generator the
    /// new pack changed) go stale with everything built on them; answers them.
    async fn install_pack(
        &self,
        pack: InstalledPack,
        changed_generators: &[String],
        ctx: &WriteContext,
    ) -> Result<Vec<Flagged>>;
    async fn installed_pack(&self, name: &str) -> Result<Option<InstalledPack>>;
    /// The digest of the installed pack `name`, to tell whether a cached copy is current.
    async fn installed_pack_digest(&self, name: &str) -> Result<Option<String>>;
    async fn list_installed_packs(&self) -> Result<Vec<InstalledPack>>;
}
