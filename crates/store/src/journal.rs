//! The usage journal: a write-ahead log in front of the `usage` table.
//!
//! A call's usage record must be durable before the call answers, and
//! sync calls come by the tens of thousands per second. Committing each
//! record to SQLite costs a hop to sqlx's connection thread and a WAL
//! commit that rewrites four B-tree pages. Instead a record is appended, as
//! one JSON line, to a journal segment on the caller's thread: a file whose
//! blocks are allocated up front and which is mapped shared into memory, so
//! an append is a copy into the page cache, without a system call. A
//! background task moves the records into the database in large
//! transactions, then empties the segments they came from (one is kept as
//! the next spare, so its pages stay mapped and writable).
//!
//! Durability is that of the database under `synchronous = NORMAL`: a
//! record that is appended survives a crash or `kill -9` of the process
//! (the page cache holds it), not a power loss. The segment's blocks are
//! written before it is mapped, so a full disk fails the segment's creation
//! with an error instead of faulting a later write through the mapping. On
//! open, journal files left behind are replayed; the usage id is the table's primary key, so a
//! record ingested before the crash and replayed after it is written once.
//! Readers of the `usage` table call [`Journal::flush`] first, so they see
//! every record appended before they asked. The ingester writes records
//! with `billing::insert_usage`, which adds them to the daily rollups in
//! the same transaction.

use crate::sql::Db;
use crate::{NewUsage, Result, StoreError};
use accelhub_domain::Money;
use serde::{Deserialize, Serialize};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// How long the ingester lets records gather before it moves them, unless
/// a reader is waiting.
const GATHER: Duration = Duration::from_millis(20);
/// Size of one journal segment (about 4000 records).
const SEGMENT_BYTES: usize = 1 << 20;
/// How long a reader waits for pending records to reach the database.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// One journal line.
#[derive(Serialize, Deserialize)]
struct Entry {
    id: String,
    kind: accelhub_domain::UsageKind,
    account_id: i64,
    version_id: i64,
    device: String,
    bytes_in: u64,
    bytes_out: u64,
    device_time_us: u64,
    price_micros: i64,
    billed: bool,
    outcome: String,
    /// When the record was made, ms since the epoch.
    at: i64,
}

impl Entry {
    fn new(u: NewUsage, at: i64) -> Self {
        Entry {
            id: u.id,
            kind: u.kind,
            account_id: u.account_id,
            version_id: u.version_id,
            device: u.device,
            bytes_in: u.bytes_in,
            bytes_out: u.bytes_out,
            device_time_us: u.device_time_us,
            price_micros: u.price.micros(),
            billed: u.billed,
            outcome: u.outcome,
            at,
        }
    }

    fn into_usage(self) -> (NewUsage, i64) {
        (
            NewUsage {
                id: self.id,
                kind: self.kind,
                account_id: self.account_id,
                version_id: self.version_id,
                device: self.device,
                bytes_in: self.bytes_in,
                bytes_out: self.bytes_out,
                device_time_us: self.device_time_us,
                price: Money(self.price_micros),
                billed: self.billed,
                outcome: self.outcome,
            },
            self.at,
        )
    }
}

/// One journal file, mapped.
struct Segment {
    map: memmap2::MmapMut,
    len: usize,
    path: PathBuf,
}

