//! Store behaviour every implementation must have: the same bodies run
//! on SQLite (`sqlite.rs`) and on PostgreSQL (`postgres.rs`).
#![allow(dead_code)]

use accelhub_domain::agent::NodeState;
use accelhub_domain::{JobState, Limits, Money, Role, VerificationReport, VersionStatus};
use accelhub_store::*;
use chrono::{Duration, Utc};
use std::sync::Arc;

/// A version of `ip` with nothing but its number and price (the tests
/// that need more set it on the result).
pub fn new_version(ip: &str, vendor_id: i64, version: semver::Version, price: i64) -> NewVersion {
    NewVersion {
        ip: ip.into(),
        vendor_id,
        version,
        summary: "x".into(),
        description: None,
        tags: vec![],
        price: Money(price),
        limits: Limits::DEFAULT,
        implementations: vec![],
        objects: vec![],
        outputs: vec![],
        tests: vec![],
        pricing: Default::default(),
    }
}

pub async fn fixture(s: &dyn Store) -> (i64, i64, VersionRow) {
    let vendor = s.create_account("acme", Role::Vendor, "h1").await.unwrap();
    let user = s.create_account("u", Role::User, "h2").await.unwrap();
    let v = s
        .create_version(NewVersion {
            ip: "acme/x".into(),
            vendor_id: vendor.id,
            version: semver::Version::new(1, 0, 0),
            summary: "x".into(),
            description: None,
            tags: vec![],
            price: Money(2000),
            limits: Limits::DEFAULT,
            implementations: vec![],
            objects: vec![accelhub_domain::ObjectParam {
                name: "index".into(),
                required: true,
                summary: "an index".into(),
            }],
            outputs: vec![
                accelhub_domain::OutputParam {
                    name: "vcf".into(),
                    summary: "the calls".into(),
                },
                accelhub_domain::OutputParam {
                    name: "tbi".into(),
                    summary: String::new(),
                },
            ],
            tests: vec![],
            pricing: Default::default(),
        })
        .await
        .unwrap();
    (vendor.id, user.id, v)
}

/// Lease the oldest queued job of `devices` to `worker` the way the control
/// plane does: list the scheduler's candidates, then claim them by id until
/// one is taken.
pub async fn claim_oldest(
    s: &dyn Store,
    worker: &str,
    devices: &[String],
    lease: chrono::DateTime<Utc>,
) -> Result<Option<JobRow>, StoreError> {
    for job in s.queued_jobs(devices, 32).await? {
        if let Some(j) = s.claim_job_id(&job.id, worker, lease).await? {
            return Ok(Some(j));
        }
    }
    Ok(None)
}

pub fn new_job(id: &str, account_id: i64, version_id: i64) -> NewJob {
    NewJob {
        id: id.into(),
        account_id,
        version_id,
        device: "wasm".into(),
        input_key: "in".into(),
        input_size: 10,
        params: Default::default(),
        max_attempts: 2,
    }
}

pub fn usage(id: &str, account_id: i64, version_id: i64) -> NewUsage {
    NewUsage {
        id: id.into(),
        kind: accelhub_domain::UsageKind::Job,
        account_id,
        version_id,
        device: "wasm".into(),
        bytes_in: 10,
        bytes_out: 10,
        device_time_us: 5,
        price: Money(2000),
        billed: true,
        outcome: "ok".into(),
    }
}

