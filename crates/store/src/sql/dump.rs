//! Every record as JSON values, out of one database and into another of
//! either kind (`waymark export` and `waymark import`).
//!
//! [`SqlStore::dump_tables`] lists the tables a dump holds, parents before
//! children (foreign keys), each with its columns and their types as this
//! database names them; [`SqlStore::dump_rows`] reads one table's rows in key
//! order from one snapshot, each row a JSON array in column order. Values are
//! written as the source keeps them (an id is hex of 16 bytes on SQLite, a
//! UUID on PostgreSQL; a JSON document is text on SQLite, a value on
//! PostgreSQL; bytes are hex), so nothing is lost on the way out.
//!
//! [`SqlStore::loader`] loads such a dump, in one transaction, into an empty
//! database of either kind. Each column's value is turned back into the value
//! the store itself binds ([`Arg`]): the column's type is the PostgreSQL one
//! whichever side has it (SQLite's STRICT types are storage classes only), so
//! an id goes in as an id, a time as a time, a document as a document, and
//! the rows read back exactly as the store wrote them at the source.
//! Derived tables are not dumped: the search index is rebuilt from its rows
//! (`search_docs`), and PostgreSQL's sequences continue after the loaded rows.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::Row;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::SqlStore;
use super::db::{Arg, Pools, Tx, sql};
use crate::{Backend, Result, StoreError};

/// A table of a dump: its name and columns.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpTable {
    pub name: String,
    pub columns: Vec<DumpColumn>,
    /// The primary key's columns, in order (empty: none).
    #[serde(default)]
    pub key: Vec<String>,
}

/// A column and its type as the source database names it (`uuid`,
/// `timestamp with time zone`, `jsonb`... on PostgreSQL; `BLOB`, `TEXT`,
/// `INTEGER`, `REAL` on SQLite).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DumpColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

/// Tables that are never dumped: the migrations' own bookkeeping, and the
/// audit log's queue (PostgreSQL), which a dump waits to be empty.
const SKIPPED: &[&str] = &["_sqlx_migrations", "log_pending"];

/// Tables a dump needs empty in the target: an installation's own records.
const MUST_BE_EMPTY: &[&str] = &["clients", "users", "artifacts", "audit_log", "events"];

/// Bound values per insert statement: under SQLite's 32,766 and
/// PostgreSQL's 65,535.
const BINDS_PER_STATEMENT: usize = 30_000;

/// What a column holds, across both databases.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Uuid,
    Text,
    Int,
    Int32,
    Float,
    Bool,
    Bytes,
    Time,
    Date,
    Json,
}

impl Kind {
    /// The kind of a PostgreSQL type, or of a SQLite storage class.
    fn of(ty: &str) -> Option<Kind> {
        Some(match ty {
            "uuid" => Kind::Uuid,
            "text" | "character varying" | "TEXT" => Kind::Text,
            "bigint" | "INTEGER" => Kind::Int,
            "integer" | "smallint" => Kind::Int32,
            "double precision" | "real" | "REAL" => Kind::Float,
            "boolean" => Kind::Bool,
            "bytea" | "BLOB" => Kind::Bytes,
            "timestamp with time zone" => Kind::Time,
            "date" => Kind::Date,
            "jsonb" | "json" => Kind::Json,
            _ => return None,
        })
    }
}

