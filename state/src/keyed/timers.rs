//! Timers per key and namespace, in event time and processing time (Flink's
//! `InternalTimerService`). They live on the heap for both backends and go
//! into every snapshot, per key group, so they survive restore and rescaling
//! like any other keyed state.
//!
//! Snapshot entries: state name `\u{1}timers:<service>:<domain>`, key
//! `postcard(key) postcard(namespace) postcard(timestamp)`, empty value.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;

use hashbrown::HashSet;
use weir_common::{KeyGroup, MaxParallelism};

use super::registration::check_name;
use super::snapshot::SnapshotWriter;
use super::{KeyedStateBackend, StateError, StateKey, StateNamespace};

/// Marks snapshot entries that belong to timers; no user state name starts with it.
pub(super) const TIMER_PREFIX: &str = "\u{1}timers:";

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeDomain {
    /// Fires when the watermark passes the timestamp.
    EventTime,
    /// Fires when the wall clock passes the timestamp.
    ProcessingTime,
}

impl TimeDomain {
    fn label(self) -> &'static str {
        match self {
            Self::EventTime => "event",
            Self::ProcessingTime => "processing",
        }
    }
}

/// A timer that is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timer<K, N> {
    /// When it was set to fire (milliseconds).
    pub timestamp: i64,
    /// The key that was current when the timer was set.
    pub key: K,
    /// The namespace it was set in (for window operators, the window).
    pub namespace: N,
}

/// Handle of a timer service, whose timers carry a namespace `N`.
pub struct TimerService<N> {
    pub(super) index: usize,
    marker: PhantomData<fn() -> N>,
}

impl<N> Clone for TimerService<N> {
    fn clone(&self) -> Self {
        Self { index: self.index, marker: PhantomData }
    }
}

impl<N> std::fmt::Debug for TimerService<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerService").field("index", &self.index).finish()
    }
}

/// Timers of one domain, ordered by timestamp; one timer per (timestamp, key, namespace).
pub(super) struct TimerQueue<K, N> {
    by_time: BTreeMap<i64, HashSet<(K, N)>>,
}

impl<K: StateKey, N: StateNamespace> TimerQueue<K, N> {
    fn new() -> Self {
        Self { by_time: BTreeMap::new() }
    }

    pub(super) fn insert(&mut self, timestamp: i64, key: K, namespace: N) {
        self.by_time.entry(timestamp).or_default().insert((key, namespace));
    }

    pub(super) fn remove(&mut self, timestamp: i64, key: K, namespace: N) {
        if let Some(at) = self.by_time.get_mut(&timestamp) {
            at.remove(&(key, namespace));
            if at.is_empty() {
                self.by_time.remove(&timestamp);
            }
        }
    }

    /// Removes and returns every timer at or before `limit`, earliest first.
    pub(super) fn pop_until(&mut self, limit: i64) -> Vec<Timer<K, N>> {
        let mut due = Vec::new();
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() > limit {
                break;
            }
            let (timestamp, timers) = entry.remove_entry();
            due.extend(timers.into_iter().map(|(key, namespace)| Timer { timestamp, key, namespace }));
        }
        due
    }

    pub(super) fn next(&self) -> Option<i64> {
        self.by_time.keys().next().copied()
    }
}

/// Both queues of one service.
struct Queues<K, N> {
    event: TimerQueue<K, N>,
    processing: TimerQueue<K, N>,
}

impl<K: StateKey, N: StateNamespace> Queues<K, N> {
    fn of(&mut self, domain: TimeDomain) -> &mut TimerQueue<K, N> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }
}

/// What the service registry needs without knowing `N`.
trait ErasedQueues<K>: Send {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn write_snapshot(&self, name: &str, writer: &mut SnapshotWriter, max: MaxParallelism) -> Result<(), String>;
    fn insert_encoded(&mut self, domain: TimeDomain, key: &[u8]) -> Result<(), String>;
}

