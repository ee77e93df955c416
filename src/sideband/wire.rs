//! ASE's sideband wire format: the JSON a gateway posts to `/ase/request` and
//! `/ase/response`, and the one place that turns sideband outcomes into HTTP answers.
//!
//! Accepted as real gateways send it (reference §1.3–1.4, docs/sideband.md "Gateways"):
//! `headers` is an array of objects of header name to value (repeated headers repeated);
//! `http_version` may be `"1.1"`, `"HTTP/1.1"`, absent or `"null"` (HTTP/1.1);
//! `response_code` a string or a number; `source_port` a number, a string, `"null"` or
//! absent (it is not used); `source_ip` with spaces, brackets, a port or an IPv6 zone, and
//! one that is no address at all is an unknown client ([`client_ip`]); `user_info` an
//! array of objects holding `username` and/or `client_id` (a single object too). Either
//! call may be wrapped as `{"ASEPayload": {...}}` (WSO2). A body that is not UTF-8 is read
//! in its declared charset, or as ISO-8859-1 ([`to_utf8`]); one that is not JSON because a
//! gateway pasted header values in unescaped is repaired where the repair is unambiguous
//! ([`repair`]).
//! Required on a request call: `source_ip`, `method`, `url`, `headers`; on a response
//! call: `response_code`. Anything else missing or mistyped is a [`WireError`] naming the
//! field. Sizes (`sideband_max_body`) and nesting (serde_json's 128 levels) stay strict.
//!
//! | outcome | status | body |
//! |---|---|---|
//! | allowed | 200 | `{"verdict":"allow","api":"<id>"}` |
//! | blocked | 403 | `{"verdict":"block","api":"<id>","reason":"<why>"}` |
//! | response call logged | 200 | `{"verdict":"logged","correlated":true}` |
//! | bad JSON or field | 400 | `{"error":"bad_request","field":"<name>","message":"<why>"}` |
//! | missing or unknown `ASE-Token` | 401 | `{"error":"unauthorized","message":"Authentication failure (ASE-Token)"}` |
//! | body over `sideband_max_body` | 413 | `{"error":"payload_too_large",...}` |
//! | no API matches host and path | 503 | `{"error":"unknown_api","message":"Unknown API"}` |
//! | wrong path / method | 404 / 405 | `{"error":"not_found"}` / `{"error":"method_not_allowed"}` |
//!
//! Every answer carries `Connection: keep-alive` or `Connection: close` as
//! `enable_sideband_keepalive` says.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::vocab::Headers;

/// `/ase/auth`'s answer headers for the gateway to pass upstream: the client address the
/// decision was made for, the API, and the user when one was identified.
pub const ENFORCER_CLIENT: HeaderName = HeaderName::from_static("x-enforcer-client");
pub const ENFORCER_API: HeaderName = HeaderName::from_static("x-enforcer-api");
pub const ENFORCER_USER: HeaderName = HeaderName::from_static("x-enforcer-user");

/// A field that is missing, mistyped or invalid, or JSON that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct WireError {
    pub field: String,
    pub message: String,
}

impl WireError {
    pub fn new(field: &str, message: impl Into<String>) -> WireError {
        WireError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// The body of `POST /ase/request`, as sent.
#[derive(Debug, Deserialize)]
pub struct RequestCall<'a> {
    #[serde(borrow, default)]
    pub source_ip: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub source_port: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub method: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub url: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub http_version: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub headers: Option<HeaderList<'a>>,
    #[serde(borrow, default)]
    pub user_info: Option<UserInfo<'a>>,
    /// `{"ASEPayload": {...}}`: the call itself, wrapped (WSO2 API Manager 3.x and later).
    #[serde(rename = "ASEPayload", borrow, default)]
    pub payload: Option<Box<RequestCall<'a>>>,
}

/// The body of `POST /ase/response`, as sent.
#[derive(Debug, Deserialize)]
pub struct ResponseCall<'a> {
    #[serde(borrow, default)]
    pub response_code: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub response_status: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub http_version: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub headers: Option<HeaderList<'a>>,
    /// `{"ASEPayload": {...}}`: the call itself, wrapped (WSO2 API Manager 3.x and later).
    #[serde(rename = "ASEPayload", borrow, default)]
    pub payload: Option<Box<ResponseCall<'a>>>,
}