pub async fn accounts_tokens_and_versions(s: &dyn Store) {
    let (vendor, _, v) = fixture(s).await;
    assert_eq!(
        s.account_by_token("h1").await.unwrap().unwrap().name,
        "acme"
    );
    assert!(s.account_by_token("nope").await.unwrap().is_none());
    assert!(matches!(
        s.create_account("acme", Role::User, "h3").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(v.status, VersionStatus::Pending);
    assert_eq!(v.objects[0].name, "index");
    assert_eq!(s.pending_versions().await.unwrap().len(), 1);
    // Same version again: conflict. Another vendor on the same IP: conflict.
    let mut again = NewVersion {
        ip: "acme/x".into(),
        vendor_id: vendor,
        version: semver::Version::new(1, 0, 0),
        summary: "x".into(),
        description: None,
        tags: vec![],
        price: Money(1),
        limits: Limits::DEFAULT,
        implementations: vec![],
        objects: vec![],
        outputs: vec![],
        tests: vec![],
        pricing: Default::default(),
    };
    assert!(matches!(
        s.create_version(again.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    let other = s
        .create_account("globex", Role::Vendor, "h9")
        .await
        .unwrap();
    again.vendor_id = other.id;
    again.version = semver::Version::new(2, 0, 0);
    assert!(matches!(
        s.create_version(again.clone()).await,
        Err(StoreError::Conflict(_))
    ));
    // Versions sort by semver, not text: 1.10.0 is newer than 1.9.0.
    again.vendor_id = vendor;
    for (maj, min) in [(1, 9), (1, 10)] {
        again.version = semver::Version::new(maj, min, 0);
        s.create_version(again.clone()).await.unwrap();
    }
    let versions = s.list_versions("acme/x").await.unwrap();
    assert_eq!(versions[0].version, "1.10.0");
    assert_eq!(s.list_latest_versions().await.unwrap()[0].version, "1.10.0");
    let report = VerificationReport {
        passed: true,
        implementations: vec![],
        finished_at: Utc::now(),
    };
    s.set_version_status(v.id, VersionStatus::Verified, &report)
        .await
        .unwrap();
    let got = s.get_version("acme/x", "1.0.0").await.unwrap().unwrap();
    assert_eq!(got.status, VersionStatus::Verified);
    assert_eq!(got.report.unwrap(), report);
}

pub async fn a_job_is_claimed_once_and_billed_once(s: &dyn Store) {
    let (_, user, v) = fixture(s).await;
    s.create_job(new_job("j1", user, v.id)).await.unwrap();
    let lease = Utc::now() + Duration::seconds(30);
    let devices = vec!["wasm".to_string()];

    let a = claim_oldest(s, "node-a", &devices, lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.state, JobState::Running);
    assert_eq!(a.attempts, 1);
    // Nobody else gets it, nor does a node for another device class.
    assert!(claim_oldest(s, "node-b", &devices, lease)
        .await
        .unwrap()
        .is_none());
    s.create_job(new_job("j2", user, v.id)).await.unwrap();
    assert!(claim_oldest(s, "node-c", &["opencl".to_string()], lease)
        .await
        .unwrap()
        .is_none());

    // Renewal by the holder keeps it running and records progress.
    assert_eq!(
        s.renew_lease("j1", "node-a", lease, 0.5, Some((42, "reads")))
            .await
            .unwrap(),
        Some(JobState::Running)
    );
    let j1 = s.get_job("j1").await.unwrap().unwrap();
    assert_eq!(j1.progress, 0.5);
    assert_eq!(j1.items, Some((42, "reads".to_string())));

    // Finish twice: the second is refused and writes nothing.
    let outcome = JobOutcome::Succeeded {
        output_key: "o".into(),
        output_size: 10,
        outputs: vec![
            accelhub_domain::JobOutput {
                name: "vcf".into(),
                key: "o".into(),
                size: 10,
            },
            accelhub_domain::JobOutput {
                name: "tbi".into(),
                key: "o.tbi".into(),
                size: 3,
            },
        ],
        log: None,
        items: Some((50, "reads".into())),
    };
    assert!(s
        .finish_job(
            "j1",
            "node-a",
            outcome.clone(),
            Some(usage("j1", user, v.id))
        )
        .await
        .unwrap());
    let j1 = s.get_job("j1").await.unwrap().unwrap();
    assert_eq!(
        (j1.progress, j1.items),
        (1.0, Some((50, "reads".to_string())))
    );
    let named: Vec<(&str, &str, u64)> = j1
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), o.key.as_str(), o.size))
        .collect();
    assert_eq!(named, [("vcf", "o", 10), ("tbi", "o.tbi", 3)]);
    assert_eq!(v.outputs[1].name, "tbi");
    assert_eq!(
        s.get_version_by_id(v.id).await.unwrap().unwrap().outputs,
        v.outputs
    );
    assert!(!s
        .finish_job("j1", "node-a", outcome, Some(usage("j1", user, v.id)))
        .await
        .unwrap());
    // A retried metering write of the same id is ignored too.
    s.record_usage(usage("j1", user, v.id)).await.unwrap();
    let records = s
        .list_usage(UsageScope::Consumer(user), None, None, 1000)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].price, Money(2000));
}

pub async fn expired_leases_requeue_then_fail_after_max_attempts(s: &dyn Store) {
    let (vendor, user, v) = fixture(s).await;
    s.create_job(new_job("j", user, v.id)).await.unwrap();
    let devices = vec!["wasm".to_string()];
    let past = Utc::now() - Duration::seconds(1);

    // Attempt 1: the worker dies (its lease is already past).
    claim_oldest(s, "dead", &devices, past)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.requeue_expired(Utc::now()).await.unwrap(),
        vec!["j".to_string()]
    );
    let j = s.get_job("j").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Queued);
    assert_eq!(j.history[0].outcome, "lost");
    // The dead worker can no longer finish it.
    assert!(!s
        .finish_job("j", "dead", JobOutcome::Cancelled, None)
        .await
        .unwrap());
    assert_eq!(
        s.renew_lease("j", "dead", Utc::now(), 0.1, None)
            .await
            .unwrap(),
        Some(JobState::Queued)
    );

    // Attempt 2 (the last): its worker's process restarts.
    claim_oldest(s, "node", &devices, Utc::now() + Duration::seconds(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.release_worker("node", "the worker's process stopped mid-job")
            .await
            .unwrap(),
        vec!["j".to_string()]
    );
    let j = s.get_job("j").await.unwrap().unwrap();
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(j.attempts, 2);
    assert!(j.error.unwrap().contains("gave up after 2 attempts"));
    assert_eq!(j.history.len(), 2);

    // Cancel only changes unfinished jobs.
    assert_eq!(s.cancel_job("j").await.unwrap(), Some(JobState::Failed));
    s.create_job(new_job("k", user, v.id)).await.unwrap();
    assert_eq!(s.cancel_job("k").await.unwrap(), Some(JobState::Cancelled));
    assert!(claim_oldest(s, "node", &devices, Utc::now())
        .await
        .unwrap()
        .is_none());

    // Vendors see the use of their IPs.
    s.record_usage(usage("c1", user, v.id)).await.unwrap();
    assert_eq!(
        s.list_usage(UsageScope::Vendor(vendor), None, None, 1000)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        s.list_usage(UsageScope::Vendor(user), None, None, 1000)
            .await
            .unwrap()
            .len(),
        0
    );
    let later = Utc::now() + Duration::seconds(5);
    assert!(s
        .list_usage(UsageScope::All, Some(later), None, 1000)
        .await
        .unwrap()
        .is_empty());
}

