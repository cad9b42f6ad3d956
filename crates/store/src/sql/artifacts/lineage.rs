//! An artifact's lineage: upstream at the exact versions used, downstream at
//! the latest versions, each found by one recursive query.

use sqlx::FromRow;
use uuid::Uuid;

use super::*;

/// Every source edge upstream of version `$2` of `$1`, at the exact versions used.
const LINEAGE_UPSTREAM: &str = "WITH RECURSIVE up(id, version) AS ( \
       SELECT source_id, source_version FROM version_sources WHERE artifact_id = $1 AND version = $2 \
       UNION \
       SELECT vs.source_id, vs.source_version FROM up \
       JOIN version_sources vs ON vs.artifact_id = up.id AND vs.version = up.version \
     ) \
     SELECT vs.artifact_id AS via_id, vs.version AS via_version, vs.source_id, vs.source_version, \
            a.type, a.title, a.status, a.version AS latest_version \
     FROM version_sources vs JOIN artifacts a ON a.id = vs.source_id \
     WHERE (vs.artifact_id = $1 AND vs.version = $2) \
        OR EXISTS (SELECT 1 FROM up WHERE up.id = vs.artifact_id AND up.version = vs.version) \
     ORDER BY vs.artifact_id, vs.version, vs.position";

/// Every artifact whose latest version was built on `$1`, or on one of those,
/// with the edges of its latest version inside that set.
const LINEAGE_DOWNSTREAM: &str = "WITH RECURSIVE down(id) AS ( \
       SELECT a.id FROM version_sources vs CROSS JOIN artifacts a \
       WHERE vs.source_id = $1 AND a.id = vs.artifact_id AND a.version = vs.version \
       UNION \
       SELECT a.id FROM down CROSS JOIN version_sources vs CROSS JOIN artifacts a \
       WHERE vs.source_id = down.id AND a.id = vs.artifact_id AND a.version = vs.version \
     ) \
     SELECT a.id, a.type, a.title, a.status, a.version, vs.source_id AS via_id, \
            vs.source_version AS via_version \
     FROM down CROSS JOIN artifacts a CROSS JOIN version_sources vs \
     WHERE a.id = down.id AND vs.artifact_id = a.id AND vs.version = a.version \
       AND (vs.source_id = $1 OR vs.source_id IN (SELECT id FROM down)) \
     ORDER BY a.id, vs.position";

#[derive(FromRow)]
struct UpRow {
    via_id: Uuid,
    via_version: i64,
    source_id: Uuid,
    source_version: i64,
    #[sqlx(rename = "type")]
    artifact_type: String,
    title: String,
    status: String,
    latest_version: i64,
}

#[derive(FromRow)]
struct DownRow {
    id: Uuid,
    #[sqlx(rename = "type")]
    artifact_type: String,
    title: String,
    status: String,
    version: i64,
    via_id: Uuid,
    via_version: i64,
}

pub(crate) async fn lineage(store: &SqlStore, id: ArtifactId, limit: usize) -> Result<Lineage> {
    let version = store.get_artifact_version(id).await?;
    let (up, down): (Vec<UpRow>, Vec<DownRow>) = {
        let p = &mut store.db.reader();
        let up = sql(LINEAGE_UPSTREAM)
            .bind(id.uuid())
            .bind(version)
            .fetch_all(p)
            .await?;
        let down = sql(LINEAGE_DOWNSTREAM).bind(id.uuid()).fetch_all(p).await?;
        (up, down)
    };
    let root = (id.uuid(), version);
    // Upstream nodes are (artifact, version) pairs; depth by breadth-first search.
    let mut up_nodes = Vec::new();
    let mut depth_of: std::collections::HashMap<(Uuid, i64), i64> =
        std::collections::HashMap::from([(root, 0)]);
    let mut by_consumer: std::collections::HashMap<(Uuid, i64), Vec<&UpRow>> =
        std::collections::HashMap::new();
    for r in &up {
        by_consumer
            .entry((r.via_id, r.via_version))
            .or_default()
            .push(r);
    }
    let mut frontier = vec![root];
    let mut d = 0;
    while !frontier.is_empty() && up_nodes.len() <= limit {
        d += 1;
        let mut next = Vec::new();
        for consumer in &frontier {
            for r in by_consumer.get(consumer).into_iter().flatten() {
                let key = (r.source_id, r.source_version);
                if depth_of.contains_key(&key) {
                    continue;
                }
                depth_of.insert(key, d);
                next.push(key);
                up_nodes.push(LineageNode {
                    artifact_id: ArtifactId::from_uuid(r.source_id),
                    artifact_type: r.artifact_type.clone(),
                    title: r.title.clone(),
                    status: status(&r.status)?,
                    version: r.source_version,
                    latest_version: r.latest_version,
                    depth: d,
                    via: SourceRef {
                        artifact_id: ArtifactId::from_uuid(r.via_id),
                        version: r.via_version,
                    },
                });
            }
        }
        frontier = next;
    }
    // Downstream nodes are artifacts at their latest version.
    let mut by_via: std::collections::HashMap<Uuid, Vec<&DownRow>> =
        std::collections::HashMap::new();
    for r in &down {
        by_via.entry(r.via_id).or_default().push(r);
    }
    let mut down_nodes = Vec::new();
    let mut seen: std::collections::HashSet<Uuid> = std::collections::HashSet::from([root.0]);
    let mut frontier = vec![root.0];
    let mut d = 0;
    while !frontier.is_empty() && down_nodes.len() <= limit {
        d += 1;
        let mut next = Vec::new();
        for via in &frontier {
            for r in by_via.get(via).into_iter().flatten() {
                if !seen.insert(r.id) {
                    continue;
                }
                next.push(r.id);
                down_nodes.push(LineageNode {
                    artifact_id: ArtifactId::from_uuid(r.id),
                    artifact_type: r.artifact_type.clone(),
                    title: r.title.clone(),
                    status: status(&r.status)?,
                    version: r.version,
                    latest_version: r.version,
                    depth: d,
                    via: SourceRef {
                        artifact_id: ArtifactId::from_uuid(r.via_id),
                        version: r.via_version,
                    },
                });
            }
        }
        frontier = next;
    }
    let truncated = up_nodes.len() > limit || down_nodes.len() > limit;
    up_nodes.truncate(limit);
    down_nodes.truncate(limit);
    Ok(Lineage {
        artifact_id: id,
        version,
        upstream: up_nodes,
        downstream: down_nodes,
        truncated,
    })
}
