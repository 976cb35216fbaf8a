//! Resident data: objects a kernel keeps in memory between calls (a
//! genomics index), keyed by the SHA-256 of the object's bytes. The key is
//! the content, not the name, so a replaced object is never served stale,
//! and two tenants' identical objects share one copy. Least recently used
//! entries go first; a loader checks the bytes it read against the key.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

struct Entry {
    sha256: String,
    value: Arc<dyn Any + Send + Sync>,
    used: u64,
}

pub struct ResidentCache {
    capacity: usize,
    entries: Mutex<Vec<Entry>>,
    /// One load at a time: a second caller for the same object waits and
    /// then finds it resident instead of loading it again.
    loading: Mutex<()>,
    clock: AtomicU64,
    loads: AtomicU64,
    hits: AtomicU64,
}

impl ResidentCache {
    pub fn new(capacity: usize) -> Self {
        ResidentCache {
            capacity: capacity.max(1),
            entries: Mutex::new(Vec::new()),
            loading: Mutex::new(()),
            clock: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// Loads so far (misses).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Calls served by a resident copy.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// SHA-256 keys resident now, most recently used first.
    pub fn resident(&self) -> Vec<String> {
        let Ok(e) = self.entries.lock() else {
            return Vec::new();
        };
        let mut v: Vec<_> = e.iter().map(|e| (e.used, e.sha256.clone())).collect();
        v.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        v.into_iter().map(|(_, k)| k).collect()
    }

    fn lookup<T: Any + Send + Sync>(&self, sha256: &str) -> Option<Arc<T>> {
        let mut entries = self.entries.lock().ok()?;
        let e = entries.iter_mut().find(|e| e.sha256 == sha256)?;
        e.used = self.clock.fetch_add(1, Ordering::Relaxed);
        e.value.clone().downcast::<T>().ok()
    }

    /// The resident value for `sha256`, or `load` it (on this blocking
    /// thread) and keep it. Returns the value and whether it was resident.
    pub fn get_or_load<T: Any + Send + Sync, E>(
        &self,
        sha256: &str,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<(Arc<T>, bool), E> {
        if let Some(v) = self.lookup::<T>(sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((v, true));
        }
        let _one_at_a_time = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = self.lookup::<T>(sha256) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((v, true));
        }
        // Make room first, so memory holds at most `capacity` copies.
        if let Ok(mut entries) = self.entries.lock() {
            while entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, e)| e.used)
                    .map(|(i, _)| i);
                match oldest {
                    Some(i) => {
                        entries.swap_remove(i);
                    }
                    None => break,
                }
            }
        }
        let value = Arc::new(load()?);
        self.loads.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut entries) = self.entries.lock() {
            entries.push(Entry {
                sha256: sha256.to_string(),
                value: value.clone(),
                used: self.clock.fetch_add(1, Ordering::Relaxed),
            });
        }
        Ok((value, false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_most_recently_used_and_loads_each_once() {
        let c = ResidentCache::new(2);
        let load = |v: u32| move || Ok::<_, ()>(v);
        assert_eq!(c.get_or_load("a", load(1)).unwrap(), (Arc::new(1), false));
        assert_eq!(c.get_or_load("b", load(2)).unwrap(), (Arc::new(2), false));
        // A hit does not call the loader.
        let (v, hit) = c
            .get_or_load::<u32, ()>("a", || panic!("loaded twice"))
            .unwrap();
        assert_eq!((*v, hit), (1, true));
        // "b" is now the least recently used: it goes.
        c.get_or_load("c", load(3)).unwrap();
        assert_eq!(c.resident(), vec!["c".to_string(), "a".to_string()]);
        assert_eq!((c.loads(), c.hits()), (3, 1));
        // A failed load keeps nothing.
        assert!(c.get_or_load::<u32, &str>("d", || Err("bad")).is_err());
        assert!(!c.resident().contains(&"d".to_string()));
    }
}