/// Records appended concurrently from many tasks all arrive, and a reader
/// sees every record recorded before it asked.
pub async fn concurrent_usage_is_all_read_back(s: Arc<dyn Store>) {
    let (_, user, v) = fixture(&*s).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        let vid = v.id;
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                s.record_usage(usage(&format!("t{t}-{i}"), user, vid))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = all_usage(s.as_ref(), UsageScope::Consumer(user), 1000).await;
    assert_eq!(records.len(), 2000);
    assert!(records.iter().all(|r| r.price == Money(2000)));
}

/// Every record of `scope`, page after page of `limit`.
pub async fn all_usage(
    s: &dyn Store,
    scope: UsageScope,
    limit: u32,
) -> Vec<accelhub_domain::UsageRecord> {
    let mut out: Vec<accelhub_domain::UsageRecord> = Vec::new();
    let mut after: Option<accelhub_domain::Cursor> = None;
    loop {
        let page = s
            .list_usage(scope, None, after.as_ref(), limit)
            .await
            .unwrap();
        assert!(page.len() <= limit as usize);
        let Some(last) = page.last() else { break };
        after = Some(accelhub_domain::Cursor {
            at_ms: last.created_at.timestamp_millis(),
            id: last.id.clone(),
        });
        out.extend(page);
    }
    out
}

/// Issue 14, defect 2: usage is read a page at a time (every record once,
/// in order, ties broken by id), and what invoices need is added up by the
/// database: totals, each stretch's use, the first uses' bytes, the uses
/// before a time.
pub async fn usage_pages_and_aggregates(s: &dyn Store) {
    let (vendor, user, v) = fixture(s).await;
    let other = s.create_account("o", Role::User, "h3").await.unwrap().id;
    for i in 0..57u64 {
        let mut u = usage(
            &format!("r{i:03}"),
            if i % 5 == 0 { other } else { user },
            v.id,
        );
        u.bytes_in = 100 + i;
        u.kind = match i % 7 {
            0 => accelhub_domain::UsageKind::Reserve,
            1 => accelhub_domain::UsageKind::Call,
            _ => accelhub_domain::UsageKind::Job,
        };
        u.billed = i % 11 != 3;
        s.record_usage(u).await.unwrap();
    }
    let all = all_usage(s, UsageScope::All, 1000).await;
    assert_eq!(all.len(), 57);
    for limit in [1, 7, 56, 57] {
        let paged = all_usage(s, UsageScope::All, limit).await;
        assert_eq!(paged, all, "pages of {limit}");
    }
    assert!(all
        .windows(2)
        .all(|w| (w[0].created_at, &w[0].id) < (w[1].created_at, &w[1].id)));
    for scope in [
        UsageScope::All,
        UsageScope::Consumer(user),
        UsageScope::Vendor(vendor),
        UsageScope::Vendor(user),
    ] {
        let records = all_usage(s, scope, 10).await;
        assert_eq!(
            s.usage_totals(scope, None).await.unwrap(),
            accelhub_domain::UsageTotals::of(&records),
            "{scope:?}"
        );
    }

    let from = Utc::now() - Duration::hours(1);
    let to = Utc::now() + Duration::hours(1);
    let mine: Vec<_> = all_usage(s, UsageScope::Consumer(user), 1000)
        .await
        .into_iter()
        .filter(|r| r.billed)
        .collect();
    let uses: Vec<_> = mine
        .iter()
        .filter(|r| r.kind != accelhub_domain::UsageKind::Reserve)
        .collect();
    let stats = s.use_stats(user, "acme/x", from, to).await.unwrap();
    assert_eq!(stats.uses, uses.len() as u64);
    assert_eq!(stats.bytes_in, uses.iter().map(|r| r.bytes_in).sum::<u64>());
    assert_eq!(stats.version.as_deref(), Some("1.0.0"));
    assert_eq!(
        stats.reserved_us,
        mine.iter()
            .filter(|r| r.kind == accelhub_domain::UsageKind::Reserve)
            .map(|r| r.device_time_us)
            .sum::<u64>()
    );
    assert_eq!(
        s.use_stats(user, "acme/other", from, to).await.unwrap(),
        Default::default()
    );
    for k in [0u64, 1, 5, 1000] {
        assert_eq!(
            s.first_uses_bytes(user, "acme/x", from, to, k)
                .await
                .unwrap(),
            uses.iter()
                .take(k as usize)
                .map(|r| r.bytes_in)
                .sum::<u64>(),
            "k={k}"
        );
    }
    assert_eq!(
        s.count_uses(user, "acme/x", to).await.unwrap(),
        uses.len() as u64
    );
    assert_eq!(s.count_uses(user, "acme/x", from).await.unwrap(), 0);
    let mut pairs = s.usage_pairs(UsageScope::All, from, to).await.unwrap();
    pairs.sort();
    let mut want = vec![(user, "acme/x".to_string()), (other, "acme/x".to_string())];
    want.sort();
    assert_eq!(pairs, want);
    assert!(s
        .usage_pairs(UsageScope::Vendor(user), from, to)
        .await
        .unwrap()
        .is_empty());
}