impl Segment {
    fn create(path: PathBuf) -> Result<Segment> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err("creating the usage journal", &path, e))?;
        // Write every block now: see the module's documentation. A segment
        // that cannot be made whole is removed at once: a full disk must
        // not leave a litter of empty segments behind.
        let made = file
            .write_all(&vec![0u8; SEGMENT_BYTES])
            .map_err(|e| io_err("allocating the usage journal", &path, e))
            .and_then(|()| {
                // SAFETY: the file is ours (created above, inside the data
                // directory); nothing else resizes it while it is mapped.
                unsafe { memmap2::MmapMut::map_mut(&file) }
                    .map_err(|e| io_err("mapping the usage journal", &path, e))
            });
        match made {
            Ok(map) => Ok(Segment { map, len: 0, path }),
            Err(e) => {
                drop(file);
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Copy `line` in; false when it does not fit.
    fn append(&mut self, line: &[u8]) -> bool {
        let Some(room) = self.map.get_mut(self.len..self.len + line.len()) else {
            return false;
        };
        room.copy_from_slice(line);
        self.len += line.len();
        true
    }
}

struct State {
    segment: Segment,
    /// The number of the next segment file.
    next_seq: u64,
    /// Segments that filled up; their records are in `pending`.
    full: Vec<Segment>,
    /// An emptied segment, ready to take over: reusing one keeps its pages
    /// mapped and writable, so appends do not fault on fresh pages.
    spare: Option<Segment>,
    /// Records appended and not yet in the database.
    pending: Vec<(NewUsage, i64)>,
    /// Records appended since open.
    appended: u64,
}

pub(crate) struct Journal {
    dir: PathBuf,
    stem: String,
    state: Mutex<State>,
    /// Something was appended.
    wake: Notify,
    /// A reader waits: skip the gathering delay.
    hurry: Notify,
    hurried: AtomicBool,
    /// How many of the appended records are in the database.
    ingested: watch::Sender<u64>,
    /// The last ingestion error, for readers that give up waiting.
    last_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("stem", &self.stem)
            .finish_non_exhaustive()
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    if crate::disk_full(&e) {
        return StoreError::Full(format!("{what}: {e}"));
    }
    StoreError::Database(format!("{what} {}: {e}", path.display()))
}

impl Journal {
    /// Replay the journal files beside `db` into the database, then start
    /// a fresh file and the task that ingests it.
    pub(crate) async fn open(db: &Path, writer: Db) -> Result<Arc<Journal>> {
        let dir = match db.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let stem = format!(
            "{}-usage-",
            db.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "store".into())
        );
        let mut found = Vec::new();
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err("reading", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("reading", &dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(seq) = name
                .strip_prefix(&stem)
                .and_then(|rest| rest.strip_suffix(".log"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                found.push((seq, entry.path()));
            }
        }
        found.sort();
        let mut replay = Vec::new();
        for (_, path) in &found {
            replay.extend(read_journal(path)?);
        }
        if !replay.is_empty() {
            tracing::info!(
                records = replay.len(),
                "replaying usage records journaled before the last stop"
            );
            insert_all(&writer, &replay).await?;
        }
        for (_, path) in &found {
            std::fs::remove_file(path).map_err(|e| io_err("removing", path, e))?;
        }
        let seq = found.last().map(|(s, _)| s + 1).unwrap_or(0);
        let segment = Segment::create(dir.join(format!("{stem}{seq}.log")))?;
        let journal = Arc::new(Journal {
            dir,
            stem,
            state: Mutex::new(State {
                segment,
                next_seq: seq + 1,
                full: Vec::new(),
                spare: None,
                pending: Vec::new(),
                appended: 0,
            }),
            wake: Notify::new(),
            hurry: Notify::new(),
            hurried: AtomicBool::new(false),
            ingested: watch::Sender::new(0),
            last_error: Mutex::new(None),
        });
        tokio::spawn(ingest_loop(journal.clone(), writer));
        Ok(journal)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{}{seq}.log", self.stem))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (a push or a counter
        // bump), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append one record; when this returns Ok the record survives a crash
    /// of the process.
    pub(crate) fn append(&self, usage: NewUsage) -> Result<()> {
        let at = crate::millis(chrono::Utc::now());
        let entry = Entry::new(usage, at);
        let mut line = serde_json::to_vec(&entry)
            .map_err(|e| StoreError::Database(format!("encoding a usage record: {e}")))?;
        line.push(b'\n');
        if line.len() > SEGMENT_BYTES {
            return Err(StoreError::Database(format!(
                "a usage record of {} bytes does not fit the journal",
                line.len()
            )));
        }
        let mut st = self.lock();
        if !st.segment.append(&line) {
            // Full (only under a burst the ingester has not caught up
            // with): go on in a new segment.
            let next = match st.spare.take() {
                Some(s) => s,
                None => {
                    let seq = st.next_seq;
                    st.next_seq += 1;
                    Segment::create(self.path(seq))?
                }
            };
            let old = std::mem::replace(&mut st.segment, next);
            st.full.push(old);
            st.segment.append(&line);
        }
        st.pending.push(entry.into_usage());
        st.appended += 1;
        let first = st.pending.len() == 1;
        drop(st);
        if first {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Wait until every record appended before this call is in the
    /// database.
    pub(crate) async fn flush(&self) -> Result<()> {
        let target = self.lock().appended;
        let mut rx = self.ingested.subscribe();
        if *rx.borrow() >= target {
            return Ok(());
        }
        // Wake the ingester if it is waiting for records, and cut its
        // gathering short if it is gathering (without leaving a permit
        // that would cut the next one short too).
        self.hurried.store(true, Ordering::SeqCst);
        self.hurry.notify_waiters();
        self.wake.notify_one();
        let waited = tokio::time::timeout(FLUSH_TIMEOUT, rx.wait_for(|n| *n >= target))
            .await
            .map(|r| r.map(|_| ()));
        match waited {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Database(
                "the usage journal's writer has stopped".into(),
            )),
            Err(_) => {
                let why = self
                    .last_error
                    .lock()
                    .map(|e| e.clone())
                    .unwrap_or_default()
                    .unwrap_or_else(|| "it is still busy".into());
                Err(StoreError::Database(format!(
                    "usage records could not be written to the database yet: {why}"
                )))
            }
        }
    }
}

/// Every complete record of one journal file: lines up to the first zero
/// byte (the unused rest of a segment). A line that does not parse (the
/// tail of a write cut short) is skipped with a warning.
fn read_journal(path: &Path) -> Result<Vec<(NewUsage, i64)>> {
    let data = std::fs::read(path).map_err(|e| io_err("reading", path, e))?;
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let mut out = Vec::new();
    for (n, line) in data[..end].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) => out.push(e.into_usage()),
            Err(e) => tracing::warn!(
                file = %path.display(),
                line = n + 1,
                "skipping an unreadable usage journal line: {e}"
            ),
        }
    }
    Ok(out)
}

/// Insert records in one transaction; ids already present are left alone.
async fn insert_all(writer: &Db, rows: &[(NewUsage, i64)]) -> Result<()> {
    let mut tx = writer.begin().await?;
    crate::billing::insert_usage(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(())
}

async fn ingest_loop(j: Arc<Journal>, writer: Db) {
    loop {
        j.wake.notified().await;
        if !j.hurried.swap(false, Ordering::SeqCst) {
            tokio::select! {
                _ = tokio::time::sleep(GATHER) => {}
                _ = j.hurry.notified() => {}
            }
            j.hurried.store(false, Ordering::SeqCst);
        }
        // Swap in the spare segment (or a new one, made before taking the
        // lock) and take what the old ones hold.
        let spare = {
            let mut st = j.lock();
            if st.pending.is_empty() {
                let n = st.appended;
                drop(st);
                j.ingested.send_replace(n);
                continue;
            }
            match st.spare.take() {
                Some(s) => Ok(s),
                None => {
                    st.next_seq += 1;
                    Err(st.next_seq - 1)
                }
            }
        };
        let next = match spare {
            Ok(s) => s,
            Err(seq) => match Segment::create(j.path(seq)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("{e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    j.wake.notify_one();
                    continue;
                }
            },
        };
        let (batch, segments, upto) = {
            let mut st = j.lock();
            let old = std::mem::replace(&mut st.segment, next);
            let mut segments = std::mem::take(&mut st.full);
            segments.push(old);
            (std::mem::take(&mut st.pending), segments, st.appended)
        };
        // Retry until the batch is in: its journal file stays on disk
        // meanwhile, so a stop loses nothing.
        let mut delay = Duration::from_millis(100);
        loop {
            match insert_all(&writer, &batch).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!("writing {} usage records: {e}", batch.len());
                    if let Ok(mut last) = j.last_error.lock() {
                        *last = Some(e.to_string());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Ok(mut last) = j.last_error.lock() {
            *last = None;
        }
        j.ingested.send_replace(upto);
        // The records are in the database: empty the segments, keep one as
        // the spare, remove the rest. (A crash in between leaves records
        // that a replay finds already written.)
        for mut seg in segments {
            let used = seg.len;
            seg.map[..used].fill(0);
            seg.len = 0;
            let mut st = j.lock();
            if st.spare.is_none() {
                st.spare = Some(seg);
            } else {
                drop(st);
                let path = seg.path.clone();
                drop(seg);
                remove(&path);
            }
        }
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!("removing {}: {e}", path.display());
    }
}
