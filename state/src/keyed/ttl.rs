//! How entries with a time to live are stored: the expiry first, so a
//! snapshot can skip expired entries by decoding one integer.

use serde::{Deserialize, Serialize};

/// A stored object with the processing time (ms) at which it expires.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Expiring<S> {
    pub(super) expires_at: i64,
    pub(super) value: S,
}

impl<S> Expiring<S> {
    /// The value, if still alive at `now`.
    pub(super) fn alive(self, now: i64) -> Option<S> {
        (self.expires_at > now).then_some(self.value)
    }
}

/// Whether the encoded `Expiring` in `bytes` has expired at `now`.
pub(super) fn expired(bytes: &[u8], now: i64) -> bool {
    matches!(postcard::take_from_bytes::<i64>(bytes), Ok((expires_at, _)) if expires_at <= now)
}
