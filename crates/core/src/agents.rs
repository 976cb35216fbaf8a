//! The control plane's side of the agents: the tokens the operator issues,
//! the nodes agents register, and the work they lease.
//!
//! A worker, local or remote, sees a job only through these methods (see
//! [`accelhub_worker::JobSource`]): claim it, stream its input and object
//! inputs, fetch its artifact, renew its lease with progress, upload its
//! output and report how it ended. Every step but the claim checks that
//! the job is still leased to the caller's node, so a node declared dead
//! can no longer touch a job that was given to another.
//!
//! Placement: a worker asking for a job says what its device holds; the
//! store lists the oldest queued jobs of its device classes (at most 4 per
//! account's IP version, so one backlog never hides another's), and
//! `accelhub_scheduler::pick` chooses: aged work first (5 s), then work whose
//! resident data or image the device already holds, then the oldest. The
//! chosen job is leased by id, which the store refuses when its deployment
//! already runs as many jobs as it has replicas; then the next choice is
//! tried.
//!
//! An agent authenticates with an agent token the operator issues (`aha_…`,
//! stored hashed, revocable), names its node in the `accelhub-node` header,
//! registers the node with its devices (a node belongs to the agent that
//! registered it; re-registering releases the jobs a previous process held)
//! and heartbeats every third of a lease. Agents never see the object store
//! or its credentials: data flows through the control plane.

use crate::auth::{generate_token_with, hash_token};
use crate::{account_object_key, usage_record, CoreError, Platform, Result};
use accelhub_domain::{
    Account, AgentHello, AgentToken, ClaimRequest, JobReport, JobState, NodeReport, NodeState,
    Renewal, Role, WorkItem, WorkObject,
};
use accelhub_objects::ByteStream;
use accelhub_scheduler::{Candidate, Holding, CANDIDATES};
use accelhub_store::{AgentTokenRow, JobOutcome, JobRow, StoreError, VersionRow};
use bytes::Bytes;
use chrono::Utc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prefix of agent tokens (user and operator tokens start with `ahk_`).
pub const AGENT_TOKEN_PREFIX: &str = "aha_";

/// Why a node lost its jobs.
const AGENT_RESTARTED: &str = "the node's agent restarted mid-job";

fn agent_view(a: AgentTokenRow) -> AgentToken {
    AgentToken {
        name: a.name,
        created_at: a.created_at,
        revoked: a.revoked,
    }
}

impl Platform {
    fn operator_only(caller: &Account, what: &str) -> Result<()> {
        if caller.role == Role::Operator {
            Ok(())
        } else {
            Err(CoreError::Forbidden(format!("only the operator {what}")))
        }
    }

