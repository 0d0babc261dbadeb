#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(x) = cipherdoc_crypto::payload::EncryptionPlaceholder::decode(data) {
        if let Ok(bytes) = x.encode() {
            let again = cipherdoc_crypto::payload::EncryptionPlaceholder::decode(&bytes).and_then(|y| y.encode());
            assert_eq!(again.ok(), Some(bytes));
        }
    }
});
