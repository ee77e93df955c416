//! JWT and bearer extraction on arbitrary text: claims or nothing, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = enforcer::enforce::identity::jwt_claims(text);
    if let Some(token) = enforcer::enforce::identity::bearer(Some(text)) {
        let _ = enforcer::enforce::identity::jwt_claims(token);
    }
});
