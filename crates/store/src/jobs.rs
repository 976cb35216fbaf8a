//! Jobs: a durable queue with leases and attempts.
//!
//! A job is `running` only under a lease its worker renews; an expired
//! lease, or a worker's release, marks the attempt `lost` and queues the
//! job again until `max_attempts`. Finishing an attempt writes the job's
//! outcome and its usage record in one transaction, and only for the
//! worker that holds the lease, so a job is billed once.

use crate::billing::insert_usage;
use crate::rows::{attempt_row, job_row, JOB_COLS, JOB_FROM, QUEUED_PER_VERSION};
use crate::sql::{keyset, placeholders, query, Arg, Lock, Order, Row, Tx};
use crate::*;
use accelhub_domain::JobState;

#[async_trait::async_trait]
pub trait JobStore {
    async fn create_job(&self, job: NewJob) -> Result<JobRow>;
    async fn get_job(&self, id: &str) -> Result<Option<JobRow>>;
    /// A page of an account's jobs, newest first: at most `limit`, after
    /// `after` (the last of the page before).
    async fn list_jobs(
        &self,
        account_id: i64,
        after: Option<&accelhub_domain::Cursor>,
        limit: u32,
    ) -> Result<Vec<JobRow>>;
    /// Lease this job if it is still queued (a scheduler chose it) and its
    /// deployment, if it has one, runs fewer jobs than its replicas: it
    /// becomes `running` under a lease held by `worker` until
    /// `lease_until`, and a new attempt is recorded.
    async fn claim_job_id(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>>;
    /// The oldest queued jobs of these devices (candidates for a
    /// scheduler), at most 4 of each account's IP version so that one
    /// deployment's backlog never hides another's; without their history.
    async fn queued_jobs(&self, devices: &[String], limit: u32) -> Result<Vec<JobRow>>;
    /// Extend a lease and record progress (a fraction, and items done in
    /// the IP's unit when it counts them). Returns the job's state: a
    /// worker whose job is no longer `running` under its lease must stop.
    async fn renew_lease(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
        progress: f64,
        items: Option<(u64, &str)>,
    ) -> Result<Option<JobState>>;
    /// Finish the attempt held by `worker`, and write its usage record in
    /// the same transaction. Returns false (and writes nothing) if the
    /// worker no longer holds the job.
    async fn finish_job(
        &self,
        id: &str,
        worker: &str,
        outcome: JobOutcome,
        usage: Option<NewUsage>,
    ) -> Result<bool>;
    /// Cancel a job that has not finished. Returns its state afterwards.
    async fn cancel_job(&self, id: &str) -> Result<Option<JobState>>;
    /// Jobs whose lease expired before `now` (their worker died): the
    /// attempt is marked `lost`; the job is queued again, or failed once
    /// it has had `max_attempts`. Returns the ids touched.
    async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<Vec<String>>;
    /// Give up every lease held by `worker` at once (its process restarted,
    /// or its node stopped heartbeating): each attempt is marked `lost`
    /// with `why`.
    async fn release_worker(&self, worker: &str, why: &str) -> Result<Vec<String>>;
    async fn delete_job(&self, id: &str) -> Result<bool>;
}

/// Items done, as stored (a count that fits the column).
fn items_count(items: Option<u64>) -> Option<i64> {
    items.map(|n| n.min(i64::MAX as u64) as i64)
}

impl SqlStore {
    async fn job_with_history(&self, row: Option<Row>) -> Result<Option<JobRow>> {
        let Some(r) = row else { return Ok(None) };
        let mut job = job_row(&r)?;
        let attempts = query(
            "SELECT attempt, worker, started_at, finished_at, outcome, error FROM job_attempts \
             WHERE job_id = ? ORDER BY attempt",
        )
        .bind(&job.id)
        .fetch_all(self.db.read())
        .await?;
        job.history = attempts.iter().map(attempt_row).collect::<Result<_>>()?;
        Ok(Some(job))
    }

    /// Jobs `running` and matching `cond` (binding `arg`), locked so that
    /// two control planes never both touch one (and clobber a claim made
    /// in between), then each attempt marked lost with `why`.
    async fn lose_running(
        &self,
        cond: &str,
        arg: Arg,
        lock: Lock,
        why: &str,
    ) -> Result<Vec<String>> {
        let mut tx = self.db.begin().await?;
        let rows = query(format!(
            "SELECT id FROM jobs WHERE state = 'running' AND {cond}{}",
            self.db.lock(lock)
        ))
        .bind(arg)
        .fetch_all(tx.exec())
        .await?;
        let ids = rows
            .iter()
            .map(|r| r.get(0))
            .collect::<Result<Vec<String>>>()?;
        for id in &ids {
            lose_attempt(&mut tx, id, why).await?;
        }
        tx.commit().await?;
        Ok(ids)
    }
}

#[async_trait::async_trait]
impl JobStore for SqlStore {
    async fn create_job(&self, job: NewJob) -> Result<JobRow> {
        query(
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
        .execute(self.db.write())
        .await?;
        self.get_job(&job.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("job {}", job.id)))
    }

