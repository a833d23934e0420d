//! Typed handles of registered states. A handle is what an operator keeps:
//! the state's index in the backend, its types, its time to live, and for
//! reducing and aggregating state the function that folds values in.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

/// Time-to-live of a state's entries (Flink's `StateTtlConfig`): an entry not
/// written for `time_to_live` (processing time) is invisible to reads and is
/// left out of full snapshots. Expired values are never returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateTtl {
    /// How long an entry lives after its last write.
    pub time_to_live: Duration,
    /// Whether reads also restart the entry's time to live.
    pub refresh_on_read: bool,
}

impl StateTtl {
    /// Entries expire `time_to_live` after their last write.
    pub fn new(time_to_live: Duration) -> Self {
        Self { time_to_live, refresh_on_read: false }
    }

    /// Reads restart the time to live too.
    pub fn refresh_on_read(mut self) -> Self {
        self.refresh_on_read = true;
        self
    }

    /// The time to live in milliseconds, saturating.
    pub(super) fn millis(self) -> i64 {
        i64::try_from(self.time_to_live.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The kinds of keyed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateKind {
    /// One value per key and namespace.
    Value,
    /// A list of values per key and namespace.
    List,
    /// A map per key and namespace, stored entry by entry.
    Map,
    /// One value per key and namespace that added values are reduced into.
    Reducing,
    /// One accumulator per key and namespace that added inputs are aggregated into.
    Aggregating,
}

/// Folds inputs into an accumulator and reads results from it (Flink's `AggregateFunction`).
pub trait AggregateFunction: Send + Sync + 'static {
    /// The input that `add` folds in, one per `aggregating_add`.
    type In;
    /// The accumulator kept in state per key and namespace (it must be a
    /// `StateValue` for the state to be registered).
    type Acc;
    /// What `aggregating_get` returns, computed from the accumulator.
    type Out;
    /// The accumulator of a key and namespace that have none yet.
    fn create_accumulator(&self) -> Self::Acc;
    /// Folds one input into the accumulator, in place.
    fn add(&self, accumulator: &mut Self::Acc, input: Self::In);
    /// The result so far; computed on every read, the accumulator is kept.
    fn result(&self, accumulator: &Self::Acc) -> Self::Out;
    /// Combines two accumulators (merging windows).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// What every handle tells the backend.
pub trait StateHandle {
    /// The namespace type (`()` for state outside windows).
    type Namespace;
    /// The state's position among its backend's registered states; it means
    /// nothing to another backend, or to this one after a restore.
    fn index(&self) -> usize;
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident<$($param:ident),*>) => {
        $(#[$doc])*
        pub struct $name<N, $($param),*> {
            pub(super) index: usize,
            pub(super) ttl: Option<StateTtl>,
            pub(super) marker: PhantomData<fn() -> (N, $($param),*)>,
        }

        impl<N, $($param),*> Clone for $name<N, $($param),*> {
            fn clone(&self) -> Self {
                Self { index: self.index, ttl: self.ttl, marker: PhantomData }
            }
        }

        impl<N, $($param),*> std::fmt::Debug for $name<N, $($param),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).field("index", &self.index).finish()
            }
        }

        impl<N, $($param),*> StateHandle for $name<N, $($param),*> {
            type Namespace = N;
            fn index(&self) -> usize {
                self.index
            }
        }
    };
}

handle!(
    /// Handle of a value state: one `V` per key and namespace `N`.
    ValueState<V>
);
handle!(
    /// Handle of a list state: a list of `V` per key and namespace `N`.
    ListState<V>
);
handle!(
    /// Handle of a map state: a map from `UK` to `UV` per key and namespace `N`.
    MapState<UK, UV>
);

/// Reduces two values into one.
pub type ReduceFn<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;

/// Handle of a reducing state: one `V` per key and namespace `N`, and the
/// function that reduces added values into it.
pub struct ReducingState<N, V> {
    pub(super) index: usize,
    pub(super) ttl: Option<StateTtl>,
    pub(super) reduce: ReduceFn<V>,
    pub(super) marker: PhantomData<fn() -> N>,
}

impl<N, V> Clone for ReducingState<N, V> {
    fn clone(&self) -> Self {
        Self { index: self.index, ttl: self.ttl, reduce: self.reduce.clone(), marker: PhantomData }
    }
}

impl<N, V> std::fmt::Debug for ReducingState<N, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReducingState").field("index", &self.index).finish()
    }
}

impl<N, V> StateHandle for ReducingState<N, V> {
    type Namespace = N;
    fn index(&self) -> usize {
        self.index
    }
}

/// Handle of an aggregating state: one `F::Acc` per key and namespace `N`,
/// and the function `F` that adds inputs to it.
pub struct AggregatingState<N, F> {
    pub(super) index: usize,
    pub(super) ttl: Option<StateTtl>,
    pub(super) function: Arc<F>,
    pub(super) marker: PhantomData<fn() -> N>,
}

impl<N, F> Clone for AggregatingState<N, F> {
    fn clone(&self) -> Self {
        Self { index: self.index, ttl: self.ttl, function: self.function.clone(), marker: PhantomData }
    }
}

impl<N, F> std::fmt::Debug for AggregatingState<N, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatingState").field("index", &self.index).finish()
    }
}

impl<N, F> StateHandle for AggregatingState<N, F> {
    type Namespace = N;
    fn index(&self) -> usize {
        self.index
    }
}
