//! Identity capture: the client identifiers of one request, per the API's definition.
//!
//! | identifier | from | when |
//! |---|---|---|
//! | IP | the peer, or the first `X-Forwarded-For` address with `enable_xff` | always |
//! | cookie | the value of the API's `cookie` | `cookie` set |
//! | token | `Authorization: Bearer <token>` | `oauth2_access_token: true` |
//! | API key | header `apikey_header`, else query parameter `apikey_qs` | either set |
//! | username | sideband `user_info.username`; else the `jwt` username claim (decoded, signature not checked); else header `username_header` | |
//! | client id | sideband `user_info.client_id`; else the `jwt` client id claim | |
//!
//! JWTs are read where `jwt.location` says: `h:<header>` (`h:<header>:bearer` strips the
//! `Bearer ` scheme) or `qs:<key>`. A username claim that is an array gives its first
//! element. Nothing here logs a token, key or cookie value: see [`mask`].

use base64::Engine;
use http::header::{AUTHORIZATION, COOKIE};

use crate::config::ApiDef;
use crate::config::api::JwtLocation;
pub use crate::vocab::ApiKey;
use crate::vocab::headers::text;
use crate::vocab::{Exchange, Headers};

/// Fills the exchange's identifiers from the request head. `ex.client_ip`, `ex.session`,
/// and any `username`/`client_id` the sideband caller supplied are already set.
pub fn capture<A>(api: &ApiDef, ex: &mut Exchange<A>, headers: &impl Headers) {
    if api.oauth2_access_token {
        ex.token = bearer(headers.text(&AUTHORIZATION)).map(str::to_string);
    }
    ex.api_key = if let Some(name) = &api.apikey_header {
        headers
            .text(name)
            .filter(|v| !v.is_empty())
            .map(|v| ApiKey {
                name: name.as_str().to_string(),
                value: v.to_string(),
            })
    } else if let Some(key) = &api.apikey_qs {
        query_param(ex.uri.query(), key).map(|value| ApiKey {
            name: key.to_ascii_lowercase(),
            value,
        })
    } else {
        None
    };
    if let Some(jwt) = &api.jwt {
        let raw = match &jwt.location {
            JwtLocation::Header { name, bearer: true } => {
                bearer(headers.text(name)).map(str::to_string)
            }
            JwtLocation::Header {
                name,
                bearer: false,
            } => headers.text(name).map(|v| v.trim().to_string()),
            JwtLocation::Query(key) => query_param(ex.uri.query(), key),
        };
        if let Some(claims) = raw.as_deref().and_then(jwt_claims) {
            if ex.username.is_none() {
                ex.username = claim(&claims, &jwt.username_claim);
            }
            if ex.client_id.is_none()
                && let Some(c) = &jwt.clientid_claim
            {
                ex.client_id = claim(&claims, c);
            }
        }
    } else if ex.username.is_none()
        && let Some(name) = &api.username_header
    {
        ex.username = headers
            .text(name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string);
    }
}