impl<K: StateKey, N: StateNamespace> ErasedQueues<K> for Queues<K, N> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn write_snapshot(&self, name: &str, writer: &mut SnapshotWriter, max: MaxParallelism) -> Result<(), String> {
        let mut scratch = Vec::new();
        let mut bytes = Vec::new();
        for (domain, queue) in [(TimeDomain::EventTime, &self.event), (TimeDomain::ProcessingTime, &self.processing)] {
            let state = writer.state_index(&entry_name(name, domain));
            for (timestamp, timers) in &queue.by_time {
                for (key, namespace) in timers {
                    let group = KeyGroup::of_key(key, max, &mut scratch).map_err(|error| error.to_string())?;
                    bytes.clear();
                    for encoded in [
                        postcard::to_io(key, &mut bytes).map(|_| ()),
                        postcard::to_io(namespace, &mut bytes).map(|_| ()),
                        postcard::to_io(timestamp, &mut bytes).map(|_| ()),
                    ] {
                        encoded.map_err(|error| format!("a timer does not serialize: {error}"))?;
                    }
                    writer.add(group, state, &bytes, &[]);
                }
            }
        }
        Ok(())
    }

    fn insert_encoded(&mut self, domain: TimeDomain, bytes: &[u8]) -> Result<(), String> {
        let decoded = (|| {
            let (key, rest) = postcard::take_from_bytes::<K>(bytes)?;
            let (namespace, rest) = postcard::take_from_bytes::<N>(rest)?;
            let (timestamp, rest) = postcard::take_from_bytes::<i64>(rest)?;
            Ok::<_, postcard::Error>((key, namespace, timestamp, rest.is_empty()))
        })();
        match decoded {
            Ok((key, namespace, timestamp, true)) => {
                self.of(domain).insert(timestamp, key, namespace);
                Ok(())
            }
            Ok(_) => Err("a timer has bytes left over: its key or namespace type changed".into()),
            Err(error) => Err(format!("a timer does not decode: {error}")),
        }
    }
}

fn entry_name(service: &str, domain: TimeDomain) -> String {
    format!("{TIMER_PREFIX}{service}:{}", domain.label())
}

/// Every timer service of one task.
pub(super) struct Timers<K> {
    names: Vec<String>,
    services: Vec<Box<dyn ErasedQueues<K>>>,
    /// Restored timers of services not registered yet: (domain, key group, encoded timer).
    pending: HashMap<String, Vec<(TimeDomain, KeyGroup, Vec<u8>)>>,
}

impl<K: StateKey> Timers<K> {
    pub(super) fn new() -> Self {
        Self { names: Vec::new(), services: Vec::new(), pending: HashMap::new() }
    }

    pub(super) fn register<N: StateNamespace>(&mut self, name: &str) -> Result<TimerService<N>, StateError> {
        let incompatible = |message: String| StateError::Incompatible { name: format!("timers {name}"), message };
        if let Some(index) = self.names.iter().position(|known| known == name) {
            if self.services[index].as_any_mut().downcast_mut::<Queues<K, N>>().is_none() {
                return Err(incompatible("registered again with another namespace type".into()));
            }
            return Ok(TimerService { index, marker: PhantomData });
        }
        let mut queues: Box<dyn ErasedQueues<K>> =
            Box::new(Queues::<K, N> { event: TimerQueue::new(), processing: TimerQueue::new() });
        // Restored timers leave `pending` only once all of them decoded.
        if let Some(timers) = self.pending.get(name) {
            for (domain, _, bytes) in timers {
                queues.insert_encoded(*domain, bytes).map_err(incompatible)?;
            }
            self.pending.remove(name);
        }
        self.names.push(name.to_owned());
        self.services.push(queues);
        Ok(TimerService { index: self.services.len() - 1, marker: PhantomData })
    }

