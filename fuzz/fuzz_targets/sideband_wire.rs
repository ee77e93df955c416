//! Sideband call bodies: `/ase/request` and `/ase/response` JSON decoding, header list
//! conversion and the user/status accessors, on arbitrary bytes: errors, never a panic; and
//! the quick decoder of the usual request shape agreeing with serde whenever it answers.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    // The quick decoder of the usual shape answers only what serde answers.
    if let Some(quick) = enforcer::sideband::quick::request(data) {
        let slow = enforcer::sideband::wire::parse_request(data);
        assert_eq!(Some(format!("{quick:?}")), slow.ok().map(|s| format!("{s:?}")));
    }
    if let Ok(call) = enforcer::sideband::wire::parse_request(data) {
        let _ = call.user();
        if let Some(headers) = &call.headers {
            let _ = headers.to_header_map(&body);
        }
    }
    if let Ok(call) = enforcer::sideband::wire::parse_response(data) {
        let _ = call.response_code.as_ref().map(|c| c.as_str().parse::<u16>());
        if let Some(headers) = &call.headers {
            let _ = headers.to_header_map(&body);
        }
    }
});
