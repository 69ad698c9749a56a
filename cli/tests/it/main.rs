//! The command-line tests: `swarmlabel` and `swarmlabel-bootstrap` run as real processes, on
//! real homes, networks and namespaces. One test binary, one module per area.

#![allow(clippy::unwrap_used)] // Test code: a panic is the failure report.

mod support;

mod api;
mod audit;
mod browser;
mod cli;
mod console;
mod demo;
mod export;
mod gold;
mod guard;
mod home;
mod labels;
mod nat;
mod network;
mod ops;
mod owner_status;
mod readme;
mod stats;
mod tui;
mod vitals;
