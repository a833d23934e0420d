//! Key groups: the unit in which keyed state is partitioned, snapshotted and
//! redistributed on rescaling (Flink's `KeyGroupRangeAssignment`).
//!
//! The job's max parallelism fixes the number of key groups for the job's whole
//! life. A key's group is a hash of its serialized bytes modulo that number, and
//! subtask `i` of `n` owns one contiguous range of groups, so changing `n` only
//! moves whole groups between subtasks.

use std::fmt;

use serde::Serialize;

/// The largest max parallelism: key groups are stored in two bytes, and Flink
/// uses the same bound (2^15).
pub const UPPER_BOUND_MAX_PARALLELISM: usize = 1 << 15;

/// Max parallelism when a job sets none.
pub const DEFAULT_MAX_PARALLELISM: usize = 128;

/// The number of key groups of a job; always in `1..=UPPER_BOUND_MAX_PARALLELISM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaxParallelism(usize);

impl MaxParallelism {
    /// Checks the bound; `None` when `value` is 0 or above 2^15.
    pub fn new(value: usize) -> Option<Self> {
        (1..=UPPER_BOUND_MAX_PARALLELISM).contains(&value).then_some(Self(value))
    }

    /// The number of key groups.
    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for MaxParallelism {
    fn default() -> Self {
        Self(DEFAULT_MAX_PARALLELISM)
    }
}

/// One key group, `0..max_parallelism`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyGroup(pub u16);

impl KeyGroup {
    /// The key group of a key hash: both halves of the hash folded into 32
    /// bits, modulo the max parallelism (a 32-bit division is about twice as
    /// fast as a 64-bit one, and this runs twice per keyed record).
    #[inline]
    pub fn of_hash(hash: u64, max: MaxParallelism) -> Self {
        let folded = (hash as u32) ^ ((hash >> 32) as u32);
        // The cast cannot truncate: max <= 2^15.
        Self((folded % max.0 as u32) as u16)
    }

    /// The key group of a key: its serialized form (postcard) hashed with XXH3.
    ///
    /// Hashing the serialized bytes, not `std::hash::Hash`, keeps the assignment
    /// stable across Rust versions and processes, which restored state relies on.
    /// `scratch` is reused between calls to avoid an allocation per record.
    pub fn of_key<K: Serialize + ?Sized>(
        key: &K,
        max: MaxParallelism,
        scratch: &mut Vec<u8>,
    ) -> Result<Self, KeyEncodingError> {
        Ok(Self::of_hash(hash_key(key, scratch)?, max))
    }

    /// The subtask (out of `parallelism`) that owns this key group.
    pub fn operator_index(self, max: MaxParallelism, parallelism: usize) -> usize {
        usize::from(self.0) * parallelism / max.0
    }
}

/// The XXH3 hash of a key's postcard encoding.
pub fn hash_key<K: Serialize + ?Sized>(key: &K, scratch: &mut Vec<u8>) -> Result<u64, KeyEncodingError> {
    // Most keys are small: encode them on the stack, and only larger ones
    // into the reused heap buffer.
    let mut small = [0u8; 64];
    match postcard::to_slice(key, &mut small) {
        Ok(encoded) => return Ok(xxhash_rust::xxh3::xxh3_64(encoded)),
        Err(postcard::Error::SerializeBufferFull) => {}
        Err(source) => return Err(KeyEncodingError { source }),
    }
    scratch.clear();
    postcard::to_io(key, &mut *scratch).map_err(|source| KeyEncodingError { source })?;
    Ok(xxhash_rust::xxh3::xxh3_64(scratch))
}

/// A key whose `Serialize` implementation failed (postcard cannot encode, for
/// example, sequences of unknown length), so it has no key group.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serialize the key to compute its key group: {source}; keys must serialize with serde to a self-contained value"
)]
pub struct KeyEncodingError {
    /// What the encoder reported.
    #[source]
    pub source: postcard::Error,
}

/// A contiguous, inclusive range of key groups owned by one subtask.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyGroupRange {
    /// First key group of the range.
    pub start: u16,
    /// Number of key groups in the range (may be 0 when parallelism > max parallelism).
    pub len: u16,
}

