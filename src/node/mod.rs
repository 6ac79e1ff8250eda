//! The node daemon: state directory, start-up of a manager or worker, and shutdown.

pub mod allocator;
pub mod daemon;
pub mod state;
