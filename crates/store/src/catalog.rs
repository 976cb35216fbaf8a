//! IPs and their versions: what vendors published, with sealed artifact
//! keys, test vectors, pricing and verification reports.

use crate::rows::{version_row, VERSION_COLS};
use crate::sql::query;
use crate::*;
use accelhub_domain::{VerificationReport, VersionStatus};

#[async_trait::async_trait]
pub trait CatalogStore {
    /// Create a version (and its IP on first publish) in state `pending`.
    /// Fails with [`StoreError::Conflict`] if the version exists.
    async fn create_version(&self, v: NewVersion) -> Result<VersionRow>;
    async fn get_version(&self, ip: &str, version: &str) -> Result<Option<VersionRow>>;
    async fn get_version_by_id(&self, id: i64) -> Result<Option<VersionRow>>;
    /// All versions of an IP, newest first.
    async fn list_versions(&self, ip: &str) -> Result<Vec<VersionRow>>;
    /// The newest version of every IP, by name.
    async fn list_latest_versions(&self) -> Result<Vec<VersionRow>>;
    async fn pending_versions(&self) -> Result<Vec<VersionRow>>;
    async fn set_version_status(
        &self,
        id: i64,
        status: VersionStatus,
        report: &VerificationReport,
    ) -> Result<()>;
    /// The vendor owning an IP name, if it was ever published.
    async fn ip_vendor(&self, ip: &str) -> Result<Option<i64>>;
}

/// Versions newest first: by semantic version, then by publication.
const NEWEST_FIRST: &str = "v.major DESC, v.minor DESC, v.patch DESC, v.id DESC";

impl SqlStore {
    async fn versions_where(&self, cond: &str, arg: Option<&str>) -> Result<Vec<VersionRow>> {
        let mut q = query(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id {cond}"
        ));
        if let Some(a) = arg {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.db.read()).await?;
        rows.iter().map(version_row).collect()
    }
}

#[async_trait::async_trait]
impl CatalogStore for SqlStore {
    async fn create_version(&self, v: NewVersion) -> Result<VersionRow> {
        let mut tx = self.db.begin().await?;
        let now = now_ms();
        query(
            "INSERT INTO ips (full_name, vendor_id, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (full_name) DO NOTHING",
        )
        .bind(&v.ip)
        .bind(v.vendor_id)
        .bind(now)
        .execute(tx.exec())
        .await?;
        let owner = query("SELECT id, vendor_id FROM ips WHERE full_name = ?")
            .bind(&v.ip)
            .fetch_one(tx.exec())
            .await?;
        let (ip_id, vendor_id): (i64, i64) = (owner.get(0)?, owner.get(1)?);
        if vendor_id != v.vendor_id {
            return Err(StoreError::Conflict(format!(
                "IP '{}' (owned by another vendor)",
                v.ip
            )));
        }
        let id: i64 = query(
            "INSERT INTO versions (ip_id, version, major, minor, patch, status, summary, \
             description, tags, price_micros, limits, implementations, tests, report, published_at, \
             object_params, pricing, output_params) \
             VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?) RETURNING id",
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
        .bind(to_json(&v.pricing))
        .bind(to_json(&v.outputs))
        .fetch_one(tx.exec())
        .await
        .map_err(|e| e.conflict_as(|| format!("version {} of '{}'", v.version, v.ip)))?
        .get(0)?;
        tx.commit().await?;
        self.get_version_by_id(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("version {id}")))
    }

    async fn get_version(&self, ip: &str, version: &str) -> Result<Option<VersionRow>> {
        let row = query(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id \
             WHERE i.full_name = ? AND v.version = ?"
        ))
        .bind(ip)
        .bind(version)
        .fetch_optional(self.db.read())
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    async fn get_version_by_id(&self, id: i64) -> Result<Option<VersionRow>> {
        let row = query(format!(
            "SELECT {VERSION_COLS} FROM versions v JOIN ips i ON i.id = v.ip_id WHERE v.id = ?"
        ))
        .bind(id)
        .fetch_optional(self.db.read())
        .await?;
        row.as_ref().map(version_row).transpose()
    }

    async fn list_versions(&self, ip: &str) -> Result<Vec<VersionRow>> {
        self.versions_where(
            &format!("WHERE i.full_name = ? ORDER BY {NEWEST_FIRST}"),
            Some(ip),
        )
        .await
    }

    async fn list_latest_versions(&self) -> Result<Vec<VersionRow>> {
        self.versions_where(
            &format!(
                "WHERE v.id = (SELECT v.id FROM versions v WHERE v.ip_id = i.id \
                 ORDER BY {NEWEST_FIRST} LIMIT 1) ORDER BY i.full_name"
            ),
            None,
        )
        .await
    }

    async fn pending_versions(&self) -> Result<Vec<VersionRow>> {
        self.versions_where("WHERE v.status = 'pending' ORDER BY v.id", None)
            .await
    }

    async fn set_version_status(
        &self,
        id: i64,
        status: VersionStatus,
        report: &VerificationReport,
    ) -> Result<()> {
        query("UPDATE versions SET status = ?, report = ? WHERE id = ?")
            .bind(status.as_str())
            .bind(to_json(report))
            .bind(id)
            .execute(self.db.write())
            .await?;
        Ok(())
    }

    async fn ip_vendor(&self, ip: &str) -> Result<Option<i64>> {
        query("SELECT vendor_id FROM ips WHERE full_name = ?")
            .bind(ip)
            .fetch_optional(self.db.read())
            .await?
            .map(|r| r.get(0))
            .transpose()
    }
}
