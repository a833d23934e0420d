//! Typed handles of registered states. A handle is what an operator keeps:
//! the state's index in the backend, its types, and for reducing and
//! aggregating state the function that folds values in.

use std::marker::PhantomData;
use std::sync::Arc;

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
    /// What is added.
    type In;
    /// What is stored.
    type Acc;
    /// What is read.
    type Out;
    /// An empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one input.
    fn add(&self, accumulator: &mut Self::Acc, input: Self::In);
    /// The result of an accumulator.
    fn result(&self, accumulator: &Self::Acc) -> Self::Out;
    /// Combines two accumulators (merging windows).
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// What every handle tells the backend.
pub trait StateHandle {
    /// The namespace type (`()` for state outside windows).
    type Namespace;
    /// Index of the state in its backend.
    fn index(&self) -> usize;
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident<$($param:ident),*>) => {
        $(#[$doc])*
        pub struct $name<N, $($param),*> {
            pub(super) index: usize,
            pub(super) marker: PhantomData<fn() -> (N, $($param),*)>,
        }

        impl<N, $($param),*> Clone for $name<N, $($param),*> {
            fn clone(&self) -> Self {
                Self { index: self.index, marker: PhantomData }
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
    /// A registered value state.
    ValueState<V>
);
handle!(
    /// A registered list state.
    ListState<V>
);
handle!(
    /// A registered map state.
    MapState<UK, UV>
);

/// Reduces two values into one.
pub type ReduceFn<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;

/// A registered reducing state.
pub struct ReducingState<N, V> {
    pub(super) index: usize,
    pub(super) reduce: ReduceFn<V>,
    pub(super) marker: PhantomData<fn() -> N>,
}

impl<N, V> Clone for ReducingState<N, V> {
    fn clone(&self) -> Self {
        Self { index: self.index, reduce: self.reduce.clone(), marker: PhantomData }
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

/// A registered aggregating state.
pub struct AggregatingState<N, F> {
    pub(super) index: usize,
    pub(super) function: Arc<F>,
    pub(super) marker: PhantomData<fn() -> N>,
}

impl<N, F> Clone for AggregatingState<N, F> {
    fn clone(&self) -> Self {
        Self { index: self.index, function: self.function.clone(), marker: PhantomData }
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
