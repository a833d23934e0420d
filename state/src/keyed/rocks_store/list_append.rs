//! Appending to a RocksDB list state without decoding the list. Flink uses
//! RocksDB's merge operator for this; here the list's encoded bytes are
//! edited in place in the write-back cache.

use serde::Serialize;

use super::{RocksStore, encode, rocks_error};
use crate::keyed::StateError;

impl RocksStore {
    /// Appends `value` to the list at `namespace` without decoding the list:
    /// the stored bytes are `postcard(Vec<V>)`, a length prefix followed by
    /// the elements, so an append rewrites the prefix and adds the element's
    /// bytes. The list stays in the write-back cache while it grows.
    pub(in crate::keyed) fn list_append<N: Serialize, V: Serialize>(
        &mut self,
        index: usize,
        namespace: &N,
        value: &V,
    ) -> Result<(), StateError> {
        self.compose::<N, ()>(namespace, None)?;
        self.name_of(index)?;
        self.value_buffer.clear();
        encode(value, &mut self.value_buffer, &self.names[index])?;
        if self.cache.lookup(index, &self.full_key).is_none() {
            let column = self.column(index)?;
            let stored =
                self.db.get_pinned_cf(column, &self.full_key).map_err(|error| rocks_error(&self.dir, error))?;
            self.cache.remember(index, &self.full_key, stored.as_deref());
        }
        let element = &self.value_buffer;
        let appended = self.cache.update(index, &self.full_key, |list| append_encoded(list, element));
        let name = self.names[index].clone();
        match appended {
            Some(Ok(())) => self.flush_cache_if_full(),
            Some(Err(message)) => Err(StateError::Incompatible { name, message }),
            None => Err(StateError::RocksDb(format!("list '{name}' vanished from the write cache"))),
        }
    }
}

/// Appends one encoded element to `postcard(Vec<_>)` bytes (`None`: no list yet).
fn append_encoded(list: &mut Option<Vec<u8>>, element: &[u8]) -> Result<(), String> {
    let Some(bytes) = list else {
        let mut bytes = Vec::with_capacity(1 + element.len());
        push_varint(&mut bytes, 1);
        bytes.extend_from_slice(element);
        *list = Some(bytes);
        return Ok(());
    };
    let (length, prefix_len) = read_varint(bytes).ok_or("a stored list has a malformed length prefix")?;
    let mut prefix = Vec::with_capacity(10);
    push_varint(&mut prefix, length + 1);
    bytes.splice(..prefix_len, prefix);
    bytes.extend_from_slice(element);
    Ok(())
}

/// postcard's unsigned varint (LEB128).
fn push_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at the start of `bytes` and its length in bytes.
fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (index, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7F) << (7 * index);
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::append_encoded;

    #[test]
    fn appending_encoded_elements_matches_encoding_the_whole_list() {
        let mut list = None;
        let mut expected: Vec<String> = Vec::new();
        for index in 0..300 {
            let element = format!("element {index}");
            append_encoded(&mut list, &postcard::to_allocvec(&element).expect("encodes")).expect("appends");
            expected.push(element);
            assert_eq!(list.as_deref(), Some(&postcard::to_allocvec(&expected).expect("encodes")[..]));
        }
        assert!(append_encoded(&mut Some(vec![0xFF]), b"x").is_err(), "a truncated prefix is an error");
    }
}
