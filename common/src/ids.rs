//! Id newtypes, so that an operator id can never be passed where a vertex id is meant.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable identity of an operator across runs of the same program: what state
/// in a checkpoint is matched against on restore (Flink's `OperatorID`).
///
/// It is derived from the user's `.uid("…")` when one is set, otherwise from the
/// operator's position in the graph.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct OperatorId(pub u128);

impl OperatorId {
    /// The id of an operator with an explicit uid: a hash of the uid alone, so it
    /// survives any change to the rest of the graph.
    pub fn from_uid(uid: &str) -> Self {
        Self(xxhash_rust::xxh3::xxh3_128(uid.as_bytes()))
    }

    /// The id of an operator without a uid: a hash of what identifies its position
    /// (its kind, the ids of its inputs, and its sequence number in the program).
    pub fn from_position(kind: &str, inputs: &[OperatorId], sequence: usize) -> Self {
        let mut bytes = Vec::with_capacity(kind.len() + 16 * inputs.len() + 8);
        bytes.extend_from_slice(kind.as_bytes());
        for input in inputs {
            bytes.extend_from_slice(&input.0.to_be_bytes());
        }
        bytes.extend_from_slice(&(sequence as u64).to_be_bytes());
        Self(xxhash_rust::xxh3::xxh3_128(&bytes))
    }

    /// Parses the 32-hex-digit form produced by `Display`.
    pub fn parse_hex(text: &str) -> Option<Self> {
        if text.len() != 32 {
            return None;
        }
        u128::from_str_radix(text, 16).ok().map(Self)
    }
}

impl fmt::Display for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for OperatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OperatorId({self})")
    }
}

/// A vertex of the job graph: one chain of operators, run as `parallelism` tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VertexId(pub u32);

impl fmt::Display for VertexId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// The sequence number of a checkpoint within a job; increases by one per trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "chk-{}", self.0)
    }
}

/// Which parallel instance of a vertex a task is, out of how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubtaskIndex {
    /// Zero-based index of this instance.
    pub index: usize,
    /// Number of parallel instances of the vertex.
    pub parallelism: usize,
}

impl fmt::Display for SubtaskIndex {
    /// One-based, as Flink prints it: `2/4` is the second of four.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.parallelism)
    }
}

/// One task of a job run: subtask `subtask` of vertex `vertex` (Flink's
/// `ExecutionVertexID`). Checkpoint reports and control messages name tasks by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskKey {
    /// The vertex the task runs.
    pub vertex: VertexId,
    /// Zero-based subtask index within the vertex.
    pub subtask: usize,
}

impl fmt::Display for TaskKey {
    /// The form a task's directory in a checkpoint is named by: `v3-1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.vertex, self.subtask)
    }
}

/// One channel of a job run: the edge (its index in the job graph) and the
/// upstream and downstream subtasks it connects. Channels between processes
/// are opened by it (Flink's `InputChannelID` plays this part).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelKey {
    /// Index of the edge in the job graph's edge list.
    pub edge: u32,
    /// Subtask index of the producer.
    pub upstream: u32,
    /// Subtask index of the consumer.
    pub downstream: u32,
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}->{}", self.edge, self.upstream, self.downstream)
    }
}

/// Whether `text` is a SHA-256 as job binaries (artifacts) are named: 64
/// lowercase hex digits. Anything else could name a path outside the
/// artifact store, so every process checks it before it builds a path.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// Whether `text` can be a job's id in file names and logs: 1 to 64 ASCII
/// letters, digits, `-` or `_`, not starting with `-` (the coordinator makes
/// `job-` and 16 hex digits). A slash, a dot or a control character could
/// leave the directory it names a file in.
pub fn is_valid_job_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && !text.starts_with('-')
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_id_hex_round_trips() {
        let id = OperatorId::from_uid("word-counter");
        assert_eq!(OperatorId::parse_hex(&id.to_string()), Some(id));
        assert_eq!(OperatorId::parse_hex("xyz"), None);
    }

    #[test]
    fn positional_ids_depend_on_inputs_and_sequence() {
        let a = OperatorId::from_position("map", &[], 0);
        assert_eq!(a, OperatorId::from_position("map", &[], 0));
        assert_ne!(a, OperatorId::from_position("map", &[], 1));
        assert_ne!(a, OperatorId::from_position("map", &[a], 0));
        assert_ne!(a, OperatorId::from_position("filter", &[], 0));
    }

    #[test]
    fn artifact_hashes_and_job_ids_that_could_leave_a_directory_are_refused() {
        let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        assert!(is_sha256_hex(sha));
        for bad in ["/bin/sh", "../../x", &sha.to_uppercase(), &sha[1..], &format!("{sha}0"), ""] {
            assert!(!is_sha256_hex(bad), "{bad}");
        }
        assert!(is_valid_job_id("job-00c0ffee12345678") && is_valid_job_id("wordcount_2"));
        for bad in ["", "../etc", "a/b", "-rf", "job.1", "job\n", &"x".repeat(65)] {
            assert!(!is_valid_job_id(bad), "{bad}");
        }
    }

    #[test]
    fn task_keys_print_as_their_checkpoint_directory() {
        assert_eq!(TaskKey { vertex: VertexId(3), subtask: 1 }.to_string(), "v3-1");
    }

    #[test]
    fn subtask_index_prints_one_based() {
        assert_eq!(SubtaskIndex { index: 1, parallelism: 4 }.to_string(), "2/4");
    }
}
