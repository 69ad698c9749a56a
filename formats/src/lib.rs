#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod export;
pub mod import;
pub mod shapes;
