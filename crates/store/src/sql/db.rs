//! The one place that knows there are two databases.
//!
//! Every statement of the store is written once, with `$n` parameters (both
//! SQLite and PostgreSQL accept them), built with [`sql`] and run on a
//! [`Conn`]: a write transaction ([`Tx`]) or a pool ([`Pool`]). The statement
//! keeps its arguments as [`Arg`]s and binds them for the backend it runs on
//! when it runs, so the code around it is compiled once, is not generic, and
//! names no sqlx bound: rows are read into any [`Record`] (a type that is
//! `FromRow` for both backends). The few places where the dialects differ ask
//! the connection's [`Backend`] through [`Dialect`] (`FOR UPDATE`, `SKIP
//! LOCKED`, the set-based statements of the cascade, the database's clock).

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use sqlx::postgres::{PgArguments, PgConnection, PgPool, PgRow, Postgres};
use sqlx::sqlite::{SqliteArguments, SqliteConnection, SqlitePool, SqliteRow};
use sqlx::types::{Json, JsonRawValue};
use sqlx::{Arguments, Executor, FromRow, Sqlite};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::append::{Sealer, Writing};
use super::writer::{WriteTx, Writer};
use crate::{Backend, Result, StoreError};

/// The pools of a store.
pub(crate) enum Pools {
    /// SQLite: one connection writes, committing in groups (see
    /// [`super::writer`]), a read-only pool reads.
    Sqlite { read: SqlitePool, write: Writer },
    /// PostgreSQL: one pool, and the sealer of the audit log and events (see
    /// [`super::append`]).
    Postgres { pool: PgPool, sealer: Arc<Sealer> },
}

impl Pools {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Starts a write transaction.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Pools::Sqlite { write, .. } => Tx::Sqlite {
                tx: write.begin().await?,
                sealed: None,
                later: Vec::new(),
            },
            Pools::Postgres { pool, sealer } => {
                let writing = Writing::new(sealer);
                Tx::Postgres {
                    tx: pool.begin().await?,
                    sealer: Some((sealer.clone(), pool.clone())),
                    logged: false,
                    later: Vec::new(),
                    writing: Some(writing),
                }
            }
        })
    }

    /// The pool that serves reads.
    pub(crate) fn reader(&self) -> Pool<'_> {
        match self {
            Pools::Sqlite { read, .. } => Pool::Sqlite(read),
            Pools::Postgres { pool, .. } => Pool::Postgres(pool),
        }
    }

    /// Waits until every audit record and event committed before the call is
    /// numbered and readable (PostgreSQL seals them after their writes
    /// commit; SQLite writes them numbered).
    pub(crate) async fn sealed(&self) -> Result<()> {
        match self {
            Pools::Sqlite { .. } => Ok(()),
            Pools::Postgres { pool, sealer } => sealer.seal_now(pool).await,
        }
    }

    /// The pool that serves single-statement writes outside a transaction.
    pub(crate) fn writer(&self) -> Pool<'_> {
        match self {
            Pools::Sqlite { write, .. } => Pool::SqliteWrite(write),
            Pools::Postgres { pool, .. } => Pool::Postgres(pool),
        }
    }
}

/// What differs between the two dialects, beyond the statements they share.
pub(crate) trait Dialect {
    /// ` FOR UPDATE` on PostgreSQL, so a writer locks the rows it read to change
    /// them; nothing on SQLite, which has one writer.
    fn for_update(self) -> &'static str;
    /// ` FOR SHARE` on PostgreSQL: the rows a write depends on stay as read
    /// until it commits.
    fn for_share(self) -> &'static str;
    /// ` FOR UPDATE SKIP LOCKED` on PostgreSQL, so concurrent claimers take
    /// different rows.
    fn skip_locked(self) -> &'static str;
}

impl Dialect for Backend {
    fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    fn for_share(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR SHARE",
        }
    }

    fn skip_locked(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// The last audit record's number and hash, and the last event's number.
pub(crate) type Heads = (i64, String, i64);

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Sqlite {
        tx: WriteTx,
        /// The heads after the entries this transaction appended.
        sealed: Option<Heads>,
        /// Writes held back to go with the audit record (see
        /// [`Tx::write_later`]).
        later: Vec<Held>,
    },
    Postgres {
        tx: sqlx::Transaction<'static, Postgres>,
        /// Woken when a transaction that queued log entries commits.
        sealer: Option<(Arc<Sealer>, PgPool)>,
        /// Whether it queued log entries.
        logged: bool,
        /// Writes held back to go with the log entries.
        later: Vec<Held>,
        /// Counts it among the process's open writes (none for a sealing
        /// pass).
        writing: Option<Writing>,
    },
}

impl Tx {
    pub(crate) async fn commit(mut self) -> Result<()> {
        self.flush_later().await?;
        match self {
            Tx::Sqlite { tx, sealed, .. } => tx.commit(sealed).await?,
            Tx::Postgres {
                tx, sealer, logged, ..
            } => {
                tx.commit().await?;
                if let (true, Some((sealer, pool))) = (logged, sealer) {
                    sealer.commit_logged(&pool);
                }
            }
        }
        Ok(())
    }

