//! The usual `/ase/request` body decoded without serde: a flat object of the known fields
//! whose values are plain strings, small unsigned integers or `null`, with `headers` an
//! array of objects of name to plain string and `user_info` entries of `username` and
//! `client_id`. That is what Kong, NGINX, Apigee and the harness send, and serde spends most of a decision's decoding time on its generic
//! machinery for it.
//!
//! Anything else (an escape, a raw control character, a key it does not know,
//! `ASEPayload`, a duplicate, a float, a boolean, trailing bytes) returns `None`, and
//! [`super::wire::parse_request`] decodes the body as before, with its leniency, its
//! repairs and its errors. So the two can differ only in speed: when this returns a call,
//! it is the one serde would have returned (checked by the tests below and by the
//! `sideband_wire` fuzz target).
//!
//! Where it sits: called by [`super::calls`] before the serde path; reads the wire types.

use std::borrow::Cow;

use super::wire::{HeaderList, RequestCall, Text, UserEntry, UserInfo};

/// The call, when the body has the usual shape; `None` for serde to decode.
pub fn request(body: &[u8]) -> Option<RequestCall<'_>> {
    // UTF-8 is checked once for the whole body; strings are then slices of it.
    let text = std::str::from_utf8(body).ok()?;
    // A raw control character is not JSON (serde refuses it, and repairs it): leave such
    // a body to serde. Tabs and line breaks may stand between tokens, so a body that has
    // any gets its strings checked for them one by one. One pass without an early exit,
    // so it runs over whole vectors of bytes.
    let (mut control, mut breaks) = (0u8, 0u8);
    for &b in body {
        let ws = u8::from(b == b'\t') | u8::from(b == b'\n') | u8::from(b == b'\r');
        control |= u8::from(b < 0x20) & (ws ^ 1);
        breaks |= ws;
    }
    if control != 0 {
        return None;
    }
    let breaks = breaks != 0;
    let mut c = Cursor {
        b: body,
        text,
        i: 0,
        breaks,
    };
    let mut call = RequestCall {
        source_ip: None,
        source_port: None,
        method: None,
        url: None,
        http_version: None,
        headers: None,
        user_info: None,
        payload: None,
    };
    let mut seen = 0u8;
    c.eat(b'{')?;
    if !c.closes(b'}')? {
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            let bit = match key {
                "source_ip" => 1,
                "source_port" => 2,
                "method" => 4,
                "url" => 8,
                "http_version" => 16,
                "headers" => 32,
                "user_info" => 64,
                _ => return None,
            };
            // serde refuses a field given twice: let it say so.
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match key {
                "source_ip" => call.source_ip = c.scalar()?,
                "source_port" => call.source_port = c.scalar()?,
                "method" => call.method = c.scalar()?,
                "url" => call.url = c.scalar()?,
                "http_version" => call.http_version = c.scalar()?,
                "headers" => call.headers = Some(c.headers()?),
                _ => call.user_info = Some(c.user_info()?),
            }
            if c.next_or_end(b'}')? {
                break;
            }
        }
    }
    c.skip_ws();
    (c.i == body.len()).then_some(call)
}

