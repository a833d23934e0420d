//! Positions of index-based sources (collections, generators) as splits that
//! survive checkpoints and rescaling.
//!
//! Subtask `i` of `n` starts with one split, the indexes `i, i + n, i + 2n, …`.
//! A checkpoint records each split's next index; a restore deals the splits
//! of all former subtasks round robin over the new ones, so every index is
//! still read exactly once whatever the new parallelism.

use serde::{Deserialize, Serialize};
use weir_worker::TaskError;

use crate::operators::OperatorContext;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct StridedSplit {
    next: u64,
    step: u64,
}

/// The splits one reader reads, round robin, up to the index `end`.
#[derive(Debug)]
pub(crate) struct StridedSplits {
    splits: Vec<StridedSplit>,
    turn: usize,
    end: u64,
}

impl StridedSplits {
    /// The splits of `context`'s subtask: restored ones, or its initial one.
    pub(crate) fn for_subtask(context: &OperatorContext, end: u64) -> Result<Self, TaskError> {
        let splits = match context.restored_entries() {
            Some(entries) => entries
                .iter()
                .map(|entry| {
                    postcard::from_bytes::<StridedSplit>(entry).map_err(|error| {
                        context.restore_error(format!("its position in the checkpoint does not decode ({error}): the checkpoint belongs to another job or source"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            None => vec![StridedSplit { next: context.subtask.index as u64, step: context.subtask.parallelism as u64 }],
        };
        let mut splits = Self { splits, turn: 0, end };
        splits.drop_finished();
        Ok(splits)
    }

    fn drop_finished(&mut self) {
        let end = self.end;
        self.splits.retain(|split| split.next < end && split.step > 0);
    }

    /// The next index to read, taking the splits in turn; `None` when all are done.
    #[inline]
    pub(crate) fn next_index(&mut self) -> Option<u64> {
        // The usual case, one split per reader, without the turn-taking.
        if let [split] = self.splits.as_mut_slice() {
            if split.next >= self.end {
                self.splits.clear();
                return None;
            }
            let index = split.next;
            split.next = split.next.saturating_add(split.step);
            return Some(index);
        }
        loop {
            if self.splits.is_empty() {
                return None;
            }
            if self.turn >= self.splits.len() {
                self.turn = 0;
            }
            let split = &mut self.splits[self.turn];
            if split.next >= self.end {
                self.splits.swap_remove(self.turn);
                continue;
            }
            let index = split.next;
            split.next = split.next.saturating_add(split.step);
            self.turn += 1;
            return Some(index);
        }
    }

    /// Whether every split is done.
    pub(crate) fn is_finished(&mut self) -> bool {
        self.drop_finished();
        self.splits.is_empty()
    }

    /// The position of every unfinished split, for a checkpoint.
    pub(crate) fn snapshot(&mut self) -> Vec<Vec<u8>> {
        self.drop_finished();
        self.splits.iter().filter_map(|split| postcard::to_allocvec(split).ok()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(splits: &mut StridedSplits) -> Vec<u64> {
        std::iter::from_fn(|| splits.next_index()).collect()
    }

    #[test]
    fn positions_survive_a_rescale_with_every_index_read_once() {
        // Three subtasks read a while, then their splits move to two subtasks.
        let end = 100;
        let mut before: Vec<StridedSplits> = (0..3u64)
            .map(|index| StridedSplits { splits: vec![StridedSplit { next: index, step: 3 }], turn: 0, end })
            .collect();
        let mut seen: Vec<u64> = before
            .iter_mut()
            .flat_map(|splits| (0..7).filter_map(|_| splits.next_index()).collect::<Vec<_>>())
            .collect();
        let entries: Vec<Vec<u8>> = before.iter_mut().flat_map(StridedSplits::snapshot).collect();
        for index in 0..2 {
            let mine: Vec<StridedSplit> = entries
                .iter()
                .enumerate()
                .filter(|(position, _)| position % 2 == index)
                .map(|(_, entry)| postcard::from_bytes(entry).expect("decodes"))
                .collect();
            seen.extend(read_all(&mut StridedSplits { splits: mine, turn: 0, end }));
        }
        seen.sort();
        assert_eq!(seen, (0..end).collect::<Vec<_>>());
    }
}
