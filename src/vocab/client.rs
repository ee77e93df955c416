//! Client identifiers: the five kinds of value a client can be known by, in one model.
//!
//! [`ClientKind`] names the kind (`ip`, `token`, `cookie`, `username`, `api_key`: ASE's
//! words, the only place they are spelled); [`ClientId`] is one identifier's value, as
//! detection tracks it, activity reports it, IoAs name it and the CLI parses it. Cookies and
//! API keys are identified by value: their name is the API's. [`ApiKey`] is what an API key
//! capture found (the name it was found under, and the value). Deny and allow lists keep
//! their own entry keys (which also hold CIDR ranges and the cookie's or key's name) and name
//! their kind with [`ClientKind`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

/// The kind of a client identifier. The order is the stored code of each kind
/// ([`ClientKind::code`]): append only. Serialized by variant name (`"Ip"`), as stored
/// records have it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
// JSON names are `as_str`'s; postcard (the store) writes the variant's index, so the
// order below is part of the stored layout.
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    Ip,
    Token,
    Cookie,
    Username,
    ApiKey,
}

impl ClientKind {
    pub const ALL: [ClientKind; 5] = [
        ClientKind::Ip,
        ClientKind::Token,
        ClientKind::Cookie,
        ClientKind::Username,
        ClientKind::ApiKey,
    ];

    /// ASE's name for the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientKind::Ip => "ip",
            ClientKind::Token => "token",
            ClientKind::Cookie => "cookie",
            ClientKind::Username => "username",
            ClientKind::ApiKey => "api_key",
        }
    }

    /// The kind named `s` (ASE's names), if any.
    pub fn parse(s: &str) -> Option<ClientKind> {
        ClientKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The stored code of the kind (its position in [`ClientKind::ALL`]).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The kind stored as `code`.
    pub fn from_code(code: u8) -> Option<ClientKind> {
        ClientKind::ALL.get(usize::from(code)).copied()
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `s` is not one of ASE's identifier kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an identifier kind (ip, token, cookie, username, api_key)")]
pub struct UnknownKind(pub String);

impl FromStr for ClientKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<ClientKind, UnknownKind> {
        ClientKind::parse(s).ok_or_else(|| UnknownKind(s.to_string()))
    }
}

/// One client identifier: its kind and value. Cheap to clone (the texts are shared).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    Ip(IpAddr),
    Token(Arc<str>),
    Cookie(Arc<str>),
    ApiKey(Arc<str>),
    Username(Arc<str>),
}

impl ClientId {
    /// The identifier of `kind` with the text `value`; `None` for an address that does not
    /// parse.
    pub fn new(kind: ClientKind, value: &str) -> Option<ClientId> {
        Some(match kind {
            ClientKind::Ip => ClientId::Ip(value.parse().ok()?),
            ClientKind::Token => ClientId::Token(Arc::from(value)),
            ClientKind::Cookie => ClientId::Cookie(Arc::from(value)),
            ClientKind::Username => ClientId::Username(Arc::from(value)),
            ClientKind::ApiKey => ClientId::ApiKey(Arc::from(value)),
        })
    }

    pub fn kind(&self) -> ClientKind {
        match self {
            ClientId::Ip(_) => ClientKind::Ip,
            ClientId::Token(_) => ClientKind::Token,
            ClientId::Cookie(_) => ClientKind::Cookie,
            ClientId::ApiKey(_) => ClientKind::ApiKey,
            ClientId::Username(_) => ClientKind::Username,
        }
    }

    /// The value as text (an address printed).
    pub fn value(&self) -> String {
        match self {
            ClientId::Ip(ip) => ip.to_string(),
            ClientId::Token(v)
            | ClientId::Cookie(v)
            | ClientId::ApiKey(v)
            | ClientId::Username(v) => v.to_string(),
        }
    }

    /// The text of a non-address identifier (`None` for an address).
    pub fn text(&self) -> Option<&str> {
        match self {
            ClientId::Ip(_) => None,
            ClientId::Token(v)
            | ClientId::Cookie(v)
            | ClientId::ApiKey(v)
            | ClientId::Username(v) => Some(v),
        }
    }
}

impl fmt::Display for ClientId {
    /// `kind value`, e.g. `ip 10.0.0.1` (the value unmasked: mask secrets before logging).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.value())
    }
}

/// An API key and where it was found (header or query parameter name, lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKey {
    pub name: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_and_coded_in_one_place() {
        for k in ClientKind::ALL {
            assert_eq!(ClientKind::parse(k.as_str()), Some(k));
            assert_eq!(k.as_str().parse::<ClientKind>(), Ok(k));
            assert_eq!(ClientKind::from_code(k.code()), Some(k));
        }
        // Stored codes never move.
        assert_eq!(ClientKind::Ip.code(), 0);
        assert_eq!(ClientKind::ApiKey.code(), 4);
        assert!("ips".parse::<ClientKind>().is_err());
    }

    #[test]
    fn identifiers_parse_and_print() {
        let ip = ClientId::new(ClientKind::Ip, "10.0.0.1").unwrap();
        assert_eq!(ip.to_string(), "ip 10.0.0.1");
        assert_eq!(ip.text(), None);
        assert_eq!(ClientId::new(ClientKind::Ip, "nope"), None);
        let t = ClientId::new(ClientKind::Token, "abc").unwrap();
        assert_eq!(
            (t.kind(), t.value(), t.text()),
            (ClientKind::Token, "abc".into(), Some("abc"))
        );
    }
}
