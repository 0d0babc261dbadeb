//! Compile-time rules of the derives and of typed lookups (trybuild).
//! Regenerate the expected messages with `TRYBUILD=overwrite`.

#[test]
fn compile_fail() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