impl KeyGroupRange {
    /// The range owned by subtask `index` of `parallelism`: Flink's
    /// `computeKeyGroupRangeForOperatorIndex`, the inverse of
    /// [`KeyGroup::operator_index`].
    pub fn for_subtask(max: MaxParallelism, parallelism: usize, index: usize) -> Self {
        assert!(parallelism >= 1 && index < parallelism, "subtask {index} of {parallelism}");
        let max = max.0;
        let start = (index * max).div_ceil(parallelism);
        let end_exclusive = ((index + 1) * max - 1) / parallelism + 1;
        let len = end_exclusive.saturating_sub(start);
        // Both fit: start <= max <= 2^15.
        Self { start: start as u16, len: len as u16 }
    }

    /// Whether `group` lies in the range.
    pub fn contains(self, group: KeyGroup) -> bool {
        group.0 >= self.start && group.0 - self.start < self.len
    }

    /// The position of `group` inside the range, for dense per-group storage.
    pub fn offset_of(self, group: KeyGroup) -> Option<usize> {
        self.contains(group).then(|| usize::from(group.0 - self.start))
    }

    /// The key groups of the range in ascending order.
    pub fn iter(self) -> impl Iterator<Item = KeyGroup> {
        (self.start..self.start + self.len).map(KeyGroup)
    }
}

impl fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 0 { write!(f, "[]") } else { write!(f, "[{}..={}]", self.start, self.start + self.len - 1) }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn max(value: usize) -> MaxParallelism {
        MaxParallelism::new(value).expect("valid max parallelism")
    }

    #[test]
    fn bounds_of_max_parallelism() {
        assert!(MaxParallelism::new(0).is_none());
        assert!(MaxParallelism::new(UPPER_BOUND_MAX_PARALLELISM + 1).is_none());
        assert_eq!(MaxParallelism::default().get(), 128);
    }

    #[test]
    fn flink_reference_ranges() {
        // Values from Flink's KeyGroupRangeAssignment for maxParallelism 128, parallelism 3.
        let ranges: Vec<_> = (0..3).map(|i| KeyGroupRange::for_subtask(max(128), 3, i)).collect();
        assert_eq!(ranges[0], KeyGroupRange { start: 0, len: 43 });
        assert_eq!(ranges[1], KeyGroupRange { start: 43, len: 43 });
        assert_eq!(ranges[2], KeyGroupRange { start: 86, len: 42 });
    }

    #[test]
    fn ranges_tile_all_groups_for_every_parallelism() {
        for max_par in [1, 2, 7, 128, 300] {
            for parallelism in 1..=max_par {
                let mut next = 0u16;
                for index in 0..parallelism {
                    let range = KeyGroupRange::for_subtask(max(max_par), parallelism, index);
                    assert_eq!(range.start, next, "gap or overlap at subtask {index}/{parallelism}, max {max_par}");
                    for group in range.iter() {
                        assert_eq!(group.operator_index(max(max_par), parallelism), index);
                    }
                    next = range.start + range.len;
                }
                assert_eq!(usize::from(next), max_par);
            }
        }
    }

    proptest! {
        #[test]
        fn small_and_large_keys_hash_their_full_encoding(key in ".{0,200}") {
            let mut scratch = Vec::new();
            let expected = xxhash_rust::xxh3::xxh3_64(&postcard::to_stdvec(&key).expect("encodes"));
            prop_assert_eq!(hash_key(&key, &mut scratch).expect("encodes"), expected);
        }

        #[test]
        fn every_key_lands_in_the_range_of_its_subtask(
            key in ".*", max_par in 1usize..=1024, parallelism_seed in 0usize..1024,
        ) {
            let parallelism = parallelism_seed % max_par + 1;
            let mut scratch = Vec::new();
            let group = KeyGroup::of_key(&key, max(max_par), &mut scratch).expect("strings serialize");
            prop_assert!(usize::from(group.0) < max_par);
            let owner = group.operator_index(max(max_par), parallelism);
            prop_assert!(KeyGroupRange::for_subtask(max(max_par), parallelism, owner).contains(group));
            // Same key, same group: the assignment is a pure function of the key.
            prop_assert_eq!(KeyGroup::of_key(&key, max(max_par), &mut scratch).expect("strings serialize"), group);
        }
    }
}