    /// Rolls back now, releasing its row locks before the caller answers (a
    /// dropped transaction rolls back only when its connection is next used).
    pub(crate) async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite { tx, .. } => tx.rollback().await?,
            Tx::Postgres { tx, .. } => tx.rollback().await?,
        }
        Ok(())
    }

    /// Holds back `q`, an `INSERT` of one row that nothing in this
    /// transaction reads back, to run in one round trip with the audit
    /// record (see [`super::append`]), or before the commit.
    pub(crate) fn insert_later(&mut self, q: Sql<'_>) {
        self.write_later(q, 1);
    }

    /// Holds back `q`, a write of `rows` rows that nothing in this
    /// transaction reads before the audit record is appended (or
    /// [`Tx::flush_later`] runs), to run in one round trip with it. The held
    /// writes run in order on SQLite; on PostgreSQL they become `WITH`
    /// queries of one statement, so none may read another's rows, and a
    /// foreign key to a row held beside it is checked at the statement's end.
    pub(crate) fn write_later(&mut self, q: Sql<'_>, rows: u64) {
        match self {
            Tx::Sqlite { later, .. } | Tx::Postgres { later, .. } => later.push(Held {
                q: q.into_owned(),
                rows,
            }),
        }
    }

    /// The writes held back by [`Tx::write_later`], for the caller to run
    /// now.
    pub(crate) fn take_later(&mut self) -> Vec<Held> {
        match self {
            Tx::Sqlite { later, .. } | Tx::Postgres { later, .. } => std::mem::take(later),
        }
    }

    /// Runs the held-back writes now, in one round trip (before a read that
    /// needs them, or the commit).
    pub(crate) async fn flush_later(&mut self) -> Result<()> {
        let later = self.take_later();
        if later.is_empty() {
            return Ok(());
        }
        let q = match self.backend() {
            Backend::Sqlite => Held::joined(later).0,
            Backend::Postgres => Held::with_queries(later),
        };
        q.execute(self).await?;
        Ok(())
    }

    /// The log's heads as this process's last SQLite write left them.
    pub(crate) fn cached_heads(&self) -> Option<Heads> {
        match self {
            Tx::Sqlite { tx, .. } => tx.heads(),
            Tx::Postgres { .. } => None,
        }
    }

    /// Notes the heads after the entries this transaction appended, kept
    /// for the next write (SQLite).
    pub(crate) fn sealed(&mut self, after: Heads) {
        if let Tx::Sqlite { sealed, .. } = self {
            *sealed = Some(after);
        }
    }

    /// Whether no other write transaction of this process is open
    /// (PostgreSQL; SQLite's writes take turns).
    pub(crate) fn alone(&self) -> bool {
        match self {
            Tx::Sqlite { .. } => true,
            Tx::Postgres { writing, .. } => writing.as_ref().is_none_or(Writing::alone),
        }
    }

    /// Notes that the transaction queued log entries for the sealer.
    pub(crate) fn logged(&mut self) {
        if let Tx::Postgres { logged, .. } = self {
            *logged = true;
        }
    }
}

/// A write held back by [`Tx::write_later`], and how many rows it writes.
pub(crate) struct Held {
    q: Sql<'static>,
    rows: u64,
}

impl Held {
    /// The held writes as one text of statements run in order (SQLite), and
    /// the rows they write together.
    pub(crate) fn joined(held: Vec<Held>) -> (Sql<'static>, u64) {
        let rows = held.iter().map(|h| h.rows).sum();
        (Sql::joined(held.into_iter().map(|h| h.q).collect()).0, rows)
    }

    /// `main` with the held writes, then `extra`, as its `WITH` queries
    /// (`WITH held0 AS (…), …, name AS (…) main`), in one PostgreSQL
    /// statement.
    pub(crate) fn before<'q>(
        held: Vec<Held>,
        extra: Option<(&str, Sql<'q>)>,
        main: Sql<'q>,
    ) -> Sql<'q> {
        let named = held
            .into_iter()
            .enumerate()
            .map(|(i, h)| (format!("held{i}"), h.q))
            .chain(extra.map(|(name, q)| (name.to_owned(), q)));
        let mut q = sql("");
        for (i, (name, part)) in named.enumerate() {
            q.push(if i == 0 { "WITH " } else { ", " });
            q.push(&name).push(" AS (");
            q.append(part);
            q.push(")");
        }
        if !q.text.is_empty() {
            q.push(" ");
        }
        q.append(main);
        q
    }

    /// The held writes as one PostgreSQL statement: the last one, with the
    /// others as its `WITH` queries.
    fn with_queries(mut held: Vec<Held>) -> Sql<'static> {
        let last = held.pop().expect("at least one held write").q;
        Held::before(held, None, last)
    }
}

