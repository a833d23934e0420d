//! Generates Rust code for every `.proto` file under `proto/`.
//!
//! `protoc` comes from `protoc-bin-vendored`, so a fresh machine needs no system
//! protobuf compiler; an explicit `PROTOC` in the environment still wins.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // Safe here: a build script is single-threaded, nothing reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let protos = ["proto/job_graph.proto", "proto/cluster.proto", "proto/exchange.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    // Record batches stay in the buffer they arrived in (no copy on decode).
    tonic_prost_build::configure().bytes(".weir.v1.RecordBatch.records").compile_protos(&protos, &["proto"])?;
    Ok(())
}
