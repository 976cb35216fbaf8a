use crate::journal::Journal;
use crate::rows::{
    DEPLOYMENT_DEMAND, DEPLOYMENT_SELECT, JOB_COLS, JOB_FROM, QUEUED_PER_VERSION, RATING_STATS,
    REVIEW_SELECT, USE_STATS, VERSION_COLS,
};
use crate::*;
use accelhub_domain::JobAttempt;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The embedded store: one SQLite file in WAL mode. Reads share a pool;
/// writes go through one connection, so concurrent writers queue here
/// instead of spinning in SQLite's busy handler.
///
/// Usage records, written once per call, go through a write-ahead journal
/// (see [`crate::journal`]) and reach the `usage` table in batches.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: SqlitePool,
    journal: Arc<Journal>,
}

impl SqliteStore {
    /// Open (creating if needed) the database file and bring its schema up
    /// to date.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&writer)
            .await
            .map_err(|e| StoreError::Database(format!("migration failed: {e}")))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(opts)
            .await?;
        let journal = Journal::open(path, writer.clone()).await?;
        Ok(SqliteStore {
            pool,
            writer,
            journal,
        })
    }

    async fn attempts(&self, job_id: &str) -> Result<Vec<JobAttempt>> {
        let rows = sqlx::query(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts \
             WHERE job_id = ? ORDER BY attempt",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JobAttempt {
                    attempt: r.try_get::<i64, _>(0)? as u32,
                    worker: r.try_get(1)?,
                    started_at: from_millis(r.try_get(2)?),
                    finished_at: r.try_get::<Option<i64>, _>(3)?.map(from_millis),
                    outcome: r.try_get(4)?,
                    error: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn job_with_history(&self, row: Option<SqliteRow>) -> Result<Option<JobRow>> {
        match row {
            None => Ok(None),
            Some(r) => {
                let mut job = job_row(&r)?;
                job.history = self.attempts(&job.id).await?;
                Ok(Some(job))
            }
        }
    }
}

crate::rows::row_mappers!(SqliteRow);

fn now_ms() -> i64 {
    millis(Utc::now())
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_account(&self, name: &str, role: Role, token_hash: &str) -> Result<Account> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        let row = sqlx::query(
            "INSERT INTO accounts (name, role, created_at) VALUES (?, ?, ?) \
             RETURNING id, name, role, created_at",
        )
        .bind(name)
        .bind(role.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("account '{name}'")),
            other => other,
        })?;
        let account = account_row(&row)?;
        sqlx::query("INSERT INTO tokens (token_hash, account_id, created_at) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(account.id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(account)
    }

    async fn add_token(&self, account_id: i64, token_hash: &str) -> Result<()> {
        sqlx::query("INSERT INTO tokens (token_hash, account_id, created_at) VALUES (?, ?, ?)")
            .bind(token_hash)
            .bind(account_id)
            .bind(now_ms())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn account_by_token(&self, token_hash: &str) -> Result<Option<Account>> {
        let row = sqlx::query(
            "SELECT a.id, a.name, a.role, a.created_at FROM tokens t \
             JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = ?",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(account_row).transpose()
    }

    async fn account_by_name(&self, name: &str) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT id, name, role, created_at FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_row).transpose()
    }

    async fn list_accounts(&self) -> Result<Vec<Account>> {
        let rows = sqlx::query("SELECT id, name, role, created_at FROM accounts ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(account_row).collect()
    }

    async fn create_version(&self, v: NewVersion) -> Result<VersionRow> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO ips (full_name, vendor_id, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (full_name) DO NOTHING",
        )
        .bind(&v.ip)
        .bind(v.vendor_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let (ip_id, vendor_id): (i64, i64) =
            sqlx::query_as("SELECT id, vendor_id FROM ips WHERE full_name = ?")
                .bind(&v.ip)
                .fetch_one(&mut *tx)
                .await?;
        if vendor_id != v.vendor_id {
            return Err(StoreError::Conflict(format!(
                "IP '{}' (owned by another vendor)",
                v.ip
            )));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO versions (ip_id, version, major, minor, patch, status, summary, \
             description, tags, price_micros, limits, implementations, tests, report, published_at, \
             object_params) \
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?) RETURNING id",
        )
        .bind(ip_id)
        .bind(v.version.to_string())
        .bind(v.version.major as i64)
        .bind(v.version.minor as i64)
        .bind(v.version.patch as i64)
        .bind(&v.summary)
        .bind(&v.description)
        .bind(to_json(&v.tags))
        .bind(v.price.micros())
        .bind(to_json(&v.limits))
        .bind(to_json(&v.implementations))
        .bind(to_json(&v.tests))
        .bind(now)
        .bind(to_json(&v.objects))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("version {} of '{}'", v.version, v.ip))
            }
            other => other,
        })?;
        sqlx::query("UPDATE versions SET pricing = ? WHERE id = ?")
            .bind(to_json(&v.pricing))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get_version_by_id(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("version {id}")))
    }

    async fn get_version(&self, ip: &str, version: &str) -> Result<Option<VersionRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id \
             WHERE i.full_name = ? AND v.version = ?"
        )))
        .bind(ip)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    async fn get_version_by_id(&self, id: i64) -> Result<Option<VersionRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id WHERE v.id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    async fn list_versions(&self, ip: &str) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id \
             WHERE i.full_name = ? ORDER BY v.major DESC, v.minor DESC, v.patch DESC, v.id DESC"
        )))
        .bind(ip)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    async fn list_latest_versions(&self) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id \
             WHERE v.id = (SELECT v2.id FROM versions v2 WHERE v2.ip_id = v.ip_id \
             ORDER BY v2.major DESC, v2.minor DESC, v2.patch DESC, v2.id DESC LIMIT 1) \
             ORDER BY i.full_name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    async fn pending_versions(&self) -> Result<Vec<VersionRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id \
             WHERE v.status = 'pending' ORDER BY v.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_row).collect()
    }

    async fn set_version_status(
        &self,
        id: i64,
        status: VersionStatus,
        report: &VerificationReport,
    ) -> Result<()> {
        sqlx::query("UPDATE versions SET status = ?, report = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(to_json(report))
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn ip_vendor(&self, ip: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT vendor_id FROM ips WHERE full_name = ?")
                .bind(ip)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn upsert_deployment(
        &self,
        id: &str,
        account_id: i64,
        version_id: i64,
    ) -> Result<DeploymentRow> {
        sqlx::query(
            "INSERT INTO deployments (id, account_id, ip_id, version_id, created_at) \
             SELECT ?, ?, ip_id, id, ? FROM versions WHERE id = ? \
             ON CONFLICT (account_id, ip_id) DO UPDATE SET version_id = excluded.version_id",
        )
        .bind(id)
        .bind(account_id)
        .bind(now_ms())
        .bind(version_id)
        .execute(&self.writer)
        .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_SELECT} WHERE d.account_id = ? AND d.version_id = ?"
        )))
        .bind(account_id)
        .bind(version_id)
        .fetch_one(&self.pool)
        .await?;
        deployment_row(&row)
    }

    async fn get_deployment(&self, account_id: i64, ip: &str) -> Result<Option<DeploymentRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_SELECT} WHERE d.account_id = ? AND i.full_name = ?"
        )))
        .bind(account_id)
        .bind(ip)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(deployment_row).transpose()
    }

    async fn list_deployments(&self, account_id: i64) -> Result<Vec<DeploymentRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_SELECT} WHERE d.account_id = ? ORDER BY i.full_name"
        )))
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deployment_row).collect()
    }

    async fn delete_deployment(&self, account_id: i64, ip: &str) -> Result<bool> {
        let r = sqlx::query(
            "DELETE FROM deployments WHERE account_id = ? \
             AND ip_id = (SELECT id FROM ips WHERE full_name = ?)",
        )
        .bind(account_id)
        .bind(ip)
        .execute(&self.writer)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn set_scaling(&self, deployment_id: &str, scaling: &Scaling) -> Result<()> {
        sqlx::query("UPDATE deployments SET scaling = ? WHERE id = ?")
            .bind(to_json(scaling))
            .bind(deployment_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn advance_metered_until(
        &self,
        deployment_id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE deployments SET metered_until = ? WHERE id = ? \
             AND COALESCE(metered_until, -1) = ?",
        )
        .bind(millis(to))
        .bind(deployment_id)
        .bind(from.map(millis).unwrap_or(-1))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_device_preference(&self, deployment_id: &str, devices: &[String]) -> Result<()> {
        sqlx::query("UPDATE deployments SET devices = ? WHERE id = ?")
            .bind(to_json(&devices))
            .bind(deployment_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn deployment_demand(&self) -> Result<Vec<DeploymentDemand>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_DEMAND} ORDER BY d.id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(demand_row).collect()
    }

    async fn deployment_demand_of(&self, deployment_id: &str) -> Result<Option<DeploymentDemand>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DEPLOYMENT_DEMAND} WHERE d.id = ?"
        )))
        .bind(deployment_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(demand_row).transpose()
    }

    async fn scale_deployment(
        &self,
        deployment_id: &str,
        from: u32,
        to: u32,
        low_since: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let r = sqlx::query(
            "UPDATE deployments SET replicas = ?, low_since = ? WHERE id = ? AND replicas = ?",
        )
        .bind(to as i64)
        .bind(low_since.map(millis))
        .bind(deployment_id)
        .bind(from as i64)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let (Some(reason), true) = (reason, from != to) {
            sqlx::query(
                "INSERT INTO scaling_events (deployment_id, at, from_replicas, to_replicas, reason) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(deployment_id)
            .bind(now_ms())
            .bind(from as i64)
            .bind(to as i64)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn running_counts(&self) -> Result<Vec<(i64, String, u32)>> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT j.account_id, i.full_name, COUNT(*) FROM jobs j \
             JOIN versions v ON v.id = j.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE j.state = 'running' GROUP BY j.account_id, i.full_name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(a, ip, n)| (a, ip, n.max(0) as u32))
            .collect())
    }

    async fn scaling_events(&self, deployment_id: &str, limit: u32) -> Result<Vec<ScalingEvent>> {
        let rows = sqlx::query(
            "SELECT at, from_replicas, to_replicas, reason FROM scaling_events WHERE deployment_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(deployment_id)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(scaling_event_row).collect()
    }

    async fn scaling_history(
        &self,
        deployment_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ScalingEvent>> {
        let before = sqlx::query(
            "SELECT at, from_replicas, to_replicas, reason FROM scaling_events \
             WHERE deployment_id = ? AND at < ? ORDER BY id DESC LIMIT 1",
        )
        .bind(deployment_id)
        .bind(millis(since))
        .fetch_optional(&self.pool)
        .await?;
        let after = sqlx::query(
            "SELECT at, from_replicas, to_replicas, reason FROM scaling_events \
             WHERE deployment_id = ? AND at >= ? ORDER BY id",
        )
        .bind(deployment_id)
        .bind(millis(since))
        .fetch_all(&self.pool)
        .await?;
        before
            .iter()
            .chain(after.iter())
            .map(scaling_event_row)
            .collect()
    }

    async fn put_object(&self, account_id: i64, key: &str, size: u64, sha256: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO objects (account_id, key, size, sha256, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (account_id, key) DO UPDATE SET size = excluded.size, \
             sha256 = excluded.sha256, created_at = excluded.created_at",
        )
        .bind(account_id)
        .bind(key)
        .bind(size as i64)
        .bind(sha256)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_object(&self, account_id: i64, key: &str) -> Result<Option<ObjectRow>> {
        let row = sqlx::query(
            "SELECT key, size, sha256, created_at FROM objects WHERE account_id = ? AND key = ?",
        )
        .bind(account_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(object_row).transpose()
    }

    async fn list_objects(&self, account_id: i64) -> Result<Vec<ObjectRow>> {
        let rows = sqlx::query(
            "SELECT key, size, sha256, created_at FROM objects WHERE account_id = ? \
             ORDER BY created_at DESC, key",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(object_row).collect()
    }

    async fn delete_object(&self, account_id: i64, key: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM objects WHERE account_id = ? AND key = ?")
            .bind(account_id)
            .bind(key)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_job(&self, job: NewJob) -> Result<JobRow> {
        sqlx::query(
            "INSERT INTO jobs (id, account_id, version_id, device, input_key, input_size, params, \
             state, max_attempts, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)",
        )
        .bind(&job.id)
        .bind(job.account_id)
        .bind(job.version_id)
        .bind(&job.device)
        .bind(&job.input_key)
        .bind(job.input_size as i64)
        .bind(to_json(&job.params))
        .bind(job.max_attempts as i64)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        self.get_job(&job.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {}", job.id)))
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} {JOB_FROM} WHERE j.id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        self.job_with_history(row).await
    }

    async fn list_jobs(&self, account_id: i64, limit: u32) -> Result<Vec<JobRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLS} {JOB_FROM} WHERE j.account_id = ? \
             ORDER BY j.created_at DESC, j.id DESC LIMIT ?"
        )))
        .bind(account_id)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn claim_job(
        &self,
        worker: &str,
        devices: &[String],
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>> {
        if devices.is_empty() {
            return Ok(None);
        }
        // The oldest queued job of these devices.
        let inner = format!("SELECT id FROM jobs WHERE state = 'queued' AND device IN ({}) ORDER BY created_at, id LIMIT 1", vec!["?"; devices.len()].join(", "));
        let binds: Vec<&str> = devices.iter().map(String::as_str).collect();
        self.claim_capped(worker, lease_until, None, &inner, &binds)
            .await
    }

    async fn claim_job_id(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>> {
        self.claim_capped(
            worker,
            lease_until,
            Some(id),
            "SELECT id FROM jobs WHERE id = ? AND state = 'queued'",
            &[id],
        )
        .await
    }

    async fn queued_jobs(&self, devices: &[String], limit: u32) -> Result<Vec<JobRow>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; devices.len()].join(", ");
        let sql = format!(
            "SELECT {JOB_COLS} {JOB_FROM} WHERE j.id IN (SELECT id FROM (SELECT id, \
             ROW_NUMBER() OVER (PARTITION BY account_id, version_id ORDER BY created_at, id) AS rn \
             FROM jobs WHERE state = 'queued' AND device IN ({placeholders})) AS heads \
             WHERE rn <= {QUEUED_PER_VERSION}) ORDER BY j.created_at, j.id LIMIT {}",
            limit.clamp(1, 1000)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for d in devices {
            q = q.bind(d);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(job_row).collect()
    }

    async fn renew_lease(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: f64,
        items: Option<(u64, &str)>,
    ) -> Result<Option<JobState>> {
        sqlx::query(
            "UPDATE jobs SET lease_expires = ?, progress = ?, items = ?, items_unit = ? \
             WHERE id = ? AND lease_owner = ? AND state = 'running'",
        )
        .bind(millis(lease_until))
        .bind(progress.clamp(0.0, 1.0))
        .bind(items.map(|(n, _)| n.min(i64::MAX as u64) as i64))
        .bind(items.map(|(_, u)| u))
        .bind(id)
        .bind(worker)
        .execute(&self.writer)
        .await?;
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, lease_owner FROM jobs WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        match row {
            None => Ok(None),
            Some((state, owner)) => {
                let state: JobState = state.parse().map_err(StoreError::Corrupt)?;
                if state == JobState::Running && owner.as_deref() != Some(worker) {
                    // Someone else holds it now: for this worker it is lost.
                    return Ok(Some(JobState::Queued));
                }
                Ok(Some(state))
            }
        }
    }

    async fn finish_job(
        &self,
        id: &str,
        worker: &str,
        outcome: JobOutcome,
        usage: Option<NewUsage>,
    ) -> Result<bool> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT attempts FROM jobs WHERE id = ? AND lease_owner = ? AND state = 'running'",
        )
        .bind(id)
        .bind(worker)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(attempt) = held else {
            // End the transaction now: a pooled connection must not sit
            // in one (PostgreSQL would keep its locks).
            tx.rollback().await?;
            return Ok(false);
        };
        let (state, output_key, output_size, error, log, items) = match &outcome {
            JobOutcome::Succeeded {
                output_key,
                output_size,
                log,
                items,
            } => (
                "succeeded",
                Some(output_key.clone()),
                Some(*output_size as i64),
                None,
                log.clone(),
                items.clone(),
            ),
            JobOutcome::Failed { error, log } => {
                ("failed", None, None, Some(error.clone()), log.clone(), None)
            }
            JobOutcome::Cancelled => ("cancelled", None, None, None, None, None),
        };
        sqlx::query(
            "UPDATE jobs SET state = ?, output_key = ?, output_size = ?, error = ?, log = ?, \
             progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END, \
             items = COALESCE(?, items), items_unit = COALESCE(?, items_unit), \
             lease_owner = NULL, lease_expires = NULL, finished_at = ? WHERE id = ?",
        )
        .bind(state)
        .bind(output_key)
        .bind(output_size)
        .bind(&error)
        .bind(log)
        .bind(state)
        .bind(
            items
                .as_ref()
                .map(|(n, _)| (*n).min(i64::MAX as u64) as i64),
        )
        .bind(items.map(|(_, u)| u))
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE job_attempts SET finished_at = ?, outcome = ?, error = ? \
             WHERE job_id = ? AND attempt = ?",
        )
        .bind(now)
        .bind(state)
        .bind(&error)
        .bind(id)
        .bind(attempt)
        .execute(&mut *tx)
        .await?;
        if let Some(u) = usage {
            insert_usage(&mut *tx, [(&u, now)]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel_job(&self, id: &str) -> Result<Option<JobState>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        sqlx::query(
            "UPDATE job_attempts SET finished_at = ?, outcome = 'cancelled' \
             WHERE job_id = ? AND finished_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_expires = NULL, \
             finished_at = ? WHERE id = ? AND state IN ('queued', 'running')",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        state
            .map(|s| s.parse().map_err(StoreError::Corrupt))
            .transpose()
    }

    async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running' AND lease_expires < ?")
                .bind(millis(now))
                .fetch_all(&mut *tx)
                .await?;
        for id in &ids {
            lose_attempt(&mut tx, id, "the worker stopped renewing its lease").await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn release_worker(&self, worker: &str, why: &str) -> Result<Vec<String>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM jobs WHERE state = 'running' AND lease_owner = ?")
                .bind(worker)
                .fetch_all(&mut *tx)
                .await?;
        for id in &ids {
            lose_attempt(&mut tx, id, why).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }

    async fn delete_job(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn create_agent(&self, name: &str, token_hash: &str) -> Result<AgentRow> {
        let row = sqlx::query(
            "INSERT INTO agent_tokens (name, token_hash, created_at) \
             VALUES (?, ?, ?) RETURNING id, name, created_at, revoked",
        )
        .bind(name)
        .bind(token_hash)
        .bind(now_ms())
        .fetch_one(&self.writer)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("agent '{name}'")),
            other => other,
        })?;
        agent_row(&row)
    }

    async fn agent_by_token(&self, token_hash: &str) -> Result<Option<AgentRow>> {
        let row = sqlx::query(
            "SELECT id, name, created_at, revoked FROM agent_tokens \
             WHERE token_hash = ? AND revoked = 0",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(agent_row).transpose()
    }

    async fn list_agents(&self) -> Result<Vec<AgentRow>> {
        let rows =
            sqlx::query("SELECT id, name, created_at, revoked FROM agent_tokens ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(agent_row).collect()
    }

    async fn revoke_agent(&self, name: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE agent_tokens SET revoked = 1 WHERE name = ?")
            .bind(name)
            .execute(&self.writer)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn node_seen(&self, name: &str, agent_id: i64, devices: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO nodes (name, agent_id, devices, state, registered_at, last_seen) \
             VALUES (?, ?, ?, 'up', ?, ?) \
             ON CONFLICT (name) DO UPDATE SET agent_id = excluded.agent_id, \
             devices = excluded.devices, state = 'up', last_seen = excluded.last_seen",
        )
        .bind(name)
        .bind(agent_id)
        .bind(devices)
        .bind(now)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_node(&self, name: &str) -> Result<Option<NodeRow>> {
        let row = sqlx::query(
            "SELECT name, agent_id, devices, state, registered_at, last_seen FROM nodes \
             WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(node_row).transpose()
    }

    async fn list_nodes(&self) -> Result<Vec<NodeRow>> {
        let rows = sqlx::query(
            "SELECT name, agent_id, devices, state, registered_at, last_seen FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(node_row).collect()
    }

    async fn mark_dead_nodes(&self, silent_since: DateTime<Utc>) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE nodes SET state = 'dead' \
             WHERE state = 'up' AND last_seen < ? RETURNING name",
        )
        .bind(millis(silent_since))
        .fetch_all(&self.writer)
        .await?)
    }

    async fn record_usage(&self, usage: NewUsage) -> Result<()> {
        self.journal.append(usage)
    }

    async fn put_review(
        &self,
        ip: &str,
        account_id: i64,
        stars: u8,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<accelhub_domain::Review> {
        let row = sqlx::query(
            "INSERT INTO reviews (ip_id, account_id, stars, body, created_at, updated_at) \
             SELECT id, ?1, ?2, ?3, ?4, ?4 FROM ips WHERE full_name = ?5 \
             ON CONFLICT (ip_id, account_id) DO UPDATE SET stars = excluded.stars, \
             body = excluded.body, updated_at = excluded.updated_at RETURNING id",
        )
        .bind(account_id)
        .bind(stars as i64)
        .bind(text)
        .bind(millis(now))
        .bind(ip)
        .fetch_optional(&self.writer)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no IP named '{ip}'")))?;
        let id: i64 = row.try_get(0)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REVIEW_SELECT} WHERE r.id = ?"
        )))
        .bind(id)
        .fetch_one(&self.writer)
        .await?;
        review_row(&row)
    }

    async fn list_reviews(&self, ip: &str) -> Result<Vec<accelhub_domain::Review>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REVIEW_SELECT} WHERE i.full_name = ? ORDER BY r.updated_at DESC, r.id DESC"
        )))
        .bind(ip)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(review_row).collect()
    }

    async fn reply_review(
        &self,
        ip: &str,
        id: i64,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<accelhub_domain::Review>> {
        let done = sqlx::query(
            "UPDATE reviews SET reply = ?, reply_at = ? WHERE id = ? \
             AND ip_id = (SELECT id FROM ips WHERE full_name = ?)",
        )
        .bind(text)
        .bind(millis(now))
        .bind(id)
        .bind(ip)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{REVIEW_SELECT} WHERE r.id = ?"
        )))
        .bind(id)
        .fetch_one(&self.writer)
        .await?;
        review_row(&row).map(Some)
    }

    async fn ip_stats(
        &self,
    ) -> Result<std::collections::BTreeMap<String, accelhub_domain::IpStats>> {
        self.journal.flush().await?;
        let ratings = sqlx::query(sqlx::AssertSqlSafe(RATING_STATS))
            .fetch_all(&self.pool)
            .await?;
        let uses = sqlx::query(USE_STATS).fetch_all(&self.pool).await?;
        ip_stats_of(&ratings, &uses)
    }

    async fn has_used(&self, account_id: i64, ip: &str) -> Result<bool> {
        self.journal.flush().await?;
        let row = sqlx::query(
            "SELECT 1 FROM usage u JOIN versions v ON v.id = u.version_id \
             JOIN ips i ON i.id = v.ip_id \
             WHERE u.account_id = ? AND i.full_name = ? AND u.billed = 1 \
             AND u.kind <> 'reserve' LIMIT 1",
        )
        .bind(account_id)
        .bind(ip)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn subscribe(
        &self,
        account_id: i64,
        ip: &str,
        plan: &str,
        since: DateTime<Utc>,
    ) -> Result<accelhub_domain::billing::Subscription> {
        let done = sqlx::query(
            "INSERT INTO subscriptions (account_id, ip_id, plan, since) \
             SELECT ?, id, ?, ? FROM ips WHERE full_name = ?",
        )
        .bind(account_id)
        .bind(plan)
        .bind(millis(since))
        .bind(ip)
        .execute(&self.writer)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("no IP named '{ip}'")));
        }
        Ok(accelhub_domain::billing::Subscription {
            ip: ip.to_string(),
            plan: plan.to_string(),
            since: from_millis(millis(since)),
        })
    }

    async fn subscriptions(
        &self,
        account_id: Option<i64>,
        ip: Option<&str>,
    ) -> Result<Vec<(i64, accelhub_domain::billing::Subscription)>> {
        let rows = sqlx::query(
            "SELECT s.account_id, i.full_name, s.plan, s.since FROM subscriptions s \
             JOIN ips i ON i.id = s.ip_id \
             WHERE (? < 0 OR s.account_id = ?) AND (? = '' OR i.full_name = ?) \
             ORDER BY s.since, s.id",
        )
        .bind(account_id.unwrap_or(-1))
        .bind(account_id.unwrap_or(-1))
        .bind(ip.unwrap_or(""))
        .bind(ip.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get(0)?,
                    accelhub_domain::billing::Subscription {
                        ip: r.try_get(1)?,
                        plan: r.try_get(2)?,
                        since: from_millis(r.try_get(3)?),
                    },
                ))
            })
            .collect()
    }

    async fn set_spending_limit(&self, account_id: i64, monthly: Option<Money>) -> Result<()> {
        match monthly {
            Some(m) => {
                sqlx::query(
                    "INSERT INTO spending_limits (account_id, monthly_micros) VALUES (?, ?) \
                     ON CONFLICT (account_id) DO UPDATE SET monthly_micros = excluded.monthly_micros",
                )
                .bind(account_id)
                .bind(m.micros())
                .execute(&self.writer)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM spending_limits WHERE account_id = ?")
                    .bind(account_id)
                    .execute(&self.writer)
                    .await?;
            }
        }
        Ok(())
    }

    async fn spending_limit(&self, account_id: i64) -> Result<Option<Money>> {
        let row = sqlx::query("SELECT monthly_micros FROM spending_limits WHERE account_id = ?")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => Some(Money(r.try_get(0)?)),
            None => None,
        })
    }

    async fn list_usage(
        &self,
        scope: UsageScope,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<UsageRecord>> {
        let (cond, id) = match scope {
            UsageScope::Consumer(id) => ("u.account_id = ?", id),
            UsageScope::Vendor(id) => ("i.vendor_id = ?", id),
            UsageScope::All => ("? = 0", 0),
        };
        self.journal.flush().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT u.id, u.kind, a.name, i.full_name, v.version, u.device, u.bytes_in, \
             u.bytes_out, u.device_time_us, u.price_micros, u.billed, u.outcome, u.created_at \
             FROM usage u JOIN accounts a ON a.id = u.account_id \
             JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE {cond} AND u.created_at >= ? ORDER BY u.created_at, u.id"
        )))
        .bind(id)
        .bind(since.map(millis).unwrap_or(i64::MIN))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UsageRecord {
                    id: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    account: Some(r.try_get(2)?),
                    ip: r.try_get(3)?,
                    version: r.try_get(4)?,
                    device: r.try_get(5)?,
                    bytes_in: r.try_get::<i64, _>(6)? as u64,
                    bytes_out: r.try_get::<i64, _>(7)? as u64,
                    device_time_us: r.try_get::<i64, _>(8)? as u64,
                    price: Money(r.try_get(9)?),
                    billed: r.try_get::<i64, _>(10)? != 0,
                    outcome: r.try_get(11)?,
                    created_at: from_millis(r.try_get(12)?),
                })
            })
            .collect()
    }
}

