//! Heap state partitioned by key group.

use std::hash::Hash;

use hashbrown::HashMap;

use weir_common::{KeyGroup, KeyGroupRange};

/// One value per key, stored in one hash map per key group of a task's range.
///
/// The maps are hashbrown's, hashing with foldhash (seeded per map): keyed
/// state is on every record's path, and SipHash, std's default, was a tenth
/// of a keyed pipeline's time (BENCHMARKS.md). hashbrown also lets a lookup
/// by `(key, namespace)` borrow both parts (`Equivalent`) instead of cloning.
///
/// Keeping key groups apart costs one index per access and buys cheap
/// snapshots and rescaling: a key group is the unit that moves between
/// subtasks, so it can be written or dropped without scanning other groups.
#[derive(Debug)]
pub struct KeyGroupedMap<K, V> {
    range: KeyGroupRange,
    groups: Vec<GroupMap<K, V>>,
}

/// The map of one key group.
pub type GroupMap<K, V> = HashMap<K, V>;

/// A key group that the task does not own: the record was routed to the
/// wrong subtask, which is a bug in partitioning, never a user error.
#[derive(Debug, thiserror::Error)]
#[error("key group {group:?} is outside this task's range {range}")]
pub struct ForeignKeyGroup {
    /// The group that was asked for.
    pub group: KeyGroup,
    /// The groups the task owns.
    pub range: KeyGroupRange,
}

impl<K: Eq + Hash, V> KeyGroupedMap<K, V> {
    /// An empty map for the key groups of `range`.
    pub fn new(range: KeyGroupRange) -> Self {
        Self { range, groups: (0..range.len).map(|_| GroupMap::default()).collect() }
    }

    /// The key groups this map holds.
    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// The map of `group`; a group outside the range means the record was
    /// routed to the wrong subtask.
    pub fn group_mut(&mut self, group: KeyGroup) -> Result<&mut GroupMap<K, V>, ForeignKeyGroup> {
        let range = self.range;
        match range.offset_of(group) {
            Some(offset) => Ok(&mut self.groups[offset]),
            None => Err(ForeignKeyGroup { group, range }),
        }
    }

    /// Number of keys over all groups.
    pub fn len(&self) -> usize {
        self.groups.iter().map(GroupMap::len).sum()
    }

    /// Whether no key holds a value.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(GroupMap::is_empty)
    }

    /// Every entry, key group by key group in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (KeyGroup, &K, &V)> + '_ {
        let start = self.range.start;
        self.groups
            .iter()
            .enumerate()
            .flat_map(move |(offset, map)| map.iter().map(move |(k, v)| (KeyGroup(start + offset as u16), k, v)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;
    use weir_common::MaxParallelism;

    use super::*;

    #[test]
    fn foreign_key_group_is_refused() {
        let range = KeyGroupRange::for_subtask(MaxParallelism::default(), 4, 1);
        let mut map: KeyGroupedMap<u32, u32> = KeyGroupedMap::new(range);
        assert!(map.group_mut(KeyGroup(0)).is_err());
        assert!(map.group_mut(KeyGroup(range.start)).is_ok());
    }

    proptest! {
        #[test]
        fn behaves_like_one_map_and_reports_true_key_groups(
            ops in proptest::collection::vec((0u32..500, 0u32..1000), 0..200),
        ) {
            // The second of three subtasks: a range that does not start at 0.
            let max = MaxParallelism::default();
            let range = KeyGroupRange::for_subtask(max, 3, 1);
            let mut map = KeyGroupedMap::new(range);
            let mut model = HashMap::new();
            let mut scratch = Vec::new();
            for (key, value) in ops {
                let group = KeyGroup::of_key(&key, max, &mut scratch).expect("u32 serializes");
                if !range.contains(group) {
                    continue;
                }
                *map.group_mut(group).expect("own group").entry(key).or_insert(0) += value;
                *model.entry(key).or_insert(0) += value;
            }
            prop_assert_eq!(map.len(), model.len());
            let mut listed = HashMap::new();
            for (group, key, value) in map.iter() {
                prop_assert_eq!(group, KeyGroup::of_key(key, max, &mut scratch).expect("u32 serializes"));
                listed.insert(*key, *value);
            }
            prop_assert_eq!(listed, model);
        }
    }
}
