//! The management API's JSON contract: one struct per body, serialised by the handlers
//! and deserialised by the CLI's [`client`](super::client), so the two cannot drift.
//!
//! Field order is the order the keys are written in. Imports nothing of the admin module
//! (the handlers and the client both import it).

use serde::{Deserialize, Serialize};

pub use crate::enforce::lists::Source;
pub use crate::sideband::tokens::Token;
pub use crate::store::persister::StoreStatus;
use crate::vocab::ClientKind;

/// Every error: `{"error": "<code>", "parameter": "…", "message": "<text>"}`, with
/// `parameter` only when one is at fault.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    pub message: String,
}

/// `{"status": "success", "status_message": "API shop added"}`: a change done (an API
/// added, updated or deleted, a token imported or deleted, the secret key changed); and
/// the firewall and sideband authentication switches, whose `status` is `enabled` or
/// `disabled`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    pub status: String,
    pub status_message: String,
}

impl Ack {
    /// `{"status": "success", "status_message": message}`.
    pub fn success(message: String) -> Ack {
        Ack {
            status: "success".into(),
            status_message: message,
        }
    }
}

/// `GET /v4/ase/api`: the APIs in service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiList {
    pub apis: Vec<ApiSummary>,
}

/// One API of [`ApiList`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiSummary {
    pub api_id: String,
    /// `http` or `ws`.
    pub protocol: String,
    pub url: String,
    /// `*` for any host.
    pub hostname: String,
    pub servers: Vec<String>,
    pub enable_blocking: bool,
}

/// `POST /v4/ase/reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reload {
    pub status: String,
    /// APIs in service now.
    pub apis: usize,
    /// `2 APIs in service`, and whether `ase.conf` changed (a restart applies it).
    pub status_message: String,
}

/// `GET /v4/ase/status`: what `enforcer status` prints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub status: String,
    pub version: String,
    pub mode: String,
    /// The bound ports (null until they are bound).
    pub http_ws_port: Option<u16>,
    pub https_wss_port: Option<u16>,
    pub management_port: Option<u16>,
    /// `enabled` or `disabled`, as the three below.
    pub firewall: String,
    pub sideband_authentication: String,
    pub ase_detected_attack: String,
    pub attack_list: AttackList,
    /// `fatal`, `error`, `warn`, `info` or `debug`.
    pub log_level: String,
    /// `utc` or `local`.
    pub timezone: String,
    pub timezone_name: String,
    pub apis: usize,
    pub connections: usize,
    pub started: String,
    /// `ase.conf`, or `changed at run time` (update-password).
    pub credentials: String,
    pub user_activities: UserActivitiesStatus,
    /// This node's link, in cluster mode; null otherwise.
    pub cluster: Option<ClusterLink>,
    pub persistence: Persistence,
}

/// The deny and allow lists' sizes in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackList {
    /// `list_max_entries`.
    pub configured: usize,
    pub deny: usize,
    pub allow: usize,
}

/// PingOne's User Activities in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserActivitiesStatus {
    pub environment_id: String,
    pub tokens: usize,
    pub hours: usize,
    pub memory_bytes: usize,
}

/// This node's place in the cluster, in [`Status`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterLink {
    pub cluster_id: String,
    pub node: String,
    /// The Redis URL without its password.
    pub redis: String,
    /// `connected` or `unreachable`.
    pub redis_status: String,
}

/// The store in [`Status`]: its health, or `{"store": "none"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Persistence {
    Store(StoreStatus),
    Off { store: String },
}

impl Persistence {
    /// `{"store": "none"}`: nothing persists across restarts.
    pub fn none() -> Persistence {
        Persistence::Off {
            store: "none".into(),
        }
    }
}

/// `GET /v4/ase/cluster` in cluster mode: this node's link to Redis and every node of the
/// registry with its last contact.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// `enabled`.
    pub cluster: String,
    pub cluster_id: String,
    pub node: String,
    pub redis: String,
    pub redis_status: String,
    pub last_contact: Option<String>,
    pub errors: u64,
    pub last_error: Option<String>,
    pub mode: String,
    pub nodes: Vec<ClusterNode>,
}

/// One node of [`ClusterView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterNode {
    pub node: String,
    pub management: String,
    pub mode: String,
    pub started: String,
    pub last_contact: Option<String>,
    /// `up`, or `silent` when its heartbeat is overdue.
    pub status: String,
    /// This node.
    #[serde(rename = "self")]
    pub this: bool,
}

