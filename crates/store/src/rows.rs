//! The columns statements select and the mapping of result rows to the
//! store's types.

use crate::sql::Row;
use crate::*;

pub(crate) const VERSION_COLS: &str =
    "v.id, v.ip_id, i.full_name, i.vendor_id, v.version, v.status, v.summary, \
     v.description, v.tags, v.price_micros, v.limits, v.implementations, v.tests, v.report, \
     v.published_at, v.object_params, v.pricing, v.output_params";

pub(crate) const JOB_COLS: &str =
    "j.id, j.account_id, a.name AS account_name, j.version_id, i.full_name, \
     v.version, j.device, j.input_key, j.input_size, j.params, j.state, j.progress, j.attempts, \
     j.max_attempts, j.output_key, j.output_size, j.error, j.log, j.lease_owner, j.created_at, \
     j.started_at, j.finished_at, j.items, j.items_unit, j.outputs";

pub(crate) const JOB_FROM: &str = "FROM jobs j JOIN accounts a ON a.id = j.account_id \
     JOIN versions v ON v.id = j.version_id JOIN ips i ON i.id = v.ip_id";

pub(crate) const DEPLOYMENT_SELECT: &str =
    "SELECT d.id, d.account_id, i.full_name, d.version_id, v.version, \
     d.created_at, d.scaling, d.replicas, d.low_since, d.devices, d.metered_until \
     FROM deployments d JOIN ips i ON i.id = d.ip_id JOIN versions v ON v.id = d.version_id";

pub(crate) const REVIEW_SELECT: &str =
    "SELECT r.id, i.full_name, a.name, r.stars, r.body, r.created_at, r.updated_at, \
     r.reply, r.reply_at \
     FROM reviews r JOIN ips i ON i.id = r.ip_id JOIN accounts a ON a.id = r.account_id";

/// Ratings per IP: name, sum of stars, count.
pub(crate) const RATING_STATS: &str = "SELECT i.full_name, CAST(SUM(r.stars) AS BIGINT), COUNT(*) \
     FROM reviews r JOIN ips i ON i.id = r.ip_id GROUP BY i.full_name";

/// Successful use per IP: name, uses, distinct users (from the daily
/// rollups, which hold every record).
pub(crate) const USE_STATS: &str =
    "SELECT i.full_name, CAST(SUM(u.records) AS BIGINT), COUNT(DISTINCT u.account_id) \
     FROM usage_daily u JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
     WHERE u.billed = 1 AND u.kind <> 'reserve' GROUP BY i.full_name";

/// Queued jobs a scheduler sees of one account's IP version at most, so
/// that one deployment's backlog never hides another's jobs.
pub(crate) const QUEUED_PER_VERSION: u32 = 4;

/// Every deployment with its jobs queued and running (columns 11 and 12).
pub(crate) const DEPLOYMENT_DEMAND: &str = "SELECT d.id, d.account_id, i.full_name, d.version_id, \
     v.version, d.created_at, d.scaling, d.replicas, d.low_since, d.devices, d.metered_until, \
     (SELECT COUNT(*) FROM jobs j JOIN versions jv ON jv.id = j.version_id \
      WHERE j.account_id = d.account_id AND jv.ip_id = d.ip_id AND j.state = 'queued'), \
     (SELECT COUNT(*) FROM jobs j JOIN versions jv ON jv.id = j.version_id \
      WHERE j.account_id = d.account_id AND jv.ip_id = d.ip_id AND j.state = 'running') \
     FROM deployments d JOIN ips i ON i.id = d.ip_id JOIN versions v ON v.id = d.version_id";

pub(crate) fn version_row(r: &Row) -> Result<VersionRow> {
    let status: String = r.get(5)?;
    Ok(VersionRow {
        id: r.get(0)?,
        ip_id: r.get(1)?,
        ip: r.get(2)?,
        vendor_id: r.get(3)?,
        version: r.get(4)?,
        status: status.parse().map_err(StoreError::Corrupt)?,
        summary: r.get(6)?,
        description: r.get(7)?,
        tags: from_json("tags", &r.get::<String>(8)?)?,
        price: Money(r.get(9)?),
        limits: from_json("limits", &r.get::<String>(10)?)?,
        implementations: from_json("implementations", &r.get::<String>(11)?)?,
        tests: from_json("tests", &r.get::<String>(12)?)?,
        report: match r.get::<Option<String>>(13)? {
            Some(s) => Some(from_json("report", &s)?),
            None => None,
        },
        published_at: from_millis(r.get(14)?),
        objects: from_json("object_params", &r.get::<String>(15)?)?,
        pricing: from_json("pricing", &r.get::<String>(16)?)?,
        outputs: from_json("output_params", &r.get::<String>(17)?)?,
    })
}

pub(crate) fn job_row(r: &Row) -> Result<JobRow> {
    let state: String = r.get(10)?;
    Ok(JobRow {
        id: r.get(0)?,
        account_id: r.get(1)?,
        account: r.get(2)?,
        version_id: r.get(3)?,
        ip: r.get(4)?,
        version: r.get(5)?,
        device: r.get(6)?,
        input_key: r.get(7)?,
        input_size: r.get::<i64>(8)? as u64,
        params: params_from(&r.get::<String>(9)?)?,
        state: state.parse().map_err(StoreError::Corrupt)?,
        progress: r.get(11)?,
        items: match (r.get::<Option<i64>>(22)?, r.get::<Option<String>>(23)?) {
            (Some(n), Some(unit)) => Some((n.max(0) as u64, unit)),
            _ => None,
        },
        attempts: r.get::<i64>(12)? as u32,
        max_attempts: r.get::<i64>(13)? as u32,
        output_key: r.get(14)?,
        output_size: r.get::<Option<i64>>(15)?.map(|v| v as u64),
        outputs: from_json("outputs", &r.get::<String>(24)?)?,
        error: r.get(16)?,
        log: r.get(17)?,
        lease_owner: r.get(18)?,
        created_at: from_millis(r.get(19)?),
        started_at: r.get::<Option<i64>>(20)?.map(from_millis),
        finished_at: r.get::<Option<i64>>(21)?.map(from_millis),
        history: Vec::new(),
    })
}