/// Issue 14: totals, each stretch's use, the uses before a time and the
/// (account, IP) pairs come from daily rollups for whole days and from the
/// records for the partial days at either end. Over records spread across
/// two months (some on a day's first or last millisecond, some replayed),
/// every range, day-aligned or not, adds up exactly as the records do.
pub async fn usage_rollups_agree_with_records(s: &SqlStore) {
    use accelhub_domain::UsageKind;
    use chrono::{DateTime, TimeZone};
    let (vendor, user, v1) = fixture(s).await;
    let other = s.create_account("o", Role::User, "h3").await.unwrap().id;
    let v2 = s
        .create_version(new_version(
            "acme/x",
            vendor,
            semver::Version::new(1, 1, 0),
            3000,
        ))
        .await
        .unwrap();
    const DAY: i64 = 86_400_000;
    let start = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .unwrap()
        .timestamp_millis();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut records: Vec<(NewUsage, DateTime<Utc>)> = Vec::new();
    for i in 0..400u64 {
        let day = next(62) as i64;
        let at = start
            + day * DAY
            + match next(4) {
                0 => 0,
                1 => DAY - 1,
                _ => next(DAY as u64) as i64,
            };
        let mut u = usage(
            &format!("r{i:04}"),
            if next(3) == 0 { other } else { user },
            if next(2) == 0 { v1.id } else { v2.id },
        );
        u.kind = match next(5) {
            0 => UsageKind::Reserve,
            1 => UsageKind::Call,
            _ => UsageKind::Job,
        };
        u.bytes_in = 1 + next(1000);
        u.bytes_out = next(1000);
        u.device_time_us = next(10_000);
        u.price = Money(if u.version_id == v1.id { 2000 } else { 3000 });
        u.billed = next(9) != 0;
        records.push((u, chrono::DateTime::from_timestamp_millis(at).unwrap()));
    }
    s.record_usage_at(records[..250].to_vec()).await.unwrap();
    // A replay of records already written (and one repeated in its batch)
    // adds nothing.
    let mut replay = records[200..].to_vec();
    replay.push(records[300].clone());
    s.record_usage_at(replay).await.unwrap();

    let version_name = |id: i64| if id == v1.id { "1.0.0" } else { "1.1.0" };
    let ranges = {
        let mut r = vec![
            (start, start + 62 * DAY),
            (start + DAY, start + 2 * DAY),
            (start + DAY - 1, start + 2 * DAY + 1),
            (start + 5 * DAY + 7, start + 5 * DAY + 9),
            (start + 10 * DAY, start + 10 * DAY),
            (0, start + 31 * DAY),
        ];
        for _ in 0..40 {
            let a = start - DAY + next(64 * DAY as u64) as i64;
            let b = a + next(20 * DAY as u64) as i64;
            r.push((a, b));
        }
        r
    };
    for (a, b) in ranges {
        let (from, to) = (
            chrono::DateTime::from_timestamp_millis(a).unwrap(),
            chrono::DateTime::from_timestamp_millis(b).unwrap(),
        );
        let mut inside: Vec<&(NewUsage, DateTime<Utc>)> = records
            .iter()
            .filter(|(u, t)| u.billed && *t >= from && *t < to)
            .collect();
        inside.sort_by(|x, y| (x.1, &x.0.id).cmp(&(y.1, &y.0.id)));
        let mine = |reserve: bool| {
            inside.iter().filter(move |(u, _)| {
                u.account_id == user && (u.kind == UsageKind::Reserve) == reserve
            })
        };
        let want = accelhub_domain::billing::UseStats {
            uses: mine(false).count() as u64,
            bytes_in: mine(false).map(|(u, _)| u.bytes_in).sum(),
            version: mine(false)
                .next()
                .map(|(u, _)| version_name(u.version_id).to_string()),
            reserved_us: mine(true).map(|(u, _)| u.device_time_us).sum(),
            reserve_version: mine(true)
                .next()
                .map(|(u, _)| version_name(u.version_id).to_string()),
        };
        assert_eq!(
            s.use_stats(user, "acme/x", from, to).await.unwrap(),
            want,
            "[{a}, {b})"
        );
        let before = records
            .iter()
            .filter(|(u, t)| {
                u.account_id == user && u.billed && u.kind != UsageKind::Reserve && *t < to
            })
            .count() as u64;
        assert_eq!(
            s.count_uses(user, "acme/x", to).await.unwrap(),
            before,
            "before {b}"
        );
        let mut pairs: Vec<(i64, String)> = inside
            .iter()
            .map(|(u, _)| (u.account_id, "acme/x".to_string()))
            .collect();
        pairs.sort();
        pairs.dedup();
        assert_eq!(
            s.usage_pairs(UsageScope::All, from, to).await.unwrap(),
            pairs
        );
        let from_since: Vec<&(NewUsage, DateTime<Utc>)> =
            records.iter().filter(|(_, t)| *t >= from).collect();
        let totals = s
            .usage_totals(UsageScope::Vendor(vendor), Some(from))
            .await
            .unwrap();
        assert_eq!(totals.records, from_since.len() as u64, "since {a}");
        assert_eq!(
            totals.billed,
            from_since.iter().filter(|(u, _)| u.billed).count() as u64
        );
        assert_eq!(
            totals.bytes_out,
            from_since.iter().map(|(u, _)| u.bytes_out).sum::<u64>()
        );
        assert_eq!(
            totals.device_time_us,
            from_since
                .iter()
                .map(|(u, _)| u.device_time_us)
                .sum::<u64>()
        );
        assert_eq!(
            totals.amount.0,
            from_since
                .iter()
                .filter(|(u, _)| u.billed)
                .map(|(u, _)| u.price.0)
                .sum::<i64>()
        );
    }
    // The catalog's use counts and "has used" come from the rollups too.
    let billed_uses = records
        .iter()
        .filter(|(u, _)| u.billed && u.kind != UsageKind::Reserve)
        .count() as u64;
    let stats = s.ip_stats().await.unwrap();
    assert_eq!(stats["acme/x"].uses, billed_uses);
    assert_eq!(stats["acme/x"].users, 2);
    assert!(s.has_used(other, "acme/x").await.unwrap());
    assert!(!s.has_used(vendor, "acme/x").await.unwrap());
}

