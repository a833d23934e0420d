//! `weir-coordinator`: the control plane of a Weir cluster.
//!
//! It will own job submission, the compilation of a job graph into an
//! execution graph, scheduling onto worker slots, checkpoint coordination,
//! failure detection and restarts (the cluster issue). Today it is empty: the
//! local runtime runs jobs without a coordinator.
//!
//! It builds on `weir-proto` and `weir-common` only. It must never depend on
//! the task runtime (`weir-worker`), RocksDB (`weir-state`) or user code
//! (`weir-api`): to the coordinator, state is opaque handles and a job is a
//! graph plus a binary.
