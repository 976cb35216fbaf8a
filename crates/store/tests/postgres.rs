//! The store over a real PostgreSQL (the URL in `ACCELHUB_TEST_POSTGRES`,
//! which `.ci/run` sets; without it these tests skip, saying so). Each test
//! gets a schema of its own. The same behaviour as SQLite's, and claims
//! that two control planes on one database never share.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

mod common;

use accelhub_store::*;
use chrono::{Duration, Utc};
use common::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// Drops its schema when it goes (on a thread of its own: the test's
/// runtime may be shutting down).
struct Dropper(String, String);

impl Drop for Dropper {
    fn drop(&mut self) {
        let (url, schema) = (self.0.clone(), self.1.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let pool = sqlx::PgPool::connect(&url).await?;
                // Never wait long: a leftover schema is harmless.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&pool)
                .await?;
                Ok::<_, sqlx::Error>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
    }
}

/// A store on a fresh schema, or `None` (with a note) without PostgreSQL.
async fn pg(test: &str) -> Option<(Dropper, SqlStore, String)> {
    let Ok(url) = std::env::var("ACCELHUB_TEST_POSTGRES") else {
        eprintln!("skipping {test}: ACCELHUB_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test)");
        return None;
    };
    static N: AtomicU32 = AtomicU32::new(0);
    let schema = format!(
        "t{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        Utc::now().timestamp_micros() % 1_000_000
    );
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create a test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    let store = SqlStore::open_postgres(&scoped)
        .await
        .expect("open the store");
    // The schema goes after the store (bindings drop in reverse order).
    Some((Dropper(url, schema), store, scoped))
}

#[tokio::test]
async fn accounts_tokens_and_versions() {
    let Some((_drop, s, _)) = pg("accounts_tokens_and_versions").await else {
        return;
    };
    common::accounts_tokens_and_versions(&s).await;
}

#[tokio::test]
async fn a_job_is_claimed_once_and_billed_once() {
    let Some((_drop, s, _)) = pg("a_job_is_claimed_once_and_billed_once").await else {
        return;
    };
    common::a_job_is_claimed_once_and_billed_once(&s).await;
}

#[tokio::test]
async fn expired_leases_requeue_then_fail_after_max_attempts() {
    let Some((_drop, s, _)) = pg("expired_leases_requeue_then_fail_after_max_attempts").await
    else {
        return;
    };
    common::expired_leases_requeue_then_fail_after_max_attempts(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_usage_is_all_read_back() {
    let Some((_drop, s, _)) = pg("concurrent_usage_is_all_read_back").await else {
        return;
    };
    common::concurrent_usage_is_all_read_back(Arc::new(s)).await;
}

/// Two control planes (two pools on one database), eight workers between
/// them, claiming as fast as they can: every job is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_control_planes_never_claim_a_job_twice() {
    let Some((_drop, a, url)) = pg("two_control_planes_never_claim_a_job_twice").await else {
        return;
    };
    let b = SqlStore::open_postgres(&url).await.unwrap();
    let (_, user, v) = fixture(&a).await;
    for i in 0..60 {
        a.create_job(new_job(&format!("j{i:02}"), user, v.id))
            .await
            .unwrap();
    }
    let stores: [Arc<dyn Store>; 2] = [Arc::new(a), Arc::new(b)];
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let devices = vec!["wasm".to_string()];
            let lease = Utc::now() + Duration::seconds(60);
            while let Some(j) = claim_oldest(&*s, &format!("w{w}"), &devices, lease)
                .await
                .unwrap()
            {
                assert_eq!(j.attempts, 1, "{} claimed again", j.id);
                mine.push(j.id);
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    let expected: Vec<String> = (0..60).map(|i| format!("j{i:02}")).collect();
    assert_eq!(all, expected, "each job once");
}

/// Two control planes' lease keepers at once: every expired job is
/// re-queued once, with one lost attempt in its history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lease_keepers_requeue_each_job_once() {
    let Some((_drop, a, url)) = pg("two_lease_keepers_requeue_each_job_once").await else {
        return;
    };
    let b = SqlStore::open_postgres(&url).await.unwrap();
    let (_, user, v) = fixture(&a).await;
    let devices = vec!["wasm".to_string()];
    let past = Utc::now() - Duration::seconds(1);
    for i in 0..30 {
        let id = format!("e{i:02}");
        a.create_job(new_job(&id, user, v.id)).await.unwrap();
        claim_oldest(&a, "dead", &devices, past)
            .await
            .unwrap()
            .unwrap();
    }
    let (ra, rb) = tokio::join!(a.requeue_expired(Utc::now()), b.requeue_expired(Utc::now()));
    let mut all = ra.unwrap();
    all.extend(rb.unwrap());
    all.sort();
    assert_eq!(all.len(), 30, "each expired job re-queued by one keeper");
    all.dedup();
    assert_eq!(all.len(), 30);
    for i in 0..30 {
        let j = a.get_job(&format!("e{i:02}")).await.unwrap().unwrap();
        assert_eq!(j.state, accelhub_domain::JobState::Queued);
        let lost = j.history.iter().filter(|h| h.outcome == "lost").count();
        assert_eq!(lost, 1, "{}: {:?}", j.id, j.history);
    }
}

#[tokio::test]
async fn agents_and_nodes() {
    let Some((_drop, s, _)) = pg("agents_and_nodes").await else {
        return;
    };
    common::agents_and_nodes(&s).await;
}

#[tokio::test]
async fn a_chosen_job_is_claimed_once() {
    let Some((_drop, s, _)) = pg("a_chosen_job_is_claimed_once").await else {
        return;
    };
    common::a_chosen_job_is_claimed_once(&s).await;
}

#[tokio::test]
async fn deployments_scale_with_recorded_decisions() {
    let Some((_drop, s, _)) = pg("deployments_scale_with_recorded_decisions").await else {
        return;
    };
    common::deployments_scale_with_recorded_decisions(&s).await;
}

#[tokio::test]
async fn reviews_replies_and_stats() {
    let Some((_drop, s, _)) = pg("reviews_replies_and_stats").await else {
        return;
    };
    common::reviews_replies_and_stats(&s).await;
}

#[tokio::test]
async fn pricing_subscriptions_and_limits() {
    let Some((_drop, s, _)) = pg("pricing_subscriptions_and_limits").await else {
        return;
    };
    common::pricing_subscriptions_and_limits(&s).await;
}

#[tokio::test]
async fn usage_rollups_agree_with_records() {
    let Some((_drop, s, _)) = pg("usage_rollups_agree_with_records").await else {
        return;
    };
    common::usage_rollups_agree_with_records(&s).await;
}

#[tokio::test]
async fn usage_pages_and_aggregates() {
    let Some((_drop, s, _)) = pg("usage_pages_and_aggregates").await else {
        return;
    };
    common::usage_pages_and_aggregates(&s).await;
}

#[tokio::test]
async fn lists_page_by_keyset() {
    let Some((_drop, s, _)) = pg("lists_page_by_keyset").await else {
        return;
    };
    common::lists_page_by_keyset(&s).await;
}