/// A pool, for statements that need no transaction.
#[derive(Clone, Copy)]
pub(crate) enum Pool<'a> {
    Sqlite(&'a SqlitePool),
    /// SQLite's writer: each statement is a write of its own.
    SqliteWrite(&'a Writer),
    Postgres(&'a PgPool),
}

/// Where a statement runs: a transaction or a pool.
pub(crate) trait Conn: Send {
    fn backend(&self) -> Backend;
    #[doc(hidden)]
    fn target(&mut self) -> Target<'_>;
}

#[doc(hidden)]
pub(crate) enum Target<'a> {
    SqliteConn(&'a mut SqliteConnection),
    SqlitePool(&'a SqlitePool),
    SqliteWrite(&'a Writer),
    PgConn(&'a mut PgConnection),
    PgPool(&'a PgPool),
}

impl Conn for Tx {
    fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite { .. } => Backend::Sqlite,
            Tx::Postgres { .. } => Backend::Postgres,
        }
    }

    fn target(&mut self) -> Target<'_> {
        match self {
            Tx::Sqlite { tx, .. } => Target::SqliteConn(tx.conn()),
            Tx::Postgres { tx, .. } => Target::PgConn(tx),
        }
    }
}

impl Conn for Pool<'_> {
    fn backend(&self) -> Backend {
        match self {
            Pool::Sqlite(_) | Pool::SqliteWrite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    fn target(&mut self) -> Target<'_> {
        match *self {
            Pool::Sqlite(p) => Target::SqlitePool(p),
            Pool::SqliteWrite(w) => Target::SqliteWrite(w),
            Pool::Postgres(p) => Target::PgPool(p),
        }
    }
}

/// A row type both backends can read: the sqlx bounds, written once.
pub(crate) trait Record:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

impl<T> Record for T where
    T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin
{
}

/// One argument of a statement, typed as the column it goes to (a `NULL`
/// keeps its type, which PostgreSQL needs).
#[derive(Debug, Clone)]
pub(crate) enum Arg<'q> {
    Uuid(Option<Uuid>),
    Text(Option<Cow<'q, str>>),
    I64(Option<i64>),
    I32(Option<i32>),
    F64(Option<f64>),
    Bool(Option<bool>),
    Bytes(Option<Cow<'q, [u8]>>),
    Time(Option<OffsetDateTime>),
    Date(Option<Date>),
    /// JSON, already serialized (TEXT on SQLite, JSONB on PostgreSQL).
    Json(Option<String>),
    /// Ids as one PostgreSQL `uuid[]` (see [`Sql::push_in_ids`]).
    Uuids(Vec<Uuid>),
    /// One column of rows as one PostgreSQL array (see [`Sql::push_values`]).
    Column(Column<'q>),
    /// A value that could not be serialized: running the statement fails.
    Invalid(String),
}

impl Arg<'_> {
    /// The same value, owning what it borrowed.
    fn into_owned(self) -> Arg<'static> {
        match self {
            Arg::Uuid(v) => Arg::Uuid(v),
            Arg::Text(v) => Arg::Text(v.map(|t| Cow::Owned(t.into_owned()))),
            Arg::I64(v) => Arg::I64(v),
            Arg::I32(v) => Arg::I32(v),
            Arg::F64(v) => Arg::F64(v),
            Arg::Bool(v) => Arg::Bool(v),
            Arg::Bytes(v) => Arg::Bytes(v.map(|b| Cow::Owned(b.into_owned()))),
            Arg::Time(v) => Arg::Time(v),
            Arg::Date(v) => Arg::Date(v),
            Arg::Json(v) => Arg::Json(v),
            Arg::Uuids(v) => Arg::Uuids(v),
            Arg::Column(c) => Arg::Column(c.into_owned()),
            Arg::Invalid(e) => Arg::Invalid(e),
        }
    }
}

/// One column of the rows of a `VALUES` list, bound as one PostgreSQL array
/// (see [`Sql::push_values`]); `NULL`s are elements like any other.
#[derive(Debug, Clone)]
pub(crate) enum Column<'q> {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<Cow<'q, str>>>),
    I64(Vec<Option<i64>>),
    I32(Vec<Option<i32>>),
    F64(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Time(Vec<Option<OffsetDateTime>>),
    Date(Vec<Option<Date>>),
    /// JSON, already serialized.
    Json(Vec<Option<String>>),
}

impl<'q> Column<'q> {
    /// The column of `first`'s kind, with room for `rows` values; `None` for a
    /// kind no array is made of.
    fn of(first: &Arg<'q>, rows: usize) -> Option<Self> {
        Some(match first {
            Arg::Uuid(_) => Column::Uuid(Vec::with_capacity(rows)),
            Arg::Text(_) => Column::Text(Vec::with_capacity(rows)),
            Arg::I64(_) => Column::I64(Vec::with_capacity(rows)),
            Arg::I32(_) => Column::I32(Vec::with_capacity(rows)),
            Arg::F64(_) => Column::F64(Vec::with_capacity(rows)),
            Arg::Bool(_) => Column::Bool(Vec::with_capacity(rows)),
            Arg::Time(_) => Column::Time(Vec::with_capacity(rows)),
            Arg::Date(_) => Column::Date(Vec::with_capacity(rows)),
            Arg::Json(_) => Column::Json(Vec::with_capacity(rows)),
            Arg::Bytes(_) | Arg::Uuids(_) | Arg::Column(_) | Arg::Invalid(_) => return None,
        })
    }

    /// Adds `value`, of the column's kind (see [`columns`]).
    fn add(&mut self, value: Arg<'q>) {
        match (self, value) {
            (Column::Uuid(c), Arg::Uuid(v)) => c.push(v),
            (Column::Text(c), Arg::Text(v)) => c.push(v),
            (Column::I64(c), Arg::I64(v)) => c.push(v),
            (Column::I32(c), Arg::I32(v)) => c.push(v),
            (Column::F64(c), Arg::F64(v)) => c.push(v),
            (Column::Bool(c), Arg::Bool(v)) => c.push(v),
            (Column::Time(c), Arg::Time(v)) => c.push(v),
            (Column::Date(c), Arg::Date(v)) => c.push(v),
            (Column::Json(c), Arg::Json(v)) => c.push(v),
            _ => unreachable!("columns() checks every value's kind first"),
        }
    }

    /// The PostgreSQL array type it binds as.
    fn array_type(&self) -> &'static str {
        match self {
            Column::Uuid(_) => "uuid[]",
            Column::Text(_) => "text[]",
            Column::I64(_) => "int8[]",
            Column::I32(_) => "int4[]",
            Column::F64(_) => "float8[]",
            Column::Bool(_) => "bool[]",
            Column::Time(_) => "timestamptz[]",
            Column::Date(_) => "date[]",
            Column::Json(_) => "jsonb[]",
        }
    }

    fn into_owned(self) -> Column<'static> {
        match self {
            Column::Uuid(c) => Column::Uuid(c),
            Column::Text(c) => Column::Text(
                c.into_iter()
                    .map(|v| v.map(|t| Cow::Owned(t.into_owned())))
                    .collect(),
            ),
            Column::I64(c) => Column::I64(c),
            Column::I32(c) => Column::I32(c),
            Column::F64(c) => Column::F64(c),
            Column::Bool(c) => Column::Bool(c),
            Column::Time(c) => Column::Time(c),
            Column::Date(c) => Column::Date(c),
            Column::Json(c) => Column::Json(c),
        }
    }

    /// Binds it as its array.
    fn bind(&self, out: &mut PgArguments) -> std::result::Result<(), sqlx::error::BoxDynError> {
        match self {
            Column::Uuid(c) => out.add(c.as_slice()),
            Column::Text(c) => out.add(c.iter().map(|v| v.as_deref()).collect::<Vec<_>>()),
            Column::I64(c) => out.add(c.as_slice()),
            Column::I32(c) => out.add(c.as_slice()),
            Column::F64(c) => out.add(c.as_slice()),
            Column::Bool(c) => out.add(c.as_slice()),
            Column::Time(c) => out.add(c.as_slice()),
            Column::Date(c) => out.add(c.as_slice()),
            Column::Json(c) => {
                let raw = c
                    .iter()
                    .map(|v| {
                        v.as_deref()
                            .map(|s| JsonRawValue::from_string(s.to_owned()).map(Json))
                            .transpose()
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                out.add(raw)
            }
        }
    }
}

/// The rows of `args`, `width` each, as one column each (draining `args`);
/// `None` (and `args` left as they were) when a column mixes kinds or holds
/// one no array is made of.
fn columns<'q>(args: &mut Vec<Arg<'q>>, width: usize) -> Option<Vec<Column<'q>>> {
    let rows = args.len() / width;
    let first = args.get(..width)?;
    let same = |i: usize, a: &Arg<'_>| {
        std::mem::discriminant(a) == std::mem::discriminant(&first[i % width])
    };
    if !args.iter().enumerate().all(|(i, a)| same(i, a)) {
        return None;
    }
    let mut cols = first
        .iter()
        .map(|a| Column::of(a, rows))
        .collect::<Option<Vec<_>>>()?;
    for (i, a) in args.drain(..).enumerate() {
        cols[i % width].add(a);
    }
    Some(cols)
}

