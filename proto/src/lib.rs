//! `weir-proto`: every wire message and gRPC service of Weir, generated from the
//! `.proto` files in `proto/proto/` with prost and tonic.
//!
//! This crate holds no logic. Conversions between wire messages and domain types
//! live with the domain types (`weir-common`), at the edges. It must never depend
//! on any other Weir crate.

#![allow(missing_docs, clippy::all)]

/// Version 1 of the Weir wire protocol (`package weir.v1`).
pub mod v1 {
    tonic::include_proto!("weir.v1");
}
