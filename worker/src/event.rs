//! What travels on a channel: records in batches and, in the same stream, the
//! control events whose position among the records matters (watermarks,
//! checkpoint barriers, end of partition).

use std::any::Any;

use serde::Serialize;
use serde::de::DeserializeOwned;
use weir_common::CheckpointId;

/// One event on a channel between two tasks.
#[derive(Debug)]
pub enum Event {
    /// A batch of records.
    Records(Batch),
    /// Event-time progress of the sender.
    Watermark(Watermark),
    /// Checkpoint barrier: the records before it belong to the checkpoint.
    Barrier(Barrier),
    /// The sender has finished; nothing follows on this channel.
    EndOfPartition,
}

/// Event-time progress of a stream, sent in-band between its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watermark {
    /// No record with an event time (milliseconds) at or below this one will
    /// follow, except late ones.
    At(i64),
    /// The stream has no data for now: it must not hold back event time
    /// downstream until it sends a watermark again (Flink's `IDLE` status).
    Idle,
}

impl Watermark {
    /// The watermark of an ended stream: every event-time window may fire.
    pub const END: Self = Self::At(i64::MAX);
}

/// A checkpoint barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    /// The checkpoint the barrier separates: records before it are in its snapshot.
    pub id: CheckpointId,
    /// Savepoints are self-contained: full snapshots in their own directory.
    pub savepoint: bool,
}

/// Marks a record without an event-time timestamp.
pub const NO_TIMESTAMP: i64 = i64::MIN;

/// A batch of records of a type that only the typed layer knows, with their
/// event-time timestamps when they have any.
///
/// Inside one process a batch is a `Vec<T>` behind `dyn Any`: handing it over
/// costs one pointer, and the receiving operator downcasts it once per batch.
pub struct Batch {
    records: Box<dyn Any + Send>,
    len: usize,
    /// One per record ([`NO_TIMESTAMP`] for records without one), or `None`
    /// when no record of the batch has a timestamp.
    timestamps: Option<Vec<i64>>,
    /// How to serialize `records`, for batches that may leave the process.
    encoder: Option<Encoder>,
}

/// Serializes the `Vec<T>` behind a batch's `dyn Any` (postcard).
type Encoder = fn(&(dyn Any + Send), &mut Vec<u8>) -> Result<(), String>;

/// Records that arrived from another process, still serialized: the
/// consuming task decodes them (it knows their type), off the network thread.
struct EncodedRecords(bytes::Bytes);

fn encode_vec<T: Serialize + 'static>(records: &(dyn Any + Send), out: &mut Vec<u8>) -> Result<(), String> {
    let records = records.downcast_ref::<Vec<T>>().ok_or("a batch's encoder does not match its records")?;
    // Most records encode to at most their size in memory: one allocation.
    out.reserve(records.len() * std::mem::size_of::<T>() + 16);
    let encoded = postcard::to_extend(records, std::mem::take(out)).map_err(|error| error.to_string())?;
    *out = encoded;
    Ok(())
}

