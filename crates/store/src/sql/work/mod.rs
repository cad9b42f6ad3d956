//! [`WorkStore`] on SQL: units of work, tasks, leases, incidents, agents.
//!
//! The hot paths are set-based: a unit's tasks and edges go in with multi-row
//! inserts; a claim is one `UPDATE ... WHERE id IN (SELECT ... ORDER BY ...
//! LIMIT n [FOR UPDATE SKIP LOCKED]) RETURNING`, served by the partial index of
//! ready tasks of its lane; a batch of completions is a few statements whatever
//! its size, dependents included. Engine times are microseconds (INTEGER).

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;
use waymark_domain::work::{Resolution, TaskStatus};
use waymark_domain::{ClientId, IncidentId, TaskId, UnitId};

use super::*;
use crate::work::*;

mod agents;
mod generation;
mod incidents;
mod leases;
mod queue;
mod rows;
pub(crate) use rows::CHANNEL;
mod settle;
mod units;

use leases::check_finisher;
use queue::*;
pub(super) use queue::{Woken, hold_units, notify_lanes};
pub(super) use rows::*;
use settle::{Ends, settle};
pub(super) use units::{cancel_unit_in_tx, insert_unit};

impl SqlStore {
    pub(super) fn wake(&self, woken: &Woken) {
        if !woken.lanes.is_empty() {
            self.work.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

#[async_trait]
impl WorkStore for SqlStore {
    async fn submit_unit(&self, new: NewUnit, ctx: &WriteContext) -> Result<Created<Unit>> {
        units::submit_unit(self, new, ctx).await
    }

    async fn get_unit(&self, id: UnitId) -> Result<UnitDetail> {
        units::get_unit(self, id).await
    }

    async fn list_units(
        &self,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Unit>> {
        units::list_units(self, client_id, page).await
    }

    async fn task_attempts(&self, id: TaskId) -> Result<Vec<TaskAttempt>> {
        leases::task_attempts(self, id).await
    }

    async fn get_task(&self, id: TaskId) -> Result<Task> {
        units::get_task(self, id).await
    }

    async fn list_tasks(&self, filter: TaskFilter, page: PageRequest) -> Result<Page<Task>> {
        units::list_tasks(self, filter, page).await
    }

    async fn count_tasks(&self, unit_id: Option<UnitId>) -> Result<Vec<(TaskStatus, i64)>> {
        units::count_tasks(self, unit_id).await
    }

    async fn engine_gauges(&self) -> Result<EngineGauges> {
        units::engine_gauges(self).await
    }

    async fn claim(&self, claim: Claim) -> Result<Vec<Leased>> {
        leases::claim(self, claim).await
    }

    async fn heartbeat(
        &self,
        task_id: TaskId,
        lease_token: &str,
        lease: Duration,
    ) -> Result<OffsetDateTime> {
        leases::heartbeat(self, task_id, lease_token, lease).await
    }

    async fn finish(
        &self,
        finishes: Vec<Finish>,
        ctx: &WriteContext,
    ) -> Result<Vec<std::result::Result<Finished, StoreError>>> {
        settle::finish(self, finishes, ctx).await
    }

    async fn expire_leases(&self, limit: usize) -> Result<usize> {
        leases::expire_leases(self, limit).await
    }

    async fn next_run_in(&self, lane: &str) -> Result<Option<Duration>> {
        leases::next_run_in(self, lane).await
    }

    async fn cancel_task(
        &self,
        id: TaskId,
        reason: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Task> {
        settle::cancel_task(self, id, reason, ctx).await
    }

    async fn cancel_unit(
        &self,
        id: UnitId,
        reason: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Unit> {
        units::cancel_unit(self, id, reason, ctx).await
    }

    async fn get_incident(&self, id: IncidentId) -> Result<Incident> {
        incidents::get_incident(self, id).await
    }

    async fn list_incidents(
        &self,
        open_only: bool,
        client_id: Option<ClientId>,
        page: PageRequest,
    ) -> Result<Page<Incident>> {
        incidents::list_incidents(self, open_only, client_id, page).await
    }

    async fn resolve_incident(
        &self,
        id: IncidentId,
        resolution: Resolution,
        note: Option<String>,
        ctx: &WriteContext,
    ) -> Result<Incident> {
        incidents::resolve_incident(self, id, resolution, note, ctx).await
    }

    async fn register_agent(&self, agent: NewAgent, ctx: &WriteContext) -> Result<(Agent, bool)> {
        agents::register_agent(self, agent, ctx).await
    }

    async fn get_agent(&self, id: &str) -> Result<Agent> {
        agents::get_agent(self, id).await
    }

    async fn list_agents(&self) -> Result<Vec<Agent>> {
        agents::list_agents(self).await
    }

    async fn touch_agent(&self, id: &str) -> Result<()> {
        agents::touch_agent(self, id).await
    }

    async fn plan_jobs(&self, engagement_id: EngagementId) -> Result<Vec<PlanJobRecord>> {
        generation::plan_jobs(self, engagement_id).await
    }

    async fn finish_generation(&self, g: Generated, ctx: &WriteContext) -> Result<GenerationDone> {
        generation::finish_generation(self, g, ctx).await
    }

    fn work_signal(&self) -> tokio::sync::watch::Receiver<u64> {
        self.listen();
        self.work.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_microseconds() {
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert_eq!(at(unix_micros(t)), t);
        let _ = Duration::from_secs(1);
    }
}