/// Agent tokens resolve until revoked; nodes register, heartbeat and are
/// declared dead once silent, and a dead node's jobs can be released.
pub async fn agents_and_nodes(s: &dyn Store) {
    let a = s.create_agent("rack1", "ha").await.unwrap();
    assert!(!a.revoked);
    assert!(matches!(
        s.create_agent("rack1", "hb").await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.agent_by_token("ha").await.unwrap(), Some(a.clone()));
    assert_eq!(s.agent_by_token("nope").await.unwrap(), None);

    s.node_seen("n1", a.id, &[]).await.unwrap();
    let first = s.get_node("n1").await.unwrap().unwrap();
    assert_eq!(first.state, NodeState::Up);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let wasm = accelhub_domain::FleetDevice {
        class: "wasm".into(),
        slots: 4,
        busy: 1,
        utilisation: 0.25,
        loaded: vec!["img".into()],
        resident: vec![],
        hardware: vec![],
    };
    s.node_seen("n1", a.id, std::slice::from_ref(&wasm))
        .await
        .unwrap();
    let again = s.get_node("n1").await.unwrap().unwrap();
    assert_eq!(again.registered_at, first.registered_at);
    assert!(again.last_seen > first.last_seen);
    assert_eq!(again.devices.len(), 1);
    assert_eq!(
        (again.devices[0].class.as_str(), again.devices[0].slots),
        ("wasm", 4)
    );
    assert_eq!(again.devices[0].loaded, wasm.loaded);
    s.node_seen("n2", a.id, &[]).await.unwrap();

    // Only nodes silent since the cut-off die, and only once.
    let cut = again.last_seen + Duration::milliseconds(1);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.node_seen("n2", a.id, &[]).await.unwrap();
    assert_eq!(
        s.mark_dead_nodes(cut).await.unwrap(),
        vec!["n1".to_string()]
    );
    assert!(s.mark_dead_nodes(cut).await.unwrap().is_empty());
    let nodes = s.list_nodes().await.unwrap();
    assert_eq!(
        nodes
            .iter()
            .map(|n| (n.name.as_str(), n.state))
            .collect::<Vec<_>>(),
        vec![("n1", NodeState::Dead), ("n2", NodeState::Up)]
    );
    // A heartbeat brings it back.
    s.node_seen("n1", a.id, &[]).await.unwrap();
    assert_eq!(
        s.get_node("n1").await.unwrap().unwrap().state,
        NodeState::Up
    );

    assert!(s.revoke_agent("rack1").await.unwrap());
    assert!(!s.revoke_agent("rack9").await.unwrap());
    assert_eq!(s.agent_by_token("ha").await.unwrap(), None);
    assert!(s.list_agents(None, 10).await.unwrap()[0].revoked);
}

/// A scheduler's view of the queue (oldest first, per device class) and
/// its claim of the job it chose: once, and only while queued.
pub async fn a_chosen_job_is_claimed_once(s: &dyn Store) {
    let (_, user, v) = fixture(s).await;
    for (id, device) in [
        ("q1", "wasm"),
        ("q2", "cpu"),
        ("q3", "wasm"),
        ("q4", "wasm"),
    ] {
        let mut j = new_job(id, user, v.id);
        j.device = device.into();
        s.create_job(j).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let wasm = vec!["wasm".to_string()];
    let ids = |jobs: Vec<JobRow>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.queued_jobs(&wasm, 10).await.unwrap()),
        ["q1", "q3", "q4"]
    );
    assert_eq!(ids(s.queued_jobs(&wasm, 2).await.unwrap()), ["q1", "q3"]);
    assert!(s.queued_jobs(&[], 10).await.unwrap().is_empty());

    let lease = Utc::now() + Duration::seconds(60);
    let j = s.claim_job_id("q3", "n1", lease).await.unwrap().unwrap();
    assert_eq!((j.state, j.attempts), (JobState::Running, 1));
    assert_eq!(j.lease_owner.as_deref(), Some("n1"));
    assert_eq!(j.history.len(), 1);
    // Taken: nobody else gets it, and the queue no longer lists it.
    assert!(s.claim_job_id("q3", "n2", lease).await.unwrap().is_none());
    assert!(s.claim_job_id("nope", "n2", lease).await.unwrap().is_none());
    assert_eq!(ids(s.queued_jobs(&wasm, 10).await.unwrap()), ["q1", "q4"]);
    // One version's backlog does not hide the others' jobs.
    for i in 5..12 {
        // Apart in time, so the queue's order is the creation order.
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        s.create_job(new_job(&format!("q{i}"), user, v.id))
            .await
            .unwrap();
    }
    let other = s
        .create_account("other", Role::User, "h-other")
        .await
        .unwrap();
    s.create_job(new_job("o1", other.id, v.id)).await.unwrap();
    let listed = ids(s.queued_jobs(&wasm, 32).await.unwrap());
    assert_eq!(listed.len(), 5, "{listed:?}");
    // Jobs created in the same millisecond may list in either order.
    let mine: Vec<&String> = listed.iter().filter(|j| *j != "o1").collect();
    assert_eq!(mine, ["q1", "q4", "q5", "q6"], "{listed:?}");
    assert!(listed.contains(&"o1".to_string()), "{listed:?}");
    // Queue order still works beside it.
    let oldest = claim_oldest(s, "n2", &wasm, lease).await.unwrap().unwrap();
    assert_eq!(oldest.id, "q1");
}