/// A value that binds as itself (its `NULL` typed as it).
pub(crate) trait Scalar: Copy {
    fn arg(value: Option<Self>) -> Arg<'static>;
}

impl Scalar for Uuid {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::Uuid(value)
    }
}

impl Scalar for i64 {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::I64(value)
    }
}

impl Scalar for i32 {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::I32(value)
    }
}

impl Scalar for f64 {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::F64(value)
    }
}

impl Scalar for bool {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::Bool(value)
    }
}

impl Scalar for OffsetDateTime {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::Time(value)
    }
}

impl Scalar for Date {
    fn arg(value: Option<Self>) -> Arg<'static> {
        Arg::Date(value)
    }
}

impl<T: Scalar> From<T> for Arg<'_> {
    fn from(v: T) -> Self {
        T::arg(Some(v))
    }
}

impl<T: Scalar> From<Option<T>> for Arg<'_> {
    fn from(v: Option<T>) -> Self {
        T::arg(v)
    }
}

// By reference: the scalars bound from fields of borrowed records.
impl From<&Uuid> for Arg<'_> {
    fn from(v: &Uuid) -> Self {
        Uuid::arg(Some(*v))
    }
}

impl From<&Option<Uuid>> for Arg<'_> {
    fn from(v: &Option<Uuid>) -> Self {
        Uuid::arg(*v)
    }
}

impl From<&i64> for Arg<'_> {
    fn from(v: &i64) -> Self {
        i64::arg(Some(*v))
    }
}

impl From<&Option<i64>> for Arg<'_> {
    fn from(v: &Option<i64>) -> Self {
        i64::arg(*v)
    }
}

impl From<&f64> for Arg<'_> {
    fn from(v: &f64) -> Self {
        f64::arg(Some(*v))
    }
}

impl From<&Option<f64>> for Arg<'_> {
    fn from(v: &Option<f64>) -> Self {
        f64::arg(*v)
    }
}

impl From<&bool> for Arg<'_> {
    fn from(v: &bool) -> Self {
        bool::arg(Some(*v))
    }
}

impl From<&Option<bool>> for Arg<'_> {
    fn from(v: &Option<bool>) -> Self {
        bool::arg(*v)
    }
}

impl From<&OffsetDateTime> for Arg<'_> {
    fn from(v: &OffsetDateTime) -> Self {
        OffsetDateTime::arg(Some(*v))
    }
}

impl From<&Option<OffsetDateTime>> for Arg<'_> {
    fn from(v: &Option<OffsetDateTime>) -> Self {
        OffsetDateTime::arg(*v)
    }
}

impl From<&Date> for Arg<'_> {
    fn from(v: &Date) -> Self {
        Date::arg(Some(*v))
    }
}

impl From<&Option<Date>> for Arg<'_> {
    fn from(v: &Option<Date>) -> Self {
        Date::arg(*v)
    }
}

impl From<String> for Arg<'_> {
    fn from(v: String) -> Self {
        Arg::Text(Some(Cow::Owned(v)))
    }
}

impl From<Option<String>> for Arg<'_> {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v.map(Cow::Owned))
    }
}

impl From<Vec<u8>> for Arg<'_> {
    fn from(v: Vec<u8>) -> Self {
        Arg::Bytes(Some(Cow::Owned(v)))
    }
}

impl<'q> From<&'q str> for Arg<'q> {
    fn from(v: &'q str) -> Self {
        Arg::Text(Some(Cow::Borrowed(v)))
    }
}

impl<'q> From<&'q String> for Arg<'q> {
    fn from(v: &'q String) -> Self {
        Arg::Text(Some(Cow::Borrowed(v.as_str())))
    }
}

