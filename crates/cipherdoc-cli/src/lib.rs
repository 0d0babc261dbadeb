//! The cipherdoc command line: management commands and the standalone `cipherdoc` binary.

pub mod standalone;
