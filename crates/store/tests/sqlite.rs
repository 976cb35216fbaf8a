//! The store over a real SQLite file: leases, retries, and metering that
//! never counts a job twice; reopening and the usage journal.
#![allow(clippy::unwrap_used)] // a test: a panic is a failure

mod common;

use accelhub_domain::Role;
use accelhub_store::*;
use common::*;
use std::sync::Arc;

async fn store() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqlStore::open_sqlite(&dir.path().join("t.db"))
        .await
        .unwrap();
    (dir, s)
}

#[tokio::test]
async fn accounts_tokens_and_versions() {
    let (_d, s) = store().await;
    common::accounts_tokens_and_versions(&s).await;
}

#[tokio::test]
async fn a_job_is_claimed_once_and_billed_once() {
    let (_d, s) = store().await;
    common::a_job_is_claimed_once_and_billed_once(&s).await;
}

#[tokio::test]
async fn expired_leases_requeue_then_fail_after_max_attempts() {
    let (_d, s) = store().await;
    common::expired_leases_requeue_then_fail_after_max_attempts(&s).await;
}

/// Records appended concurrently from many tasks all arrive, and a reader
/// sees every record recorded before it asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_usage_is_all_read_back() {
    let (_d, s) = store().await;
    common::concurrent_usage_is_all_read_back(Arc::new(s)).await;
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let s = SqlStore::open_sqlite(&path).await.unwrap();
        s.create_account("keep", Role::User, "hk").await.unwrap();
        s.put_object(1, "k", 3, "abc").await.unwrap();
    }
    let s = SqlStore::open_sqlite(&path).await.unwrap();
    assert_eq!(
        s.account_by_token("hk").await.unwrap().unwrap().name,
        "keep"
    );
    assert_eq!(s.get_object(1, "k").await.unwrap().unwrap().size, 3);
    assert!(s.get_object(2, "k").await.unwrap().is_none());
}

/// Usage records go through a journal file before the database. A process
/// that dies before they reach the database loses none: the next open
/// replays the journal, and a record replayed after it was already
/// ingested is written once.
#[test]
fn journaled_usage_survives_a_crash_and_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let journal_files = || -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("-usage-"))
            .collect();
        v.sort();
        v
    };

    // First life: record 200 calls, then die at once: the runtime and
    // its ingesting task are torn down without any flush.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (user, version) = rt.block_on(async {
        let s = SqlStore::open_sqlite(&db).await.unwrap();
        let (_, user, v) = fixture(&s).await;
        // One record reaches the database before the crash.
        s.record_usage(usage("c0", user, v.id)).await.unwrap();
        assert_eq!(
            s.list_usage(UsageScope::All, None, None, 1000)
                .await
                .unwrap()
                .len(),
            1
        );
        for i in 1..200 {
            let mut u = usage(&format!("c{i}"), user, v.id);
            u.kind = accelhub_domain::UsageKind::Call;
            s.record_usage(u).await.unwrap();
        }
        (user, v.id)
    });
    rt.shutdown_background();
    let files = journal_files();
    assert!(!files.is_empty(), "the journal is on disk");

    // Simulate the worst leftovers, in one more journal file: a record that
    // was already ingested, one line cut short by the crash, and the
    // zeroed rest of a segment.
    let first_line = files
        .iter()
        .map(|f| std::fs::read(f).unwrap())
        .find(|data| data.first() == Some(&b'{'))
        .expect("a journal segment holds the records not yet ingested");
    let first_line = first_line.split(|&b| b == b'\n').next().unwrap().to_vec();
    let c0 = serde_json::json!({"id": "c0", "kind": "job", "account_id": user,
        "version_id": version, "device": "wasm", "bytes_in": 10, "bytes_out": 10,
        "device_time_us": 5, "price_micros": 2000, "billed": true, "outcome": "ok", "at": 1});
    let mut leftover = first_line;
    leftover.push(b'\n');
    leftover.extend_from_slice(format!("{c0}\n{{\"id\": \"c-partial\", \"kind\"").as_bytes());
    leftover.extend_from_slice(&[0u8; 4096]);
    std::fs::write(dir.path().join("t.db-usage-999.log"), leftover).unwrap();

    // Second life: everything is there, once.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let s = SqlStore::open_sqlite(&db).await.unwrap();
        let records = s
            .list_usage(UsageScope::All, None, None, 1000)
            .await
            .unwrap();
        let mut ids: Vec<_> = records.iter().map(|r| r.id.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(records.len(), 200);
        assert_eq!(ids.len(), 200);
        assert!(!ids.contains(&"c-partial".to_string()));
        let c0 = records.iter().find(|r| r.id == "c0").unwrap();
        assert!(c0.created_at.timestamp_millis() > 1, "the first write wins");
    });
    // The replayed files are gone; only the new, empty one remains.
    let files = journal_files();
    assert_eq!(files.len(), 1);
    assert!(std::fs::read(&files[0]).unwrap().iter().all(|&b| b == 0));
}

#[tokio::test]
async fn agents_and_nodes() {
    let (_d, s) = store().await;
    common::agents_and_nodes(&s).await;
}

#[tokio::test]
async fn a_chosen_job_is_claimed_once() {
    let (_d, s) = store().await;
    common::a_chosen_job_is_claimed_once(&s).await;
}

#[tokio::test]
async fn deployments_scale_with_recorded_decisions() {
    let (_d, s) = store().await;
    common::deployments_scale_with_recorded_decisions(&s).await;
}

#[tokio::test]
async fn reviews_replies_and_stats() {
    let (_d, s) = store().await;
    common::reviews_replies_and_stats(&s).await;
}

#[tokio::test]
async fn pricing_subscriptions_and_limits() {
    let (_d, s) = store().await;
    common::pricing_subscriptions_and_limits(&s).await;
}

#[tokio::test]
async fn usage_rollups_agree_with_records() {
    let (_d, s) = store().await;
    common::usage_rollups_agree_with_records(&s).await;
}

#[tokio::test]
async fn usage_pages_and_aggregates() {
    let (_d, s) = store().await;
    common::usage_pages_and_aggregates(&s).await;
}

#[tokio::test]
async fn lists_page_by_keyset() {
    let (_d, s) = store().await;
    common::lists_page_by_keyset(&s).await;
}