    fn queues<N: StateNamespace>(&mut self, service: &TimerService<N>) -> Result<&mut Queues<K, N>, StateError> {
        let (Some(name), Some(queues)) = (self.names.get(service.index), self.services.get_mut(service.index)) else {
            return Err(StateError::Incompatible {
                name: format!("timers #{}", service.index),
                message: "this timer service was not registered with this backend".into(),
            });
        };
        queues.as_any_mut().downcast_mut::<Queues<K, N>>().ok_or_else(|| StateError::Incompatible {
            name: format!("timers {name}"),
            message: "used with another namespace type".into(),
        })
    }

    /// The queue of one domain of a registered service.
    pub(super) fn queue<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
    ) -> Result<&mut TimerQueue<K, N>, StateError> {
        Ok(self.queues(service)?.of(domain))
    }

    pub(super) fn write_snapshot(&self, writer: &mut SnapshotWriter, max: MaxParallelism) -> Result<(), StateError> {
        for (name, queues) in self.names.iter().zip(&self.services) {
            queues
                .write_snapshot(name, writer, max)
                .map_err(|message| StateError::Incompatible { name: format!("timers {name}"), message })?;
        }
        for (name, timers) in &self.pending {
            for (domain, group, bytes) in timers {
                let state = writer.state_index(&entry_name(name, *domain));
                writer.add(*group, state, bytes, &[]);
            }
        }
        Ok(())
    }

    /// Takes a snapshot entry if it is a timer; `false` leaves it to the state store.
    pub(super) fn restore_entry(&mut self, entry_name: &str, group: KeyGroup, key: &[u8]) -> Result<bool, StateError> {
        let Some(rest) = entry_name.strip_prefix(TIMER_PREFIX) else {
            return Ok(false);
        };
        let (service, domain) = match rest.rsplit_once(':') {
            Some((service, "event")) => (service, TimeDomain::EventTime),
            Some((service, "processing")) => (service, TimeDomain::ProcessingTime),
            _ => {
                return Err(StateError::Incompatible {
                    name: entry_name.to_owned(),
                    message: "unknown timer domain".into(),
                });
            }
        };
        match self.names.iter().position(|known| known == service) {
            Some(index) => self.services[index]
                .insert_encoded(domain, key)
                .map_err(|message| StateError::Incompatible { name: format!("timers {service}"), message })?,
            None => self.pending.entry(service.to_owned()).or_default().push((domain, group, key.to_vec())),
        }
        Ok(true)
    }
}

/// The timer API of the backend: timers are set and deleted for the current
/// key and fired across all keys.
impl<K: StateKey> KeyedStateBackend<K> {
    /// Declares a timer service (timers per key and namespace `N`).
    pub fn register_timer_service<N: StateNamespace>(&mut self, name: &str) -> Result<TimerService<N>, StateError> {
        check_name(name)?;
        self.timers.register(name)
    }

    /// Sets a timer for the current key; setting the same one twice keeps one.
    pub fn register_timer<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
        namespace: N,
        timestamp: i64,
    ) -> Result<(), StateError> {
        let key = self.current.as_ref().ok_or(StateError::NoCurrentKey)?.key.clone();
        self.timers.queue(service, domain)?.insert(timestamp, key, namespace);
        Ok(())
    }

    /// Deletes a timer of the current key, if set.
    pub fn delete_timer<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
        namespace: N,
        timestamp: i64,
    ) -> Result<(), StateError> {
        let key = self.current.as_ref().ok_or(StateError::NoCurrentKey)?.key.clone();
        self.timers.queue(service, domain)?.remove(timestamp, key, namespace);
        Ok(())
    }

    /// Removes and returns every timer of `domain` due at `time` (at or
    /// before it), earliest first, across all keys.
    pub fn fire_timers<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
        time: i64,
    ) -> Result<Vec<Timer<K, N>>, StateError> {
        Ok(self.timers.queue(service, domain)?.pop_until(time))
    }

    /// The earliest pending timer of `domain`.
    pub fn next_timer<N: StateNamespace>(
        &mut self,
        service: &TimerService<N>,
        domain: TimeDomain,
    ) -> Result<Option<i64>, StateError> {
        Ok(self.timers.queue(service, domain)?.next())
    }
}