struct Cursor<'a> {
    b: &'a [u8],
    /// `b` as text.
    text: &'a str,
    i: usize,
    /// Whether the body holds a tab or a line break anywhere.
    breaks: bool,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.peek()? == want).then(|| self.i += 1)
    }

    /// Consumes `close` if it comes next (an empty object or array).
    fn closes(&mut self, close: u8) -> Option<bool> {
        let end = self.peek()? == close;
        if end {
            self.i += 1;
        }
        Some(end)
    }

    /// After a member or an element: `,` (another follows: false) or `close` (the end: true).
    fn next_or_end(&mut self, close: u8) -> Option<bool> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                Some(false)
            }
            c if c == close => {
                self.i += 1;
                Some(true)
            }
            _ => None,
        }
    }

    /// A string without escapes or raw control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = self.b.get(self.i..)?;
        let len = memchr::memchr2(b'"', b'\\', rest)?;
        // An escape is serde's to decode.
        if rest[len] != b'"' {
            return None;
        }
        if self.breaks && memchr::memchr3(b'\t', b'\n', b'\r', &rest[..len]).is_some() {
            return None;
        }
        // Both ends are ASCII quotes, so both are character boundaries.
        let s = self.text.get(self.i..self.i + len)?;
        self.i += len + 1;
        Some(s)
    }

    /// A field's value: a string, an unsigned integer (as serde's `Text` prints it) or
    /// `null` (the field absent). `None`: anything else.
    fn scalar(&mut self) -> Option<Option<Text<'a>>> {
        match self.peek()? {
            b'"' => Some(Some(Text(Cow::Borrowed(self.string()?)))),
            b'0'..=b'9' => {
                let start = self.i;
                while let Some(b'0'..=b'9') = self.b.get(self.i) {
                    self.i += 1;
                }
                let digits = &self.b[start..self.i];
                // Leading zeros are not JSON; 20 digits may not fit a u64; a fraction or an
                // exponent is a float, which serde prints its own way.
                if (digits.len() > 1 && digits[0] == b'0')
                    || digits.len() > 19
                    || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
                {
                    return None;
                }
                let text = self.text.get(start..self.i)?;
                Some(Some(Text(Cow::Owned(text.to_string()))))
            }
            b'n' => {
                let rest = self.b.get(self.i..self.i + 4)?;
                (rest == b"null").then(|| {
                    self.i += 4;
                    None
                })
            }
            _ => None,
        }
    }

    /// `[{"username": ..., "client_id": ...}, ...]` or one such object.
    fn user_info(&mut self) -> Option<UserInfo<'a>> {
        let mut out = Vec::with_capacity(1);
        match self.peek()? {
            b'{' => out.push(self.user_entry()?),
            b'[' => {
                self.i += 1;
                if !self.closes(b']')? {
                    loop {
                        out.push(self.user_entry()?);
                        if self.next_or_end(b']')? {
                            break;
                        }
                    }
                }
            }
            _ => return None,
        }
        Some(UserInfo(out))
    }

    /// `{"username": ..., "client_id": ...}`, either or both; another key is serde's.
    fn user_entry(&mut self) -> Option<UserEntry<'a>> {
        let mut entry = UserEntry {
            username: None,
            client_id: None,
        };
        let mut seen = 0u8;
        self.eat(b'{')?;
        if self.closes(b'}')? {
            return Some(entry);
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            let (bit, field) = match key {
                "username" => (1, &mut entry.username),
                "client_id" => (2, &mut entry.client_id),
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            *field = self.scalar()?;
            if self.next_or_end(b'}')? {
                return Some(entry);
            }
        }
    }

    /// `[{"name": "value"}, ...]`, every value a string or an unsigned integer.
    fn headers(&mut self) -> Option<HeaderList<'a>> {
        let mut out = Vec::with_capacity(16);
        self.eat(b'[')?;
        if self.closes(b']')? {
            return Some(HeaderList(out));
        }
        loop {
            self.eat(b'{')?;
            if !self.closes(b'}')? {
                loop {
                    let name = self.string()?;
                    self.eat(b':')?;
                    // A null header value is an error for serde: let it say so.
                    let value = self.scalar()??;
                    out.push((Text(Cow::Borrowed(name)), value));
                    if self.next_or_end(b'}')? {
                        break;
                    }
                }
            }
            if self.next_or_end(b']')? {
                return Some(HeaderList(out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sideband::wire::parse_request;

    const HARNESS: &str = r#"{"source_ip":"203.0.113.17","source_port":53122,"method":"GET","url":"/api/v1/accounts/8f14e45f/orders?limit=20&cursor=eyJpZCI6MTIzNDV9","http_version":"1.1","headers":[{"host":"api.example.com"},{"user-agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"},{"accept":"application/json"},{"authorization":"Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTYiLCJzY29wZSI6InJlYWQifQ.c2lnbmF0dXJl"},{"x-forwarded-for":"203.0.113.17"},{"x-request-id":"4b9f1c2e-7d3a-4e51-9a8b-0c6d5e4f3a21"},{"content-length":"0"}]}"#;

    /// When the quick path answers, it answers what serde answers.
    fn agrees(body: &[u8]) -> bool {
        match request(body) {
            None => false,
            Some(quick) => {
                let slow = parse_request(body).unwrap_or_else(|e| {
                    panic!("quick accepted what serde refuses ({e}): {body:?}")
                });
                assert_eq!(
                    format!("{quick:?}"),
                    format!("{slow:?}"),
                    "{}",
                    String::from_utf8_lossy(body)
                );
                true
            }
        }
    }

    #[test]
    fn the_usual_shapes_are_decoded_as_serde_decodes_them() {
        for body in [
            HARNESS,
            "{}",
            r#"{"headers":[]}"#,
            r#"{"source_ip":"1.2.3.4","user_info":[{"username":"u","client_id":"c"},{}]}"#,
            r#"{"user_info":{"client_id":"c","username":null}}"#,
            r#"{"user_info":[]}"#,
            r#" { "source_ip" : "10.0.0.1" , "source_port" : "null", "method":"POST","url":"/a","headers":[ {"host":"h","x-a":"1"} , {} ] } "#,
            "{\"url\":\"/café\",\"headers\":[{\"x-name\":\"Zoë\"}]}",
            "{\n  \"source_ip\": \"::1\",\n  \"source_port\": 0,\n  \"http_version\": null,\n  \"method\": \"GET\",\n  \"url\": \"/\",\n  \"headers\": [{\"content-length\": 12}]\n}\n",
        ] {
            assert!(agrees(body.as_bytes()), "not taken quickly: {body}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for body in [
            r#"{"ASEPayload":{"source_ip":"1.2.3.4"}}"#,
            r#"{"user_info":[{"username":"u","role":"admin"}]}"#,
            r#"{"user_info":[{"username":"u","username":"v"}]}"#,
            r#"{"user_info":null}"#,
            r#"{"url":"/a\"b"}"#,
            r#"{"url":"/caf\u00e9"}"#,
            r#"{"url":"/a","url":"/b"}"#,
            "{\"url\":\"/a\u{1}b\"}",
            "{\"url\":\"/a\nb\"}",
            "{\"url\":\"/a\tb\"}",
            r#"{"source_port":1.5}"#,
            r#"{"source_port":-1}"#,
            r#"{"source_port":0123}"#,
            r#"{"source_port":123456789012345678901}"#,
            r#"{"source_port":true}"#,
            r#"{"headers":[{"x-a":null}]}"#,
            r#"{"headers":null}"#,
            r#"{"method":"GET"} x"#,
            r#"{"method":"GET",}"#,
            r#"{"other":"field"}"#,
            r#"[]"#,
            "",
        ] {
            assert!(request(body.as_bytes()).is_none(), "taken quickly: {body}");
        }
    }

    /// Thousands of damaged copies of the usual call: whatever the quick path accepts,
    /// serde decodes to the same call.
    #[test]
    fn damaged_calls_never_make_the_two_disagree() {
        for base in [
            HARNESS.as_bytes(),
            include_bytes!("../../benches/sideband_request.json"),
        ] {
            damage(base);
        }
    }

    fn damage(base: &[u8]) {
        assert!(agrees(base));
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"{}[]\":, \\0123456789nul.e-xA\n\t\x01\xc3\xa9";
        let mut taken = 0;
        for _ in 0..20_000 {
            let mut body = base.to_vec();
            for _ in 0..=(next() % 3) {
                let at = (next() as usize) % body.len();
                match next() % 3 {
                    0 => body[at] = alphabet[(next() as usize) % alphabet.len()],
                    1 => {
                        body.remove(at);
                    }
                    _ => body.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                }
            }
            if agrees(&body) {
                taken += 1;
            }
        }
        // Most damage lands inside a string and leaves the JSON valid: the quick path
        // must have been exercised, not only refused.
        assert!(
            taken > 1_000,
            "only {taken} damaged calls were taken quickly"
        );
    }
}
