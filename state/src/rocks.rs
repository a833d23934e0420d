//! RocksDB settings shared by every embedded instance.
//!
//! Weir builds RocksDB with LZ4 as its only compression library (see
//! `BENCHMARKS.md`, "Build"): LZ4 is what state wants (fast enough to sit on the
//! read path, a fair ratio on serialized records), and each further library is
//! more C++ in every cold build. Asking RocksDB for a compression it was not
//! built with fails at open time, so the options below must stay in step with
//! the `rocksdb` features in the workspace `Cargo.toml`.

use std::sync::OnceLock;

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};

/// Block cache shared by every instance of the process: state of all tasks
/// competes for one memory budget, as in Flink's managed memory.
const BLOCK_CACHE_BYTES: usize = 256 << 20;

fn shared_block_cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Cache::new_lru_cache(BLOCK_CACHE_BYTES))
}

/// Options for a task's RocksDB instance (and each of its column families):
/// created on demand, LZ4-compressed, tuned for point reads of keyed state.
pub fn db_options() -> Options {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(DBCompressionType::Lz4);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(shared_block_cache());
    // Most state reads are point lookups, many of absent keys (a key's first
    // record): a whole-key bloom filter answers those without reading blocks.
    table.set_bloom_filter(10.0, false);
    table.set_cache_index_and_filter_blocks(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    options.set_block_based_table_factory(&table);
    options.set_memtable_whole_key_filtering(true);
    options.set_memtable_prefix_bloom_ratio(0.1);
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
