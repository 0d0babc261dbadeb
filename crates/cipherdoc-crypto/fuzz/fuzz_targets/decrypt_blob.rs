#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed key for every id: exercises the decryption paths past the lookup.
    struct AnyKey(cipherdoc_crypto::DataKey);
    impl cipherdoc_crypto::client::KeyLookup for AnyKey {
        fn data_key(&self, _: &cipherdoc_crypto::KeyId) -> Option<&cipherdoc_crypto::DataKey> {
            Some(&self.0)
        }
    }
    let keys = AnyKey(cipherdoc_crypto::DataKey::from_bytes([7; 96]));
    let _ = cipherdoc_crypto::client::decrypt_blob(data, &keys);
});
