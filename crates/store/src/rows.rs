//! What both SQL stores share: the columns they select and the mapping of
//! result rows to the store's types (one body, instantiated per driver's
//! row type by [`row_mappers`]).

pub(crate) const VERSION_COLS: &str =
    "v.id, v.ip_id, i.full_name, i.vendor_id, v.version, v.status, v.summary, \
     v.description, v.tags, v.price_micros, v.limits, v.implementations, v.tests, v.report, \
     v.published_at, v.object_params, v.pricing";

pub(crate) const JOB_COLS: &str =
    "j.id, j.account_id, a.name AS account_name, j.version_id, i.full_name, \
     v.version, j.device, j.input_key, j.input_size, j.params, j.state, j.progress, j.attempts, \
     j.max_attempts, j.output_key, j.output_size, j.error, j.log, j.lease_owner, j.created_at, \
     j.started_at, j.finished_at, j.items, j.items_unit";

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
pub(crate) const RATING_STATS: &str = "SELECT i.full_name, SUM(r.stars), COUNT(*) \
     FROM reviews r JOIN ips i ON i.id = r.ip_id GROUP BY i.full_name";

/// Successful use per IP: name, uses, distinct users.
pub(crate) const USE_STATS: &str = "SELECT i.full_name, COUNT(*), COUNT(DISTINCT u.account_id) \
     FROM usage u JOIN versions v ON v.id = u.version_id JOIN ips i ON i.id = v.ip_id \
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