impl<'q> From<Option<&'q str>> for Arg<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Arg::Text(v.map(Cow::Borrowed))
    }
}

impl<'q> From<&'q Option<String>> for Arg<'q> {
    fn from(v: &'q Option<String>) -> Self {
        Arg::Text(v.as_deref().map(Cow::Borrowed))
    }
}

impl<'q> From<&'q [u8]> for Arg<'q> {
    fn from(v: &'q [u8]) -> Self {
        Arg::Bytes(Some(Cow::Borrowed(v)))
    }
}

impl<'q> From<&'q Vec<u8>> for Arg<'q> {
    fn from(v: &'q Vec<u8>) -> Self {
        Arg::Bytes(Some(Cow::Borrowed(v.as_slice())))
    }
}

impl<'q, T: Serialize> From<Json<T>> for Arg<'q> {
    fn from(v: Json<T>) -> Self {
        match serde_json::to_string(&v.0) {
            Ok(s) => Arg::Json(Some(s)),
            Err(e) => Arg::Invalid(e.to_string()),
        }
    }
}

impl<'q, T: Serialize> From<Option<Json<T>>> for Arg<'q> {
    fn from(v: Option<Json<T>>) -> Self {
        match v {
            Some(j) => j.into(),
            None => Arg::Json(None),
        }
    }
}

fn encode_error(e: sqlx::error::BoxDynError) -> StoreError {
    StoreError::Database(sqlx::Error::Encode(e))
}

fn sqlite_args<'a>(args: &'a [Arg<'_>]) -> Result<SqliteArguments<'a>> {
    let mut out = SqliteArguments::default();
    for a in args {
        match a {
            Arg::Uuid(v) => out.add(*v),
            Arg::Text(v) => out.add(v.as_deref()),
            Arg::I64(v) => out.add(*v),
            Arg::I32(v) => out.add(*v),
            Arg::F64(v) => out.add(*v),
            Arg::Bool(v) => out.add(*v),
            Arg::Bytes(v) => out.add(v.as_deref()),
            Arg::Time(v) => out.add(*v),
            Arg::Date(v) => out.add(*v),
            Arg::Json(v) => out.add(v.as_deref()),
            Arg::Uuids(_) | Arg::Column(_) => {
                return Err(encode_error("an array binds on PostgreSQL only".into()));
            }
            Arg::Invalid(e) => return Err(encode_error(e.clone().into())),
        }
        .map_err(encode_error)?;
    }
    Ok(out)
}

fn pg_args(args: &[Arg<'_>]) -> Result<PgArguments> {
    let mut out = PgArguments::default();
    for a in args {
        match a {
            Arg::Uuid(v) => out.add(*v),
            Arg::Text(v) => out.add(v.as_deref()),
            Arg::I64(v) => out.add(*v),
            Arg::I32(v) => out.add(*v),
            Arg::F64(v) => out.add(*v),
            Arg::Bool(v) => out.add(*v),
            Arg::Bytes(v) => out.add(v.as_deref()),
            Arg::Time(v) => out.add(*v),
            Arg::Date(v) => out.add(*v),
            Arg::Json(v) => {
                let raw = v
                    .as_deref()
                    .map(|s| JsonRawValue::from_string(s.to_owned()))
                    .transpose()
                    .map_err(|e| encode_error(e.into()))?;
                out.add(raw.map(Json))
            }
            Arg::Uuids(v) => out.add(v.as_slice()),
            Arg::Column(c) => c.bind(&mut out),
            Arg::Invalid(e) => return Err(encode_error(e.clone().into())),
        }
        .map_err(encode_error)?;
    }
    Ok(out)
}

/// A statement and its arguments; see the module docs.
///
/// ```ignore
/// let row: Option<(String,)> = sql("SELECT name FROM clients WHERE id = $1")
///     .bind(id.uuid())
///     .fetch_optional(&mut tx)
///     .await?;
/// ```
#[must_use = "a statement does nothing until it runs"]
pub(crate) struct Sql<'q> {
    text: Cow<'q, str>,
    args: Vec<Arg<'q>>,
}

/// A statement to run: its text, then `.bind(..)` each `$n` in order.
pub(crate) fn sql<'q>(text: impl Into<Cow<'q, str>>) -> Sql<'q> {
    Sql {
        text: text.into(),
        args: Vec::new(),
    }
}

