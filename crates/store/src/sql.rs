//! The one place that knows both SQL drivers.
//!
//! Every statement of the store is written once, in SQL that SQLite and
//! PostgreSQL both accept, with `?` placeholders (or `?N` to use one value
//! twice). What really differs between the two databases lives here and
//! nowhere else:
//!
//! - **pools**: SQLite reads share a pool while writes go through one
//!   connection, so concurrent writers queue in the process instead of
//!   spinning in SQLite's busy handler; PostgreSQL has one pool;
//! - **placeholders**: PostgreSQL numbers them (`$1`), so [`pg_sql`]
//!   rewrites the text before it is sent;
//! - **transaction start**: SQLite's `BEGIN IMMEDIATE` takes the write lock
//!   up front (a deferred transaction that later writes can fail with
//!   `SQLITE_BUSY` in the middle); PostgreSQL's plain `BEGIN`;
//! - **row locks** ([`Lock`]): PostgreSQL locks rows (`FOR UPDATE`,
//!   `SKIP LOCKED` so control planes sharing a database claim different
//!   jobs); SQLite has one writer at a time, so it needs no suffix.
//!
//! Values cross this seam as [`Arg`]s and come back as [`Row`]s, read by
//! column index with [`Row::get`]: the statements above never name a driver.

use crate::{Result, StoreError};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Postgres, Sqlite};
use std::borrow::Cow;

/// The database behind a store: its pools.
#[derive(Debug, Clone)]
pub(crate) enum Db {
    Sqlite {
        /// Readers.
        read: SqlitePool,
        /// The one writing connection.
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// A row lock a statement takes where the database has row locks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// `FOR UPDATE`: the rows read are the rows written, by this
    /// transaction alone.
    Update,
    /// `FOR UPDATE SKIP LOCKED`: take rows nobody else is taking.
    SkipLocked,
    /// `FOR UPDATE OF d`: lock only the rows of the table aliased `d`.
    UpdateOf(&'static str),
}

impl Db {
    /// The suffix that takes `lock` (empty on SQLite, whose one writer
    /// already excludes every other).
    pub(crate) fn lock(&self, lock: Lock) -> Cow<'static, str> {
        match (self, lock) {
            (Db::Sqlite { .. }, _) => Cow::Borrowed(""),
            (Db::Postgres(_), Lock::Update) => Cow::Borrowed(" FOR UPDATE"),
            (Db::Postgres(_), Lock::SkipLocked) => Cow::Borrowed(" FOR UPDATE SKIP LOCKED"),
            (Db::Postgres(_), Lock::UpdateOf(t)) => Cow::Owned(format!(" FOR UPDATE OF {t}")),
        }
    }

    /// Start a write transaction.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }

    /// Where reads go.
    pub(crate) fn read(&self) -> Exec<'_> {
        match self {
            Db::Sqlite { read, .. } => Exec::SqlitePool(read),
            Db::Postgres(p) => Exec::PgPool(p),
        }
    }

    /// Where writes outside a transaction go.
    pub(crate) fn write(&self) -> Exec<'_> {
        match self {
            Db::Sqlite { write, .. } => Exec::SqlitePool(write),
            Db::Postgres(p) => Exec::PgPool(p),
        }
    }
}

/// A write transaction; dropped without [`Tx::commit`], it rolls back.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

impl Tx {
    pub(crate) fn exec(&mut self) -> Exec<'_> {
        match self {
            Tx::Sqlite(t) => Exec::SqliteConn(t),
            Tx::Postgres(t) => Exec::PgConn(t),
        }
    }

    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }

    /// End the transaction now rather than when it is dropped: a pooled
    /// connection must not sit in one (PostgreSQL would keep its locks).
    pub(crate) async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
        }
        Ok(())
    }
}

