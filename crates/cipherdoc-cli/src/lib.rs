//! The cipherdoc command line: management commands for an application's own
//! binary ([`run`], [`Management`]) and the standalone `cipherdoc` binary.
//!
//! The architecture's `cipherdoc::cli::run(app)` is [`run`] here:
//! `cipherdoc` cannot depend on its own command-line crate.

pub mod management;
pub mod serve;
pub mod standalone;

pub use management::{Management, run};

/// An error as the one line the commands print: its chain of causes
/// joined, never a backtrace.
pub(crate) fn error_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