/// The newest schema migration this build knows (both databases have the
/// same numbering): a dump names its source's, and one from a newer schema
/// is refused.
pub fn schema_version() -> i64 {
    crate::sqlite::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

fn invalid(detail: String) -> StoreError {
    StoreError::Refused {
        code: "invalid_dump",
        detail,
    }
}

impl SqlStore {
    /// The tables a dump of this database holds, parents before children.
    pub async fn dump_tables(&self) -> Result<Vec<DumpTable>> {
        Ok(self.schema().await?.into_iter().map(|t| t.table).collect())
    }

    /// Calls `row` with each row of each of `tables` (JSON arrays in column
    /// order, in key order), all read from one snapshot; answers each
    /// table's row count. On PostgreSQL it first seals the audit log and
    /// refuses to go on while writes keep queueing entries (stop the servers
    /// and workers first, or run it again).
    pub async fn dump_rows(
        &self,
        tables: &[DumpTable],
        row: &mut (dyn FnMut(&str, &str) -> std::io::Result<()> + Send),
    ) -> Result<Vec<u64>> {
        let schema = self.schema().await?;
        let by_name: HashMap<&str, &Table> =
            schema.iter().map(|t| (t.table.name.as_str(), t)).collect();
        let mut queries = Vec::with_capacity(tables.len());
        for t in tables {
            let table = by_name
                .get(t.name.as_str())
                .ok_or_else(|| invalid(format!("no table {} to dump", t.name)))?;
            queries.push((t.name.clone(), table.select(self.db.backend())));
        }
        let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
        let mut counts = Vec::with_capacity(tables.len());
        match &self.db {
            Pools::Sqlite { read, .. } => {
                let mut conn = read.acquire().await?;
                // One read transaction: one snapshot of every table.
                sqlx::query("BEGIN").execute(&mut *conn).await?;
                for (name, q) in &queries {
                    let mut n = 0;
                    let mut rows = sqlx::query_scalar::<_, String>(q).fetch(&mut *conn);
                    while let Some(r) = rows.next().await {
                        row(name, &r?).map_err(io)?;
                        n += 1;
                    }
                    counts.push(n);
                }
                drop(sqlx::query("COMMIT").execute(&mut *conn).await);
            }
            Pools::Postgres { pool, .. } => {
                self.db.sealed().await?;
                let mut tx = pool.begin().await?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await?;
                let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM log_pending")
                    .fetch_one(&mut *tx)
                    .await?;
                if queued > 0 {
                    return Err(StoreError::Refused {
                        code: "writes_in_progress",
                        detail: "writes are still being made: stop the servers and workers on \
                                 this database, then export again"
                            .into(),
                    });
                }
                for (name, q) in &queries {
                    let mut n = 0;
                    let mut rows = sqlx::query_scalar::<_, String>(q).fetch(&mut *tx);
                    while let Some(r) = rows.next().await {
                        row(name, &r?).map_err(io)?;
                        n += 1;
                    }
                    counts.push(n);
                }
                tx.rollback().await?;
            }
        }
        Ok(counts)
    }

    /// Starts loading a dump made from a `source` database into this one,
    /// which must hold no records yet (it is migrated). Nothing is visible
    /// until [`Loader::finish`]; dropping the loader leaves the database as
    /// it was.
    pub async fn loader(&self, source: Backend) -> Result<Loader> {
        let schema = self.schema().await?;
        let mut tx = self.db.begin().await?;
        for table in MUST_BE_EMPTY {
            let (found,): (i64,) = sql(format!(
                "SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1) AS t"
            ))
            .fetch_one(&mut tx)
            .await?;
            if found > 0 {
                return Err(StoreError::Refused {
                    code: "not_empty",
                    detail: format!(
                        "this database already holds records ({table} has rows): import into \
                         a new, empty database"
                    ),
                });
            }
        }
        // What the migrations put in (the log's head row), the dump replaces.
        for t in schema.iter().rev() {
            sql(format!("DELETE FROM {}", quoted(&t.table.name)))
                .execute(&mut tx)
                .await?;
        }
        Ok(Loader {
            tx,
            source,
            target: self.db.backend(),
            schema,
            loaded: BTreeSet::new(),
        })
    }

    /// This database's tables, parents first, with what a dump needs to know.
    async fn schema(&self) -> Result<Vec<Table>> {
        let mut tables = match &self.db {
            Pools::Sqlite { read, .. } => sqlite_schema(read).await?,
            Pools::Postgres { pool, .. } => postgres_schema(pool).await?,
        };
        tables.retain(|t| !SKIPPED.contains(&t.table.name.as_str()));
        parents_first(tables)
    }
}

/// A table of this database.
#[derive(Debug)]
struct Table {
    table: DumpTable,
    /// The tables its foreign keys name.
    parents: BTreeSet<String>,
    /// PostgreSQL: an identity column that refuses given values unless told.
    identity: bool,
    /// PostgreSQL: columns filled from sequences, to continue after a load.
    serial: Vec<String>,
}

impl Table {
    /// The statement reading every row as a JSON array, in key order.
    fn select(&self, backend: Backend) -> String {
        let mut cols = String::new();
        for (i, c) in self.table.columns.iter().enumerate() {
            if i > 0 {
                cols.push_str(", ");
            }
            let q = quoted(&c.name);
            match (backend, Kind::of(&c.ty)) {
                (Backend::Sqlite, Some(Kind::Bytes)) => {
                    let _ = write!(cols, "CASE WHEN {q} IS NULL THEN NULL ELSE hex({q}) END");
                }
                (Backend::Postgres, Some(Kind::Bytes)) => {
                    let _ = write!(cols, "encode({q}, 'hex')");
                }
                _ => cols.push_str(&q),
            }
        }
        let order = if self.table.key.is_empty() {
            self.table
                .columns
                .iter()
                .map(|c| quoted(&c.name))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            self.table
                .key
                .iter()
                .map(|k| quoted(k))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let array = match backend {
            Backend::Sqlite => format!("json_array({cols})"),
            Backend::Postgres => format!("jsonb_build_array({cols})::text"),
        };
        format!(
            "SELECT {array} FROM {} ORDER BY {order}",
            quoted(&self.table.name)
        )
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn sqlite_schema(pool: &sqlx::SqlitePool) -> Result<Vec<Table>> {
    let all: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, COALESCE(sql, '') FROM sqlite_schema WHERE type = 'table' \
         AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    // Virtual tables (the search index) and the tables they keep theirs in.
    let virtuals: Vec<&str> = all
        .iter()
        .filter(|(_, s)| s.starts_with("CREATE VIRTUAL"))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut tables = Vec::new();
    for (name, _) in &all {
        if virtuals
            .iter()
            .any(|v| name == v || name.starts_with(&format!("{v}_")))
        {
            continue;
        }
        let cols =
            sqlx::query("SELECT name, type, pk, hidden FROM pragma_table_xinfo($1) ORDER BY cid")
                .bind(name)
                .fetch_all(pool)
                .await?;
        let mut columns = Vec::new();
        let mut key = BTreeMap::new();
        for c in cols {
            let (col, ty, pk, hidden): (String, String, i64, i64) =
                (c.get(0), c.get(1), c.get(2), c.get(3));
            if hidden != 0 {
                continue;
            }
            if pk > 0 {
                key.insert(pk, col.clone());
            }
            columns.push(DumpColumn { name: col, ty });
        }
        let parents: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list($1)")
                .bind(name)
                .fetch_all(pool)
                .await?;
        tables.push(Table {
            table: DumpTable {
                name: name.clone(),
                columns,
                key: key.into_values().collect(),
            },
            parents: parents.into_iter().map(|p| p.0).collect(),
            identity: false,
            serial: Vec::new(),
        });
    }
    Ok(tables)
}

async fn postgres_schema(pool: &sqlx::PgPool) -> Result<Vec<Table>> {
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::new();
    for (name,) in names {
        let cols = sqlx::query(
            "SELECT column_name::text, data_type::text, is_generated::text, \
                    COALESCE(identity_generation::text, ''), \
                    COALESCE(column_default, '') LIKE 'nextval(%' OR is_identity = 'YES' \
             FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let mut columns = Vec::new();
        let mut identity = false;
        let mut serial = Vec::new();
        for c in cols {
            let (col, ty, generated, ident, seq): (String, String, String, String, bool) =
                (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4));
            if generated == "ALWAYS" {
                continue;
            }
            identity |= ident == "ALWAYS";
            if seq {
                serial.push(col.clone());
            }
            columns.push(DumpColumn { name: col, ty });
        }
        let key: Vec<(String,)> = sqlx::query_as(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = (quote_ident(current_schema()) || '.' || quote_ident($1))::regclass \
               AND i.indisprimary \
             ORDER BY array_position(i.indkey::int2[], a.attnum)",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        let parents: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT p.relname::text FROM pg_constraint c \
             JOIN pg_class p ON p.oid = c.confrelid \
             WHERE c.contype = 'f' \
               AND c.conrelid = (quote_ident(current_schema()) || '.' || quote_ident($1))::regclass",
        )
        .bind(&name)
        .fetch_all(pool)
        .await?;
        tables.push(Table {
            table: DumpTable {
                name,
                columns,
                key: key.into_iter().map(|k| k.0).collect(),
            },
            parents: parents.into_iter().map(|p| p.0).collect(),
            identity,
            serial,
        });
    }
    Ok(tables)
}

/// Orders tables so that every table comes after those its foreign keys
/// name (by name among equals, so both databases list them alike).
fn parents_first(mut tables: Vec<Table>) -> Result<Vec<Table>> {
    let names: BTreeSet<String> = tables.iter().map(|t| t.table.name.clone()).collect();
    let mut placed = BTreeSet::new();
    let mut out = Vec::with_capacity(tables.len());
    while !tables.is_empty() {
        let ready: Vec<usize> = (0..tables.len())
            .filter(|&i| {
                tables[i]
                    .parents
                    .iter()
                    .all(|p| p == &tables[i].table.name || placed.contains(p) || !names.contains(p))
            })
            .collect();
        if ready.is_empty() {
            return Err(invalid(format!(
                "the tables {} name each other in a cycle",
                tables
                    .iter()
                    .map(|t| t.table.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut next: Vec<Table> = ready.into_iter().rev().map(|i| tables.remove(i)).collect();
        next.sort_by(|a, b| a.table.name.cmp(&b.table.name));
        for t in next {
            placed.insert(t.table.name.clone());
            out.push(t);
        }
    }
    Ok(out)
}

/// Loads a dump into an empty database, in one transaction (see
/// [`SqlStore::loader`]).
pub struct Loader {
    tx: Tx,
    source: Backend,
    target: Backend,
    schema: Vec<Table>,
    loaded: BTreeSet<String>,
}

impl Loader {
    /// This database's tables, in the order they are to be loaded.
    pub fn order(&self) -> Vec<String> {
        self.schema.iter().map(|t| t.table.name.clone()).collect()
    }

    /// Inserts `rows` of the dump's `table` (as [`SqlStore::dump_rows`]
    /// wrote them). The columns both databases have are loaded; a column
    /// only the target has takes its default; one only the source has must
    /// be empty, or be SQLite's own row number.
    pub async fn load(&mut self, table: &DumpTable, rows: &[Vec<Value>]) -> Result<()> {
        let target = self
            .schema
            .iter()
            .find(|t| t.table.name == table.name)
            .ok_or_else(|| {
                invalid(format!(
                    "this database has no table {}: the dump is from a newer Waymark",
                    table.name
                ))
            })?;
        self.loaded.insert(table.name.clone());
        // For each source column: where it goes and as what.
        let mut plan = Vec::new();
        for (i, c) in table.columns.iter().enumerate() {
            let Some(to) = target.table.columns.iter().find(|t| t.name == c.name) else {
                // SQLite's row number (a lone INTEGER key) that the target
                // does not keep: it numbers its rows itself.
                let row_number =
                    table.key.len() == 1 && table.key[0] == c.name && c.ty == "INTEGER";
                if row_number {
                    continue;
                }
                if let Some(row) = rows.iter().find(|r| !r.get(i).is_none_or(Value::is_null)) {
                    return Err(invalid(format!(
                        "{}.{} holds {} but this database has no such column",
                        table.name, c.name, row[i]
                    )));
                }
                continue;
            };
            let kind = match (self.source, self.target) {
                (Backend::Postgres, _) => Kind::of(&c.ty),
                (Backend::Sqlite, Backend::Postgres) => Kind::of(&to.ty),
                (Backend::Sqlite, Backend::Sqlite) => Kind::of(&c.ty),
            }
            .ok_or_else(|| {
                invalid(format!(
                    "{}.{} has a type this Waymark cannot load ({} → {})",
                    table.name, c.name, c.ty, to.ty
                ))
            })?;
            plan.push((i, to.name.clone(), kind));
        }
        if plan.is_empty() || rows.is_empty() {
            return Ok(());
        }
        let per_statement = (BINDS_PER_STATEMENT / plan.len()).max(1);
        for chunk in rows.chunks(per_statement) {
            let mut q = sql(format!(
                "INSERT INTO {} ({})",
                quoted(&table.name),
                plan.iter()
                    .map(|(_, n, _)| quoted(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            if target.identity {
                q.push(" OVERRIDING SYSTEM VALUE");
            }
            q.push(" VALUES ");
            for (r, row) in chunk.iter().enumerate() {
                if row.len() != table.columns.len() {
                    return Err(invalid(format!(
                        "a row of {} has {} values for {} columns",
                        table.name,
                        row.len(),
                        table.columns.len()
                    )));
                }
                q.push(if r == 0 { "(" } else { ", (" });
                for (j, (i, name, kind)) in plan.iter().enumerate() {
                    if j > 0 {
                        q.push(", ");
                    }
                    let arg = arg(*kind, self.source, &row[*i]).map_err(|why| {
                        invalid(format!("{}.{name}: {why} (value {})", table.name, row[*i]))
                    })?;
                    q.push_bind(arg);
                }
                q.push(")");
            }
            q.execute(&mut self.tx).await?;
        }
        Ok(())
    }

    /// Continues PostgreSQL's sequences after the loaded rows and commits.
    pub async fn finish(mut self) -> Result<()> {
        if self.target == Backend::Postgres {
            for t in &self.schema {
                for col in &t.serial {
                    let table = quoted(&t.table.name);
                    let column = quoted(col);
                    sql(format!(
                        "SELECT setval(pg_get_serial_sequence('{}', '{}'), \
                         COALESCE((SELECT max({column}) FROM {table}), 0) + 1, false)",
                        t.table.name.replace('\'', "''"),
                        col.replace('\'', "''"),
                    ))
                    .execute(&mut self.tx)
                    .await?;
                }
            }
        }
        self.tx.commit().await
    }
}

/// A dumped value as the store binds it for a column of `kind`.
fn arg(kind: Kind, source: Backend, v: &Value) -> std::result::Result<Arg<'static>, String> {
    use std::borrow::Cow;
    if v.is_null() {
        return Ok(match kind {
            Kind::Uuid => Arg::Uuid(None),
            Kind::Text => Arg::Text(None),
            Kind::Int => Arg::I64(None),
            Kind::Int32 => Arg::I32(None),
            Kind::Float => Arg::F64(None),
            Kind::Bool => Arg::Bool(None),
            Kind::Bytes => Arg::Bytes(None),
            Kind::Time => Arg::Time(None),
            Kind::Date => Arg::Date(None),
            Kind::Json => Arg::Json(None),
        });
    }
    let text = || v.as_str().ok_or_else(|| "expected text".to_owned());
    Ok(match kind {
        Kind::Uuid => Arg::Uuid(Some(match source {
            Backend::Sqlite => Uuid::from_slice(&unhex(text()?)?).map_err(|e| e.to_string())?,
            Backend::Postgres => Uuid::parse_str(text()?).map_err(|e| e.to_string())?,
        })),
        Kind::Text => Arg::Text(Some(Cow::Owned(text()?.to_owned()))),
        Kind::Int => Arg::I64(Some(v.as_i64().ok_or("expected an integer")?)),
        Kind::Int32 => Arg::I32(Some(
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or("expected a 32-bit integer")?,
        )),
        Kind::Float => Arg::F64(Some(v.as_f64().ok_or("expected a number")?)),
        Kind::Bool => Arg::Bool(Some(match v {
            Value::Bool(b) => *b,
            Value::Number(n) if n.as_i64() == Some(0) => false,
            Value::Number(n) if n.as_i64() == Some(1) => true,
            _ => return Err("expected true or false".into()),
        })),
        Kind::Bytes => Arg::Bytes(Some(Cow::Owned(unhex(text()?)?))),
        Kind::Time => Arg::Time(Some(
            OffsetDateTime::parse(text()?, &Rfc3339)
                .map_err(|e| e.to_string())?
                .to_offset(UtcOffset::UTC),
        )),
        Kind::Date => Arg::Date(Some(
            Date::parse(
                text()?,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|e| e.to_string())?,
        )),
        Kind::Json => Arg::Json(Some(match source {
            // SQLite keeps a document as its text: check it is one.
            Backend::Sqlite => {
                let t = text()?;
                serde_json::from_str::<serde::de::IgnoredAny>(t).map_err(|e| e.to_string())?;
                t.to_owned()
            }
            Backend::Postgres => v.to_string(),
        })),
    })
}

fn unhex(s: &str) -> std::result::Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
                .ok_or_else(|| "expected hex digits".to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(name: &str, parents: &[&str]) -> Table {
        Table {
            table: DumpTable {
                name: name.into(),
                columns: Vec::new(),
                key: Vec::new(),
            },
            parents: parents.iter().map(|p| p.to_string()).collect(),
            identity: false,
            serial: Vec::new(),
        }
    }

    #[test]
    fn parents_come_first_and_cycles_are_named() {
        let order = parents_first(vec![
            table("versions", &["artifacts"]),
            table("comments", &["comments", "artifacts"]),
            table("artifacts", &["clients"]),
            table("clients", &[]),
        ])
        .unwrap();
        let names: Vec<_> = order.iter().map(|t| t.table.name.as_str()).collect();
        assert_eq!(names, ["clients", "artifacts", "comments", "versions"]);
        let err = parents_first(vec![table("a", &["b"]), table("b", &["a"])]).unwrap_err();
        assert!(err.to_string().contains("a, b"), "{err}");
    }

    #[test]
    fn values_turn_back_into_what_the_store_binds() {
        let id = Uuid::now_v7();
        let hex: String = id.as_bytes().iter().map(|b| format!("{b:02X}")).collect();
        assert!(matches!(
            arg(Kind::Uuid, Backend::Sqlite, &json!(hex)).unwrap(),
            Arg::Uuid(Some(u)) if u == id
        ));
        assert!(matches!(
            arg(Kind::Uuid, Backend::Postgres, &json!(id.to_string())).unwrap(),
            Arg::Uuid(Some(u)) if u == id
        ));
        let Arg::Time(Some(t)) = arg(
            Kind::Time,
            Backend::Postgres,
            &json!("2026-12-01T08:30:00.123456+01:00"),
        )
        .unwrap() else {
            panic!("a time")
        };
        assert_eq!(t.offset(), UtcOffset::UTC);
        assert_eq!(t.hour(), 7);
        assert!(matches!(
            arg(Kind::Bool, Backend::Sqlite, &json!(1)).unwrap(),
            Arg::Bool(Some(true))
        ));
        assert!(matches!(
            arg(Kind::Json, Backend::Sqlite, &json!("{\"a\": [1]}")).unwrap(),
            Arg::Json(Some(s)) if s == "{\"a\": [1]}"
        ));
        assert!(matches!(
            arg(Kind::Json, Backend::Postgres, &json!({"a": [1]})).unwrap(),
            Arg::Json(Some(s)) if s == "{\"a\":[1]}"
        ));
        assert!(matches!(
            arg(Kind::Text, Backend::Sqlite, &Value::Null).unwrap(),
            Arg::Text(None)
        ));
        for (kind, bad) in [
            (Kind::Uuid, json!("zz")),
            (Kind::Json, json!("{not json")),
            (Kind::Int32, json!(1_i64 << 40)),
            (Kind::Bool, json!(2)),
            (Kind::Time, json!("yesterday")),
        ] {
            assert!(arg(kind, Backend::Sqlite, &bad).is_err(), "{kind:?} {bad}");
        }
    }
}
