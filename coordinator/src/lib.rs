//! `weir-coordinator`: the control plane of a Weir cluster.
//!
//! It owns the cluster's workers and jobs ([`cluster`], the decisions, pure:
//! the job table, the worker registry, scheduling onto worker slots,
//! deployment and failover) and the coordinator process ([`server`]: the
//! gRPC `Coordinator` service, the artifact store of job binaries, the
//! durable job table, failure detection by heartbeats, and carrying out
//! deployments and cancellations, redeploying from the latest checkpoint).
//! `server` depends on `cluster`, never the other way round.
//!
//! It builds on `weir-proto` and `weir-common` only. It must never depend on
//! the task runtime (`weir-worker`), RocksDB (`weir-state`) or user code
//! (`weir-api`): to the coordinator a job is a binary plus a graph, and its
//! checkpoints are directories.

pub mod cluster;
pub mod server;

pub use server::{CoordinatorConfig, CoordinatorError, serve};
