#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod quota;
pub mod swarm;

pub use swarm::Node;