impl<'q> Sql<'q> {
    /// The same statement, owning what it borrowed.
    fn into_owned(self) -> Sql<'static> {
        Sql {
            text: Cow::Owned(self.text.into_owned()),
            args: self.args.into_iter().map(Arg::into_owned).collect(),
        }
    }

    /// Appends `next` as a further statement of the same text (`; `), its
    /// `$n` numbered after this one's (SQLite runs them in one round trip).
    pub(crate) fn then(&mut self, next: Sql<'q>) -> &mut Self {
        if !self.text.trim().is_empty() {
            self.push("; ");
        }
        self.append(next)
    }

    /// `statements` as one text (see [`Sql::then`]), and how many there are.
    pub(crate) fn joined(statements: Vec<Sql<'q>>) -> (Sql<'q>, u64) {
        let n = statements.len() as u64;
        let mut q = sql("");
        for s in statements {
            q.then(s);
        }
        (q, n)
    }

    /// Appends `next`'s text and arguments, its `$n` renumbered after ours.
    fn append(&mut self, next: Sql<'q>) -> &mut Self {
        let offset = self.args.len();
        let renumbered = rewrite_placeholders(&next.text, |n| Some(format!("${}", n + offset)))
            .unwrap_or_else(|| next.text.to_string());
        self.text.to_mut().push_str(&renumbered);
        self.args.extend(next.args);
        self
    }

    /// Binds the next `$n`.
    pub(crate) fn bind(mut self, value: impl Into<Arg<'q>>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Appends text to the statement.
    pub(crate) fn push(&mut self, text: impl AsRef<str>) -> &mut Self {
        self.text.to_mut().push_str(text.as_ref());
        self
    }

    /// Appends the placeholder of a new argument (`$n`) and binds it.
    pub(crate) fn push_bind(&mut self, value: impl Into<Arg<'q>>) -> &mut Self {
        self.args.push(value.into());
        let n = self.args.len();
        let text = self.text.to_mut();
        text.push('$');
        text.push_str(&n.to_string());
        self
    }

    /// Appends `(a, b, ...)`, one bound argument per item (for `IN`).
    pub(crate) fn push_list<A: Into<Arg<'q>>>(
        &mut self,
        items: impl IntoIterator<Item = A>,
    ) -> &mut Self {
        self.push("(");
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(item);
        }
        self.push(")")
    }

    /// Appends ` IN (…)` of `ids`, one argument each, on SQLite, and
    /// ` = ANY($n)`, one array, on PostgreSQL: there the text is the same
    /// whatever the number of ids, so the statement is prepared once.
    pub(crate) fn push_in_ids(&mut self, backend: Backend, ids: &[Uuid]) -> &mut Self {
        match backend {
            Backend::Sqlite => {
                self.push(" IN ");
                self.push_list(ids.iter().copied())
            }
            Backend::Postgres => {
                self.push(" = ANY(");
                self.push_bind(Arg::Uuids(ids.to_vec()));
                self.push(")")
            }
        }
    }

    /// Appends the rows `row` binds, one per item, as a table: `VALUES (..),
    /// (..)`, or on PostgreSQL, for more than one row, `SELECT * FROM
    /// unnest($1::uuid[], $2::text[], ..) AS v(column1, column2, ..)` with one
    /// array per column, so that the text is the same for any number of rows
    /// (the statement is prepared once, not parsed and described again for
    /// every count). Either way the columns are named `column1`, `column2`, ….
    pub(crate) fn push_values<I>(
        &mut self,
        backend: Backend,
        items: impl IntoIterator<Item = I>,
        mut row: impl FnMut(Values<'_, 'q>, I),
    ) -> &mut Self {
        let mut args: Vec<Arg<'q>> = Vec::new();
        let mut ends: Vec<usize> = Vec::new();
        for item in items {
            row(Values { args: &mut args }, item);
            ends.push(args.len());
        }
        let width = ends.first().copied().unwrap_or(0);
        let uniform = ends
            .iter()
            .enumerate()
            .all(|(r, &end)| end == (r + 1) * width);
        if backend == Backend::Postgres
            && ends.len() > 1
            && width > 0
            && uniform
            && let Some(cols) = columns(&mut args, width)
        {
            self.push("SELECT * FROM unnest(");
            for (i, col) in cols.into_iter().enumerate() {
                if i > 0 {
                    self.push(", ");
                }
                let array = col.array_type();
                self.push_bind(Arg::Column(col));
                self.push("::").push(array);
            }
            self.push(") AS v(");
            for i in 1..=width {
                if i > 1 {
                    self.push(", ");
                }
                self.push("column").push(i.to_string());
            }
            return self.push(")");
        }
        self.push("VALUES ");
        let mut args = args.into_iter();
        let mut start = 0;
        for (r, &end) in ends.iter().enumerate() {
            if r > 0 {
                self.push(", ");
            }
            self.push("(");
            for (c, arg) in args.by_ref().take(end - start).enumerate() {
                if c > 0 {
                    self.push(", ");
                }
                self.push_bind(arg);
            }
            self.push(")");
            start = end;
        }
        self
    }

    /// The statement's text so far.
    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    /// Runs it; answers how many rows it changed.
    pub(crate) async fn execute(self, conn: &mut impl Conn) -> Result<u64> {
        let text: &str = &self.text;
        Ok(match conn.target() {
            Target::SqliteConn(c) => run_sqlite(text, &self.args, c).await?,
            Target::SqlitePool(p) => run_sqlite(text, &self.args, p).await?,
            Target::SqliteWrite(w) => {
                let mut tx = w.begin().await?;
                let n = run_sqlite(text, &self.args, tx.conn()).await?;
                tx.commit(None).await?;
                n
            }
            Target::PgConn(c) => run_pg(text, &self.args, c).await?,
            Target::PgPool(p) => run_pg(text, &self.args, p).await?,
        })
    }

    /// Runs it; answers every row.
    pub(crate) async fn fetch_all<T: Record>(self, conn: &mut impl Conn) -> Result<Vec<T>> {
        let text: &str = &self.text;
        match conn.target() {
            Target::SqliteConn(c) => all_sqlite(text, &self.args, c).await,
            Target::SqlitePool(p) => all_sqlite(text, &self.args, p).await,
            Target::SqliteWrite(w) => {
                let mut tx = w.begin().await?;
                let rows = all_sqlite(text, &self.args, tx.conn()).await?;
                tx.commit(None).await?;
                Ok(rows)
            }
            Target::PgConn(c) => all_pg(text, &self.args, c).await,
            Target::PgPool(p) => all_pg(text, &self.args, p).await,
        }
    }

    /// Runs it; answers the first row, if any.
    pub(crate) async fn fetch_optional<T: Record>(self, conn: &mut impl Conn) -> Result<Option<T>> {
        let text: &str = &self.text;
        match conn.target() {
            Target::SqliteConn(c) => optional_sqlite(text, &self.args, c).await,
            Target::SqlitePool(p) => optional_sqlite(text, &self.args, p).await,
            Target::SqliteWrite(w) => {
                let mut tx = w.begin().await?;
                let row = optional_sqlite(text, &self.args, tx.conn()).await?;
                tx.commit(None).await?;
                Ok(row)
            }
            Target::PgConn(c) => optional_pg(text, &self.args, c).await,
            Target::PgPool(p) => optional_pg(text, &self.args, p).await,
        }
    }

    /// Runs it; answers the first row, which must exist.
    pub(crate) async fn fetch_one<T: Record>(self, conn: &mut impl Conn) -> Result<T> {
        self.fetch_optional(conn)
            .await?
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }
}

