//! Collects records into memory and hands them to the program after
//! `execute` returns: the sink for tests and small results.
//!
//! It works with the local runtime only, where the job runs in the calling
//! process.

use std::sync::{Arc, Mutex, PoisonError};

use weir_worker::TaskError;

use crate::push::{ChainLink, Push};

/// The records a collect sink received, available once `execute` has returned.
#[derive(Debug)]
pub struct CollectHandle<T> {
    shared: Arc<Mutex<Vec<T>>>,
}

impl<T> Clone for CollectHandle<T> {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone() }
    }
}

impl<T> CollectHandle<T> {
    pub(crate) fn new() -> Self {
        Self { shared: Arc::new(Mutex::new(Vec::new())) }
    }

    /// Takes the collected records, in no particular order across subtasks.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.shared.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(crate) fn sink(&self) -> CollectSink<T> {
        CollectSink { shared: self.shared.clone(), local: Vec::new() }
    }
}

/// One subtask's share: buffered locally, handed over at flush and finish.
pub(crate) struct CollectSink<T> {
    shared: Arc<Mutex<Vec<T>>>,
    local: Vec<T>,
}

impl<T: Send> Push<T> for CollectSink<T> {
    fn push(&mut self, record: T) -> Result<(), TaskError> {
        self.local.push(record);
        Ok(())
    }
}

impl<T: Send> ChainLink for CollectSink<T> {
    fn next(&mut self) -> Option<&mut dyn ChainLink> {
        None
    }

    fn flush(&mut self) -> Result<(), TaskError> {
        if !self.local.is_empty() {
            self.shared.lock().unwrap_or_else(PoisonError::into_inner).append(&mut self.local);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), TaskError> {
        self.flush()
    }
}