/// A subscription row: (its account id or its own id, as selected first;
/// IP name; plan; since).
pub(crate) fn subscription_row(r: &Row) -> Result<(i64, accelhub_domain::billing::Subscription)> {
    Ok((
        r.get(0)?,
        accelhub_domain::billing::Subscription {
            ip: r.get(1)?,
            plan: r.get(2)?,
            since: from_millis(r.get(3)?),
        },
    ))
}

pub(crate) fn account_row(r: &Row) -> Result<Account> {
    let role: String = r.get(2)?;
    Ok(Account {
        id: r.get(0)?,
        name: r.get(1)?,
        role: role.parse().map_err(StoreError::Corrupt)?,
        created_at: from_millis(r.get(3)?),
    })
}

pub(crate) fn agent_row(r: &Row) -> Result<AgentTokenRow> {
    Ok(AgentTokenRow {
        id: r.get(0)?,
        name: r.get(1)?,
        created_at: from_millis(r.get(2)?),
        revoked: r.get(3)?,
    })
}

pub(crate) fn node_row(r: &Row) -> Result<NodeRow> {
    Ok(NodeRow {
        name: r.get(0)?,
        agent_id: r.get(1)?,
        devices: from_json("devices", &r.get::<String>(2)?)?,
        state: r.get::<String>(3)?.parse().map_err(StoreError::Corrupt)?,
        registered_at: from_millis(r.get(4)?),
        last_seen: from_millis(r.get(5)?),
    })
}

pub(crate) fn deployment_row(r: &Row) -> Result<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.get(0)?,
        account_id: r.get(1)?,
        ip: r.get(2)?,
        version_id: r.get(3)?,
        version: r.get(4)?,
        created_at: from_millis(r.get(5)?),
        scaling: from_json("scaling", &r.get::<String>(6)?)?,
        replicas: r.get::<i64>(7)?.clamp(0, u32::MAX as i64) as u32,
        low_since: r.get::<Option<i64>>(8)?.map(from_millis),
        devices: from_json("devices", &r.get::<String>(9)?)?,
        metered_until: r.get::<Option<i64>>(10)?.map(from_millis),
    })
}

pub(crate) fn review_row(r: &Row) -> Result<accelhub_domain::Review> {
    let reply: Option<String> = r.get(7)?;
    let reply_at: Option<i64> = r.get(8)?;
    Ok(accelhub_domain::Review {
        id: r.get(0)?,
        ip: r.get(1)?,
        author: r.get(2)?,
        stars: r.get::<i64>(3)?.clamp(1, 5) as u8,
        text: r.get(4)?,
        created_at: from_millis(r.get(5)?),
        updated_at: from_millis(r.get(6)?),
        reply: match (reply, reply_at) {
            (Some(text), Some(at)) => Some(accelhub_domain::Reply {
                text,
                at: from_millis(at),
            }),
            _ => None,
        },
    })
}

/// Ratings and use, from `RATING_STATS` and `USE_STATS` rows.
pub(crate) fn ip_stats_of(
    ratings: &[Row],
    uses: &[Row],
) -> Result<std::collections::BTreeMap<String, accelhub_domain::IpStats>> {
    let mut out: std::collections::BTreeMap<String, accelhub_domain::IpStats> = Default::default();
    for r in ratings {
        let sum: i64 = r.get(1)?;
        let n: i64 = r.get(2)?;
        out.entry(r.get(0)?).or_default().rating =
            accelhub_domain::RatingSummary::from_sum(sum.max(0) as u64, n.max(0) as u64);
    }
    for r in uses {
        let e = out.entry(r.get(0)?).or_default();
        e.uses = r.get::<i64>(1)?.max(0) as u64;
        e.users = r.get::<i64>(2)?.max(0) as u64;
    }
    Ok(out)
}

pub(crate) fn demand_row(r: &Row) -> Result<DeploymentDemand> {
    Ok(DeploymentDemand {
        deployment: deployment_row(r)?,
        queued: r.get::<i64>(11)?.max(0) as u32,
        running: r.get::<i64>(12)?.max(0) as u32,
    })
}

pub(crate) fn scaling_event_row(r: &Row) -> Result<ScalingEvent> {
    Ok(ScalingEvent {
        at: from_millis(r.get(0)?),
        from: r.get::<i64>(1)?.max(0) as u32,
        to: r.get::<i64>(2)?.max(0) as u32,
        reason: r.get(3)?,
    })
}

pub(crate) fn attempt_row(r: &Row) -> Result<JobAttempt> {
    Ok(JobAttempt {
        attempt: r.count(0)?.min(u32::MAX as u64) as u32,
        worker: r.get(1)?,
        started_at: from_millis(r.get(2)?),
        finished_at: r.get::<Option<i64>>(3)?.map(from_millis),
        outcome: r.get(4)?,
        error: r.get(5)?,
    })
}

pub(crate) fn object_row(r: &Row) -> Result<ObjectRow> {
    Ok(ObjectRow {
        key: r.get(0)?,
        size: r.get::<i64>(1)? as u64,
        sha256: r.get(2)?,
        created_at: from_millis(r.get(3)?),
    })
}