/// Where a statement runs: a pool or a transaction's connection.
pub(crate) enum Exec<'a> {
    SqlitePool(&'a SqlitePool),
    PgPool(&'a PgPool),
    SqliteConn(&'a mut sqlx::SqliteConnection),
    PgConn(&'a mut sqlx::PgConnection),
}

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(Option<i64>),
    F64(f64),
    Bool(bool),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Arg {
        Arg::I64(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Arg {
        Arg::I64(v)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Arg {
        Arg::F64(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Arg {
        Arg::Bool(v)
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_string()))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Arg {
        Arg::Text(Some(v))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_string))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Arg {
        Arg::Text(v)
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}

/// A statement and its values.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement to run: `sql` in the common dialect, `?` placeholders.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// Which way a list runs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Order {
    Asc,
    Desc,
}

/// Keyset paging (see `accelhub_domain::page`): the condition, order and
/// limit that read the page after a cursor of a list ordered by the
/// column `at`, then `id`. Bind its values with [`Query::bind_page`].
/// The condition repeats the cursor's `at` as a plain bound: PostgreSQL
/// takes no index bound from the `OR`, and would read the list from its
/// start for every page.
pub(crate) fn keyset(at: &str, id: &str, order: Order) -> String {
    let (cmp, dir) = match order {
        Order::Asc => (">", ""),
        Order::Desc => ("<", " DESC"),
    };
    format!(
        "{at} {cmp}= ? AND ({at} {cmp} ? OR ({at} = ? AND {id} {cmp} ?)) \
         ORDER BY {at}{dir}, {id}{dir} LIMIT ?"
    )
}

impl Query {
    /// Bind the values of a [`keyset`]: the last item's `at` and `id`,
    /// and the page's size.
    pub(crate) fn bind_page(self, at: i64, id: impl Into<Arg>, limit: u32) -> Query {
        self.bind(at)
            .bind(at)
            .bind(at)
            .bind(id)
            .bind(i64::from(limit))
    }

    pub(crate) fn bind(mut self, v: impl Into<Arg>) -> Query {
        self.args.push(v.into());
        self
    }

    /// Bind each of `values` in turn (a list behind [`placeholders`]).
    pub(crate) fn bind_all<V: Into<Arg>>(mut self, values: impl IntoIterator<Item = V>) -> Query {
        self.args.extend(values.into_iter().map(Into::into));
        self
    }

    /// Run it; how many rows it changed.
    pub(crate) async fn execute(self, on: Exec<'_>) -> Result<u64> {
        Ok(match on {
            Exec::SqlitePool(p) => self.sqlite().execute(p).await?.rows_affected(),
            Exec::SqliteConn(c) => self.sqlite().execute(c).await?.rows_affected(),
            Exec::PgPool(p) => self.pg().execute(p).await?.rows_affected(),
            Exec::PgConn(c) => self.pg().execute(c).await?.rows_affected(),
        })
    }

    /// Every row it returns.
    pub(crate) async fn fetch_all(self, on: Exec<'_>) -> Result<Vec<Row>> {
        Ok(match on {
            Exec::SqlitePool(p) => wrap(self.sqlite().fetch_all(p).await?, Row::Sqlite),
            Exec::SqliteConn(c) => wrap(self.sqlite().fetch_all(c).await?, Row::Sqlite),
            Exec::PgPool(p) => wrap(self.pg().fetch_all(p).await?, Row::Pg),
            Exec::PgConn(c) => wrap(self.pg().fetch_all(c).await?, Row::Pg),
        })
    }

    /// Its first row, if any.
    pub(crate) async fn fetch_optional(self, on: Exec<'_>) -> Result<Option<Row>> {
        Ok(match on {
            Exec::SqlitePool(p) => self.sqlite().fetch_optional(p).await?.map(Row::Sqlite),
            Exec::SqliteConn(c) => self.sqlite().fetch_optional(c).await?.map(Row::Sqlite),
            Exec::PgPool(p) => self.pg().fetch_optional(p).await?.map(Row::Pg),
            Exec::PgConn(c) => self.pg().fetch_optional(c).await?.map(Row::Pg),
        })
    }

    /// Its first row; a missing one is a database error (the statement
    /// always returns one when the schema is what it should be).
    pub(crate) async fn fetch_one(self, on: Exec<'_>) -> Result<Row> {
        let what = self.sql.clone();
        self.fetch_optional(on).await?.ok_or_else(|| {
            StoreError::Database(format!("no row returned by: {}", first_words(&what)))
        })
    }

    fn sqlite(self) -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(self.sql));
        for a in self.args {
            q = match a {
                Arg::I64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
            };
        }
        q
    }

    fn pg(self) -> sqlx::query::Query<'static, Postgres, sqlx::postgres::PgArguments> {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(pg_sql(&self.sql)));
        for a in self.args {
            q = match a {
                Arg::I64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
            };
        }
        q
    }
}

fn wrap<R>(rows: Vec<R>, f: impl Fn(R) -> Row) -> Vec<Row> {
    rows.into_iter().map(f).collect()
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ")
}

/// `n` placeholders separated by commas, for an `IN (…)` list.
pub(crate) fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// The statement in PostgreSQL's placeholders: each `?` becomes the next
/// `$N`, and `?N` becomes `$N`. Quoted text and identifiers are left alone.
pub(crate) fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut next = 0u32;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                out.push(c);
            }
            (Some(_), c) => out.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                out.push(c);
            }
            (None, '?') => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                    digits.push(d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    next += 1;
                    out.push_str(&next.to_string());
                } else {
                    out.push_str(&digits);
                }
            }
            (None, c) => out.push(c),
        }
    }
    out
}

/// A result row of either database.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Pg(PgRow),
}

/// A Rust type both drivers decode a column into.
pub(crate) trait Column: Sized {
    fn sqlite(row: &SqliteRow, i: usize) -> std::result::Result<Self, sqlx::Error>;
    fn pg(row: &PgRow, i: usize) -> std::result::Result<Self, sqlx::Error>;
}

impl<T> Column for T
where
    T: for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    fn sqlite(row: &SqliteRow, i: usize) -> std::result::Result<T, sqlx::Error> {
        sqlx::Row::try_get(row, i)
    }
    fn pg(row: &PgRow, i: usize) -> std::result::Result<T, sqlx::Error> {
        sqlx::Row::try_get(row, i)
    }
}

impl Row {
    /// Column `i` (from 0) as a `T`.
    pub(crate) fn get<T: Column>(&self, i: usize) -> Result<T> {
        Ok(match self {
            Row::Sqlite(r) => T::sqlite(r, i)?,
            Row::Pg(r) => T::pg(r, i)?,
        })
    }

    /// A count or size column, never negative.
    pub(crate) fn count(&self, i: usize) -> Result<u64> {
        Ok(self.get::<i64>(i)?.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_numbered_for_postgres() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE x = ? AND y IN (?, ?)"),
            "SELECT a FROM t WHERE x = $1 AND y IN ($2, $3)"
        );
        assert_eq!(
            pg_sql("INSERT INTO r VALUES (?1, ?2, ?2) -- ?3"),
            "INSERT INTO r VALUES ($1, $2, $2) -- $3"
        );
        assert_eq!(
            pg_sql("SELECT '?' || \"a?\" FROM t WHERE b = ?"),
            "SELECT '?' || \"a?\" FROM t WHERE b = $1"
        );
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
