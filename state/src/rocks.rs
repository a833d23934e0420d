//! RocksDB settings shared by every embedded instance.
//!
//! Weir builds RocksDB with LZ4 as its only compression library (see
//! `BENCHMARKS.md`, "Build"): LZ4 is what state wants (fast enough to sit on the
//! read path, a fair ratio on serialized records), and each further library is
//! more C++ in every cold build. Asking RocksDB for a compression it was not
//! built with fails at open time, so the options below must stay in step with
//! the `rocksdb` features in the workspace `Cargo.toml`.

use rocksdb::{DBCompressionType, Options};

/// Options for a task's RocksDB instance: created on demand, LZ4-compressed.
pub fn db_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(DBCompressionType::Lz4);
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_with_lz4_and_reads_back_after_flush() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = rocksdb::DB::open(&db_options(), dir.path()).expect("RocksDB opens with LZ4");
        db.put(b"key", b"value").expect("put");
        // A flush writes an SST file, which exercises the compression library.
        db.flush().expect("flush");
        assert_eq!(db.get(b"key").expect("get").as_deref(), Some(&b"value"[..]));
    }
}