impl Batch {
    /// Wraps the records of one batch, none of which has a timestamp.
    pub fn new<T: Send + 'static>(records: Vec<T>) -> Self {
        let len = records.len();
        Self { records: Box::new(records), len, timestamps: None, encoder: None }
    }

    /// Wraps records with one timestamp each.
    ///
    /// # Panics
    /// If the lengths differ: that is a bug in the writer, not bad input.
    pub fn with_timestamps<T: Send + 'static>(records: Vec<T>, timestamps: Vec<i64>) -> Self {
        assert_eq!(records.len(), timestamps.len(), "one timestamp per record");
        let len = records.len();
        Self { records: Box::new(records), len, timestamps: Some(timestamps), encoder: None }
    }

    /// A batch that can be sent to another process: it knows how to
    /// serialize its records. Timestamps, when given, are one per record.
    ///
    /// # Panics
    /// If the lengths differ: that is a bug in the writer, not bad input.
    pub fn serializable<T: Serialize + Send + 'static>(records: Vec<T>, timestamps: Option<Vec<i64>>) -> Self {
        if let Some(timestamps) = &timestamps {
            assert_eq!(records.len(), timestamps.len(), "one timestamp per record");
        }
        let len = records.len();
        Self { records: Box::new(records), len, timestamps, encoder: Some(encode_vec::<T>) }
    }

    /// A batch received from another process: `bytes` is the postcard
    /// encoding of `len` records.
    pub fn encoded(bytes: impl Into<bytes::Bytes>, len: usize, timestamps: Option<Vec<i64>>) -> Self {
        Self { records: Box::new(EncodedRecords(bytes.into())), len, timestamps, encoder: None }
    }

    /// Appends the serialized records to `out`.
    pub fn encode_records(&self, out: &mut Vec<u8>) -> Result<(), String> {
        if let Some(EncodedRecords(bytes)) = self.records.downcast_ref::<EncodedRecords>() {
            out.extend_from_slice(bytes);
            return Ok(());
        }
        let encoder = self.encoder.ok_or("the records of this batch have no serialized form")?;
        encoder(self.records.as_ref(), out)
    }

    /// The records' timestamps, if any record has one.
    pub fn timestamps(&self) -> Option<&[i64]> {
        self.timestamps.as_deref()
    }

    /// The records as `T`s: moved out when they were made in this process,
    /// decoded when they came from another one.
    pub fn into_data<T: DeserializeOwned + 'static>(self) -> Result<Vec<T>, String> {
        let len = self.len;
        match self.records.downcast::<Vec<T>>() {
            Ok(records) => Ok(*records),
            Err(records) => match records.downcast::<EncodedRecords>() {
                Ok(encoded) => {
                    let records = postcard::from_bytes::<Vec<T>>(&encoded.0).map_err(|error| {
                        format!(
                            "a batch from another process does not decode as {}: {error}",
                            std::any::type_name::<T>()
                        )
                    })?;
                    if records.len() != len {
                        return Err(format!(
                            "a batch from another process holds {} records, its frame says {len}",
                            records.len()
                        ));
                    }
                    Ok(records)
                }
                Err(_) => {
                    Err(format!("received a batch of an unexpected type; expected {}", std::any::type_name::<T>()))
                }
            },
        }
    }

    /// Takes the timestamps out of the batch (`None`: no record has one).
    pub fn take_timestamps(&mut self) -> Option<Vec<i64>> {
        self.timestamps.take()
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
            Err(records) => Err(Self { records, len, timestamps: None, encoder: None }),
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
    fn timestamps_travel_with_the_batch() {
        let mut batch = Batch::with_timestamps(vec!['a', 'b'], vec![5, NO_TIMESTAMP]);
        assert_eq!(batch.take_timestamps(), Some(vec![5, NO_TIMESTAMP]));
        assert_eq!(batch.take_timestamps(), None);
        assert_eq!(Batch::new(vec![1u8]).take_timestamps(), None);
    }

    #[test]
    fn serializable_batches_survive_encoding() {
        let batch = Batch::serializable(vec![("a".to_owned(), 1u64), ("bc".to_owned(), 2)], Some(vec![7, 8]));
        let mut bytes = Vec::new();
        batch.encode_records(&mut bytes).expect("encodes");
        let received = Batch::encoded(bytes, batch.len(), batch.timestamps().map(<[i64]>::to_vec));
        assert_eq!(received.timestamps(), Some(&[7, 8][..]));
        let records: Vec<(String, u64)> = received.into_data().expect("decodes");
        assert_eq!(records, vec![("a".to_owned(), 1), ("bc".to_owned(), 2)]);
        let plain = Batch::new(vec![1u8]);
        assert!(plain.encode_records(&mut Vec::new()).is_err(), "a plain batch has no serialized form");
        let wrong = Batch::encoded(vec![0xff, 0xff], 1, None).into_data::<String>();
        assert!(wrong.expect_err("garbage").contains("does not decode"));
        let mut two = Vec::new();
        Batch::serializable(vec![1u8, 2], None).encode_records(&mut two).expect("encodes");
        let short = Batch::encoded(two, 3, None).into_data::<u8>();
        assert!(short.expect_err("count mismatch").contains("holds 2 records, its frame says 3"));
    }

    #[test]
    fn batch_downcasts_to_its_own_type_only() {
        let batch = Batch::new(vec![1u32, 2, 3]);
        assert_eq!(batch.len(), 3);
        let batch = batch.into_records::<String>().expect_err("not strings");
        assert_eq!(batch.into_records::<u32>().expect("u32s"), vec![1, 2, 3]);
    }
}