/// Parses a request call (unwrapping `ASEPayload`). Type errors name the JSON path of the
/// field.
pub fn parse_request(body: &[u8]) -> Result<RequestCall<'_>, WireError> {
    let call: RequestCall<'_> = parse(body)?;
    Ok(match call.payload {
        Some(inner) => *inner,
        None => call,
    })
}

/// Parses a response call (unwrapping `ASEPayload`).
pub fn parse_response(body: &[u8]) -> Result<ResponseCall<'_>, WireError> {
    let call: ResponseCall<'_> = parse(body)?;
    Ok(match call.payload {
        Some(inner) => *inner,
        None => call,
    })
}

/// The body as UTF-8 JSON text. A body that declares a charset other than UTF-8 in its
/// `Content-Type` (`text/plain; charset=ISO-8859-1`, as WSO2's Java client sends) is
/// decoded from it; an undeclared one that is not valid UTF-8 is read as ISO-8859-1 (every
/// byte is a character there, so nothing is refused). ASCII bodies, the usual case, are
/// returned as they are, without a copy.
pub fn to_utf8(body: Bytes, content_type: Option<&[u8]>) -> Bytes {
    if body.is_ascii() {
        return body;
    }
    let declared = content_type
        .and_then(|ct| std::str::from_utf8(ct).ok())
        .and_then(charset)
        .and_then(|label| encoding_rs::Encoding::for_label(label.as_bytes()));
    let encoding = match declared {
        Some(e) if e != encoding_rs::UTF_8 => e,
        _ if std::str::from_utf8(&body).is_ok() => return body,
        _ => encoding_rs::WINDOWS_1252,
    };
    let (text, _, _) = encoding.decode(&body);
    Bytes::from(text.into_owned())
}

/// The `charset` parameter of a media type.
fn charset(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// Repairs JSON that a gateway built by pasting values in without escaping them (Axway's
/// policy does so for header values): inside a string, a `"` that is not followed by what
/// may follow a string (`,` `:` `}` `]` or the end) is taken as a literal quote, a
/// backslash that starts no valid escape as a literal backslash, and a raw control
/// character is escaped. `None` when there was nothing to repair (the body is wrong in
/// some other way).
pub fn repair(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 16);
    let mut changed = false;
    let mut in_string = false;
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if !in_string {
            in_string = c == b'"';
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            b'\\' => match body.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u') => {
                    out.extend_from_slice(&body[i..i + 2]);
                    i += 2;
                    continue;
                }
                _ => {
                    out.extend_from_slice(b"\\\\");
                    changed = true;
                }
            },
            b'"' => {
                let next = body[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
                if matches!(next, None | Some(b',' | b':' | b'}' | b']')) {
                    in_string = false;
                    out.push(c);
                } else {
                    out.extend_from_slice(b"\\\"");
                    changed = true;
                }
            }
            c if c < 0x20 => {
                out.extend_from_slice(format!("\\u{c:04x}").as_bytes());
                changed = true;
            }
            c => out.push(c),
        }
        i += 1;
    }
    changed.then_some(out)
}

/// The client address of a request call's `source_ip`, read leniently: surrounding
/// spaces, `[v6]`, `ip:port`, `[v6]:port`, an IPv6 zone (`fe80::1%eth0`) and IPv6's long
/// form are all addresses. `None` for a value that is no address (`"0"`, `"unknown"`,
/// `"null"`, a WSO2 IPv6 address cut at its first colon): the call is then decided with
/// the client address unknown.
pub fn client_ip(text: &str) -> Option<std::net::IpAddr> {
    use std::net::{IpAddr, SocketAddr};
    let t = text.trim();
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = t.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // `[v6]` and `[v6%zone]:port`; then a zone on a bare address.
    let unbracketed = match t.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(inside, _)| inside),
        None => t,
    };
    let unzoned = unbracketed
        .split_once('%')
        .map_or(unbracketed, |(ip, _)| ip);
    unzoned.parse::<IpAddr>().ok()
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    // The fast path parses directly; only a body that fails is parsed again, tracking the
    // path, to name the field at fault.
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(plain) => {
            Err(locate::<T>(body).unwrap_or_else(|| WireError::new("(body)", plain.to_string())))
        }
    }
}

/// The error of a body that failed to parse, with the JSON path of the offending field.
fn locate<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<WireError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(_) => {
            return de
                .end()
                .err()
                .map(|e| WireError::new("(body)", e.to_string()));
        }
        Err(e) => e,
    };
    let path = err.path().to_string();
    let field = if matches!(path.as_str(), "." | "?" | "") {
        "(body)".to_string()
    } else {
        path
    };
    Some(WireError::new(&field, err.inner().to_string()))
}