    async fn get_job(&self, id: &str) -> Result<Option<JobRow>> {
        let row = query(format!("SELECT {JOB_COLS} {JOB_FROM} WHERE j.id = ?"))
            .bind(id)
            .fetch_optional(self.db.read())
            .await?;
        self.job_with_history(row).await
    }

    async fn list_jobs(
        &self,
        account_id: i64,
        after: Option<&accelhub_domain::Cursor>,
        limit: u32,
    ) -> Result<Vec<JobRow>> {
        let (at, id) = after.map_or((i64::MAX, ""), |c| (c.at_ms, c.id.as_str()));
        let rows = query(format!(
            "SELECT {JOB_COLS} {JOB_FROM} WHERE j.account_id = ? AND {page}",
            page = keyset("j.created_at", "j.id", Order::Desc)
        ))
        .bind(account_id)
        .bind_page(at, id, limit)
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(job_row).collect()
    }

    async fn claim_job_id(
        &self,
        id: &str,
        worker: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<JobRow>> {
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        // The replica cap, checked under a lock on the deployment's row so
        // that concurrent claims never exceed it.
        let dep = query(format!(
            "SELECT d.replicas, v.ip_id, j.account_id FROM jobs j \
             JOIN versions v ON v.id = j.version_id \
             JOIN deployments d ON d.account_id = j.account_id AND d.ip_id = v.ip_id \
             WHERE j.id = ?{}",
            self.db.lock(Lock::UpdateOf("d"))
        ))
        .bind(id)
        .fetch_optional(tx.exec())
        .await?;
        if let Some(dep) = dep {
            let (replicas, ip_id, account_id): (i64, i64, i64) =
                (dep.get(0)?, dep.get(1)?, dep.get(2)?);
            let running: i64 = query(
                "SELECT COUNT(*) FROM jobs j JOIN versions v ON v.id = j.version_id \
                 WHERE j.account_id = ? AND v.ip_id = ? AND j.state = 'running'",
            )
            .bind(account_id)
            .bind(ip_id)
            .fetch_one(tx.exec())
            .await?
            .get(0)?;
            if running >= replicas {
                tx.rollback().await?;
                return Ok(None);
            }
        }
        // SKIP LOCKED: a job another control plane is claiming right now
        // is not this one's to take.
        let claimed = query(format!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?, \
             lease_expires = ?, started_at = COALESCE(started_at, ?), progress = 0, \
             items = NULL, items_unit = NULL \
             WHERE id = (SELECT id FROM jobs WHERE id = ? AND state = 'queued'{}) \
             RETURNING id, attempts",
            self.db.lock(Lock::SkipLocked)
        ))
        .bind(worker)
        .bind(millis(lease_until))
        .bind(now)
        .bind(id)
        .fetch_optional(tx.exec())
        .await?;
        let Some(claimed) = claimed else {
            tx.rollback().await?;
            return Ok(None);
        };
        let (id, attempt): (String, i64) = (claimed.get(0)?, claimed.get(1)?);
        query(
            "INSERT INTO job_attempts (job_id, attempt, worker, started_at, outcome) \
             VALUES (?, ?, ?, ?, 'running')",
        )
        .bind(&id)
        .bind(attempt)
        .bind(worker)
        .bind(now)
        .execute(tx.exec())
        .await?;
        tx.commit().await?;
        self.get_job(&id).await
    }

    async fn queued_jobs(&self, devices: &[String], limit: u32) -> Result<Vec<JobRow>> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let rows = query(format!(
            "SELECT {JOB_COLS} {JOB_FROM} WHERE j.id IN (SELECT id FROM (SELECT id, \
             ROW_NUMBER() OVER (PARTITION BY account_id, version_id ORDER BY created_at, id) AS rn \
             FROM jobs WHERE state = 'queued' AND device IN ({})) AS heads \
             WHERE rn <= {QUEUED_PER_VERSION}) ORDER BY j.created_at, j.id LIMIT {}",
            placeholders(devices.len()),
            limit.clamp(1, 1000)
        ))
        .bind_all(devices)
        .fetch_all(self.db.read())
        .await?;
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
        query(
            "UPDATE jobs SET lease_expires = ?, progress = ?, items = ?, items_unit = ? \
             WHERE id = ? AND lease_owner = ? AND state = 'running'",
        )
        .bind(millis(lease_until))
        .bind(progress.clamp(0.0, 1.0))
        .bind(items_count(items.map(|(n, _)| n)))
        .bind(items.map(|(_, u)| u))
        .bind(id)
        .bind(worker)
        .execute(self.db.write())
        .await?;
        let Some(row) = query("SELECT state, lease_owner FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(self.db.read())
            .await?
        else {
            return Ok(None);
        };
        let state: JobState = row.get::<String>(0)?.parse().map_err(StoreError::Corrupt)?;
        let owner: Option<String> = row.get(1)?;
        if state == JobState::Running && owner.as_deref() != Some(worker) {
            // Someone else holds it now: for this worker it is lost.
            return Ok(Some(JobState::Queued));
        }
        Ok(Some(state))
    }

