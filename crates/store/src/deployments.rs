//! Deployments: which version of an IP an account runs, its device
//! preference, its autoscaling bounds, replicas and their history, and how
//! far its reserved replicas are metered.

use crate::rows::{
    demand_row, deployment_row, scaling_event_row, DEPLOYMENT_DEMAND, DEPLOYMENT_SELECT,
};
use crate::sql::query;
use crate::*;
use accelhub_domain::{Scaling, ScalingEvent};

#[async_trait::async_trait]
pub trait DeploymentStore {
    async fn upsert_deployment(
        &self,
        id: &str,
        account_id: i64,
        version_id: i64,
    ) -> Result<DeploymentRow>;
    async fn get_deployment(&self, account_id: i64, ip: &str) -> Result<Option<DeploymentRow>>;
    /// A page of an account's deployments, by IP name: at most `limit`,
    /// after the IP `after` (the last of the page before).
    async fn list_deployments(
        &self,
        account_id: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeploymentRow>>;
    async fn delete_deployment(&self, account_id: i64, ip: &str) -> Result<bool>;
    async fn set_scaling(&self, deployment_id: &str, scaling: &Scaling) -> Result<()>;
    /// Advance how far a deployment's reservation is metered, from `from`
    /// (what the caller read) to `to`; false when another process moved it
    /// first (that process meters the interval).
    async fn advance_metered_until(
        &self,
        deployment_id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool>;
    /// Set the device classes a deployment's calls prefer, in order.
    async fn set_device_preference(&self, deployment_id: &str, devices: &[String]) -> Result<()>;
    /// Every deployment with its jobs queued and running.
    async fn deployment_demand(&self) -> Result<Vec<DeploymentDemand>>;
    async fn deployment_demand_of(&self, deployment_id: &str) -> Result<Option<DeploymentDemand>>;
    /// Set a deployment's replicas to `to` (and `low_since`) if they are
    /// still `from`, recording `reason` as a scaling event when the
    /// replicas change. False: another control plane moved first.
    async fn scale_deployment(
        &self,
        deployment_id: &str,
        from: u32,
        to: u32,
        low_since: Option<DateTime<Utc>>,
        reason: Option<&str>,
    ) -> Result<bool>;
    /// Jobs running now, by account and IP.
    async fn running_counts(&self) -> Result<Vec<(i64, String, u32)>>;
    /// A deployment's latest scaling events, newest first.
    async fn scaling_events(&self, deployment_id: &str, limit: u32) -> Result<Vec<ScalingEvent>>;
    /// Every scaling event of a deployment from `since` on, oldest first,
    /// preceded by the last one before `since` (what held at `since`).
    async fn scaling_history(
        &self,
        deployment_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ScalingEvent>>;
}

const EVENT_COLS: &str = "SELECT at, from_replicas, to_replicas, reason FROM scaling_events";

#[async_trait::async_trait]
impl DeploymentStore for SqlStore {
    async fn upsert_deployment(
        &self,
        id: &str,
        account_id: i64,
        version_id: i64,
    ) -> Result<DeploymentRow> {
        query(
            "INSERT INTO deployments (id, account_id, ip_id, version_id, created_at) \
             SELECT ?, ?, ip_id, id, ? FROM versions WHERE id = ? \
             ON CONFLICT (account_id, ip_id) DO UPDATE SET version_id = excluded.version_id",
        )
        .bind(id)
        .bind(account_id)
        .bind(now_ms())
        .bind(version_id)
        .execute(self.db.write())
        .await?;
        let row = query(format!(
            "{DEPLOYMENT_SELECT} WHERE d.account_id = ? AND d.version_id = ?"
        ))
        .bind(account_id)
        .bind(version_id)
        .fetch_one(self.db.read())
        .await?;
        deployment_row(&row)
    }

    async fn get_deployment(&self, account_id: i64, ip: &str) -> Result<Option<DeploymentRow>> {
        let row = query(format!(
            "{DEPLOYMENT_SELECT} WHERE d.account_id = ? AND i.full_name = ?"
        ))
        .bind(account_id)
        .bind(ip)
        .fetch_optional(self.db.read())
        .await?;
        row.as_ref().map(deployment_row).transpose()
    }

    async fn list_deployments(
        &self,
        account_id: i64,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeploymentRow>> {
        let rows = query(format!(
            "{DEPLOYMENT_SELECT} WHERE d.account_id = ? AND i.full_name > ? \
             ORDER BY i.full_name LIMIT ?"
        ))
        .bind(account_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(deployment_row).collect()
    }

    async fn delete_deployment(&self, account_id: i64, ip: &str) -> Result<bool> {
        let n = query(
            "DELETE FROM deployments WHERE account_id = ? \
             AND ip_id = (SELECT id FROM ips WHERE full_name = ?)",
        )
        .bind(account_id)
        .bind(ip)
        .execute(self.db.write())
        .await?;
        Ok(n > 0)
    }

    async fn set_scaling(&self, deployment_id: &str, scaling: &Scaling) -> Result<()> {
        query("UPDATE deployments SET scaling = ? WHERE id = ?")
            .bind(to_json(scaling))
            .bind(deployment_id)
            .execute(self.db.write())
            .await?;
        Ok(())
    }

    async fn advance_metered_until(
        &self,
        deployment_id: &str,
        from: Option<DateTime<Utc>>,
        to: DateTime<Utc>,
    ) -> Result<bool> {
        let n = query(
            "UPDATE deployments SET metered_until = ? WHERE id = ? \
             AND COALESCE(metered_until, -1) = ?",
        )
        .bind(millis(to))
        .bind(deployment_id)
        .bind(from.map(millis).unwrap_or(-1))
        .execute(self.db.write())
        .await?;
        Ok(n == 1)
    }

    async fn set_device_preference(&self, deployment_id: &str, devices: &[String]) -> Result<()> {
        query("UPDATE deployments SET devices = ? WHERE id = ?")
            .bind(to_json(&devices))
            .bind(deployment_id)
            .execute(self.db.write())
            .await?;
        Ok(())
    }

    async fn deployment_demand(&self) -> Result<Vec<DeploymentDemand>> {
        let rows = query(format!("{DEPLOYMENT_DEMAND} ORDER BY d.id"))
            .fetch_all(self.db.read())
            .await?;
        rows.iter().map(demand_row).collect()
    }

    async fn deployment_demand_of(&self, deployment_id: &str) -> Result<Option<DeploymentDemand>> {
        let row = query(format!("{DEPLOYMENT_DEMAND} WHERE d.id = ?"))
            .bind(deployment_id)
            .fetch_optional(self.db.read())
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
        let mut tx = self.db.begin().await?;
        let n = query(
            "UPDATE deployments SET replicas = ?, low_since = ? WHERE id = ? AND replicas = ?",
        )
        .bind(to as i64)
        .bind(low_since.map(millis))
        .bind(deployment_id)
        .bind(from as i64)
        .execute(tx.exec())
        .await?;
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let (Some(reason), true) = (reason, from != to) {
            query(
                "INSERT INTO scaling_events (deployment_id, at, from_replicas, to_replicas, \
                 reason) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(deployment_id)
            .bind(now_ms())
            .bind(from as i64)
            .bind(to as i64)
            .bind(reason)
            .execute(tx.exec())
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn running_counts(&self) -> Result<Vec<(i64, String, u32)>> {
        let rows = query(
            "SELECT j.account_id, i.full_name, COUNT(*) FROM jobs j \
             JOIN versions v ON v.id = j.version_id JOIN ips i ON i.id = v.ip_id \
             WHERE j.state = 'running' GROUP BY j.account_id, i.full_name",
        )
        .fetch_all(self.db.read())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.count(2)?.min(u32::MAX as u64) as u32,
                ))
            })
            .collect()
    }

    async fn scaling_events(&self, deployment_id: &str, limit: u32) -> Result<Vec<ScalingEvent>> {
        let rows = query(format!(
            "{EVENT_COLS} WHERE deployment_id = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(deployment_id)
        .bind(limit.clamp(1, 1000) as i64)
        .fetch_all(self.db.read())
        .await?;
        rows.iter().map(scaling_event_row).collect()
    }

    async fn scaling_history(
        &self,
        deployment_id: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<ScalingEvent>> {
        let before = query(format!(
            "{EVENT_COLS} WHERE deployment_id = ? AND at < ? ORDER BY id DESC LIMIT 1"
        ))
        .bind(deployment_id)
        .bind(millis(since))
        .fetch_optional(self.db.read())
        .await?;
        let after = query(format!(
            "{EVENT_COLS} WHERE deployment_id = ? AND at >= ? ORDER BY id"
        ))
        .bind(deployment_id)
        .bind(millis(since))
        .fetch_all(self.db.read())
        .await?;
        before
            .iter()
            .chain(after.iter())
            .map(scaling_event_row)
            .collect()
    }
}