/// Defines `version_row`, `job_row`, `account_row`, `agent_row`, `node_row`,
/// `deployment_row` and `object_row` for one driver's row type, in the module that calls it.
macro_rules! row_mappers {
    ($row:ty) => {
        fn version_row(r: &$row) -> Result<VersionRow> {
            let status: String = r.try_get(5)?;
            Ok(VersionRow {
                id: r.try_get(0)?,
                ip_id: r.try_get(1)?,
                ip: r.try_get(2)?,
                vendor_id: r.try_get(3)?,
                version: r.try_get(4)?,
                status: status.parse().map_err(StoreError::Corrupt)?,
                summary: r.try_get(6)?,
                description: r.try_get(7)?,
                tags: from_json("tags", &r.try_get::<String, _>(8)?)?,
                price: Money(r.try_get(9)?),
                limits: from_json("limits", &r.try_get::<String, _>(10)?)?,
                implementations: from_json("implementations", &r.try_get::<String, _>(11)?)?,
                tests: from_json("tests", &r.try_get::<String, _>(12)?)?,
                report: match r.try_get::<Option<String>, _>(13)? {
                    Some(s) => Some(from_json("report", &s)?),
                    None => None,
                },
                published_at: from_millis(r.try_get(14)?),
                objects: from_json("object_params", &r.try_get::<String, _>(15)?)?,
                pricing: from_json("pricing", &r.try_get::<String, _>(16)?)?,
            })
        }

        fn job_row(r: &$row) -> Result<JobRow> {
            let state: String = r.try_get(10)?;
            Ok(JobRow {
                id: r.try_get(0)?,
                account_id: r.try_get(1)?,
                account: r.try_get(2)?,
                version_id: r.try_get(3)?,
                ip: r.try_get(4)?,
                version: r.try_get(5)?,
                device: r.try_get(6)?,
                input_key: r.try_get(7)?,
                input_size: r.try_get::<i64, _>(8)? as u64,
                params: params_from(&r.try_get::<String, _>(9)?)?,
                state: state.parse().map_err(StoreError::Corrupt)?,
                progress: r.try_get(11)?,
                items: match (
                    r.try_get::<Option<i64>, _>(22)?,
                    r.try_get::<Option<String>, _>(23)?,
                ) {
                    (Some(n), Some(unit)) => Some((n.max(0) as u64, unit)),
                    _ => None,
                },
                attempts: r.try_get::<i64, _>(12)? as u32,
                max_attempts: r.try_get::<i64, _>(13)? as u32,
                output_key: r.try_get(14)?,
                output_size: r.try_get::<Option<i64>, _>(15)?.map(|v| v as u64),
                error: r.try_get(16)?,
                log: r.try_get(17)?,
                lease_owner: r.try_get(18)?,
                created_at: from_millis(r.try_get(19)?),
                started_at: r.try_get::<Option<i64>, _>(20)?.map(from_millis),
                finished_at: r.try_get::<Option<i64>, _>(21)?.map(from_millis),
                history: Vec::new(),
            })
        }

        fn account_row(r: &$row) -> Result<Account> {
            let role: String = r.try_get(2)?;
            Ok(Account {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                role: role.parse().map_err(StoreError::Corrupt)?,
                created_at: from_millis(r.try_get(3)?),
            })
        }

        fn agent_row(r: &$row) -> Result<AgentRow> {
            Ok(AgentRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                created_at: from_millis(r.try_get(2)?),
                revoked: r.try_get(3)?,
            })
        }

        fn node_row(r: &$row) -> Result<NodeRow> {
            Ok(NodeRow {
                name: r.try_get(0)?,
                agent_id: r.try_get(1)?,
                devices: r.try_get(2)?,
                state: r.try_get(3)?,
                registered_at: from_millis(r.try_get(4)?),
                last_seen: from_millis(r.try_get(5)?),
            })
        }

        fn deployment_row(r: &$row) -> Result<DeploymentRow> {
            Ok(DeploymentRow {
                id: r.try_get(0)?,
                account_id: r.try_get(1)?,
                ip: r.try_get(2)?,
                version_id: r.try_get(3)?,
                version: r.try_get(4)?,
                created_at: from_millis(r.try_get(5)?),
                scaling: from_json("scaling", &r.try_get::<String, _>(6)?)?,
                replicas: r.try_get::<i64, _>(7)?.clamp(0, u32::MAX as i64) as u32,
                low_since: r.try_get::<Option<i64>, _>(8)?.map(from_millis),
                devices: from_json("devices", &r.try_get::<String, _>(9)?)?,
                metered_until: r.try_get::<Option<i64>, _>(10)?.map(from_millis),
            })
        }

        fn review_row(r: &$row) -> Result<accelhub_domain::Review> {
            let reply: Option<String> = r.try_get(7)?;
            let reply_at: Option<i64> = r.try_get(8)?;
            Ok(accelhub_domain::Review {
                id: r.try_get(0)?,
                ip: r.try_get(1)?,
                author: r.try_get(2)?,
                stars: r.try_get::<i64, _>(3)?.clamp(1, 5) as u8,
                text: r.try_get(4)?,
                created_at: from_millis(r.try_get(5)?),
                updated_at: from_millis(r.try_get(6)?),
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
        fn ip_stats_of(
            ratings: &[$row],
            uses: &[$row],
        ) -> Result<std::collections::BTreeMap<String, accelhub_domain::IpStats>> {
            let mut out: std::collections::BTreeMap<String, accelhub_domain::IpStats> =
                Default::default();
            for r in ratings {
                let sum: i64 = r.try_get(1)?;
                let n: i64 = r.try_get(2)?;
                out.entry(r.try_get(0)?).or_default().rating =
                    accelhub_domain::RatingSummary::from_sum(sum.max(0) as u64, n.max(0) as u64);
            }
            for r in uses {
                let e = out.entry(r.try_get(0)?).or_default();
                e.uses = r.try_get::<i64, _>(1)?.max(0) as u64;
                e.users = r.try_get::<i64, _>(2)?.max(0) as u64;
            }
            Ok(out)
        }

        fn demand_row(r: &$row) -> Result<DeploymentDemand> {
            Ok(DeploymentDemand {
                deployment: deployment_row(r)?,
                queued: r.try_get::<i64, _>(11)?.max(0) as u32,
                running: r.try_get::<i64, _>(12)?.max(0) as u32,
            })
        }

        fn scaling_event_row(r: &$row) -> Result<ScalingEvent> {
            Ok(ScalingEvent {
                at: from_millis(r.try_get(0)?),
                from: r.try_get::<i64, _>(1)?.max(0) as u32,
                to: r.try_get::<i64, _>(2)?.max(0) as u32,
                reason: r.try_get(3)?,
            })
        }

        fn object_row(r: &$row) -> Result<ObjectRow> {
            Ok(ObjectRow {
                key: r.try_get(0)?,
                size: r.try_get::<i64, _>(1)? as u64,
                sha256: r.try_get(2)?,
                created_at: from_millis(r.try_get(3)?),
            })
        }
    };
}
pub(crate) use row_mappers;