    async fn finish_job(
        &self,
        id: &str,
        worker: &str,
        outcome: JobOutcome,
        usage: Option<NewUsage>,
    ) -> Result<bool> {
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        let held = query(format!(
            "SELECT attempts FROM jobs WHERE id = ? AND lease_owner = ? AND state = 'running'{}",
            self.db.lock(Lock::Update)
        ))
        .bind(id)
        .bind(worker)
        .fetch_optional(tx.exec())
        .await?;
        let Some(held) = held else {
            tx.rollback().await?;
            return Ok(false);
        };
        let attempt: i64 = held.get(0)?;
        let (state, output_key, output_size, outputs, error, log, items) = match outcome {
            JobOutcome::Succeeded {
                output_key,
                output_size,
                outputs,
                log,
                items,
            } => (
                JobState::Succeeded,
                Some(output_key),
                Some(output_size as i64),
                outputs,
                None,
                log,
                items,
            ),
            JobOutcome::Failed { error, log } => (
                JobState::Failed,
                None,
                None,
                Vec::new(),
                Some(error),
                log,
                None,
            ),
            JobOutcome::Cancelled => (
                JobState::Cancelled,
                None,
                None,
                Vec::new(),
                None,
                None,
                None,
            ),
        };
        let (count, unit) = match items {
            Some((n, u)) => (Some(n), Some(u)),
            None => (None, None),
        };
        query(
            "UPDATE jobs SET state = ?, output_key = ?, output_size = ?, outputs = ?, error = ?, log = ?, \
             progress = CASE WHEN ? THEN 1.0 ELSE progress END, \
             items = COALESCE(?, items), items_unit = COALESCE(?, items_unit), \
             lease_owner = NULL, lease_expires = NULL, finished_at = ? WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(output_key)
        .bind(output_size)
        .bind(crate::to_json(&outputs))
        .bind(&error)
        .bind(log)
        .bind(state == JobState::Succeeded)
        .bind(items_count(count))
        .bind(unit)
        .bind(now)
        .bind(id)
        .execute(tx.exec())
        .await?;
        query(
            "UPDATE job_attempts SET finished_at = ?, outcome = ?, error = ? \
             WHERE job_id = ? AND attempt = ?",
        )
        .bind(now)
        .bind(state.as_str())
        .bind(&error)
        .bind(id)
        .bind(attempt)
        .execute(tx.exec())
        .await?;
        if let Some(u) = usage {
            insert_usage(&mut tx, &[(u, now)]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn cancel_job(&self, id: &str) -> Result<Option<JobState>> {
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        query(
            "UPDATE job_attempts SET finished_at = ?, outcome = 'cancelled' \
             WHERE job_id = ? AND finished_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(tx.exec())
        .await?;
        query(
            "UPDATE jobs SET state = 'cancelled', lease_owner = NULL, lease_expires = NULL, \
             finished_at = ? WHERE id = ? AND state IN ('queued', 'running')",
        )
        .bind(now)
        .bind(id)
        .execute(tx.exec())
        .await?;
        let state = query("SELECT state FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(tx.exec())
            .await?;
        tx.commit().await?;
        state
            .map(|r| r.get::<String>(0)?.parse().map_err(StoreError::Corrupt))
            .transpose()
    }

    async fn requeue_expired(&self, now: DateTime<Utc>) -> Result<Vec<String>> {
        self.lose_running(
            "lease_expires < ?",
            millis(now).into(),
            Lock::SkipLocked,
            "the worker stopped renewing its lease",
        )
        .await
    }

    async fn release_worker(&self, worker: &str, why: &str) -> Result<Vec<String>> {
        self.lose_running("lease_owner = ?", worker.into(), Lock::Update, why)
            .await
    }

    async fn delete_job(&self, id: &str) -> Result<bool> {
        let n = query("DELETE FROM jobs WHERE id = ?")
            .bind(id)
            .execute(self.db.write())
            .await?;
        Ok(n > 0)
    }
}

/// Mark the running attempt of job `id` lost with `why`, and queue the job
/// again (or fail it once it has had its attempts).
async fn lose_attempt(tx: &mut Tx, id: &str, why: &str) -> Result<()> {
    let now = now_ms();
    query(
        "UPDATE job_attempts SET finished_at = ?, outcome = 'lost', error = ? \
         WHERE job_id = ? AND finished_at IS NULL",
    )
    .bind(now)
    .bind(why)
    .bind(id)
    .execute(tx.exec())
    .await?;
    query(
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
    .execute(tx.exec())
    .await?;
    Ok(())
}
