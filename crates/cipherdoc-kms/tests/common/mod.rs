//! Shared test helpers.
#![allow(dead_code)]

use std::fmt::Debug;

/// The value of a peer env var, or None after printing why the test is skipped.
pub fn peer_env(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            println!(
                "skipped: {var} is not set (run crates/cipherdoc-kms/tests/peers/setup.sh and source its env file)"
            );
            None
        }
    }
}

/// Asserts that an error names the provider and contains none of the secrets.
pub fn assert_clean_error(err: &impl Debug, display: &str, provider: &str, secrets: &[&str]) {
    assert!(
        display.contains(provider),
        "error does not name provider {provider}: {display}"
    );
    let dbg = format!("{err:?}");
    for s in secrets {
        assert!(
            !display.contains(s) && !dbg.contains(s),
            "error leaks a secret: {display} / {dbg}"
        );
    }
}
