//! [`Headers`]: a request's header fields as the pipeline reads them, whoever carried them.
//!
//! Inline, they are hyper's `HeaderMap`. In sideband mode they arrive as a JSON list inside
//! the call's body, and the pipeline reads a handful of them (host, user agent, cookie,
//! authorization, the API key, forwarded-for, the body's length): building a `HeaderMap`
//! for those (hashing and copying every name) cost a tenth of a decision. So the pipeline
//! reads through this trait, and the sideband list answers it in place
//! (`sideband::wire::Fields`).
//!
//! Names are compared as `HeaderName`s (lower case); values are bytes as received.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header fields, read by name.
pub trait Headers {
    /// Every value of field `name`, in the order received.
    fn all<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]>;

    /// The first value of field `name`, as an owned `HeaderValue` (shared with the
    /// request's buffer where the transport allows).
    fn value(&self, name: &HeaderName) -> Option<HeaderValue>;

    /// The first value of field `name`.
    fn first<'s>(&'s self, name: &HeaderName) -> Option<&'s [u8]> {
        self.all(name).next()
    }

    /// The first value of field `name` as text, when it is visible ASCII (what
    /// `HeaderValue::to_str` accepts).
    fn text<'s>(&'s self, name: &HeaderName) -> Option<&'s str> {
        self.first(name).and_then(text)
    }

    /// Whether field `name` is present.
    fn has(&self, name: &HeaderName) -> bool {
        self.first(name).is_some()
    }
}

/// A value as text when it is visible ASCII or tabs, as `HeaderValue::to_str` decides.
pub fn text(value: &[u8]) -> Option<&str> {
    // No early exit, so it runs over whole vectors of bytes (tokens are long).
    let bad = value.iter().fold(0u8, |bad, &b| {
        bad | (u8::from(b < 0x20) & u8::from(b != b'\t')) | u8::from(b >= 0x7f)
    });
    if bad == 0 {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

impl Headers for HeaderMap {
    fn all<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        self.get_all(name).into_iter().map(HeaderValue::as_bytes)
    }

    fn value(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get(name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_accepts_what_header_value_to_str_accepts() {
        for b in 0..=255u8 {
            let raw = [b'a', b, b'z'];
            let Ok(v) = HeaderValue::from_bytes(&raw) else {
                continue;
            };
            assert_eq!(text(&raw), v.to_str().ok(), "byte {b:#x}");
        }
        assert_eq!(text("é".as_bytes()), None);
    }

    #[test]
    fn a_header_map_reads_through_the_trait() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1".parse().unwrap());
        h.append("cookie", "b=2".parse().unwrap());
        let cookie = http::header::COOKIE;
        assert_eq!(
            h.all(&cookie).collect::<Vec<_>>(),
            [&b"a=1"[..], &b"b=2"[..]]
        );
        assert_eq!(h.text(&cookie), Some("a=1"));
        assert!(h.has(&cookie));
        assert!(!h.has(&http::header::HOST));
        assert_eq!(h.value(&cookie).unwrap(), "a=1");
    }
}
