//! Deployments: which version of an IP an account runs, and what a call
//! needs to run it (its version, its image loaded on a device, its
//! resident objects).
//!
//! Object inputs: a version may declare `[[object]]` parameters, whose values
//! are keys of the caller's objects (a genomics index, the second reads file
//! of a pair). They are resolved for every call and job in the caller's own
//! space only (another tenant's key is "no such object"), at submission and
//! again when the job runs, and handed to the device as an `ObjectArg`: key,
//! SHA-256, size and a lazy opener. A device that keeps resident data keys it
//! by the SHA-256, checks the bytes it reads against it, and never opens an
//! object it already holds. Test vectors give object inputs as package files,
//! sealed like the rest.

use crate::*;

impl Platform {
    // ---- Deployments -----------------------------------------------------

    pub(crate) fn require_user(&self, account: &Account, what: &str) -> Result<()> {
        if account.role != Role::User {
            return Err(CoreError::Forbidden(format!(
                "only user accounts {what}; this is a {} account",
                account.role
            )));
        }
        Ok(())
    }

    /// Deploy `ip` (at `version`, or its newest verified version) for the
    /// caller, and warm its image up.
    pub async fn deploy(
        self: &Arc<Self>,
        account: &Account,
        ip: &str,
        version: Option<&str>,
        scaling: Option<accelhub_domain::Scaling>,
        devices: Option<Vec<String>>,
    ) -> Result<Deployment> {
        self.require_user(account, "deploy IPs")?;
        if let Some(sc) = &scaling {
            sc.validate().map_err(CoreError::BadRequest)?;
        }
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let ip = name.to_string();
        let versions = self.store.list_versions(&ip).await?;
        if versions.is_empty() {
            return Err(CoreError::NotFound(format!("no IP named '{ip}'")));
        }
        let chosen = match version {
            Some(v) => {
                let row = versions
                    .iter()
                    .find(|r| r.version == v)
                    .ok_or_else(|| CoreError::NotFound(format!("'{ip}' has no version {v}")))?;
                if row.status != VersionStatus::Verified {
                    return Err(CoreError::Conflict(format!(
                        "{ip}@{v} is {}: only verified versions can be deployed",
                        row.status
                    )));
                }
                row
            }
            None => versions
                .iter()
                .find(|r| r.status == VersionStatus::Verified)
                .ok_or_else(|| {
                    CoreError::Conflict(format!(
                        "'{ip}' has no verified version yet: only verified versions can be deployed"
                    ))
                })?,
        };
        if let Some(devices) = &devices {
            placement::check_preference(devices, chosen)?;
        }
        let mut row = self
            .store
            .upsert_deployment(&new_id("dep"), account.id, chosen.id)
            .await?;
        if let Some(sc) = scaling {
            self.store.set_scaling(&row.id, &sc).await?;
            row.scaling = sc;
        }
        if let Some(devices) = devices {
            self.store.set_device_preference(&row.id, &devices).await?;
            row.devices = devices;
        }
        self.deployments.remove(&(account.id, ip.clone()));
        // Program the first choice so the first call does not pay for it.
        let classes = self.executor.device_classes();
        if let Some(imp) = placement::call_order(&row, chosen)
            .into_iter()
            .find(|i| classes.contains(&i.device))
        {
            self.program_in_background(Arc::new(chosen.clone()), imp);
        }
        Ok(deployment_view(row, chosen))
    }

