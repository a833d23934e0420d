//! What a record must be.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A record type: owned, sendable across threads, clonable (for broadcast and
/// fan-out), and serializable (for exchange between processes and for state).
///
/// Implemented for every type that meets the bounds; derive `Clone`,
/// `Serialize` and `Deserialize` on your own record types.
pub trait Data: Clone + Send + Serialize + DeserializeOwned + 'static {}

impl<T: Clone + Send + Serialize + DeserializeOwned + 'static> Data for T {}

/// A key type: data that can also be compared and hashed for keyed state.
pub trait Key: Data + Eq + std::hash::Hash {}

impl<T: Data + Eq + std::hash::Hash> Key for T {}
