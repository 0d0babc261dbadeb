//! Every TOML block of the user guide (`docs/guide.md`) is a settings file
//! cipherdoc reads without error. Blocks that show only the encrypted
//! connection are read with the `default` connection of section 2 added, as
//! a reader would combine them. (The guide's Rust blocks are doctests of
//! this crate.)

// Test code: failing loudly is its job.
#![allow(clippy::expect_used, clippy::panic)]

use std::path::Path;

use cipherdoc::settings::Settings;

/// The fenced blocks of `text` whose info string is `lang`.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&fence) {
        let body = &rest[start + fence.len()..];
        let end = body
            .find("```")
            .expect("an unterminated block in the guide");
        out.push(&body[..end]);
        rest = &body[end + 3..];
    }
    out
}

#[test]
fn every_settings_block_of_the_guide_is_valid() {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/guide.md");
    let text = std::fs::read_to_string(&guide).expect("docs/guide.md is in the repository");
    let tomls = blocks(&text, "toml");
    assert!(tomls.len() >= 4, "the guide shows its settings");
    let base = tempfile::tempdir().expect("a temporary directory");
    for (i, block) in tomls.iter().enumerate() {
        let file = if block.contains("[databases.default]") {
            (*block).to_owned()
        } else {
            format!(
                "[databases.default]\nengine = \"sqlite\"\npath = \"var/default.db\"\n\n{block}"
            )
        };
        let settings = Settings::from_toml(&file, base.path())
            .unwrap_or_else(|e| panic!("the guide's TOML block {} is refused: {e}", i + 1));
        assert!(
            settings.database("encrypted").is_some(),
            "block {} configures the encrypted connection",
            i + 1
        );
    }
    assert!(
        !blocks(&text, "rust").is_empty(),
        "the guide's code blocks are doctests"
    );
}
