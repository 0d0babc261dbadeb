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

// The user guide (`docs/guide.md`): its Rust blocks compile and run as
// doctests of this crate, the one that sees both `cipherdoc` and the
// management commands; its TOML blocks are read as settings by
// `tests/guide.rs`.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
pub struct UserGuide;
