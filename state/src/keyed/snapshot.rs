//! The canonical full snapshot of keyed state: one section per key group,
//! each holding the entries of every state for that group as bytes
//! (`postcard(key)`, `postcard(value)`).
//!
//! Both backends write and read this format (timers too, under reserved
//! state names). A restoring task reads only the files whose key groups
//! overlap its own and decodes only its own groups' sections, so rescaling
//! is a matter of choosing files, never of rewriting them.
//!
//! Layout: `WEIRKS01`, a little-endian `u32` header length, the header
//! (postcard: max parallelism, key-group range, state names, and for each
//! key group its section's offset and length), then the sections. A section
//! is a sequence of entries: `u32` state index, `u32` key length, key, `u32`
//! value length, value (integers little-endian).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use weir_common::{KeyGroup, KeyGroupRange, MaxParallelism};

use super::StateError;
use crate::storage::{FileHandle, StoragePath};

const MAGIC: [u8; 8] = *b"WEIRKS01";

/// A snapshot of one task's keyed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyedSnapshot {
    /// The canonical format of this module: one file.
    Full {
        /// The snapshot file in checkpoint storage.
        file: FileHandle,
        /// The key groups the file holds.
        range: KeyGroupRange,
    },
    /// The files of a RocksDB checkpoint (see `keyed::incremental`).
    Incremental(crate::keyed::incremental::IncrementalSnapshot),
}

impl KeyedSnapshot {
    /// The key groups the snapshot holds.
    pub fn range(&self) -> KeyGroupRange {
        match self {
            Self::Full { range, .. } => *range,
            Self::Incremental(snapshot) => snapshot.range,
        }
    }
}

/// Whether two key-group ranges share a group.
pub(super) fn overlaps(a: KeyGroupRange, b: KeyGroupRange) -> bool {
    let (a_end, b_end) = (u32::from(a.start) + u32::from(a.len), u32::from(b.start) + u32::from(b.len));
    a.len > 0 && b.len > 0 && u32::from(a.start) < b_end && u32::from(b.start) < a_end
}

#[derive(Serialize, Deserialize)]
struct Header {
    max_parallelism: u32,
    range_start: u16,
    range_len: u16,
    states: Vec<String>,
    /// (key group, offset in the data, length)
    sections: Vec<(u16, u64, u64)>,
}

/// Collects entries, then lays out the snapshot file.
pub(super) struct SnapshotWriter {
    max_parallelism: MaxParallelism,
    range: KeyGroupRange,
    states: Vec<String>,
    sections: BTreeMap<u16, Vec<u8>>,
}

impl SnapshotWriter {
    pub(super) fn new(max_parallelism: MaxParallelism, range: KeyGroupRange) -> Self {
        Self { max_parallelism, range, states: Vec::new(), sections: BTreeMap::new() }
    }

    /// The index of state `name` in this snapshot, adding it if new.
    pub(super) fn state_index(&mut self, name: &str) -> u32 {
        match self.states.iter().position(|known| known == name) {
            Some(index) => index as u32,
            None => {
                self.states.push(name.to_owned());
                (self.states.len() - 1) as u32
            }
        }
    }

    /// Adds one entry of state `state` in key group `group`.
    pub(super) fn add(&mut self, group: KeyGroup, state: u32, key: &[u8], value: &[u8]) {
        let section = self.sections.entry(group.0).or_default();
        section.extend_from_slice(&state.to_le_bytes());
        section.extend_from_slice(&(key.len() as u32).to_le_bytes());
        section.extend_from_slice(key);
        section.extend_from_slice(&(value.len() as u32).to_le_bytes());
        section.extend_from_slice(value);
    }