/// The columns of one row of [`Sql::push_values`].
pub(crate) struct Values<'s, 'q> {
    args: &'s mut Vec<Arg<'q>>,
}

impl<'q> Values<'_, 'q> {
    /// Binds the next column.
    pub(crate) fn push_bind(&mut self, value: impl Into<Arg<'q>>) -> &mut Self {
        self.args.push(value.into());
        self
    }
}

/// Arguments past which numbered placeholders are worth renaming.
const MANY_ARGS: usize = 32;

/// The statement as SQLite binds it fast: with many arguments, `$1 … $n`
/// appearing once each and in order become anonymous `?`. SQLite finds a
/// numbered parameter's name by a linear search, so binding n of them costs
/// n², seconds for a thousand-row `VALUES`. Anything else is left as written.
fn sqlite_text(text: &str, args: usize) -> Cow<'_, str> {
    if args <= MANY_ARGS {
        return Cow::Borrowed(text);
    }
    let mut expected = 1usize;
    let out = rewrite_placeholders(text, |n| {
        (n == expected).then(|| {
            expected += 1;
            "?".to_owned()
        })
    });
    match out {
        Some(out) if expected == args + 1 => Cow::Owned(out),
        _ => Cow::Borrowed(text),
    }
}

/// `text` with each `$n` replaced by what `with(n)` answers, or `None` as
/// soon as it answers `None`.
fn rewrite_placeholders(
    text: &str,
    mut with: impl FnMut(usize) -> Option<String>,
) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            let mut end = i + 1;
            while end < bytes.len() && bytes[end].is_ascii_digit() {
                end += 1;
            }
            let replaced = with(text[i + 1..end].parse().ok()?)?;
            out.push_str(&text[last..i]);
            out.push_str(&replaced);
            last = end;
            i = end;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[last..]);
    Some(out)
}

async fn run_sqlite<'e>(
    text: &str,
    args: &[Arg<'_>],
    ex: impl Executor<'e, Database = Sqlite>,
) -> Result<u64> {
    let text = sqlite_text(text, args.len());
    let args = sqlite_args(args)?;
    Ok(sqlx::query_with(&text, args)
        .execute(ex)
        .await?
        .rows_affected())
}

async fn run_pg<'e>(
    text: &str,
    args: &[Arg<'_>],
    ex: impl Executor<'e, Database = Postgres>,
) -> Result<u64> {
    let args = pg_args(args)?;
    Ok(sqlx::query_with(text, args)
        .execute(ex)
        .await?
        .rows_affected())
}

async fn all_sqlite<'e, T: Record>(
    text: &str,
    args: &[Arg<'_>],
    ex: impl Executor<'e, Database = Sqlite>,
) -> Result<Vec<T>> {
    let text = sqlite_text(text, args.len());
    let args = sqlite_args(args)?;
    Ok(sqlx::query_as_with::<_, T, _>(&text, args)
        .fetch_all(ex)
        .await?)
}

async fn all_pg<'e, T: Record>(
    text: &str,
    args: &[Arg<'_>],
    ex: impl Executor<'e, Database = Postgres>,
) -> Result<Vec<T>> {
    let args = pg_args(args)?;
    Ok(sqlx::query_as_with::<_, T, _>(text, args)
        .fetch_all(ex)
        .await?)
}

async fn optional_sqlite<'e, T: Record>(
    text: &str,
    args: &[Arg<'_>],
    ex: impl Executor<'e, Database = Sqlite>,
) -> Result<Option<T>> {
    let text = sqlite_text(text, args.len());
    let args = sqlite_args(args)?;
    Ok(sqlx::query_as_with::<_, T, _>(&text, args)
        .fetch_optional(ex)
        .await?)
}

