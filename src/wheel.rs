//! TEMPORARY stand-in with the agreed API (BTreeMap); replaced by the real wheel.
#![allow(missing_docs)]
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey(u64);
pub struct TimerWheel<T> {
    origin: Instant,
    map: BTreeMap<(u64, u64), (Instant, T)>,
    keys: std::collections::HashMap<u64, u64>,
    seq: u64,
}
impl<T> TimerWheel<T> {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            map: BTreeMap::new(),
            keys: Default::default(),
            seq: 0,
        }
    }
    pub fn with_capacity(origin: Instant, _c: usize) -> Self {
        Self::new(origin)
    }
    fn ceil(&self, d: Instant) -> u64 {
        let n = d.saturating_duration_since(self.origin).as_nanos();
        n.div_ceil(1_000_000) as u64
    }
    pub fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let t = self.ceil(deadline);
        self.seq += 1;
        self.map.insert((t, self.seq), (deadline, value));
        self.keys.insert(self.seq, t);
        TimerKey(self.seq)
    }
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let t = self.keys.remove(&key.0)?;
        self.map.remove(&(t, key.0)).map(|v| v.1)
    }
    pub fn next_deadline(&self) -> Option<Instant> {
        self.map
            .keys()
            .next()
            .map(|(t, _)| self.origin + Duration::from_millis(*t))
    }
    pub fn poll(&mut self, now: Instant) -> Option<(Instant, T)> {
        let n = (now.saturating_duration_since(self.origin).as_nanos() / 1_000_000) as u64;
        let (&k, _) = self.map.iter().next()?;
        if k.0 > n {
            return None;
        }
        self.keys.remove(&k.1);
        self.map.remove(&k)
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
