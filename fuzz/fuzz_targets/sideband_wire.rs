//! Sideband call bodies: `/ase/request` and `/ase/response` JSON decoding, the header
//! list's checks (the same as `http`'s) and the user/status accessors, on arbitrary bytes:
//! errors, never a panic; and the quick decoder of the usual request shape agreeing with
//! serde whenever it answers.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = bytes::Bytes::copy_from_slice(data);
    // The quick decoder of the usual shape answers only what serde answers.
    if let Some(quick) = enforcer::sideband::quick::request(data) {
        let slow = enforcer::sideband::wire::parse_request(data);
        assert_eq!(Some(format!("{quick:?}")), slow.ok().map(|s| format!("{s:?}")));
    }
    if let Ok(mut call) = enforcer::sideband::wire::parse_request(data) {
        let _ = call.user();
        if let Some(headers) = call.headers.take() {
            agrees_with_http(headers, &body);
        }
    }
    if let Ok(mut call) = enforcer::sideband::wire::parse_response(data) {
        let _ = call.response_code.as_ref().map(|c| c.as_str().parse::<u16>());
        if let Some(headers) = call.headers.take() {
            agrees_with_http(headers, &body);
        }
    }
});

/// The header list is accepted exactly when `http` would build a `HeaderMap` from it, and
/// reads the same values.
fn agrees_with_http(list: enforcer::sideband::wire::HeaderList<'_>, body: &bytes::Bytes) {
    use enforcer::vocab::Headers;
    let mut map = Some(http::HeaderMap::new());
    for (name, value) in &list.0 {
        match (
            http::HeaderName::from_bytes(name.as_str().trim().as_bytes()),
            http::HeaderValue::from_bytes(value.as_str().as_bytes()),
        ) {
            (Ok(n), Ok(v)) => {
                if let Some(m) = map.as_mut() {
                    m.append(n, v);
                }
            }
            _ => map = None,
        }
    }
    let fields = list.into_fields(body);
    assert_eq!(fields.is_ok(), map.is_some());
    if let (Ok(fields), Some(map)) = (fields, map) {
        for name in map.keys() {
            assert!(fields.all(name).eq(map.all(name)));
        }
    }
}
