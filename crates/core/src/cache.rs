//! Short-lived caches of the hot path's lookups (tokens, deployments, plans,
//! finished versions). Each is bounded and its entries expire. A full cache
//! evicts the entries least likely to be used again (moka's TinyLFU), never
//! the whole map: a flood of new keys must not make every call miss at once.

use std::hash::Hash;
use std::time::Duration;

/// How long a token or deployment lookup is reused. Another process's
/// change (a redeploy) is seen by this one within this delay; this
/// process's own changes invalidate at once.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(2);

/// Finished versions kept in memory at most.
pub(crate) const VERSION_CACHE: usize = 4096;

/// A bounded map whose entries expire after `ttl` (`Duration::MAX`: never).
pub(crate) struct TtlCache<K, V>(moka::sync::Cache<K, V>);

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        let builder = moka::sync::Cache::builder().max_capacity(max as u64);
        // moka refuses lifetimes over 1000 years; "never" is no lifetime.
        let builder = if ttl < Duration::from_secs(100 * 365 * 86_400) {
            builder.time_to_live(ttl)
        } else {
            builder
        };
        TtlCache(builder.build())
    }

    pub(crate) fn get(&self, k: &K) -> Option<V> {
        self.0.get(k)
    }

    pub(crate) fn put(&self, k: K, v: V) {
        self.0.insert(k, v);
    }

    pub(crate) fn clear(&self) {
        self.0.invalidate_all();
    }

    pub(crate) fn remove(&self, k: &K) {
        self.0.invalidate(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_a_full_cache_keeps_most_of_its_entries() {
        let c = TtlCache::new(Duration::from_millis(50), 100);
        c.put(1, "a");
        assert_eq!(c.get(&1), Some("a"));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.get(&1), None, "expired");

        let c = TtlCache::new(Duration::MAX, 100);
        for k in 0..100 {
            c.put(k, k);
            c.get(&k);
        }
        for k in 100..150 {
            c.put(k, k);
        }
        c.0.run_pending_tasks();
        let kept = (0..150).filter(|k| c.get(k).is_some()).count();
        // The old hand-made cache emptied itself here; this one stays full.
        assert!((90..=100).contains(&kept), "{kept} entries kept");
        c.remove(&0);
        assert_eq!(c.get(&0), None);
        c.clear();
        assert_eq!(c.get(&1), None);
    }
}