/// A deployment's scaling: its demand, replicas changed only from what
/// the writer read, and each change recorded with its reason.
pub async fn deployments_scale_with_recorded_decisions(s: &dyn Store) {
    let (_, user, v) = fixture(s).await;
    let d = s.upsert_deployment("d1", user, v.id).await.unwrap();
    assert_eq!(d.replicas, 0);
    assert_eq!(d.scaling, accelhub_domain::Scaling::default());
    let sc = accelhub_domain::Scaling {
        min: 1,
        max: 3,
        target: 2,
        scale_down_delay_secs: 5,
    };
    s.set_scaling("d1", &sc).await.unwrap();
    // The device preference is kept beside it, in order.
    assert!(d.devices.is_empty());
    let prefer = vec!["opencl".to_string(), "wasm".to_string()];
    s.set_device_preference("d1", &prefer).await.unwrap();
    let d = s.get_deployment(user, &d.ip).await.unwrap().unwrap();
    assert_eq!(d.devices, prefer);
    assert_eq!(d.scaling, sc);
    for id in ["a", "b", "c"] {
        s.create_job(new_job(id, user, v.id)).await.unwrap();
    }
    assert!(s
        .scale_deployment("d1", 0, 2, None, Some("scale out 0 → 2"))
        .await
        .unwrap());
    // Claims are capped by the replicas: with two, one job runs.
    claim_oldest(
        s,
        "n",
        &["wasm".to_string()],
        Utc::now() + Duration::seconds(60),
    )
    .await
    .unwrap()
    .unwrap();
    let demand = s.deployment_demand().await.unwrap();
    assert_eq!(demand.len(), 1);
    assert_eq!(demand[0].deployment.scaling, sc);
    assert_eq!(demand[0].deployment.devices, prefer);
    assert_eq!((demand[0].queued, demand[0].running), (2, 1));
    assert_eq!(
        s.running_counts().await.unwrap(),
        vec![(user, v.ip.clone(), 1)]
    );

    // A second writer that read 0 loses.
    assert!(!s
        .scale_deployment("d1", 0, 3, None, Some("scale out 0 → 3"))
        .await
        .unwrap());
    let low = Utc::now();
    assert!(s
        .scale_deployment("d1", 2, 2, Some(low), None)
        .await
        .unwrap());
    let d = s.get_deployment(user, &v.ip).await.unwrap().unwrap();
    assert_eq!(d.replicas, 2);
    assert_eq!(
        d.low_since.map(|t| t.timestamp_millis()),
        Some(low.timestamp_millis())
    );
    assert!(s
        .scale_deployment("d1", 2, 1, None, Some("scale in 2 → 1"))
        .await
        .unwrap());
    // One replica, one job running: the next waits, however chosen.
    let lease = Utc::now() + Duration::seconds(60);
    let queued = s.queued_jobs(&["wasm".to_string()], 10).await.unwrap();
    assert!(s
        .claim_job_id(&queued[0].id, "n", lease)
        .await
        .unwrap()
        .is_none());
    assert!(s.scale_deployment("d1", 1, 2, None, None).await.unwrap());
    assert!(s
        .claim_job_id(&queued[0].id, "n", lease)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .claim_job_id(&queued[1].id, "n", lease)
        .await
        .unwrap()
        .is_none());
    assert!(s.scale_deployment("d1", 2, 1, None, None).await.unwrap());
    let events = s.scaling_events("d1", 10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.from, e.to, e.reason.as_str()))
            .collect::<Vec<_>>(),
        vec![(2, 1, "scale in 2 → 1"), (0, 2, "scale out 0 → 2")]
    );
    // The history billing integrates: oldest first, with what held before.
    let all = s
        .scaling_history("d1", Utc::now() - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| (e.from, e.to)).collect::<Vec<_>>(),
        [(0, 2), (2, 1)]
    );
    let later = s
        .scaling_history("d1", Utc::now() + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|e| (e.from, e.to)).collect::<Vec<_>>(),
        [(2, 1)]
    );
}

