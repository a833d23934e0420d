//! `OutputTag`: names a side output of an operator (Flink's `OutputTag`).

use std::marker::PhantomData;
use std::sync::Arc;

/// Identifies a side output carrying records of type `T`, such as the late
/// records of a window or the alerts of a process function. Tags are equal
/// when their names are.
pub struct OutputTag<T> {
    id: u64,
    name: Arc<str>,
    marker: PhantomData<fn() -> T>,
}

impl<T> Clone for OutputTag<T> {
    fn clone(&self) -> Self {
        Self { id: self.id, name: self.name.clone(), marker: PhantomData }
    }
}

impl<T> std::fmt::Debug for OutputTag<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputTag({})", self.name)
    }
}

impl<T> OutputTag<T> {
    /// A tag named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        let name: String = name.into();
        Self { id: xxhash_rust::xxh3::xxh3_64(name.as_bytes()), name: Arc::from(name), marker: PhantomData }
    }

    /// The tag's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}