impl<'a> RequestCall<'a> {
    /// A required text field.
    pub fn required(field: &'static str, v: &'a Option<Text<'a>>) -> Result<&'a str, WireError> {
        match v.as_ref().map(|t| t.as_str()) {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(WireError::new(field, "must not be empty")),
            None => Err(WireError::new(field, "is required")),
        }
    }

    /// The first `username` and `client_id` in `user_info`.
    pub fn user(&self) -> (Option<&str>, Option<&str>) {
        let Some(info) = &self.user_info else {
            return (None, None);
        };
        let username = info
            .0
            .iter()
            .find_map(|u| u.username.as_ref().map(|t| t.as_str()));
        let client_id = info
            .0
            .iter()
            .find_map(|u| u.client_id.as_ref().map(|t| t.as_str()));
        (
            username.filter(|s| !s.is_empty()),
            client_id.filter(|s| !s.is_empty()),
        )
    }
}

/// Normalises `http_version`: `"1.1"`, `"HTTP/1.1"`, `"1"`, `"2"`, `"HTTP/2.0"`...
pub fn http_version(v: &str) -> Option<http::Version> {
    let v = v.trim();
    // A gateway that does not know the version sends nothing, an empty string or "null".
    if v.is_empty() || v.eq_ignore_ascii_case("null") {
        return Some(http::Version::HTTP_11);
    }
    let v = v
        .strip_prefix("HTTP/")
        .or_else(|| v.strip_prefix("http/"))
        .unwrap_or(v);
    match v {
        "1.1" => Some(http::Version::HTTP_11),
        "1.0" | "1" => Some(http::Version::HTTP_10),
        "0.9" => Some(http::Version::HTTP_09),
        "2" | "2.0" => Some(http::Version::HTTP_2),
        "3" | "3.0" => Some(http::Version::HTTP_3),
        _ => None,
    }
}

/// A JSON scalar read as text: a string (borrowed when it has no escapes), a number or
/// a boolean. Gateways disagree on which they send for ports, codes and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// `headers`: an array of objects, each normally holding one `"name": "value"` pair.
#[derive(Debug, Default)]
pub struct HeaderList<'a>(pub Vec<(Text<'a>, Text<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for HeaderList<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One `{"name": "value", ...}` object, its pairs appended straight to the list
        /// (no list per object).
        struct Append<'l, 'a>(&'l mut Vec<(Text<'a>, Text<'a>)>);
        impl<'de> de::DeserializeSeed<'de> for Append<'_, 'de> {
            type Value = ();
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for Append<'_, 'de> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header name to value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                while let Some((k, v)) = map.next_entry::<Text<'de>, Text<'de>>()? {
                    self.0.push((k, v));
                }
                Ok(())
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of {\"name\": \"value\"} objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(16));
                while seq.next_element_seed(Append(&mut out))?.is_some() {}
                Ok(HeaderList(out))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'b> HeaderList<'b> {
    /// The list as [`Fields`] the pipeline reads in place, checked as `http` would check
    /// a `HeaderMap` built from it: each name (trimmed) a token, each value free of
    /// control characters. `body` is the buffer the call was parsed from.
    pub fn into_fields(self, body: &'b Bytes) -> Result<Fields<'b>, WireError> {
        let mut list = self.0;
        for (i, (name, value)) in list.iter_mut().enumerate() {
            let bad = |what: String| WireError::new(&format!("headers[{i}]"), what);
            let trimmed = name.as_str().trim();
            if !is_header_name(trimmed.as_bytes()) {
                return Err(bad(format!("{:?} is not a header name", name.as_str())));
            }
            if !is_header_value(value.as_str().as_bytes()) {
                return Err(bad(format!(
                    "the value of {} is not a valid header value",
                    trimmed.to_ascii_lowercase()
                )));
            }
            if trimmed.len() != name.as_str().len() {
                name.0 = match &name.0 {
                    Cow::Borrowed(s) => {
                        let s: &'b str = s;
                        Cow::Borrowed(s.trim())
                    }
                    Cow::Owned(s) => Cow::Owned(s.trim().to_string()),
                };
            }
        }
        Ok(Fields { list, body })
    }
}

/// A call's header fields, checked ([`HeaderList::into_fields`]) and read in place: names
/// compared without regard to case, repeated fields kept in order.
#[derive(Debug)]
pub struct Fields<'b> {
    list: Vec<(Text<'b>, Text<'b>)>,
    /// The buffer the call was parsed from: values that are slices of it are shared, not
    /// copied, when one is kept.
    body: &'b Bytes,
}

impl Headers for Fields<'_> {
    fn all<'s>(&'s self, name: &HeaderName) -> impl Iterator<Item = &'s [u8]> {
        let want = name.as_str();
        self.list
            .iter()
            .filter(move |(n, _)| n.as_str().eq_ignore_ascii_case(want))
            .map(|(_, v)| v.as_str().as_bytes())
    }

    fn value(&self, name: &HeaderName) -> Option<HeaderValue> {
        let v = self.first(name)?;
        if self.body.as_ptr_range().contains(&v.as_ptr()) {
            HeaderValue::from_maybe_shared(self.body.slice_ref(v)).ok()
        } else {
            HeaderValue::from_bytes(v).ok()
        }
    }
}

/// Whether `name` is a header name `http::HeaderName::from_bytes` accepts: a non-empty
/// token (RFC 9110 §5.6.2) of at most 65,535 bytes.
fn is_header_name(name: &[u8]) -> bool {
    const TCHAR: [bool; 256] = {
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = (b as u8).is_ascii_alphanumeric()
                || matches!(b as u8, b'!' | b'#'..=b'\'' | b'*' | b'+' | b'-' | b'.' | b'^'..=b'`' | b'|' | b'~');
            b += 1;
        }
        t
    };
    // No early exit: the loop stays branch-free (names are short, every one is checked).
    let ok = name.iter().fold(true, |ok, &b| ok & TCHAR[usize::from(b)]);
    ok && !name.is_empty() && name.len() < 1 << 16
}