async fn lose_attempt(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    id: &str,
    why: &str,
) -> Result<()> {
    let now = now_ms();
    sqlx::query(
        "UPDATE job_attempts SET finished_at = ?, outcome = 'lost', error = ? \
         WHERE job_id = ? AND finished_at IS NULL",
    )
    .bind(now)
    .bind(why)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE jobs SET lease_owner = NULL, lease_expires = NULL, progress = 0, \
         state = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
         error = CASE WHEN attempts >= max_attempts \
                 THEN 'gave up after ' || attempts || ' attempts: ' || ? ELSE error END, \
         finished_at = CASE WHEN attempts >= max_attempts THEN ? ELSE NULL END \
         WHERE id = ?",
    )
    .bind(why)
    .bind(now)
    .bind(id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Insert usage records, each with its time, as one multi-row statement.
/// An id already present, or repeated in `rows`, is written once.
pub(crate) async fn insert_usage<'e, 'u, E>(
    exec: E,
    rows: impl IntoIterator<Item = (&'u NewUsage, i64)>,
) -> Result<()>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
        "INSERT INTO usage (id, kind, account_id, version_id, device, bytes_in, bytes_out, \
         device_time_us, price_micros, billed, outcome, created_at) ",
    );
    q.push_values(rows, |mut b, (u, at)| {
        b.push_bind(&u.id)
            .push_bind(&u.kind)
            .push_bind(u.account_id)
            .push_bind(u.version_id)
            .push_bind(&u.device)
            .push_bind(u.bytes_in as i64)
            .push_bind(u.bytes_out as i64)
            .push_bind(u.device_time_us as i64)
            .push_bind(if u.billed { u.price.micros() } else { 0 })
            .push_bind(u.billed as i64)
            .push_bind(&u.outcome)
            .push_bind(at);
    });
    q.push(" ON CONFLICT (id) DO NOTHING");
    q.build().execute(exec).await?;
    Ok(())
}

