//! Progress reporting for long operations, without tying the library to a terminal.

/// Receives progress of a long operation. The CLI draws bars from it; tests and the daemon pass
/// [`NoProgress`]. Calls come from the thread that runs the operation.
pub trait Progress: Sync {
    /// A phase starts; `total` is the number of units when known in advance.
    fn start(&self, _phase: &str, _total: Option<u64>) {}
    /// `n` more units are done.
    fn advance(&self, _n: u64) {}
    /// The phase is done.
    fn finish(&self) {}
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
