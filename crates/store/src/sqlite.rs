//! Opening the embedded store: one SQLite file in WAL mode, its schema
//! from `migrations/sqlite`, and the usage journal beside it.

use crate::journal::Journal;
use crate::sql::Db;
use crate::{Result, SqlStore, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

impl SqlStore {
    /// Open (creating if needed) the SQLite database file and bring its
    /// schema up to date. Reads share a pool; writes go through one
    /// connection, so concurrent writers queue here instead of spinning in
    /// SQLite's busy handler.
    pub async fn open_sqlite(path: &Path) -> Result<SqlStore> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let read = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        let db = Db::Sqlite { read, write };
        let journal = Journal::open(path, db.clone()).await?;
        Ok(SqlStore {
            db,
            journal: Some(journal),
        })
    }
}
