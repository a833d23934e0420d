//! A bounded source over an in-memory collection.

use std::sync::Arc;

use weir_worker::TaskError;

use super::strided::StridedSplits;
use super::{ReadStatus, Source, SourceReader};
use crate::Data;
use crate::operators::OperatorContext;
use crate::push::Push;

/// Emits the elements of a collection; subtask `i` of `n` emits the elements
/// at positions `i, i + n, i + 2n, …`. Replayable: a checkpoint records each
/// subtask's next position.
pub struct CollectionSource<T> {
    records: Arc<Vec<T>>,
}

impl<T> CollectionSource<T> {
    /// A source over `records`.
    pub fn new(records: impl IntoIterator<Item = T>) -> Self {
        Self { records: Arc::new(records.into_iter().collect()) }
    }
}

impl<T: Data + Sync> Source for CollectionSource<T> {
    type Output = T;

    fn name(&self) -> String {
        "Source: Collection".into()
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn create_reader(&self, context: &OperatorContext) -> Result<Box<dyn SourceReader<T>>, TaskError> {
        let splits = StridedSplits::for_subtask(context, self.records.len() as u64)?;
        Ok(Box::new(CollectionReader { records: self.records.clone(), splits }))
    }
}

struct CollectionReader<T> {
    records: Arc<Vec<T>>,
    splits: StridedSplits,
}

impl<T: Data + Sync> SourceReader<T> for CollectionReader<T> {
    fn read(&mut self, out: &mut dyn Push<T>, max: usize) -> Result<ReadStatus, TaskError> {
        for _ in 0..max {
            let Some(record) = self.splits.next_index().and_then(|index| self.records.get(index as usize)) else {
                return Ok(ReadStatus::Finished);
            };
            out.push(record.clone())?;
        }
        Ok(if self.splits.is_finished() { ReadStatus::Finished } else { ReadStatus::More })
    }

    fn snapshot(&mut self) -> Result<Vec<Vec<u8>>, TaskError> {
        Ok(self.splits.snapshot())
    }
}
