//! The engine's Prometheus series, through the `metrics` facade (`/metrics`
//! renders them): the tasks claimed and finished, by whom, how long they ran,
//! and the leases that expired. Queue depth and open incidents come from the
//! database when `/metrics` is read ([`gauges`]), so every replica reports
//! the same figures.

use std::time::Duration;

use waymark_domain::work::{ENGINE_LANE, TaskStatus};
use waymark_store::{Store, StoreError};

/// Tasks claimed from a lane (the engine's, or an agent's).
/// (Counted at zero too, so that the series exists from the first claim.)
pub fn claimed(lane: &str, n: usize) {
    metrics::counter!("waymark_tasks_claimed_total", "lane" => lane.to_owned()).increment(n as u64);
}

/// A finish recorded: `completed`, `retried` (ready again after a failed
/// attempt) or `failed` (attempts exhausted: an incident opened).
pub fn finished(status: TaskStatus) {
    let outcome = match status {
        TaskStatus::Completed => "completed",
        TaskStatus::Ready => "retried",
        TaskStatus::Failed => "failed",
        _ => "other",
    };
    metrics::counter!("waymark_tasks_finished_total", "outcome" => outcome).increment(1);
}

/// How long one attempt of the engine's ran, by executor.
pub fn ran(executor: &str, took: Duration) {
    metrics::histogram!("waymark_task_run_duration_seconds", "executor" => executor.to_owned())
        .record(took.as_secs_f64());
}

/// Leases that expired (their attempts failed, to be retried).
/// (Counted at zero too, so that the series exists from the first sweep.)
pub fn expired(n: usize) {
    metrics::counter!("waymark_leases_expired_total").increment(n as u64);
}

/// The gauges read from the database, in the Prometheus text format: ready
/// and running tasks per lane, and open incidents. They are this database's
/// figures, rendered per scrape rather than kept in the process's recorder.
pub async fn gauges(store: &dyn Store) -> Result<String, StoreError> {
    use std::fmt::Write;
    let mut g = store.engine_gauges().await?;
    // The engine's own lane is always there, at zero when idle.
    if !g.lanes.iter().any(|(lane, ..)| lane == ENGINE_LANE) {
        g.lanes.insert(0, (ENGINE_LANE.to_owned(), 0, 0));
    }
    let mut out = String::from(
        "# HELP waymark_tasks_queued Tasks of each lane that are ready (waiting to be claimed) or running\n\
         # TYPE waymark_tasks_queued gauge\n",
    );
    for (lane, ready, running) in &g.lanes {
        let lane = label(lane);
        let _ = writeln!(
            out,
            "waymark_tasks_queued{{lane=\"{lane}\",state=\"ready\"}} {ready}"
        );
        let _ = writeln!(
            out,
            "waymark_tasks_queued{{lane=\"{lane}\",state=\"running\"}} {running}"
        );
    }
    let _ = write!(
        out,
        "# HELP waymark_incidents_open Incidents not yet resolved\n\
         # TYPE waymark_incidents_open gauge\n\
         waymark_incidents_open {}\n",
        g.open_incidents
    );
    Ok(out)
}

/// A label value escaped as the text format wants it.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(super::label("engine"), "engine");
    }
}
