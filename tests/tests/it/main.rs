//! The multi-node tests: real libp2p swarms in one process, driven through the harness of
//! `swarmlabel-tests`. One test binary, one module per area.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod datasets;
mod guard;
mod hostile;
mod labels;
mod labels_hostile;
mod learn;
mod models;
mod models_hostile;
mod network;