/// Why a request's identity is ambiguous: an identifier given more than once (two
/// `Authorization` headers, an API key header twice or as a list, the session cookie
/// twice, the API key query parameter twice...). The deny list would be checked against
/// one value while the backend may read another, so such a request is refused (400)
/// rather than guessed at. `None` for an unambiguous request.
pub fn ambiguity(api: &ApiDef, headers: &impl Headers, query: Option<&str>) -> Option<String> {
    let values = |name: &http::HeaderName| headers.all(name).count();
    let listed = |name: &http::HeaderName| headers.all(name).any(|v| v.contains(&b','));
    if api.oauth2_access_token {
        let mut bearers = headers.all(&AUTHORIZATION).filter_map(|v| bearer(text(v)));
        let first = bearers.next();
        if bearers.next().is_some()
            || first.is_some_and(|t| memchr::memchr2(b',', b' ', t.as_bytes()).is_some())
        {
            return Some("more than one bearer token".into());
        }
    }
    if let Some(name) = &api.apikey_header
        && (values(name) > 1 || listed(name))
    {
        return Some(format!("the API key header {name} has more than one value"));
    }
    if let Some(key) = &api.apikey_qs
        && query_count(query, key) > 1
    {
        return Some(format!(
            "the API key parameter {key} is given more than once"
        ));
    }
    if let Some(cookie) = &api.cookie {
        let n = headers
            .all(&COOKIE)
            .filter_map(text)
            .flat_map(|v| v.split(';'))
            .filter(|pair| {
                pair.split_once('=')
                    .is_some_and(|(k, _)| k.trim() == cookie)
            })
            .count();
        if n > 1 {
            return Some(format!(
                "the session cookie {cookie} is sent more than once"
            ));
        }
    }
    match &api.jwt {
        Some(jwt) => match &jwt.location {
            JwtLocation::Header { name, .. } if values(name) > 1 => {
                return Some(format!("the JWT header {name} has more than one value"));
            }
            JwtLocation::Query(key) if query_count(query, key) > 1 => {
                return Some(format!("the JWT parameter {key} is given more than once"));
            }
            _ => {}
        },
        None => {
            if let Some(name) = &api.username_header
                && values(name) > 1
            {
                return Some(format!(
                    "the username header {name} has more than one value"
                ));
            }
        }
    }
    None
}

/// How many times query parameter `key` appears.
fn query_count(query: Option<&str>, key: &str) -> usize {
    query.map_or(0, |q| {
        form_urlencoded::parse(q.as_bytes())
            .filter(|(k, _)| k == key)
            .count()
    })
}

/// The token of a `Bearer` authorization value (scheme case-insensitive).
pub fn bearer(value: Option<&str>) -> Option<&str> {
    let v = value?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The first value of query parameter `key`, percent-decoded.
pub fn query_param(query: Option<&str>, key: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// The claims of a JWT (`header.payload.signature`), without checking the signature: ASE
/// takes identity from tokens a gateway or identity provider has already validated.
pub fn jwt_claims(jwt: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut parts = jwt.trim().split('.');
    let (_header, payload) = (parts.next()?, parts.next()?);
    if payload.len() > 16 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A claim as text: strings as they are, the first element of an array, numbers printed.
fn claim(claims: &serde_json::Map<String, serde_json::Value>, name: &str) -> Option<String> {
    let v = match claims.get(name)? {
        serde_json::Value::Array(items) => items.first()?,
        v => v,
    };
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A secret for logs: its first four characters and its length (`eyJh…(212)`).
pub fn mask(secret: &str) -> String {
    let head: String = secret.chars().take(4).collect();
    format!("{head}…({})", secret.chars().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64(payload))
    }

    #[test]
    fn bearer_tokens_and_query_parameters() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer   abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(
            query_param(Some("a=1&key=v%20x&key=2"), "key"),
            Some("v x".into())
        );
        assert_eq!(query_param(Some("a=1"), "key"), None);
    }

    #[test]
    fn jwt_claims_without_verification() {
        let claims = jwt_claims(&jwt(r#"{"username":["alice","bob"],"client_id":42}"#)).unwrap();
        assert_eq!(claim(&claims, "username"), Some("alice".into()));
        assert_eq!(claim(&claims, "client_id"), Some("42".into()));
        assert_eq!(claim(&claims, "missing"), None);
        assert!(jwt_claims("not-a-jwt").is_none());
        assert!(jwt_claims("a.%%%.c").is_none());
        assert!(jwt_claims(&jwt("[1,2]")).is_none());
    }

    #[test]
    fn secrets_are_masked() {
        assert_eq!(mask("eyJhbGciOiJIUzI1NiJ9"), "eyJh…(20)");
        assert_eq!(mask("ab"), "ab…(2)");
    }
}
