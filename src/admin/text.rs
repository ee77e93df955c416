//! What the CLI prints for the management API's answers: the typed bodies of
//! [`wire`](super::wire) laid out as ASE's `cli.sh` shows them. Pure functions from an
//! answer to the text (every line ends in a newline), so the layouts are tested here
//! without a running instance.

use std::fmt::Write as _;

use super::wire::{ApiList, ClusterView, ListEntry, ListView, Persistence, Status, Tokens};
use crate::enforce::lists::{ListKind, Source};

/// `enforcer status`, in the layout of ASE's `cli.sh status`.
pub fn status(s: &Status) -> String {
    let port = |p: Option<u16>| format!("port {}", p.map_or("-".into(), |p| p.to_string()));
    let rows = [
        ("status", s.status.clone()),
        ("mode", s.mode.clone()),
        ("http/ws", port(s.http_ws_port)),
        ("https/wss", port(s.https_wss_port)),
        ("management", port(s.management_port)),
        ("firewall", s.firewall.clone()),
        ("sideband authentication", s.sideband_authentication.clone()),
        ("ase detected attack", s.ase_detected_attack.clone()),
        (
            "attack list",
            format!(
                "configured {} entries, deny {}, allow {}",
                s.attack_list.configured, s.attack_list.deny, s.attack_list.allow
            ),
        ),
        ("log level", s.log_level.clone()),
        ("timezone", format!("{} ({})", s.timezone, s.timezone_name)),
        ("apis", s.apis.to_string()),
        ("connections", s.connections.to_string()),
        ("version", s.version.clone()),
        ("started", s.started.clone()),
        ("store", store_line(&s.persistence)),
    ];
    let mut out = String::from("API Security Enforcer\n");
    for (k, v) in rows {
        let _ = writeln!(out, "{k:<24}: {v}");
    }
    out
}

/// The rows `enforcer status` adds in cluster mode: the link to Redis, then every node.
pub fn cluster(c: &ClusterView) -> String {
    let mut out = format!(
        "{:<24}: {} (this node {}), redis {} {}\n",
        "cluster", c.cluster_id, c.node, c.redis, c.redis_status
    );
    for n in &c.nodes {
        let _ = writeln!(
            out,
            "{:<24}: {} {}, management {}, last contact {}",
            "  node",
            n.node,
            n.status,
            n.management,
            n.last_contact.as_deref().unwrap_or("-")
        );
    }
    out
}

/// The store's row of `enforcer status`: kind, health, and whether records are still
/// being loaded back after a start.
fn store_line(p: &Persistence) -> String {
    let p = match p {
        Persistence::Off { store } => return store.clone(),
        Persistence::Store(p) => p,
    };
    let health = if p.healthy { "healthy" } else { "unhealthy" };
    let restoring = if p.restoring {
        ", restoring records"
    } else {
        ""
    };
    let last = p.last_flush.as_deref().unwrap_or("never");
    format!(
        "{}, {health}{restoring}, {} flushes, last {last}",
        p.store, p.flushes
    )
}

/// `enforcer api list`: one row per API.
pub fn api_table(list: &ApiList) -> String {
    let mut out = format!(
        "{:<24} {:<8} {:<24} {:<24} servers\n",
        "api_id", "protocol", "hostname", "url"
    );
    for a in &list.apis {
        let _ = writeln!(
            out,
            "{:<24} {:<8} {:<24} {:<24} {}",
            a.api_id,
            a.protocol,
            a.hostname,
            a.url,
            a.servers.join(", ")
        );
    }
    out
}

/// `enforcer sideband token list`: numbered tokens with their creation times.
pub fn tokens(list: &Tokens) -> String {
    if list.tokens.is_empty() {
        return "No sideband tokens.\n".into();
    }
    let mut out = String::new();
    for (i, t) in list.tokens.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}) token : {}, created : {}",
            i + 1,
            t.token,
            t.created
        );
    }
    out
}

/// A list view in ASE's `view_blacklist` layout: one section per source (only `only`'s
/// when given), numbered lines.
pub fn list_view(kind: ListKind, view: &ListView, only: Option<Source>) -> String {
    let title = match kind {
        ListKind::Deny => "Blacklist",
        ListKind::Allow => "Whitelist",
    };
    let kinds: [(&[ListEntry], &str); 5] = [
        (&view.ips, "ip"),
        (&view.cookies, "cookie"),
        (&view.oauth_tokens, "token"),
        (&view.api_keys, "api_key"),
        (&view.usernames, "username"),
    ];
    let mut out = String::new();
    for source in Source::ALL {
        if only.is_some_and(|o| o != source) {
            continue;
        }
        let heading = match source {
            Source::Manual => "Manual",
            Source::Decoy => "Realtime Decoy",
            Source::Pattern => "Realtime Pattern",
            Source::Detection => "Realtime Detection",
        };
        let _ = writeln!(out, "{heading} {title}");
        let mut n = 0;
        for (entries, kind) in kinds {
            for e in entries.iter().filter(|e| e.source == source) {
                n += 1;
                let _ = match &e.name {
                    Some(name) => write!(
                        out,
                        "{n}) type : {kind}, name : {name}, value : {}",
                        e.value
                    ),
                    None => write!(out, "{n}) type : {kind}, value : {}", e.value),
                };
                if let Some(expires) = &e.expires {
                    let _ = write!(out, ", expires : {expires}");
                }
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: Source, name: Option<&str>, value: &str) -> ListEntry {
        ListEntry {
            source,
            added: None,
            expires: None,
            reason: None,
            value: value.into(),
            name: name.map(str::to_string),
        }
    }

    #[test]
    fn a_list_view_has_a_section_per_source_and_numbers_its_lines() {
        let view = ListView {
            ips: vec![entry(Source::Manual, None, "1.2.3.4")],
            cookies: vec![entry(Source::Manual, Some("JSESSIONID"), "abc")],
            usernames: vec![entry(Source::Detection, None, "mallory")],
            ..ListView::default()
        };
        assert_eq!(
            list_view(ListKind::Deny, &view, None),
            "Manual Blacklist\n\
             1) type : ip, value : 1.2.3.4\n\
             2) type : cookie, name : JSESSIONID, value : abc\n\
             Realtime Decoy Blacklist\n\
             Realtime Pattern Blacklist\n\
             Realtime Detection Blacklist\n\
             1) type : username, value : mallory\n"
        );
        assert_eq!(
            list_view(ListKind::Allow, &view, Some(Source::Detection)),
            "Realtime Detection Whitelist\n1) type : username, value : mallory\n"
        );
    }
}