    /// Lays out the file: magic, header length, header, then the sections
    /// in key-group order.
    pub(super) fn finish(self) -> Result<Vec<u8>, StateError> {
        let mut offset = 0u64;
        let mut sections = Vec::with_capacity(self.sections.len());
        for (group, bytes) in &self.sections {
            sections.push((*group, offset, bytes.len() as u64));
            offset += bytes.len() as u64;
        }
        let header = Header {
            max_parallelism: self.max_parallelism.get() as u32,
            range_start: self.range.start,
            range_len: self.range.len,
            states: self.states,
            sections,
        };
        let header = postcard::to_stdvec(&header)
            .map_err(|error| StateError::RocksDb(format!("cannot encode snapshot header: {error}")))?;
        let mut file = Vec::with_capacity(12 + header.len() + offset as usize);
        file.extend_from_slice(&MAGIC);
        file.extend_from_slice(&(header.len() as u32).to_le_bytes());
        file.extend_from_slice(&header);
        for bytes in self.sections.into_values() {
            file.extend_from_slice(&bytes);
        }
        Ok(file)
    }
}

/// A parsed snapshot file.
pub(super) struct SnapshotReader<'a> {
    path: &'a StoragePath,
    header: Header,
    data: &'a [u8],
}

/// One entry: state name, key bytes, value bytes.
pub(super) type Entry<'a> = (&'a str, &'a [u8], &'a [u8]);

impl<'a> SnapshotReader<'a> {
    /// Checks the magic, the header and the max parallelism.
    pub(super) fn parse(bytes: &'a [u8], path: &'a StoragePath, expected: MaxParallelism) -> Result<Self, StateError> {
        let bad = |message: String| StateError::BadSnapshot { path: path.to_string(), message };
        if bytes.len() < 12 || bytes[..8] != MAGIC {
            return Err(bad("it is not a keyed-state snapshot (wrong magic)".into()));
        }
        let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        let header_bytes = bytes.get(12..12 + header_len).ok_or_else(|| bad("the header is truncated".into()))?;
        let header: Header =
            postcard::from_bytes(header_bytes).map_err(|error| bad(format!("the header does not decode: {error}")))?;
        if header.max_parallelism as usize != expected.get() {
            return Err(bad(format!(
                "it was taken with max parallelism {}, the job now has {}; key groups cannot be remapped, \
                 so restore with max parallelism {}",
                header.max_parallelism,
                expected.get(),
                header.max_parallelism
            )));
        }
        Ok(Self { path, header, data: &bytes[12 + header_len..] })
    }

    /// The entries of key group `group` (none if the snapshot lacks it).
    pub(super) fn entries_of(
        &self,
        group: KeyGroup,
    ) -> Result<impl Iterator<Item = Result<Entry<'_>, StateError>> + '_, StateError> {
        let section = match self.header.sections.iter().find(|(g, _, _)| *g == group.0) {
            Some(&(_, offset, len)) => offset
                .checked_add(len)
                .and_then(|end| self.data.get(usize::try_from(offset).ok()?..usize::try_from(end).ok()?))
                .ok_or_else(|| self.bad(format!("the section of key group {} is truncated", group.0)))?,
            None => &[][..],
        };
        let mut rest = section;
        Ok(std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            Some(self.next_entry(&mut rest, group))
        }))
    }

    fn next_entry<'s>(&'s self, rest: &mut &'s [u8], group: KeyGroup) -> Result<Entry<'s>, StateError> {
        let truncated = || self.bad(format!("an entry of key group {} is truncated", group.0));
        let state = take_u32(rest).ok_or_else(truncated)? as usize;
        let key_len = take_u32(rest).ok_or_else(truncated)? as usize;
        let key = take(rest, key_len).ok_or_else(truncated)?;
        let value_len = take_u32(rest).ok_or_else(truncated)? as usize;
        let value = take(rest, value_len).ok_or_else(truncated)?;
        let name = self.header.states.get(state).ok_or_else(|| self.bad(format!("unknown state index {state}")))?;
        Ok((name.as_str(), key, value))
    }

    fn bad(&self, message: String) -> StateError {
        StateError::BadSnapshot { path: self.path.to_string(), message }
    }
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
    if rest.len() < len {
        return None;
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Some(head)
}

fn take_u32(rest: &mut &[u8]) -> Option<u32> {
    take(rest, 4).map(|bytes| u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}
