#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(x) = cipherdoc_crypto::payload::InsertUpdatePayloadV2::decode(data) {
        // Compare encodings: NaN bounds in mn/mx are not equal to themselves.
        let bytes = x.encode();
        let again = cipherdoc_crypto::payload::InsertUpdatePayloadV2::decode(&bytes).map(|y| y.encode());
        assert_eq!(again.ok(), Some(bytes));
    }
});
