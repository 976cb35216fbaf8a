//! The catalog: IPs, their versions and reviews, as each caller may see them.

use crate::*;

impl Platform {
    // ---- Catalog ---------------------------------------------------------

    /// A page of the catalog: every IP with its newest version, its
    /// ratings and use, filtered and sorted.
    ///
    /// The catalog is ordered by values computed across tables (ratings
    /// and use, aggregated from reviews and usage) and filtered on fields
    /// kept as JSON (tags, devices), so no single index gives its order:
    /// it is built in memory (one entry per IP, not per version or call)
    /// and cut after the cursor's IP (named by the cursor's id). Entries
    /// that move while a client pages (a new version, a new rating) may be
    /// seen twice or missed, as with any list ordered by changing values.
    pub async fn catalog(
        &self,
        caller: &Account,
        filter: &accelhub_domain::CatalogFilter,
        sort: accelhub_domain::CatalogSort,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<CatalogEntry>> {
        use accelhub_domain::CatalogSort;
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let stats = self.store.ip_stats().await?;
        let mut out = Vec::new();
        for v in self.store.list_latest_versions().await? {
            let vendor =
                v.ip.split_once('/')
                    .map(|(ns, _)| ns)
                    .unwrap_or_default()
                    .to_string();
            let devices: Vec<String> = v.implementations.iter().map(|i| i.device.clone()).collect();
            if !filter.matches(&v.ip, &v.summary, &v.tags, &devices, &vendor) {
                continue;
            }
            out.push(CatalogEntry {
                ip: v.ip.clone(),
                vendor,
                latest: version_for(caller, &v),
                stats: stats.get(&v.ip).copied().unwrap_or_default(),
            });
        }
        match sort {
            CatalogSort::Newest => out.sort_by_key(|e| std::cmp::Reverse(e.latest.published_at)),
            CatalogSort::Name => out.sort_by(|a, b| a.ip.cmp(&b.ip)),
            CatalogSort::Usage => out.sort_by(|a, b| {
                (b.stats.uses, b.stats.users)
                    .cmp(&(a.stats.uses, a.stats.users))
                    .then_with(|| a.ip.cmp(&b.ip))
            }),
            CatalogSort::Rating => out.sort_by(|a, b| {
                let key = |e: &CatalogEntry| e.stats.rating.average.unwrap_or(-1.0);
                key(b)
                    .total_cmp(&key(a))
                    .then_with(|| b.stats.rating.count.cmp(&a.stats.rating.count))
                    .then_with(|| a.ip.cmp(&b.ip))
            }),
        }
        let start = match after {
            None => 0,
            Some(c) => {
                out.iter().position(|e| e.ip == c.id).ok_or_else(|| {
                    CoreError::BadRequest(format!(
                        "'{c}' is not a cursor of this listing (its IP is no longer in it): \
                             list again from the first page"
                    ))
                })? + 1
            }
        };
        Ok(accelhub_domain::Page::cut(out, start, limit, |e| {
            accelhub_domain::Cursor {
                at_ms: e.latest.published_at.timestamp_millis(),
                id: e.ip.clone(),
            }
        }))
    }

    /// One IP: its versions, ratings, use and reviews.
    pub async fn ip_details(
        &self,
        caller: &Account,
        ip: &str,
    ) -> Result<accelhub_domain::IpDetails> {
        let versions = self.ip_versions(caller, ip).await?;
        let ip = versions
            .first()
            .map(|v| v.ip.clone())
            .unwrap_or_else(|| ip.to_string());
        let stats = self
            .store
            .ip_stats()
            .await?
            .get(&ip)
            .copied()
            .unwrap_or_default();
        // The newest page of reviews; `GET …/reviews` pages through all.
        let reviews = self
            .store
            .list_reviews(&ip, None, accelhub_domain::PAGE_MAX)
            .await?;
        Ok(accelhub_domain::IpDetails {
            ip,
            versions,
            stats,
            reviews,
        })
    }

    /// Rate and review an IP (users who have run it; writing again
    /// replaces the caller's earlier review).
    pub async fn review(
        &self,
        caller: &Account,
        ip: &str,
        review: &accelhub_domain::SubmitReview,
    ) -> Result<accelhub_domain::Review> {
        self.require_user(caller, "rate and review IPs")?;
        let review = review.validate().map_err(CoreError::BadRequest)?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        if self.store.ip_vendor(&ip).await?.is_none() {
            return Err(CoreError::NotFound(format!("no IP named '{ip}'")));
        }
        if !self.store.has_used(caller.id, &ip).await? {
            return Err(CoreError::Forbidden(format!(
                "only users who have run {ip} may rate it: deploy it and call it first"
            )));
        }
        Ok(self
            .store
            .put_review(&ip, caller.id, review.stars, &review.text, Utc::now())
            .await?)
    }

    /// A page of an IP's reviews, newest first (by their last change).
    pub async fn reviews(
        &self,
        ip: &str,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<accelhub_domain::Review>> {
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let after = after
            .map(|c| c.int_id().map(|id| (c.at_ms, id)))
            .transpose()
            .map_err(CoreError::BadRequest)?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        if self.store.ip_vendor(&ip).await?.is_none() {
            return Err(CoreError::NotFound(format!("no IP named '{ip}'")));
        }
        let items = self.store.list_reviews(&ip, after, limit).await?;
        Ok(accelhub_domain::Page::of(items, limit, |r| {
            accelhub_domain::Cursor {
                at_ms: r.updated_at.timestamp_millis(),
                id: r.id.to_string(),
            }
        }))
    }

    /// The IP's vendor answers a review (writing again replaces the reply).
    pub async fn reply_to_review(
        &self,
        caller: &Account,
        ip: &str,
        review_id: i64,
        reply: &accelhub_domain::SubmitReply,
    ) -> Result<accelhub_domain::Review> {
        let text = reply.validate().map_err(CoreError::BadRequest)?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        match self.store.ip_vendor(&ip).await? {
            None => return Err(CoreError::NotFound(format!("no IP named '{ip}'"))),
            Some(vendor) if vendor != caller.id => {
                return Err(CoreError::Forbidden(format!(
                    "only {ip}'s vendor replies to its reviews"
                )))
            }
            Some(_) => {}
        }
        self.store
            .reply_review(&ip, review_id, &text, Utc::now())
            .await?
            .ok_or_else(|| CoreError::NotFound(format!("{ip} has no review {review_id}")))
    }

    /// All versions of an IP, newest first. Verification reports keep the
    /// IP's stderr only for its vendor and the operator: test vectors and
    /// logs are part of the vendor's IP.
    pub async fn ip_versions(&self, caller: &Account, ip: &str) -> Result<Vec<IpVersion>> {
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let versions = self.store.list_versions(&name.to_string()).await?;
        if versions.is_empty() {
            return Err(CoreError::NotFound(format!("no IP named '{name}'")));
        }
        Ok(versions.iter().map(|v| version_for(caller, v)).collect())
    }
}

pub(crate) fn version_view(v: &VersionRow) -> IpVersion {
    IpVersion {
        ip: v.ip.clone(),
        version: v.version.clone(),
        status: v.status,
        summary: v.summary.clone(),
        description: v.description.clone(),
        tags: v.tags.clone(),
        devices: v.implementations.iter().map(|i| i.device.clone()).collect(),
        objects: v.objects.clone(),
        outputs: v.outputs.clone(),
        price_per_call: v.price,
        plans: v.plans(),
        trial_calls: v.pricing.trial_calls,
        limits: v.limits,
        report: v.report.clone(),
        published_at: v.published_at,
    }
}

/// A version as `caller` may see it: verification logs (the IP's stderr on
/// the vendor's test vectors) only for its vendor and the operator.
pub(crate) fn version_for(caller: &Account, v: &VersionRow) -> IpVersion {
    let mut view = version_view(v);
    if caller.role != Role::Operator && caller.id != v.vendor_id {
        for imp in view
            .report
            .iter_mut()
            .flat_map(|r| r.implementations.iter_mut())
        {
            for t in &mut imp.tests {
                t.stderr_tail.clear();
            }
        }
    }
    view
}
