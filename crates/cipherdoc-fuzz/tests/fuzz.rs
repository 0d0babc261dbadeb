//! Every fuzz target for a bounded number of iterations (about two seconds in a
//! debug build): `CIPHERDOC_FUZZ_ITERS` (default 50000) and
//! `CIPHERDOC_FUZZ_SEED` (default 1; a finding prints its input and seed).
#![allow(clippy::panic, clippy::unwrap_used)]

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run(name: &str) {
    let iterations = env_u64("CIPHERDOC_FUZZ_ITERS", 50_000);
    let seed = env_u64("CIPHERDOC_FUZZ_SEED", 1);
    let targets = cipherdoc_fuzz::targets();
    let Some(t) = targets.iter().find(|t| t.name == name) else {
        panic!("no fuzz target {name}");
    };
    match cipherdoc_fuzz::fuzz(t, iterations, seed) {
        Ok(runs) => assert!(runs >= iterations, "{name}: only {runs} inputs"),
        Err(f) => panic!("{f} (CIPHERDOC_FUZZ_SEED={seed})"),
    }
}

#[test]
fn engine_document() {
    run("engine_document");
}

#[test]
fn json_key_vault() {
    run("json_key_vault");
}

#[test]
fn kmip_ttlv() {
    run("kmip_ttlv");
}

#[test]
fn token_response() {
    run("token_response");
}

#[test]
fn kms_json() {
    run("kms_json");
}

/// The runner itself: deterministic per seed, and it reports a panicking
/// target with the input that made it panic.
#[test]
fn the_runner_finds_a_planted_bug_and_replays() {
    #[allow(clippy::unnecessary_wraps)]
    fn planted(data: &[u8]) -> Result<(), String> {
        assert!(
            !(data.len() > 3 && data[0] == b'{' && data[1] == 0),
            "planted"
        );
        Ok(())
    }
    let t = cipherdoc_fuzz::Target {
        name: "planted",
        run: planted,
        seeds: || vec![b"{\"a\":1}".to_vec()],
        max_len: 64,
    };
    let a = cipherdoc_fuzz::fuzz(&t, 200_000, 7).unwrap_err();
    let b = cipherdoc_fuzz::fuzz(&t, 200_000, 7).unwrap_err();
    assert_eq!(a, b);
    assert!(
        a.what.contains("planted") && a.input_hex.starts_with("7b00"),
        "{a}"
    );
}