/// Reviews: one per user and IP, replies, and the ratings and use the
/// catalog shows.
pub async fn reviews_replies_and_stats(s: &dyn Store) {
    let (_, user, v) = fixture(s).await;
    let other = s.create_account("w", Role::User, "h3").await.unwrap();
    let now = Utc::now();
    assert!(!s.has_used(user, "acme/x").await.unwrap());
    let mut failed = usage("call-0", user, v.id);
    failed.billed = false;
    s.record_usage(failed).await.unwrap();
    assert!(
        !s.has_used(user, "acme/x").await.unwrap(),
        "a failed call is no use"
    );
    s.record_usage(usage("call-1", user, v.id)).await.unwrap();
    s.record_usage(usage("call-2", user, v.id)).await.unwrap();
    s.record_usage(usage("call-3", other.id, v.id))
        .await
        .unwrap();
    assert!(s.has_used(user, "acme/x").await.unwrap());
    assert!(!s.has_used(user, "acme/y").await.unwrap());

    let r1 = s.put_review("acme/x", user, 2, "meh", now).await.unwrap();
    let r1b = s
        .put_review("acme/x", user, 4, "better now", now + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(r1b.id, r1.id);
    assert_eq!(
        (r1b.stars, r1b.text.as_str(), r1b.author.as_str()),
        (4, "better now", "u")
    );
    assert_eq!(r1b.created_at.timestamp_millis(), now.timestamp_millis());
    let r2 = s
        .put_review("acme/x", other.id, 5, "", now + Duration::seconds(2))
        .await
        .unwrap();
    assert!(s.put_review("acme/none", user, 5, "", now).await.is_err());

    assert!(s
        .reply_review("acme/x", 9999, "?", now)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .reply_review("acme/none", r2.id, "?", now)
        .await
        .unwrap()
        .is_none());
    let replied = s
        .reply_review("acme/x", r2.id, "thanks", now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(replied.reply.unwrap().text, "thanks");

    let listed = s.list_reviews("acme/x", None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [r2.id, r1.id],
        "newest first"
    );
    let stats = s.ip_stats().await.unwrap();
    let x = stats["acme/x"];
    assert_eq!(x.rating.count, 2);
    assert_eq!(x.rating.average, Some(4.5));
    assert_eq!((x.uses, x.users), (3, 2));
}

/// Pricing terms stay with their version; subscriptions are a history;
/// spending limits are set and removed.
pub async fn pricing_subscriptions_and_limits(s: &dyn Store) {
    use accelhub_domain::billing::{Plan, PlanKind, PricingTerms};
    let (vendor, user, _) = fixture(s).await;
    let terms = PricingTerms {
        per_gb: Money(10_000),
        trial_calls: 5,
        plans: vec![Plan {
            name: "pro".into(),
            kind: PlanKind::Monthly {
                fee: Money(49_000_000),
                included_calls: 1000,
                overage: None,
            },
        }],
    };
    let v = s
        .create_version(NewVersion {
            pricing: terms.clone(),
            ..new_version("acme/x", vendor, semver::Version::new(2, 0, 0), 2000)
        })
        .await
        .unwrap();
    assert_eq!(v.pricing, terms);
    assert_eq!(v.plans().len(), 2);
    let again = s.get_version("acme/x", "2.0.0").await.unwrap().unwrap();
    assert_eq!(again.pricing, terms);

    let t0 = Utc::now();
    assert!(s.subscriptions(Some(user), None).await.unwrap().is_empty());
    s.subscribe(user, "acme/x", "pro", t0).await.unwrap();
    s.subscribe(user, "acme/x", "per-call", t0 + Duration::seconds(5))
        .await
        .unwrap();
    assert!(s.subscribe(user, "acme/none", "pro", t0).await.is_err());
    let history = s.subscriptions(Some(user), Some("acme/x")).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|(_, h)| h.plan.as_str())
            .collect::<Vec<_>>(),
        ["pro", "per-call"]
    );
    assert_eq!(history[0].0, user);
    assert!(s
        .subscriptions(Some(vendor), None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.subscriptions(None, None).await.unwrap().len(), 2);
    assert!(s
        .subscriptions(None, Some("acme/y"))
        .await
        .unwrap()
        .is_empty());

    assert_eq!(s.spending_limit(user).await.unwrap(), None);
    s.set_spending_limit(user, Some(Money(10_000_000)))
        .await
        .unwrap();
    s.set_spending_limit(user, Some(Money(20_000_000)))
        .await
        .unwrap();
    assert_eq!(
        s.spending_limit(user).await.unwrap(),
        Some(Money(20_000_000))
    );
    s.set_spending_limit(user, None).await.unwrap();
    assert_eq!(s.spending_limit(user).await.unwrap(), None);
}

/// Issue 14: the lists the API pages are read a page at a time by keyset
/// (every item once, in order, ties in time broken by id): accounts and
/// agent tokens by id, deployments by IP name, reviews newest first,
/// subscriptions oldest first.
pub async fn lists_page_by_keyset(s: &dyn Store) {
    let (vendor, user, _) = fixture(s).await;
    let now = Utc::now();
    let mut accounts = vec![vendor, user];
    let mut ips = Vec::new();
    for i in 0..5 {
        let a = s
            .create_account(&format!("p{i}"), Role::User, &format!("hp{i}"))
            .await
            .unwrap();
        accounts.push(a.id);
        s.create_agent(&format!("agent{i}"), &format!("ha{i}"))
            .await
            .unwrap();
        // Created in an order other than their names'.
        let ip = format!("acme/ip{}", (i * 3) % 5);
        let v = s
            .create_version(new_version(&ip, vendor, semver::Version::new(1, 0, 0), 1))
            .await
            .unwrap();
        s.upsert_deployment(&format!("dep{i}"), user, v.id)
            .await
            .unwrap();
        ips.push(ip);
        // The same time for all: ids break the ties.
        s.put_review("acme/x", a.id, 4, &format!("r{i}"), now)
            .await
            .unwrap();
        s.subscribe(user, "acme/x", &format!("plan{i}"), now)
            .await
            .unwrap();
    }
    ips.sort();

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.accounts_page(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|a| a.id));
    }
    assert_eq!(seen, accounts);

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_agents(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page.iter().map(|a| a.name.clone()));
    }
    assert_eq!(
        seen,
        (0..5).map(|i| format!("agent{i}")).collect::<Vec<_>>()
    );

    let mut seen: Vec<String> = Vec::new();
    loop {
        let page = s
            .list_deployments(user, seen.last().map(String::as_str), 2)
            .await
            .unwrap();
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        seen.extend(page.into_iter().map(|d| d.ip));
    }
    assert_eq!(seen, ips);
    assert!(s
        .list_deployments(vendor, None, 2)
        .await
        .unwrap()
        .is_empty());

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_reviews("acme/x", after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.updated_at.timestamp_millis(), last.id));
        seen.extend(page.iter().map(|r| r.text.clone()));
    }
    assert_eq!(
        seen,
        ["r4", "r3", "r2", "r1", "r0"],
        "newest first, then by id"
    );
    assert!(s
        .list_reviews("acme/ip0", None, 2)
        .await
        .unwrap()
        .is_empty());

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.subscriptions_page(user, after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some((id, last)) = page.last() else { break };
        after = Some((last.since.timestamp_millis(), *id));
        seen.extend(page.iter().map(|(_, sub)| sub.plan.clone()));
    }
    assert_eq!(seen, (0..5).map(|i| format!("plan{i}")).collect::<Vec<_>>());
    assert!(s
        .subscriptions_page(vendor, None, 2)
        .await
        .unwrap()
        .is_empty());
}