    /// A page of the caller's deployments, by IP name.
    pub async fn deployments(
        &self,
        account: &Account,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<Deployment>> {
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let rows = self
            .store
            .list_deployments(account.id, after.map(|c| c.id.as_str()), limit)
            .await?;
        // The cursor is the page's last row (a row whose version is gone
        // is left out of the page, not out of the paging).
        let page =
            accelhub_domain::Page::of(rows, limit, |d| accelhub_domain::Cursor::named(&d.ip));
        let mut items = Vec::with_capacity(page.items.len());
        for d in page.items {
            if let Some(v) = self.store.get_version_by_id(d.version_id).await? {
                items.push(deployment_view(d, &v));
            }
        }
        Ok(accelhub_domain::Page {
            items,
            next: page.next,
        })
    }

    /// One of the caller's deployments, with the autoscaler's latest
    /// decisions.
    pub async fn deployment(&self, account: &Account, ip: &str) -> Result<Deployment> {
        let (d, v) = self.deployment_of(account, ip).await?;
        // Fresh, not cached: this shows what the autoscaler did.
        let d = self
            .store
            .get_deployment(account.id, &d.ip)
            .await?
            .unwrap_or(d);
        let events = self.store.scaling_events(&d.id, 20).await?;
        let mut view = deployment_view(d, &v);
        view.events = events;
        Ok(view)
    }

    pub async fn undeploy(&self, account: &Account, ip: &str) -> Result<()> {
        self.deployments.remove(&(account.id, ip.to_string()));
        // A dedicated deployment's held replicas are metered to the end.
        if let Some(dep) = self.store.get_deployment(account.id, ip).await? {
            self.meter_reservation(&dep, Utc::now()).await?;
        }
        if !self.store.delete_deployment(account.id, ip).await? {
            return Err(CoreError::NotFound(format!(
                "you have no deployment of '{ip}'"
            )));
        }
        Ok(())
    }

    /// The caller's deployment of an IP, and the version it runs.
    pub(crate) async fn deployment_of(
        &self,
        account: &Account,
        ip: &str,
    ) -> Result<(DeploymentRow, Arc<VersionRow>)> {
        self.require_user(account, "call IPs")?;
        let name: IpName = ip.parse().map_err(CoreError::BadRequest)?;
        let key = (account.id, name.to_string());
        let dep = match self.deployments.get(&key) {
            Some(d) => d,
            None => {
                let d = self
                    .store
                    .get_deployment(account.id, &key.1)
                    .await?
                    .ok_or_else(|| {
                        CoreError::NotFound(format!(
                            "you have no deployment of '{name}': run `accelhub deploy {name}` first"
                        ))
                    })?;
                self.deployments.put(key, d.clone());
                d
            }
        };
        let version = self.version_by_id(dep.version_id).await?;
        Ok((dep, version))
    }

    /// A version by id, from memory once its verification has finished.
    pub(crate) async fn version_by_id(&self, id: i64) -> Result<Arc<VersionRow>> {
        if let Some(v) = self.finished_versions.get(&id) {
            return Ok(v);
        }
        let v = Arc::new(
            self.store
                .get_version_by_id(id)
                .await?
                .ok_or_else(|| CoreError::Internal(format!("version {id} vanished")))?,
        );
        if v.status != VersionStatus::Pending {
            self.finished_versions.put(id, v.clone());
        }
        Ok(v)
    }

    pub(crate) fn image_id(imp: &StoredImplementation) -> ImageId {
        ImageId(format!("{}:{}", imp.device, imp.artifact_sha256))
    }

    /// Fetch and unseal a stored package file.
    pub(crate) async fn unseal(&self, key: &str) -> Result<Bytes, String> {
        let sealed = self
            .objects
            .get(key, self.config.max_package_bytes + 1024)
            .await
            .map_err(|e| e.to_string())?;
        self.sealer
            .open(&sealed)
            .map(Bytes::from)
            .map_err(|e| e.to_string())
    }

    pub(crate) async fn load_image(
        &self,
        version: &VersionRow,
        imp: &StoredImplementation,
    ) -> Result<accelhub_device::LoadReport, ExecError> {
        let image = Self::image_id(imp);
        let key = imp.artifact_key.clone();
        let report = self
            .executor
            .ensure_loaded(
                &imp.device,
                &image,
                Box::new(move || Box::pin(async move { self.unseal(&key).await })),
            )
            .await;
        if let Ok(r) = &report {
            self.metrics.image_load(&imp.device, r);
            if !r.cached {
                tracing::info!(ip = %version.ip, version = %version.version, device = %imp.device,
                    ms = r.duration.as_secs_f64() * 1e3, "image loaded");
            }
        }
        report
    }

    /// Resolve a call's object inputs: each `[[object]]` the version
    /// declares is a parameter naming one of the caller's objects. A
    /// missing required one is a bad request; another tenant's object is
    /// reported like a missing one.
    pub(crate) async fn resolve_objects(
        &self,
        account_id: i64,
        version: &VersionRow,
        params: &Params,
    ) -> Result<BTreeMap<String, ObjectArg>> {
        let mut out = BTreeMap::new();
        for o in &version.objects {
            let key = match params.get(&o.name) {
                None | Some(serde_json::Value::Null) if !o.required => continue,
                None | Some(serde_json::Value::Null) => {
                    return Err(CoreError::BadRequest(format!(
                        "{} needs the parameter '{}': the key of one of your objects ({})",
                        version.ip,
                        o.name,
                        if o.summary.is_empty() {
                            "an object"
                        } else {
                            &o.summary
                        }
                    )))
                }
                Some(serde_json::Value::String(k)) => k,
                Some(_) => {
                    return Err(CoreError::BadRequest(format!(
                        "parameter '{}' must be an object key (a string)",
                        o.name
                    )))
                }
            };
            let row = self
                .store
                .get_object(account_id, key)
                .await?
                .ok_or_else(|| {
                    CoreError::NotFound(format!(
                        "parameter '{}': you have no object '{key}'",
                        o.name
                    ))
                })?;
            let objects = self.objects.clone();
            let path = account_object_key(account_id, key);
            let open: accelhub_device::ObjectOpen = Arc::new(move || {
                let objects = objects.clone();
                let path = path.clone();
                Box::pin(async move {
                    objects
                        .get_stream(&path)
                        .await
                        .map(|(_, s)| s)
                        // Named as the owner knows it, never by its path.
                        .map_err(|e| std::io::Error::other(CoreError::from(e).to_string()))
                })
            });
            out.insert(
                o.name.clone(),
                ObjectArg {
                    key: key.clone(),
                    sha256: row.sha256,
                    size: row.size,
                    open,
                },
            );
        }
        Ok(out)
    }

    /// A test vector's object inputs: sealed package files, opened whole.
    pub(crate) fn test_objects(&self, t: &StoredTest) -> BTreeMap<String, ObjectArg> {
        t.objects
            .iter()
            .map(|(name, o)| {
                let objects = self.objects.clone();
                let sealer = self.sealer.clone();
                let key = o.key.clone();
                let max = self.config.max_package_bytes + 1024;
                let open: accelhub_device::ObjectOpen = Arc::new(move || {
                    let objects = objects.clone();
                    let sealer = sealer.clone();
                    let key = key.clone();
                    Box::pin(async move {
                        let sealed = objects
                            .get(&key, max)
                            .await
                            .map_err(|e| std::io::Error::other(CoreError::from(e).to_string()))?;
                        let clear = sealer
                            .open(&sealed)
                            .map_err(|e| std::io::Error::other(e.to_string()))?;
                        let chunk: std::io::Result<Bytes> = Ok(Bytes::from(clear));
                        Ok(Box::pin(futures::stream::iter([chunk]))
                            as futures::stream::BoxStream<'static, _>)
                    })
                });
                (
                    name.clone(),
                    ObjectArg {
                        key: name.clone(),
                        sha256: o.sha256.clone(),
                        size: o.size,
                        open,
                    },
                )
            })
            .collect()
    }
}

fn deployment_view(d: DeploymentRow, v: &VersionRow) -> Deployment {
    let devices = placement::call_order(&d, v)
        .into_iter()
        .map(|i| i.device)
        .collect();
    Deployment {
        id: d.id,
        ip: d.ip,
        version: d.version,
        devices,
        price_per_call: v.price,
        created_at: d.created_at,
        scaling: d.scaling,
        replicas: d.replicas,
        events: Vec::new(),
    }
}
