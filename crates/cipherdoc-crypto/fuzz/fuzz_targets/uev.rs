#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(x) = cipherdoc_crypto::payload::UnindexedEncryptedValueV2::decode(data) {
        assert_eq!(x.encode(), data);
    }
});
