#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod aggregate;
pub mod export;
pub mod imagefolder;
mod memo;
mod summary;

pub use memo::Memo;
pub use summary::*;
