//! The trailer every checkpoint file ends with: a magic tag and the XXH3-64
//! checksum of the contents before it.

use xxhash_rust::xxh3::Xxh3;

/// Identifies the trailer format; a file without it was not written by us.
pub(super) const MAGIC: [u8; 8] = *b"WEIRCHK1";

/// Bytes the trailer adds to every file.
pub(super) const TRAILER_LEN: u64 = 16;

/// The trailer for contents with checksum `digest`.
pub(super) fn trailer(digest: u64) -> [u8; 16] {
    let mut trailer = [0u8; 16];
    trailer[..8].copy_from_slice(&MAGIC);
    trailer[8..].copy_from_slice(&digest.to_le_bytes());
    trailer
}

/// Checks a trailer against the digest of the contents read; `Err` says what
/// does not match.
pub(super) fn verify(trailer: &[u8], digest: u64) -> Result<(), String> {
    if trailer.len() != TRAILER_LEN as usize || trailer[..8] != MAGIC {
        return Err("no checksum trailer: the file is truncated or was not written by Weir".into());
    }
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&trailer[8..]);
    let stored = u64::from_le_bytes(stored);
    if stored != digest {
        return Err(format!("checksum mismatch: stored {stored:016x}, contents hash to {digest:016x}"));
    }
    Ok(())
}

/// A streaming checksum.
pub(super) fn hasher() -> Xxh3 {
    Xxh3::new()
}