    /// Issue an agent token (operator only). The token is shown once.
    pub async fn create_agent(&self, caller: &Account, name: &str) -> Result<(AgentToken, String)> {
        Self::operator_only(caller, "issues agent tokens")?;
        accelhub_domain::validate_slug("agent name", name).map_err(CoreError::BadRequest)?;
        let token = generate_token_with(AGENT_TOKEN_PREFIX);
        let row = self
            .store
            .create_agent(name, &hash_token(&token))
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => {
                    CoreError::Conflict(format!("an agent named '{name}' already exists"))
                }
                other => other.into(),
            })?;
        Ok((agent_view(row), token))
    }

    /// A page of the agent tokens, oldest first (operator only).
    pub async fn list_agents(
        &self,
        caller: &Account,
        after: Option<&accelhub_domain::Cursor>,
        limit: Option<u32>,
    ) -> Result<accelhub_domain::Page<AgentToken>> {
        Self::operator_only(caller, "lists agent tokens")?;
        let limit = accelhub_domain::page_limit(limit).map_err(CoreError::BadRequest)?;
        let after = after
            .map(accelhub_domain::Cursor::int_id)
            .transpose()
            .map_err(CoreError::BadRequest)?;
        let rows = self.store.list_agents(after, limit).await?;
        Ok(
            accelhub_domain::Page::of(rows, limit, |a| accelhub_domain::Cursor {
                at_ms: a.created_at.timestamp_millis(),
                id: a.id.to_string(),
            })
            .map(agent_view),
        )
    }

    /// Revoke an agent token (operator only): its agent is refused from
    /// its next request on (within the token cache's 2 s on other
    /// control-plane processes).
    pub async fn revoke_agent(&self, caller: &Account, name: &str) -> Result<()> {
        Self::operator_only(caller, "revokes agent tokens")?;
        if !self.store.revoke_agent(name).await? {
            return Err(CoreError::NotFound(format!("there is no agent '{name}'")));
        }
        self.agent_tokens.clear();
        Ok(())
    }

    /// The agent a bearer token belongs to.
    pub async fn authenticate_agent(&self, token: &str) -> Result<AgentTokenRow> {
        if !token.starts_with(AGENT_TOKEN_PREFIX) || token.len() > 200 {
            return Err(CoreError::Unauthorized);
        }
        let hash = hash_token(token);
        if let Some(a) = self.agent_tokens.get(&hash) {
            return Ok(a);
        }
        let agent = self
            .store
            .agent_by_token(&hash)
            .await?
            .ok_or(CoreError::Unauthorized)?;
        self.agent_tokens.put(hash, agent.clone());
        Ok(agent)
    }

    /// An agent (re)starts on `node`: jobs the node held are lost (their
    /// process is gone) and queued again; the node is up with these
    /// devices.
    pub async fn register_node(
        &self,
        agent: &AgentTokenRow,
        node: &str,
        report: &NodeReport,
    ) -> Result<AgentHello> {
        accelhub_domain::validate_slug("node name", node).map_err(CoreError::BadRequest)?;
        if node == self.config.node {
            return Err(CoreError::Conflict(format!(
                "'{node}' is the control plane's own node name: give the agent another --node"
            )));
        }
        if let Some(n) = self.store.get_node(node).await? {
            if n.agent_id != agent.id && n.state == NodeState::Up {
                return Err(CoreError::Conflict(format!(
                    "node '{node}' is registered by another agent and still heartbeating"
                )));
            }
        }
        let lost = self.store.release_worker(node, AGENT_RESTARTED).await?;
        if !lost.is_empty() {
            tracing::warn!(node, jobs = ?lost, "agent restarted: its jobs are queued again");
            self.job_wakeup.notify_waiters();
        }
        self.store
            .node_seen(node, agent.id, &report.devices)
            .await?;
        self.agent_nodes.put((agent.id, node.to_string()), ());
        tracing::info!(node, agent = %agent.name, "node registered");
        Ok(AgentHello {
            heartbeat_ms: self.heartbeat_every().as_millis() as u64,
            lease_ms: self.config.job_lease.as_millis() as u64,
        })
    }

    /// How often agents heartbeat: three beats fit in a lease.
    pub(crate) fn heartbeat_every(&self) -> Duration {
        self.config.job_lease / 3
    }

    /// Check that `node` is registered by this agent.
    pub async fn check_node(&self, agent: &AgentTokenRow, node: &str) -> Result<()> {
        let key = (agent.id, node.to_string());
        if self.agent_nodes.get(&key).is_some() {
            return Ok(());
        }
        match self.store.get_node(node).await? {
            Some(n) if n.agent_id == agent.id => {
                self.agent_nodes.put(key, ());
                Ok(())
            }
            Some(_) => Err(CoreError::Forbidden(format!(
                "node '{node}' is registered by another agent"
            ))),
            None => Err(CoreError::NotFound(format!(
                "node '{node}' is not registered: register it first"
            ))),
        }
    }

    /// A heartbeat: the node is alive, with these devices.
    pub async fn node_heartbeat(
        &self,
        agent: &AgentTokenRow,
        node: &str,
        report: &NodeReport,
    ) -> Result<()> {
        self.check_node(agent, node).await?;
        self.store
            .node_seen(node, agent.id, &report.devices)
            .await?;
        Ok(())
    }

    /// Device classes jobs may be queued for: the embedded agent's (when it
    /// runs jobs) and those of every registered node, up or not (a job
    /// waits in the queue for a node that comes back, as with a fleet
    /// scaled to zero).
    pub(crate) async fn job_device_classes(&self) -> Result<Vec<String>> {
        let mut classes = if self.config.local_jobs {
            self.executor.device_classes()
        } else {
            Vec::new()
        };
        for n in self.store.list_nodes().await? {
            classes.extend(n.devices.into_iter().map(|d| d.class));
        }
        classes.sort();
        classes.dedup();
        Ok(classes)
    }

    // ---- Work ------------------------------------------------------------

    /// Lease a queued job of one of `req.devices` to `node`, waiting up to
    /// `req.wait_ms` (at most 30 s) for one.
    pub async fn claim_work(&self, node: &str, req: &ClaimRequest) -> Result<Option<WorkItem>> {
        let wait = Duration::from_millis(req.wait_ms).min(Duration::from_secs(30));
        let deadline = Instant::now() + wait;
        let holding = Holding {
            images: req.images.iter().cloned().collect(),
            resident: req.resident.iter().cloned().collect(),
        };
        loop {
            let wakeup = self.job_wakeup.notified();
            tokio::pin!(wakeup);
            wakeup.as_mut().enable();
            if let Some(job) = self.schedule(node, &req.devices, &holding).await? {
                match self.work_item(&job).await {
                    Ok(item) => return Ok(Some(item)),
                    Err(e) => {
                        // Nothing can run it (its object input is gone…):
                        // the job fails now, unbilled, with the reason.
                        let report = JobReport::Failed {
                            error: e.to_string(),
                            log: None,
                        };
                        self.finish_work(node, &job.id, report).await?;
                        continue;
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::select! {
                _ = wakeup => {}
                _ = tokio::time::sleep(left.min(Duration::from_millis(500))) => {}
            }
        }
    }

    /// Choose among the oldest queued jobs the one the scheduler places on
    /// a device holding `holding` (aged work first, then work that needs
    /// no reconfiguration there), and lease it.
    async fn schedule(
        &self,
        node: &str,
        devices: &[String],
        holding: &Holding,
    ) -> Result<Option<JobRow>> {
        for _ in 0..3 {
            let queued = self.store.queued_jobs(devices, CANDIDATES).await?;
            if queued.is_empty() {
                return Ok(None);
            }
            let now = Utc::now();
            // Jobs running now, for fairness among tenants. A deployment
            // at its replicas is refused by the store's claim itself (under
            // a lock on the deployment), and its jobs are then skipped.
            let running: HashMap<(i64, String), u32> = self
                .store
                .running_counts()
                .await?
                .into_iter()
                .map(|(a, ip, n)| ((a, ip), n))
                .collect();
            let mut candidates = Vec::with_capacity(queued.len());
            for j in &queued {
                candidates.push(self.candidate(j, holding, now).await);
            }
            // Tenants running fewer jobs go first among equals.
            let mut by_tenant: std::collections::BTreeMap<String, usize> = Default::default();
            for ((account, _), n) in &running {
                *by_tenant.entry(account.to_string()).or_default() += *n as usize;
            }
            // Try the scheduler's choices in turn: another worker may take
            // one first, or its deployment may be at its replicas.
            while let Some(i) =
                accelhub_scheduler::pick(&self.scheduler, holding, &by_tenant, &candidates)
            {
                let lease_until = Utc::now() + self.config.job_lease;
                if let Some(job) = self
                    .store
                    .claim_job_id(&queued[i].id, node, lease_until)
                    .await?
                {
                    let c = &candidates[i];
                    self.metrics.placement(
                        if c.data
                            .as_ref()
                            .is_some_and(|d| holding.resident.contains(d))
                        {
                            "resident"
                        } else if holding.images.contains(&c.image) {
                            "warm"
                        } else {
                            "cold"
                        },
                    );
                    return Ok(Some(job));
                }
                candidates[i].capped = true;
            }
            if candidates.iter().all(|c| c.capped) && queued.len() < CANDIDATES as usize {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// A queued job as the scheduler sees it.
    async fn candidate(
        &self,
        j: &JobRow,
        holding: &Holding,
        now: chrono::DateTime<Utc>,
    ) -> Candidate {
        let mut image = String::new();
        let mut data = None;
        if let Ok(v) = self.version_by_id(j.version_id).await {
            if let Some(imp) = v.implementations.iter().find(|i| i.device == j.device) {
                image = Self::image_id(imp).0;
            }
            if !v.objects.is_empty() {
                if let Ok(objects) = self.resolve_objects(j.account_id, &v, &j.params).await {
                    let shas: Vec<String> = objects.into_values().map(|o| o.sha256).collect();
                    data = shas
                        .iter()
                        .find(|s| holding.resident.contains(*s))
                        .or(shas.first())
                        .cloned();
                }
            }
        }
        Candidate {
            tenant: j.account_id.to_string(),
            image,
            data,
            waited: (now - j.created_at).num_milliseconds().max(0) as f64,
            capped: false,
        }
    }

    async fn work_item(&self, job: &JobRow) -> Result<WorkItem> {
        let version = self.version_by_id(job.version_id).await?;
        let imp = version
            .implementations
            .iter()
            .find(|i| i.device == job.device)
            .ok_or_else(|| {
                CoreError::Internal(format!(
                    "{}@{} has no '{}' implementation",
                    version.ip, version.version, job.device
                ))
            })?;
        let objects = self
            .resolve_objects(job.account_id, &version, &job.params)
            .await?
            .into_iter()
            .map(|(name, o)| WorkObject {
                name,
                key: o.key,
                sha256: o.sha256,
                size: o.size,
            })
            .collect();
        Ok(WorkItem {
            job: job.id.clone(),
            ip: version.ip.clone(),
            version: version.version.clone(),
            device: job.device.clone(),
            image: Self::image_id(imp).0,
            input_key: job.input_key.clone(),
            input_size: job.input_size,
            params: job.params.clone(),
            limits: version.limits,
            objects,
            outputs: version
                .outputs
                .iter()
                .skip(1)
                .map(|o| o.name.clone())
                .collect(),
            lease_ms: self.config.job_lease.as_millis() as u64,
        })
    }

    /// The job, if `node` holds its lease now.
    async fn leased(&self, node: &str, job: &str) -> Result<JobRow> {
        match self.store.get_job(job).await? {
            Some(j) if j.state == JobState::Running && j.lease_owner.as_deref() == Some(node) => {
                Ok(j)
            }
            Some(j) => Err(CoreError::Conflict(format!(
                "job '{job}' is not leased to node '{node}' (it is {})",
                j.state
            ))),
            None => Err(CoreError::NotFound(format!("there is no job '{job}'"))),
        }
    }

    /// Renew a lease and record progress. False: stop, the job was
    /// cancelled or is no longer this node's.
    pub async fn renew_work(&self, node: &str, job: &str, r: &Renewal) -> Result<bool> {
        let items = match (r.items, r.unit.as_deref()) {
            (Some(n), Some(u)) => Some((n, u)),
            _ => None,
        };
        let state = self
            .store
            .renew_lease(
                job,
                node,
                Utc::now() + self.config.job_lease,
                r.progress.clamp(0.0, 1.0),
                items,
            )
            .await?;
        Ok(state == Some(JobState::Running))
    }

    /// The job's input object, streamed.
    pub async fn work_input(&self, node: &str, job: &str) -> Result<(u64, ByteStream)> {
        let j = self.leased(node, job).await?;
        let (info, stream) = self
            .objects
            .get_stream(&account_object_key(j.account_id, &j.input_key))
            .await
            .map_err(|e| {
                CoreError::NotFound(format!(
                    "cannot read input object '{}': {}",
                    j.input_key,
                    CoreError::from(e)
                ))
            })?;
        Ok((info, stream))
    }

    /// One of the job's object inputs, by parameter name, streamed.
    pub async fn work_object(&self, node: &str, job: &str, name: &str) -> Result<ByteStream> {
        let j = self.leased(node, job).await?;
        let version = self.version_by_id(j.version_id).await?;
        let mut objects = self
            .resolve_objects(j.account_id, &version, &j.params)
            .await?;
        let o = objects.remove(name).ok_or_else(|| {
            CoreError::NotFound(format!("job '{job}' has no object input '{name}'"))
        })?;
        (o.open)()
            .await
            .map_err(|e| CoreError::NotFound(format!("cannot read object '{}': {e}", o.key)))
    }

    /// The artifact of the job's implementation, unsealed, for the device
    /// that runs it.
    pub async fn work_artifact(&self, node: &str, job: &str) -> Result<Bytes> {
        let j = self.leased(node, job).await?;
        let version = self.version_by_id(j.version_id).await?;
        let imp = version
            .implementations
            .iter()
            .find(|i| i.device == j.device)
            .ok_or_else(|| CoreError::NotFound(format!("no '{}' implementation", j.device)))?;
        self.unseal(&imp.artifact_key)
            .await
            .map_err(|e| CoreError::Internal(format!("cannot read the artifact: {e}")))
    }

    /// Store one of the job's outputs in its owner's space (before
    /// reporting success): the main one, or the one its IP declares as
    /// `name`. Returns its size.
    pub async fn put_work_output(
        &self,
        node: &str,
        job: &str,
        name: Option<&str>,
        body: ByteStream,
    ) -> Result<u64> {
        let j = self.leased(node, job).await?;
        let version = self.version_by_id(j.version_id).await?;
        let key = match name {
            None => output_key(job),
            Some(n) => output_keys(job, &version)
                .into_iter()
                .find(|(name, _)| name == n)
                .map(|(_, key)| key)
                .ok_or_else(|| {
                    CoreError::BadRequest(format!(
                        "{} {} declares no output '{n}'",
                        version.ip, version.version
                    ))
                })?,
        };
        let put = self
            .objects
            .put_stream(
                &account_object_key(j.account_id, &key),
                body,
                version.limits.output_bytes,
            )
            .await?;
        self.store
            .put_object(j.account_id, &key, put.size, &put.sha256)
            .await?;
        Ok(put.size)
    }

    /// Record how the attempt `node` holds ended, with its usage record
    /// in the same transaction (billed only on success). False: the node
    /// no longer held the job; nothing was recorded.
    pub async fn finish_work(&self, node: &str, job: &str, report: JobReport) -> Result<bool> {
        let Some(j) = self.store.get_job(job).await? else {
            return Err(CoreError::NotFound(format!("there is no job '{job}'")));
        };
        let version: Option<Arc<VersionRow>> = self.version_by_id(j.version_id).await.ok();
        let succeeded = matches!(report, JobReport::Succeeded { .. });
        // The outputs this attempt stored, the main one first; a named one
        // an earlier attempt left and this one did not write goes, once
        // this attempt's success is recorded.
        let mut outputs = Vec::new();
        let mut stale = Vec::new();
        if let (JobReport::Succeeded { outputs: named, .. }, Some(v)) =
            (&report, version.as_deref())
        {
            for (i, (name, key)) in output_keys(job, v).into_iter().enumerate() {
                let written = i == 0 || named.contains(&name);
                match self.store.get_object(j.account_id, &key).await? {
                    Some(o) if written => outputs.push(accelhub_domain::JobOutput {
                        name,
                        key,
                        size: o.size,
                    }),
                    Some(_) => stale.push(key),
                    None => {}
                }
            }
        }
        // Bytes out, for usage: every output the job keeps.
        let named_bytes: u64 = outputs.iter().skip(1).map(|o| o.size).sum();
        let (outcome, usage) = match report {
            JobReport::Succeeded {
                output_size,
                outputs: _,
                log,
                items,
                unit,
                device_time_ms,
            } => (
                JobOutcome::Succeeded {
                    output_key: output_key(job),
                    output_size,
                    outputs,
                    log,
                    items: items.zip(unit),
                },
                version.as_deref().map(|v| {
                    usage_record(
                        job,
                        accelhub_domain::UsageKind::Job,
                        j.account_id,
                        v,
                        &j.device,
                        j.input_size,
                        output_size + named_bytes,
                        Duration::from_millis(device_time_ms),
                        true,
                        "ok",
                    )
                }),
            ),
            JobReport::Failed { error, log } => (
                JobOutcome::Failed { error, log },
                version.as_deref().map(|v| {
                    usage_record(
                        job,
                        accelhub_domain::UsageKind::Job,
                        j.account_id,
                        v,
                        &j.device,
                        j.input_size,
                        0,
                        Duration::ZERO,
                        false,
                        "error",
                    )
                }),
            ),
        };
        let recorded = self.store.finish_job(job, node, outcome, usage).await?;
        if recorded {
            for key in stale {
                if self.store.delete_object(j.account_id, &key).await? {
                    let _ = self
                        .objects
                        .delete(&account_object_key(j.account_id, &key))
                        .await;
                }
            }
            // A replica is free: a job its deployment capped may go now.
            self.job_wakeup.notify_waiters();
        }
        if !recorded && succeeded {
            // Cancelled or re-leased meanwhile. Drop this attempt's output,
            // unless another attempt has succeeded since with the same key.
            let now = self.store.get_job(job).await?;
            if !matches!(now, Some(ref n) if n.state == JobState::Succeeded) {
                let keys = match version.as_deref() {
                    Some(v) => output_keys(job, v),
                    None => vec![(String::new(), output_key(job))],
                };
                for (_, key) in keys {
                    if self.store.delete_object(j.account_id, &key).await? {
                        let _ = self
                            .objects
                            .delete(&account_object_key(j.account_id, &key))
                            .await;
                    }
                }
            }
        }
        Ok(recorded)
    }

    /// Declare dead the nodes silent for a whole lease, and queue their
    /// jobs again. Returns the nodes declared dead.
    pub async fn bury_silent_nodes(&self) -> Result<Vec<String>> {
        let cutoff = Utc::now() - self.config.job_lease;
        let dead = self.store.mark_dead_nodes(cutoff).await?;
        for node in &dead {
            let why = format!("node '{node}' stopped heartbeating");
            let lost = self.store.release_worker(node, &why).await?;
            tracing::warn!(node, jobs = ?lost, "node declared dead");
            self.agent_nodes.clear();
        }
        if !dead.is_empty() {
            self.job_wakeup.notify_waiters();
        }
        Ok(dead)
    }
}

/// The key of a job's (main) output in its owner's space.
pub(crate) fn output_key(job: &str) -> String {
    format!("{job}.out")
}

/// Every output a job of `version` may have, by name, with its key: the
/// main one first (named `output` when the IP declares none), each named
/// one beside it.
pub(crate) fn output_keys(job: &str, version: &VersionRow) -> Vec<(String, String)> {
    let mut keys = vec![(
        version
            .outputs
            .first()
            .map_or(accelhub_domain::MAIN_OUTPUT, |o| o.name.as_str())
            .to_string(),
        output_key(job),
    )];
    for o in version.outputs.iter().skip(1) {
        keys.push((o.name.clone(), format!("{job}.out.{}", o.name)));
    }
    keys
}
