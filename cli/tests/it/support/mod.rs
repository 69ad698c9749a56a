//! What the command-line tests share: processes, nodes on a network, a browser, crowds of
//! annotators and a namespace test bed.

pub(crate) mod bed;
pub(crate) mod browser;
pub(crate) mod crowd;
pub(crate) mod env;
pub(crate) mod labeling;
pub(crate) mod process;
