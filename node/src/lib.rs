#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod daemon;
pub mod labels;
pub mod learn;
pub mod models;
pub mod policy;
pub mod remove;
pub mod replicate;
