//! `weir-proto`: every wire message and gRPC service of Weir, generated from the
//! `.proto` files in `proto/proto/` with prost and tonic.
//!
//! Besides the generated code it holds only how a process dials another
//! ([`rpc`]: connect timeout, keepalive, deadlines), so every client dials
//! alike. Conversions between wire messages and domain types
//! live with the domain types (`weir-common`), at the edges. It must never depend
//! on any other Weir crate.

pub mod rpc;

/// Version 1 of the Weir wire protocol (`package weir.v1`). Generated code:
/// its documentation is the `.proto` files' comments.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    tonic::include_proto!("weir.v1");
}
