#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(x) = cipherdoc_crypto::payload::FindEqualityPayloadV2::decode(data) {
        // Field order may differ from the input; the canonical encoding is stable.
        let bytes = x.encode();
        let again = cipherdoc_crypto::payload::FindEqualityPayloadV2::decode(&bytes);
        assert_eq!(again.ok(), Some(x));
    }
});