/// Whether `value` is a header value `http::HeaderValue::from_bytes` accepts: no control
/// character but tab.
fn is_header_value(value: &[u8]) -> bool {
    // No early exit, so it runs over whole vectors of bytes.
    let bad = value.iter().fold(0u8, |bad, &b| {
        bad | (u8::from(b < 0x20) & u8::from(b != b'\t')) | u8::from(b == 0x7f)
    });
    bad == 0
}

/// `user_info`: `[{"username": ..., "client_id": ...}]`, or a single such object.
#[derive(Debug, Default)]
pub struct UserInfo<'a>(pub Vec<UserEntry<'a>>);

#[derive(Debug, Deserialize)]
pub struct UserEntry<'a> {
    #[serde(borrow, default)]
    pub username: Option<Text<'a>>,
    #[serde(borrow, default)]
    pub client_id: Option<Text<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for UserInfo<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserInfo<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of {\"username\", \"client_id\"} objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(1);
                while let Some(u) = seq.next_element::<UserEntry<'de>>()? {
                    out.push(u);
                }
                Ok(UserInfo(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let one = UserEntry::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(UserInfo(vec![one]))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a sideband call led to; [`reply`] makes the HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Allow {
        api: String,
    },
    Block {
        api: String,
        reason: String,
    },
    Logged {
        correlated: bool,
    },
    BadRequest(WireError),
    Unauthorized,
    TooLarge {
        limit: usize,
    },
    UnknownApi {
        hostname: bool,
    },
    NotFound,
    MethodNotAllowed,
    Health,
    /// `/ase/auth`: let the request through. `api` and `client` are empty when no API
    /// matched (enforcer has nothing to decide there).
    Authorized {
        api: String,
        client: String,
        user: Option<String>,
    },
    /// `/ase/auth`: block the request.
    Refused,
    /// `/ase/auth`: flow control; the client may retry after `retry_after`.
    Limited {
        retry_after: std::time::Duration,
    },
}

impl Reply {
    pub fn status(&self) -> StatusCode {
        match self {
            Reply::Allow { .. }
            | Reply::Logged { .. }
            | Reply::Health
            | Reply::Authorized { .. } => StatusCode::OK,
            Reply::Block { .. } | Reply::Refused => StatusCode::FORBIDDEN,
            Reply::Limited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Reply::BadRequest(_) => StatusCode::BAD_REQUEST,
            Reply::Unauthorized => StatusCode::UNAUTHORIZED,
            Reply::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Reply::UnknownApi { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Reply::NotFound => StatusCode::NOT_FOUND,
            Reply::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    correlated: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

const EMPTY: Body<'static> = Body {
    verdict: None,
    api: None,
    reason: None,
    correlated: None,
    status: None,
    mode: None,
    error: None,
    field: None,
    message: None,
};

/// Builds the HTTP answer for `reply`. Never fails.
pub fn reply(reply: &Reply, keepalive: bool) -> Response<Bytes> {
    let mut extra = Vec::new();
    let body = match reply {
        Reply::Authorized { api, client, user } => {
            // Exactly 200 with no body: Envoy denies on any other 2xx, and nginx and Caddy
            // keep their connection to enforcer only when there is no body to skip.
            let mut resp = Response::new(Bytes::new());
            let headers = resp.headers_mut();
            for (name, value) in [
                (ENFORCER_CLIENT, Some(client.as_str())),
                (ENFORCER_API, Some(api.as_str())),
                (ENFORCER_USER, user.as_deref()),
            ] {
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
                    headers.insert(name, v);
                }
            }
            headers.insert(CONNECTION, connection(keepalive));
            return resp;
        }
        Reply::Refused => Body {
            error: Some("forbidden"),
            message: Some("Blocked by enforcer".into()),
            ..EMPTY
        },
        Reply::Limited { retry_after } => {
            // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            extra.push((RETRY_AFTER, HeaderValue::from(secs.max(1))));
            Body {
                error: Some("too_many_requests"),
                message: Some("Rate limited by enforcer".into()),
                ..EMPTY
            }
        }
        Reply::Allow { api } => Body {
            verdict: Some("allow"),
            api: Some(api),
            ..EMPTY
        },
        Reply::Block { api, reason } => Body {
            verdict: Some("block"),
            api: Some(api),
            reason: Some(reason),
            ..EMPTY
        },
        Reply::Logged { correlated } => Body {
            verdict: Some("logged"),
            correlated: Some(*correlated),
            ..EMPTY
        },
        Reply::Health => Body {
            status: Some("up"),
            mode: Some("sideband"),
            ..EMPTY
        },
        Reply::BadRequest(e) => Body {
            error: Some("bad_request"),
            field: Some(&e.field),
            message: Some(e.message.clone()),
            ..EMPTY
        },
        Reply::Unauthorized => Body {
            error: Some("unauthorized"),
            message: Some("Authentication failure (ASE-Token)".into()),
            ..EMPTY
        },
        Reply::TooLarge { limit } => Body {
            error: Some("payload_too_large"),
            message: Some(format!(
                "the body is over the {limit}-byte limit (sideband_max_body)"
            )),
            ..EMPTY
        },
        Reply::UnknownApi { hostname } => Body {
            error: Some("unknown_api"),
            message: Some(
                if *hostname {
                    "Unknown Hostname"
                } else {
                    "Unknown API"
                }
                .into(),
            ),
            ..EMPTY
        },
        Reply::NotFound => Body {
            error: Some("not_found"),
            message: Some(
                "sideband calls go to POST /ase/request and POST /ase/response, \
                 external authorization to /ase/auth/nginx, /ase/auth/caddy or /ase/auth/envoy"
                    .into(),
            ),
            ..EMPTY
        },
        Reply::MethodNotAllowed => Body {
            error: Some("method_not_allowed"),
            message: Some("use POST".into()),
            ..EMPTY
        },
    };
    let bytes = match reply {
        Reply::Allow { api } => allow_json(api),
        _ => serde_json::to_vec(&body).unwrap_or_default(),
    };
    let mut resp = Response::new(Bytes::from(bytes));
    *resp.status_mut() = reply.status();
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CONNECTION, connection(keepalive));
    for (name, value) in extra {
        headers.insert(name, value);
    }
    resp
}

/// The body of an allow, the answer to nearly every call, written without serializing a
/// `Body`: the same bytes `Body { verdict: "allow", api }` gives (a test holds them equal).
fn allow_json(api: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + api.len());
    out.extend_from_slice(br#"{"verdict":"allow","api":"#);
    // Writing a string into a Vec cannot fail; serde_json escapes it.
    let _ = serde_json::to_writer(&mut out, api);
    out.push(b'}');
    out
}

fn connection(keepalive: bool) -> HeaderValue {
    HeaderValue::from_static(if keepalive { "keep-alive" } else { "close" })
}

/// Hands the gateway the correlation id of an allowed request call that came without
/// `X-CorrelationID`, as ASE does: `Set-Cookie: PISESSIONID=<id>; Max-Age=<ttl>`.
pub fn set_session(resp: &mut Response<Bytes>, id: &str, ttl: std::time::Duration) {
    let mut secs = itoa::Buffer::new();
    let secs = secs.format(ttl.as_secs().max(1));
    let mut cookie = String::with_capacity(id.len() + secs.len() + 24);
    for part in ["PISESSIONID=", id, "; Max-Age=", secs] {
        cookie.push_str(part);
    }
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(cookie)) {
        resp.headers_mut().insert(http::header::SET_COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request call of reference §1.3, as TIBCO Mashery sends it.
    const MASHERY: &str = r#"{
      "source_ip": "10.240.0.6", "source_port": 80, "method": "GET",
      "url": "/shopapi/get?query=abc", "http_version": "HTTP/1.1",
      "user_info": [ { "username": "abc", "client_id": "cabfsghhbsag" } ],
      "headers": [ { "host": "cstest.api.ceml.mashspud.com" }, { "x-forwarded-for": "10.240.0.6" },
                   { "x-api-key": "zhxuetuay9cy84mbngpx4smj" }, { "accept": "a" }, { "accept": "b" } ] }"#;

    #[test]
    fn names_and_values_are_checked_as_http_checks_them() {
        for b in 0..=255u8 {
            for name in [vec![b], vec![b'a', b, b'z']] {
                assert_eq!(
                    is_header_name(&name),
                    HeaderName::from_bytes(&name).is_ok(),
                    "name {name:?}"
                );
            }
            let value = [b'a', b, b'z'];
            assert_eq!(
                is_header_value(&value),
                HeaderValue::from_bytes(&value).is_ok(),
                "value byte {b:#x}"
            );
        }
        for len in [0, 1, (1 << 16) - 1, 1 << 16] {
            let name = vec![b'x'; len];
            assert_eq!(
                is_header_name(&name),
                HeaderName::from_bytes(&name).is_ok(),
                "{len}"
            );
        }
    }

    #[test]
    fn fields_are_read_in_place_by_any_case() {
        let raw = br#"{"headers":[{" User-Agent ":"curl/8"},{"Cookie":"a=1"},{"cookie":"b=2"},{"x-n":7},{"x-e":"\u0041"}]}"#;
        let body = Bytes::from_static(raw);
        let call = parse_request(&body).unwrap();
        let h = call.headers.unwrap().into_fields(&body).unwrap();
        let ua = h.value(&http::header::USER_AGENT).unwrap();
        assert_eq!(ua, "curl/8");
        assert!(
            body.as_ptr_range().contains(&ua.as_bytes().as_ptr()),
            "a value without escapes is shared with the body, not copied"
        );
        assert_eq!(
            h.all(&http::header::COOKIE).collect::<Vec<_>>(),
            [&b"a=1"[..], &b"b=2"[..]]
        );
        let (n, e) = (
            HeaderName::from_static("x-n"),
            HeaderName::from_static("x-e"),
        );
        assert_eq!(h.text(&n), Some("7"));
        assert_eq!(h.value(&e).unwrap(), "A");
        assert!(!h.has(&http::header::HOST));
        for (bad, field, says) in [
            (
                r#"{"headers":[{"host":"a"},{"bad name":"x"}]}"#,
                "headers[1]",
                "is not a header name",
            ),
            (
                r#"{"headers":[{"":"x"}]}"#,
                "headers[0]",
                "is not a header name",
            ),
            (
                r#"{"headers":[{"X-A":"a\u0000b"}]}"#,
                "headers[0]",
                "the value of x-a is not",
            ),
        ] {
            let body = Bytes::from(bad);
            let e = parse_request(&body)
                .unwrap()
                .headers
                .unwrap()
                .into_fields(&body)
                .unwrap_err();
            assert_eq!(e.field, field, "{bad}");
            assert!(e.message.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn an_allow_is_written_as_its_body_serializes() {
        for api in ["shop", "", "a\"b\\c", "ünï/côdé", "tab\there", "\u{1}"] {
            let body = Body {
                verdict: Some("allow"),
                api: Some(api),
                ..EMPTY
            };
            assert_eq!(
                allow_json(api),
                serde_json::to_vec(&body).unwrap(),
                "{api:?}"
            );
        }
    }

    #[test]
    fn the_session_cookie_carries_the_id_and_the_ttl() {
        let mut resp = Response::new(Bytes::new());
        set_session(
            &mut resp,
            "Id-0a1b2c3d-1f",
            std::time::Duration::from_secs(300),
        );
        assert_eq!(
            resp.headers()[http::header::SET_COOKIE],
            "PISESSIONID=Id-0a1b2c3d-1f; Max-Age=300"
        );
        set_session(&mut resp, "Id-x-0", std::time::Duration::from_millis(10));
        assert_eq!(
            resp.headers()[http::header::SET_COOKIE],
            "PISESSIONID=Id-x-0; Max-Age=1",
            "never Max-Age=0, which would delete the cookie at once"
        );
    }

    #[test]
    fn gateway_request_calls_parse() {
        let call = parse_request(MASHERY.as_bytes()).unwrap();
        assert_eq!(call.source_port.as_ref().map(Text::as_str), Some("80"));
        assert_eq!(
            call.http_version
                .as_ref()
                .and_then(|v| http_version(v.as_str())),
            Some(http::Version::HTTP_11)
        );
        assert_eq!(call.user(), (Some("abc"), Some("cabfsghhbsag")));
        let body = Bytes::from_static(MASHERY.as_bytes());
        let url_is_borrowed = matches!(call.url.as_ref().unwrap().0, Cow::Borrowed(_));
        let h = call.headers.unwrap().into_fields(&body).unwrap();
        assert_eq!(
            h.text(&http::header::HOST),
            Some("cstest.api.ceml.mashspud.com")
        );
        assert_eq!(
            h.all(&http::header::ACCEPT).collect::<Vec<_>>(),
            [&b"a"[..], &b"b"[..]],
            "repeated headers are kept, in order"
        );
        assert!(url_is_borrowed, "no copy without escapes");
    }

    #[test]
    fn response_codes_may_be_strings_or_numbers() {
        for body in [
            r#"{"response_code":"200","response_status":"OK"}"#,
            r#"{"response_code":200}"#,
        ] {
            let call = parse_response(body.as_bytes()).unwrap();
            assert_eq!(call.response_code.unwrap().as_str(), "200");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse_request(br#"{"source_ip": ["x"]}"#).unwrap_err();
        assert_eq!(e.field, "source_ip");
        let e = parse_request(br#"{"headers": [{"host": {"a": 1}}]}"#).unwrap_err();
        assert!(e.field.starts_with("headers"), "{e}");
        let e = parse_request(b"{not json").unwrap_err();
        assert_eq!(e.field, "(body)");
        let e = parse_request(br#"{"method":"GET"} trailing"#).unwrap_err();
        assert_eq!(e.field, "(body)");
        let call = parse_request(br#"{"method":""}"#).unwrap();
        assert_eq!(
            RequestCall::required("method", &call.method)
                .unwrap_err()
                .to_string(),
            "method: must not be empty"
        );
        assert_eq!(
            RequestCall::required("url", &call.url)
                .unwrap_err()
                .to_string(),
            "url: is required"
        );
    }

    #[test]
    fn both_http_version_spellings() {
        for v in ["1.1", "HTTP/1.1", "http/1.1"] {
            assert_eq!(http_version(v), Some(http::Version::HTTP_11));
        }
        assert_eq!(http_version("HTTP/2.0"), Some(http::Version::HTTP_2));
        assert_eq!(http_version("banana"), None);
    }

    #[test]
    fn source_ips_as_gateways_write_them() {
        let ip = |s: &str| client_ip(s).map(|ip| ip.to_string());
        for (given, read) in [
            ("10.0.0.1", "10.0.0.1"),
            ("  10.0.0.1 ", "10.0.0.1"),
            ("1.2.3.4:5678", "1.2.3.4"),
            ("[::1]", "::1"),
            ("[::1]:80", "::1"),
            ("fe80::1%eth0", "fe80::1"),
            ("[fe80::1%eth0]:443", "fe80::1"),
            ("0:0:0:0:0:0:0:1", "::1"),
            ("2001:db8:0:0:0:0:0:1", "2001:db8::1"),
        ] {
            assert_eq!(ip(given).as_deref(), Some(read), "{given:?}");
        }
        for nothing in ["0", "2001", "[2001", "null", "unknown", "", "1.2.3"] {
            assert_eq!(ip(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn bodies_in_other_charsets_become_utf8() {
        let latin1 = Bytes::from_static(b"{\"u\":\"Jos\xe9\"}");
        for ct in [
            None,
            Some(&b"text/plain; charset=ISO-8859-1"[..]),
            Some(b"application/json"),
        ] {
            let text = to_utf8(latin1.clone(), ct);
            assert_eq!(&text[..], "{\"u\":\"José\"}".as_bytes(), "{ct:?}");
        }
        // Valid UTF-8 declared as Latin-1 is read as declared.
        let utf8 = Bytes::from("{\"u\":\"José\"}");
        assert_eq!(&to_utf8(utf8.clone(), None)[..], &utf8[..]);
        assert_eq!(
            &to_utf8(utf8, Some(b"text/plain; charset=\"iso-8859-1\""))[..],
            "{\"u\":\"JosÃ©\"}".as_bytes()
        );
        // ASCII is passed through without a copy.
        let ascii = Bytes::from_static(b"{}");
        assert_eq!(
            to_utf8(ascii.clone(), Some(b"text/plain; charset=ISO-8859-1")).as_ptr(),
            ascii.as_ptr()
        );
    }

    #[test]
    fn unescaped_values_are_repaired_and_json_is_left_alone() {
        let axway =
            br#"{"headers": [{"ETag" : ""v7-4412""},{"X-Path" : "C:\dir"},{"Accept" : "*/*"}]}"#;
        let fixed = repair(axway).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fixed).unwrap();
        assert_eq!(v["headers"][0]["ETag"], "\"v7-4412\"");
        assert_eq!(v["headers"][1]["X-Path"], "C:\\dir");
        assert_eq!(v["headers"][2]["Accept"], "*/*");
        let tab = b"{\"a\":\"x\ty\"}";
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&repair(tab).unwrap()).unwrap()["a"],
            "x\ty"
        );
        assert_eq!(repair(br#"{"a":"b","c":[1,"\"q\""]}"#), None, "valid JSON");
        assert_eq!(repair(b"{not json"), None, "nothing a repair can fix");
    }

    #[test]
    fn wrapped_calls_are_unwrapped() {
        let call = parse_response(
            br#"{"ASEPayload":{"headers":[{"Content-Type":"application\/json"}],"response_code":"200","response_status":"OK","http_version":"1.1"}}"#,
        )
        .unwrap();
        assert_eq!(call.response_code.unwrap().as_str(), "200");
        assert!(call.headers.is_some());
        let call =
            parse_request(br#"{"ASEPayload":{"source_ip":"1.2.3.4","method":"GET"}}"#).unwrap();
        assert_eq!(call.method.unwrap().as_str(), "GET");
    }

    #[test]
    fn a_missing_or_null_http_version_is_http_11() {
        for v in ["", "null", " NULL "] {
            assert_eq!(http_version(v), Some(http::Version::HTTP_11), "{v:?}");
        }
    }

    #[test]
    fn answers_carry_the_keepalive_choice() {
        let r = reply(&Reply::Allow { api: "shop".into() }, false);
        assert_eq!(r.headers()["connection"], "close");
        let r = reply(&Reply::Unauthorized, true);
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["connection"], "keep-alive");
    }

    #[test]
    fn authorization_answers_are_bare() {
        // Allow: exactly 200 and no body (Envoy denies on any other 2xx; nginx and Caddy
        // keep the connection only without a body), the user only when there is one.
        let r = reply(
            &Reply::Authorized {
                api: "shop".into(),
                client: "10.0.0.1".into(),
                user: None,
            },
            true,
        );
        let headers: Vec<String> = r
            .headers()
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        assert_eq!(
            (r.status().as_u16(), r.body().len(), headers),
            (
                200,
                0,
                vec![
                    "x-enforcer-client: 10.0.0.1".to_string(),
                    "x-enforcer-api: shop".into(),
                    "connection: keep-alive".into()
                ]
            )
        );
        let r = reply(&Reply::Refused, true);
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.body().as_ref(),
            br#"{"error":"forbidden","message":"Blocked by enforcer"}"#
        );
        // Retry-After in whole seconds, rounded up, never 0.
        for (wait, header) in [(1_200, "2"), (3_000, "3"), (0, "1")] {
            let r = reply(
                &Reply::Limited {
                    retry_after: std::time::Duration::from_millis(wait),
                },
                true,
            );
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()["retry-after"], header, "{wait} ms");
        }
    }
}
