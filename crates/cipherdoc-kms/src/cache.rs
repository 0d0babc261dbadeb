//! A cache of unwrapped data keys, so that each save does not call the KMS.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// A source of the current time; [`ManualClock`] drives tests.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Instant>);

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        Self(Mutex::new(Instant::now()))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Default time to live, as libmongocrypt's key cache (60 s).
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Default bound on the number of cached keys.
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

struct Entry<V> {
    key: V,
    inserted: Instant,
}

/// Unwrapped data keys by key id (the 16 bytes of the key document's `_id`
/// UUID). Entries expire `ttl` after insertion; the cache holds at most
/// `max_entries` keys, evicting the oldest. Key bytes are zeroized when an
/// entry is evicted, replaced, removed, or the cache is dropped (each is a
/// `Zeroizing<Vec<u8>>`). Callers get their own zeroizing copy.
///
/// The value type is generic so that a caller may cache a richer, zeroizing
/// key object (e.g. an `Arc` of a data key with its derived tokens): such a
/// value is wiped when the last reference to it is dropped.
pub struct DataKeyCache<V: Clone = Zeroizing<Vec<u8>>> {
    entries: Mutex<HashMap<[u8; 16], Entry<V>>>,
    ttl: Duration,
    max_entries: usize,
    clock: Arc<dyn Clock>,
}

impl<V: Clone> fmt::Debug for DataKeyCache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("len", &self.lock().len())
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .finish_non_exhaustive()
    }
}

impl<V: Clone> Default for DataKeyCache<V> {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_MAX_ENTRIES)
    }
}

impl<V: Clone> DataKeyCache<V> {
    /// A cache on the system clock. A zero `ttl` caches nothing; `max_entries` is at least 1.
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self::with_clock(ttl, max_entries, Arc::new(SystemClock))
    }

    /// A cache on the given clock.
    pub fn with_clock(ttl: Duration, max_entries: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            ttl,
            max_entries: max_entries.max(1),
            clock,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 16], Entry<V>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is a single insert/remove), so poisoning is ignored.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn expired(&self, e: &Entry<V>, now: Instant) -> bool {
        now.saturating_duration_since(e.inserted) >= self.ttl
    }

    /// The cached key, if present and not expired (an expired entry is evicted).
    pub fn get(&self, id: &[u8; 16]) -> Option<V> {
        let now = self.clock.now();
        let mut map = self.lock();
        match map.get(id) {
            Some(e) if !self.expired(e, now) => Some(e.key.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Caches `key` under `id`, replacing any previous entry.
    pub fn insert(&self, id: [u8; 16], key: V) {
        if self.ttl.is_zero() {
            return;
        }
        let now = self.clock.now();
        let mut map = self.lock();
        map.retain(|_, e| !self.expired(e, now));
        while map.len() >= self.max_entries && !map.contains_key(&id) {
            let Some(oldest) = map.iter().min_by_key(|(_, e)| e.inserted).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        map.insert(id, Entry { key, inserted: now });
    }

    /// The cached key, or the result of `unwrap` (cached on success).
    pub async fn get_or_try_insert<F, Fut, E>(&self, id: [u8; 16], unwrap: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        if let Some(k) = self.get(&id) {
            return Ok(k);
        }
        let k = unwrap().await?;
        self.insert(id, k.clone());
        Ok(k)
    }

    /// Forgets one key (e.g. after its key document changed).
    pub fn remove(&self, id: &[u8; 16]) {
        self.lock().remove(id);
    }

    /// Forgets all keys.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Evicts expired entries now.
    pub fn purge_expired(&self) {
        let now = self.clock.now();
        self.lock().retain(|_, e| !self.expired(e, now));
    }

    /// Number of entries held (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> [u8; 16] {
        [n; 16]
    }

    fn key(n: u8) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(vec![n; 96])
    }

    #[test]
    fn entries_expire_after_ttl() {
        let clock = Arc::new(ManualClock::new());
        let c = DataKeyCache::with_clock(Duration::from_secs(60), 10, clock.clone());
        c.insert(id(1), key(1));
        clock.advance(Duration::from_secs(59));
        assert_eq!(c.get(&id(1)).as_deref(), Some(&vec![1u8; 96]));
        clock.advance(Duration::from_secs(1));
        assert!(c.get(&id(1)).is_none());
        assert_eq!(c.len(), 0, "expired entry evicted on access");
    }

    #[test]
    fn bounded_size_evicts_oldest() {
        let clock = Arc::new(ManualClock::new());
        let c = DataKeyCache::with_clock(Duration::from_secs(60), 2, clock.clone());
        c.insert(id(1), key(1));
        clock.advance(Duration::from_secs(1));
        c.insert(id(2), key(2));
        clock.advance(Duration::from_secs(1));
        c.insert(id(3), key(3));
        assert_eq!(c.len(), 2);
        assert!(c.get(&id(1)).is_none());
        assert!(c.get(&id(2)).is_some() && c.get(&id(3)).is_some());
        // Replacing an existing id does not evict another.
        c.insert(id(3), key(4));
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&id(3)).as_deref(), Some(&vec![4u8; 96]));
    }

    #[test]
    fn purge_remove_clear_and_zero_ttl() {
        let clock = Arc::new(ManualClock::new());
        let c = DataKeyCache::with_clock(Duration::from_secs(10), 10, clock.clone());
        c.insert(id(1), key(1));
        clock.advance(Duration::from_secs(5));
        c.insert(id(2), key(2));
        clock.advance(Duration::from_secs(6));
        c.purge_expired();
        assert_eq!(c.len(), 1);
        c.remove(&id(2));
        assert!(c.is_empty());
        c.insert(id(3), key(3));
        c.clear();
        assert!(c.is_empty());
        let none = DataKeyCache::with_clock(Duration::ZERO, 10, clock);
        none.insert(id(1), key(1));
        assert!(none.get(&id(1)).is_none());
    }

    #[tokio::test]
    async fn get_or_try_insert_calls_unwrap_once() {
        let clock = Arc::new(ManualClock::new());
        let c = DataKeyCache::with_clock(DEFAULT_TTL, 10, clock.clone());
        let calls = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..3 {
            let k = c
                .get_or_try_insert(id(7), || async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    Ok::<_, ()>(key(7))
                })
                .await
                .unwrap();
            assert_eq!(k.len(), 96);
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        clock.advance(DEFAULT_TTL);
        let r = c
            .get_or_try_insert(id(7), || async { Err::<Zeroizing<Vec<u8>>, _>("kms down") })
            .await;
        assert_eq!(r.unwrap_err(), "kms down");
        assert!(c.is_empty(), "failures are not cached");
    }
}
