//! What travels on a channel: records in batches and, in the same stream, the
//! control events whose position among the records matters (watermarks,
//! checkpoint barriers, end of partition).

use std::any::Any;

use weir_common::CheckpointId;

/// One event on a channel between two tasks.
#[derive(Debug)]
pub enum Event {
    /// A batch of records.
    Records(Batch),
    /// No record with a smaller event time (milliseconds) will follow.
    Watermark(i64),
    /// Checkpoint barrier: the records before it belong to the checkpoint.
    Barrier(CheckpointId),
    /// The sender has finished; nothing follows on this channel.
    EndOfPartition,
}

/// A batch of records of a type that only the typed layer knows.
///
/// Inside one process a batch is a `Vec<T>` behind `dyn Any`: handing it over
/// costs one pointer, and the receiving operator downcasts it once per batch.
pub struct Batch {
    records: Box<dyn Any + Send>,
    len: usize,
}

impl Batch {
    /// Wraps the records of one batch.
    pub fn new<T: Send + 'static>(records: Vec<T>) -> Self {
        let len = records.len();
        Self { records: Box::new(records), len }
    }

    /// Number of records in the batch.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, if they are `T`s; the batch back otherwise.
    pub fn into_records<T: 'static>(self) -> Result<Vec<T>, Self> {
        let len = self.len;
        match self.records.downcast::<Vec<T>>() {
            Ok(records) => Ok(*records),
            Err(records) => Err(Self { records, len }),
        }
    }
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Batch({} records)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_downcasts_to_its_own_type_only() {
        let batch = Batch::new(vec![1u32, 2, 3]);
        assert_eq!(batch.len(), 3);
        let batch = batch.into_records::<String>().expect_err("not strings");
        assert_eq!(batch.into_records::<u32>().expect("u32s"), vec![1, 2, 3]);
    }
}
