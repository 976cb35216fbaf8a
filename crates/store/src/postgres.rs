//! Opening the scale-out store: PostgreSQL, shared by every control plane,
//! its schema from `migrations/postgres`. Job claims take their row with
//! `FOR UPDATE SKIP LOCKED` (see `sql.rs`), so several `serve` processes on
//! one database never run a job twice.

use crate::sql::Db;
use crate::{Result, SqlStore, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

impl SqlStore {
    /// Connect (`postgres://user@host:port/db`, optionally with
    /// `?options=-c%20search_path%3Dschema`) and bring the schema up to
    /// date.
    pub async fn open_postgres(url: &str) -> Result<SqlStore> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Database(format!("invalid database URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        Ok(SqlStore {
            db: Db::Postgres(pool),
            journal: None,
        })
    }
}