impl SqliteStore {
    /// Lease the job `inner` selects (its parameters from the 4th on are
    /// `binds`). With `capped`, only if that job's deployment runs fewer
    /// jobs than it has replicas (checked under a lock on the deployment,
    /// so concurrent claims never exceed it).
    async fn claim_capped(
        &self,
        worker: &str,
        lease_until: DateTime<Utc>,
        capped: Option<&str>,
        inner: &str,
        binds: &[&str],
    ) -> Result<Option<JobRow>> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await?;
        let now = now_ms();
        if let Some(job) = capped {
            let dep: Option<(String, i64, i64, i64)> = sqlx::query_as(
                "SELECT d.id, d.replicas, v.ip_id, j.account_id FROM jobs j \
                 JOIN versions v ON v.id = j.version_id \
                 JOIN deployments d ON d.account_id = j.account_id AND d.ip_id = v.ip_id \
                 WHERE j.id = ?",
            )
            .bind(job)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((_, replicas, ip_id, account_id)) = dep {
                let running: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM jobs j JOIN versions v ON v.id = j.version_id \
                     WHERE j.account_id = ? AND v.ip_id = ? AND j.state = 'running'",
                )
                .bind(account_id)
                .bind(ip_id)
                .fetch_one(&mut *tx)
                .await?;
                if running >= replicas {
                    tx.rollback().await?;
                    return Ok(None);
                }
            }
        }
        let sql = format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, \
             lease_expires = ?, started_at = COALESCE(started_at, ?), progress = 0, \
             items = NULL, items_unit = NULL \
             WHERE id = ({inner}) RETURNING id, attempts"
        );
        let mut q = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(millis(lease_until))
            .bind(now);
        for b in binds {
            q = q.bind(*b);
        }
        let Some((id, attempt)) = q.fetch_optional(&mut *tx).await? else {
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO job_attempts (job_id, attempt, worker, started_at, outcome) \
             VALUES (?, ?, ?, ?, 'running')",
        )
        .bind(&id)
        .bind(attempt)
        .bind(worker)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.get_job(&id).await
    }
}