/// `GET /v4/ase/cluster` without a cluster: a single node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SingleNode {
    /// `disabled`.
    pub cluster: String,
    /// `single node`.
    pub mode: String,
    pub nodes: Vec<SingleNodeEntry>,
}

/// The one node of [`SingleNode`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SingleNodeEntry {
    /// The management address (null until it is bound).
    pub node: Option<String>,
    pub status: String,
    #[serde(rename = "self")]
    pub this: bool,
}

/// The body of a list add or remove (`POST`/`DELETE /v4/ase/blacklist`, `…/whitelist`):
/// the identifiers, and on an add an optional `ttl` (`1h`). Empty fields are left out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListChange {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oauth_tokens: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<NameValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usernames: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

impl ListChange {
    /// The change naming one identifier of `kind`, given as the CLI takes it (a cookie or
    /// an API key: its name, then its value; the others: one value), and how to show it
    /// (`ip 1.2.3.4`, `cookie JSESSIONID abc`). Err: what the kind takes instead.
    pub fn naming(kind: ClientKind, values: &[String]) -> Result<(ListChange, String), String> {
        let mut change = ListChange::default();
        let shown = format!("{kind} {}", values.join(" "));
        match (kind, values) {
            (ClientKind::Cookie | ClientKind::ApiKey, [name, value]) => {
                let pair = NameValue {
                    name: name.clone(),
                    value: value.clone(),
                };
                match kind {
                    ClientKind::Cookie => change.cookies.push(pair),
                    _ => change.api_keys.push(pair),
                }
            }
            (ClientKind::Cookie | ClientKind::ApiKey, _) => {
                return Err(format!("{kind} takes a name and a value"));
            }
            (_, [value]) => match kind {
                ClientKind::Ip => change.ips.push(value.clone()),
                ClientKind::Token => change.oauth_tokens.push(value.clone()),
                _ => change.usernames.push(value.clone()),
            },
            _ => return Err(format!("{kind} takes one value")),
        }
        Ok((change, shown))
    }
}

/// A cookie or an API key: its name and value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NameValue {
    pub name: String,
    pub value: String,
}

/// `{"status": "success", "added": N}`: entries added (0 when all were listed already).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Added {
    pub status: String,
    pub added: usize,
}

/// `{"status": "success", "removed": N}`: entries removed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Removed {
    pub status: String,
    pub removed: usize,
}

/// `GET /v4/ase/blacklist` (or `whitelist`): the entries by identifier kind.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListView {
    pub ips: Vec<ListEntry>,
    pub cookies: Vec<ListEntry>,
    pub oauth_tokens: Vec<ListEntry>,
    pub api_keys: Vec<ListEntry>,
    pub usernames: Vec<ListEntry>,
}

/// One entry of [`ListView`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListEntry {
    pub source: Source,
    pub added: Option<String>,
    pub expires: Option<String>,
    pub reason: Option<String>,
    pub value: String,
    /// The cookie's or API key's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `GET /v5/ase/sideband/token`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tokens {
    pub tokens: Vec<Token>,
}

/// `POST /v5/ase/sideband/token`: `{"status": "token_created", "token": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenCreated {
    pub status: String,
    pub token: String,
}

/// The body of a token import or delete: `{"token": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenBody {
    pub token: String,
}

/// The body of `PUT /v5/ase/credentials`: `{"secret_key": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretChange {
    pub secret_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_change_names_one_identifier_as_the_cli_takes_it() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (change, shown) = ListChange::naming(ClientKind::Cookie, &args(&["S", "abc"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shown, "cookie S abc");
        assert_eq!(
            serde_json::to_string(&change).ok().as_deref(),
            Some(r#"{"cookies":[{"name":"S","value":"abc"}]}"#)
        );
        let (change, shown) = ListChange::naming(ClientKind::Ip, &args(&["1.2.3.4"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (change.ips, shown.as_str()),
            (args(&["1.2.3.4"]), "ip 1.2.3.4")
        );
        assert_eq!(
            ListChange::naming(ClientKind::ApiKey, &args(&["k"]))
                .err()
                .as_deref(),
            Some("api_key takes a name and a value")
        );
        assert_eq!(
            ListChange::naming(ClientKind::Username, &args(&["a", "b"]))
                .err()
                .as_deref(),
            Some("username takes one value")
        );
    }
}
