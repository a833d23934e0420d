//! What a window keeps of its records in the keyed-state backend, under the
//! window as namespace: one accumulator (`reduce`, `aggregate`) or every
//! record (`process`).

use std::sync::Arc;

use weir_state::keyed::{AggregateFunction, KeyedStateBackend, ListState, StateError, StateKey, ValueState};

use crate::Data;
use crate::windows::TimeWindow;

/// What a window keeps of its records, in the keyed-state backend.
pub(crate) trait WindowContents<T>: Send {
    /// What the window function receives when the window fires.
    type Contents;
    /// Declares the state the contents live in; called once, before any other call.
    fn register<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<(), StateError>;
    /// Adds `record`; returns whether the window may have been empty before
    /// (then its cleanup timer must be set).
    fn add<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
        record: T,
    ) -> Result<bool, StateError>;
    /// The contents of `window` for the current key; `None` if it holds no records.
    fn get<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<Option<Self::Contents>, StateError>;
    /// Drops the contents of `window` for the current key.
    fn clear<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>, window: &TimeWindow)
    -> Result<(), StateError>;
    /// Moves the contents of `from` into `into` (session windows merging).
    fn merge<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        from: &[TimeWindow],
        into: &TimeWindow,
    ) -> Result<(), StateError>;
}

/// One accumulator per window (`reduce`, `aggregate`).
pub(crate) struct AggregateContents<F: AggregateFunction> {
    function: Arc<F>,
    state: Option<ValueState<TimeWindow, F::Acc>>,
}

impl<F: AggregateFunction> AggregateContents<F> {
    pub(crate) fn new(function: Arc<F>) -> Self {
        Self { function, state: None }
    }

    fn state(&self) -> Result<&ValueState<TimeWindow, F::Acc>, StateError> {
        self.state.as_ref().ok_or_else(unregistered)
    }
}

/// The contents' state was used before `register`: a bug in the operator.
fn unregistered() -> StateError {
    StateError::Incompatible { name: "window-contents".into(), message: "used before registration".into() }
}

impl<F> WindowContents<F::In> for AggregateContents<F>
where
    F: AggregateFunction,
    F::In: Send,
    F::Acc: Data,
{
    type Contents = F::Acc;

    fn register<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        self.state = Some(backend.register_value("window-contents")?);
        Ok(())
    }

    fn add<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
        record: F::In,
    ) -> Result<bool, StateError> {
        let function = &self.function;
        backend.update_value(self.state()?, window, |accumulator| {
            let created = accumulator.is_none();
            let mut accumulator = accumulator.unwrap_or_else(|| function.create_accumulator());
            function.add(&mut accumulator, record);
            (Some(accumulator), created)
        })
    }

    fn get<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<Option<F::Acc>, StateError> {
        backend.value(self.state()?, window)
    }

    fn clear<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<(), StateError> {
        backend.clear(self.state()?, window)
    }

    fn merge<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        from: &[TimeWindow],
        into: &TimeWindow,
    ) -> Result<(), StateError> {
        let state = self.state()?.clone();
        let mut merged = backend.value(&state, into)?;
        for window in from.iter().filter(|window| *window != into) {
            if let Some(accumulator) = backend.value(&state, window)? {
                merged = Some(match merged {
                    None => accumulator,
                    Some(so_far) => self.function.merge(so_far, accumulator),
                });
                backend.clear(&state, window)?;
            }
        }
        match merged {
            Some(accumulator) => backend.set_value(&state, into, accumulator),
            None => Ok(()),
        }
    }
}

/// Every record of the window (`process`).
pub(crate) struct ListContents<T> {
    state: Option<ListState<TimeWindow, T>>,
}

impl<T> ListContents<T> {
    pub(crate) fn new() -> Self {
        Self { state: None }
    }

    fn state(&self) -> Result<&ListState<TimeWindow, T>, StateError> {
        self.state.as_ref().ok_or_else(unregistered)
    }
}

impl<T: Data> WindowContents<T> for ListContents<T> {
    type Contents = Vec<T>;

    fn register<K: StateKey>(&mut self, backend: &mut KeyedStateBackend<K>) -> Result<(), StateError> {
        self.state = Some(backend.register_list("window-contents")?);
        Ok(())
    }

    fn add<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
        record: T,
    ) -> Result<bool, StateError> {
        backend.list_add(self.state()?, window, record)?;
        Ok(true)
    }

    fn get<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<Option<Vec<T>>, StateError> {
        let records = backend.list(self.state()?, window)?;
        Ok(Some(records).filter(|records| !records.is_empty()))
    }

    fn clear<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        window: &TimeWindow,
    ) -> Result<(), StateError> {
        backend.clear(self.state()?, window)
    }

    fn merge<K: StateKey>(
        &mut self,
        backend: &mut KeyedStateBackend<K>,
        from: &[TimeWindow],
        into: &TimeWindow,
    ) -> Result<(), StateError> {
        let state = self.state()?.clone();
        let mut merged = backend.list(&state, into)?;
        for window in from.iter().filter(|window| *window != into) {
            merged.extend(backend.list(&state, window)?);
            backend.clear(&state, window)?;
        }
        backend.list_set(&state, into, merged)
    }
}
