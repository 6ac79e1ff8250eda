//! The admin client: connecting to a manager, sending control commands, printing results.

pub mod format;