async fn optional_pg<'e, T: Record>(
    text: &str,
    args: &[Arg<'_>],
    ex: impl Executor<'e, Database = Postgres>,
) -> Result<Option<T>> {
    let args = pg_args(args)?;
    Ok(sqlx::query_as_with::<_, T, _>(text, args)
        .fetch_optional(ex)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_arguments_bound() {
        let mut q = sql("SELECT id FROM tasks WHERE lane = $1").bind("engine");
        q.push(" AND id IN ").push_list([Uuid::nil(), Uuid::max()]);
        q.push(" ORDER BY id LIMIT ").push_bind(10i64);
        assert_eq!(
            q.text(),
            "SELECT id FROM tasks WHERE lane = $1 AND id IN ($2, $3) ORDER BY id LIMIT $4"
        );
        let mut v = sql("INSERT INTO t (a, b) ");
        v.push_values(Backend::Sqlite, [(1i64, "x"), (2, "y")], |mut b, (n, s)| {
            b.push_bind(n).push_bind(s);
        });
        assert_eq!(v.text(), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    }

    #[test]
    fn rows_bind_as_one_array_per_column_on_postgres() {
        let rows = |n: i64| (0..n).map(|i| (i, Some(format!("r{i}")), Json(i)));
        let text = |n: i64| {
            let mut q = sql("INSERT INTO t (a, b, c) ").bind(7i64);
            q.push_values(Backend::Postgres, rows(n), |mut b, (i, s, j)| {
                b.push_bind(i).push_bind(s).push_bind(j);
            });
            q.push(" RETURNING a");
            (q.text().to_owned(), q.args.len())
        };
        let many = text(3);
        assert_eq!(
            many.0,
            "INSERT INTO t (a, b, c) SELECT * FROM unnest($2::int8[], $3::text[], $4::jsonb[]) \
             AS v(column1, column2, column3) RETURNING a"
        );
        assert_eq!(many.1, 4);
        // The same text for any number of rows.
        assert_eq!(text(500), many);
        // One row stays a row.
        assert_eq!(
            text(1).0,
            "INSERT INTO t (a, b, c) VALUES ($2, $3, $4) RETURNING a"
        );
        // A column that mixes kinds stays a list of rows.
        let mut q = sql("");
        q.push_values(Backend::Postgres, [Some(1i64), None], |mut b, n| {
            match n {
                Some(n) => b.push_bind(n),
                None => b.push_bind("none"),
            };
        });
        assert_eq!(q.text(), "VALUES ($1), ($2)");
        assert_eq!(q.args.len(), 2);
    }

    #[test]
    fn many_numbered_placeholders_in_order_become_anonymous_for_sqlite() {
        let mut q = sql("UPDATE t SET a = $1 FROM (").bind(0i64);
        q.push_values(Backend::Sqlite, 0..40i64, |mut b, n| {
            b.push_bind(n);
        });
        q.push(") AS v WHERE t.id = v.column1 AND t.path = '$.x'");
        let text = sqlite_text(q.text(), 41);
        assert!(
            text.starts_with("UPDATE t SET a = ? FROM (VALUES (?), (?)"),
            "{text}"
        );
        assert_eq!(text.matches('?').count(), 41);
        assert!(text.ends_with("'$.x'"), "{text}");
        // Few arguments, a repeated one, or one out of order: left as written.
        assert_eq!(sqlite_text("SELECT $1, $2", 2), "SELECT $1, $2");
        let numbered = |from: usize| {
            (from..=40)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let repeated = format!("SELECT {} WHERE x = $1", numbered(1));
        assert_eq!(sqlite_text(&repeated, 40), repeated);
        let swapped = format!("SELECT $2, $1, {}", numbered(3));
        assert_eq!(sqlite_text(&swapped, 40), swapped);
    }

    #[test]
    fn statements_run_together_number_their_arguments_in_turn() {
        let mut q = sql("");
        q.then(sql("INSERT INTO a VALUES ($1, $2)").bind(1i64).bind("x"));
        q.then(
            sql("INSERT INTO b VALUES ($1, $1, $2)")
                .bind(2i64)
                .bind(3i64),
        );
        assert_eq!(
            q.text(),
            "INSERT INTO a VALUES ($1, $2); INSERT INTO b VALUES ($3, $3, $4)"
        );
        assert_eq!(q.args.len(), 4);
        assert!(matches!(q.args[2], Arg::I64(Some(2))));
        let mut main = sql("INSERT INTO p SELECT ");
        main.push_bind(3i64);
        let w = Held::before(
            vec![Held {
                q: sql("INSERT INTO h VALUES ($1, $2)").bind(1i64).bind(2i64),
                rows: 1,
            }],
            Some(("free", sql("SELECT $1").bind(9i64))),
            main,
        );
        assert_eq!(
            w.text(),
            "WITH held0 AS (INSERT INTO h VALUES ($1, $2)), free AS (SELECT $3) INSERT INTO p SELECT $4"
        );
        assert!(matches!(w.args[3], Arg::I64(Some(3))));
        let alone = Held::before(vec![], None, sql("INSERT INTO p SELECT $1").bind(1i64));
        assert_eq!(alone.text(), "INSERT INTO p SELECT $1");
        let (joined, n) = Sql::joined(vec![
            sql("SELECT $1").bind(1i64),
            sql("SELECT $1").bind(2i64),
        ]);
        assert_eq!((joined.text(), n), ("SELECT $1; SELECT $2", 2));
        let held = |text: &'static str, v: i64, rows: u64| Held {
            q: sql(text).bind(v),
            rows,
        };
        let one = Held::with_queries(vec![held("INSERT INTO a VALUES ($1)", 1, 1)]);
        assert_eq!(one.text(), "INSERT INTO a VALUES ($1)");
        let three = vec![
            held("INSERT INTO a VALUES ($1)", 1, 1),
            held("INSERT INTO b SELECT $1 FROM generate_series(1, 3)", 2, 3),
            held("UPDATE c SET n = $1", 3, 1),
        ];
        let (joined, rows) = Held::joined(three);
        assert_eq!(rows, 5);
        assert_eq!(
            joined.text(),
            "INSERT INTO a VALUES ($1); INSERT INTO b SELECT $2 FROM generate_series(1, 3); \
             UPDATE c SET n = $3"
        );
        let with = Held::with_queries(vec![
            held("INSERT INTO a VALUES ($1)", 1, 1),
            held("INSERT INTO b VALUES ($1)", 2, 1),
            held("UPDATE c SET n = $1", 3, 1),
        ]);
        assert_eq!(
            with.text(),
            "WITH held0 AS (INSERT INTO a VALUES ($1)), held1 AS (INSERT INTO b VALUES ($2)) \
             UPDATE c SET n = $3"
        );
        assert!(matches!(with.args[2], Arg::I64(Some(3))));
        let y = String::from("y");
        let owned: Sql<'static> = sql("SELECT $1").bind(y.as_str()).into_owned();
        assert!(matches!(&owned.args[0], Arg::Text(Some(Cow::Owned(t))) if t == "y"));
    }
}
