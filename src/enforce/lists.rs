//! Deny and allow lists of client identifiers: IPs (and CIDR ranges), cookies (name and
//! value), OAuth tokens, API keys (name and value) and usernames.
//!
//! Each list is an immutable [`ListSet`] behind an `ArcSwap`: a request reads it with one
//! atomic load and no lock, and a change builds the next set (persistent B-tree maps share
//! all but the changed path, so adding to a large list stays cheap) and swaps it in whole.
//! Two versions of a set can be compared in time proportional to what changed
//! ([`ListSet::changes_since`]), which is how the store saves lists incrementally.
//! Entries record their source (manual, decoy, pattern, detection) and may expire; an
//! expired entry stops matching at once and is swept away later. Allow wins over deny.
//!
//! CIDR ranges are matched through a prefix trie (`prefix-trie`) beside the ordered map
//! that lists and persists them: an address is checked against the few ranges that cover
//! it, whatever the number of ranges, instead of against each of them.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use prefix_trie::joint::JointPrefixMap;
use serde::{Deserialize, Serialize};

use super::identity::ApiKey;
use crate::vocab::ClientKind;

type Map<K, V> = imbl::OrdMap<K, V>;

/// Which list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Deny,
    Allow,
}

/// Who put an entry on a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An operator, through the management API or the CLI.
    Manual,
    /// A client that touched a decoy and then called a real API.
    Decoy,
    /// An API pattern violation (protocol, method, content type).
    Pattern,
    /// A real-time detection (an IoA, a missing mandatory token).
    Detection,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Manual,
        Source::Decoy,
        Source::Pattern,
        Source::Detection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manual => "manual",
            Source::Decoy => "decoy",
            Source::Pattern => "pattern",
            Source::Detection => "detection",
        }
    }
}

/// A client identifier, as it appears on a list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identifier {
    Ip(IpAddr),
    Net(IpNet),
    Cookie { name: String, value: String },
    Token(String),
    ApiKey { name: String, value: String },
    Username(String),
}

impl Identifier {
    /// A stable text key for storage: the type, then its parts, separated by NUL (which no
    /// header value, cookie or username can contain).
    pub fn storage_key(&self) -> String {
        match self {
            Identifier::Ip(ip) => format!("ip\0{ip}"),
            Identifier::Net(n) => format!("net\0{n}"),
            Identifier::Cookie { name, value } => format!("cookie\0{name}\0{value}"),
            Identifier::Token(t) => format!("token\0{t}"),
            Identifier::ApiKey { name, value } => format!("api_key\0{name}\0{value}"),
            Identifier::Username(u) => format!("username\0{u}"),
        }
    }

    /// The identifier a [`Identifier::storage_key`] came from.
    pub fn from_storage_key(key: &str) -> Option<Identifier> {
        let mut parts = key.splitn(3, '\0');
        let kind = parts.next()?;
        let (a, b) = (parts.next(), parts.next());
        Some(match (kind, a, b) {
            ("ip", Some(ip), None) => Identifier::Ip(ip.parse().ok()?),
            ("net", Some(n), None) => Identifier::Net(n.parse().ok()?),
            ("cookie", Some(name), Some(value)) => Identifier::Cookie {
                name: name.into(),
                value: value.into(),
            },
            ("token", Some(t), None) => Identifier::Token(t.into()),
            ("api_key", Some(name), Some(value)) => Identifier::ApiKey {
                name: name.into(),
                value: value.into(),
            },
            ("username", Some(u), None) => Identifier::Username(u.into()),
            _ => return None,
        })
    }

    /// The kind of client it names (a range is of addresses).
    pub fn kind(&self) -> ClientKind {
        match self {
            Identifier::Ip(_) | Identifier::Net(_) => ClientKind::Ip,
            Identifier::Cookie { .. } => ClientKind::Cookie,
            Identifier::Token(_) => ClientKind::Token,
            Identifier::ApiKey { .. } => ClientKind::ApiKey,
            Identifier::Username(_) => ClientKind::Username,
        }
    }

    /// For logs: secrets masked.
    pub fn describe(&self) -> String {
        use super::identity::mask;
        match self {
            Identifier::Ip(ip) => format!("ip {ip}"),
            Identifier::Net(n) => format!("ip {n}"),
            Identifier::Cookie { name, value } => format!("cookie {name}={}", mask(value)),
            Identifier::Token(t) => format!("token {}", mask(t)),
            Identifier::ApiKey { name, value } => format!("api_key {name}={}", mask(value)),
            Identifier::Username(u) => format!("username {u}"),
        }
    }
}

/// An entry's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub source: Source,
    /// Unix seconds it was added.
    pub added: i64,
    /// Unix seconds it stops matching; `None`: never.
    pub expires: Option<i64>,
    /// Why (an IoA name, a violated rule), for automatic entries.
    #[serde(with = "opt_arc_str")]
    pub reason: Option<Arc<str>>,
}

mod opt_arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(r) => s.serialize_some(&**r),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Arc<str>>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(Arc::from))
    }
}

impl Entry {
    pub fn live(&self, now: i64) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// The identifiers of one request, to match against a list.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub ip: IpAddr,
    /// `(cookie name, value)`.
    pub cookie: Option<(&'a str, &'a str)>,
    pub token: Option<&'a str>,
    pub api_key: Option<&'a ApiKey>,
    pub username: Option<&'a str>,
}

/// One list's entries.
#[derive(Debug, Clone, Default)]
pub struct ListSet {
    ips: Map<IpAddr, Entry>,
    nets: Map<IpNet, Entry>,
    /// The keys of `nets` by network (host bits dropped), for matching an address. Shared
    /// by the versions of the set until a range is added or removed.
    net_index: Arc<JointPrefixMap<IpNet, Vec<IpNet>>>,
    cookies: Map<Arc<str>, Map<Arc<str>, Entry>>,
    tokens: Map<Arc<str>, Entry>,
    api_keys: Map<Arc<str>, Map<Arc<str>, Entry>>,
    usernames: Map<Arc<str>, Entry>,
    len: usize,
}

impl ListSet {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries per identifier type (`ip` counts addresses and ranges).
    pub fn count_by_kind(&self) -> [(ClientKind, usize); 5] {
        let pairs =
            |m: &Map<Arc<str>, Map<Arc<str>, Entry>>| m.values().map(|inner| inner.len()).sum();
        ClientKind::ALL.map(|kind| {
            let n = match kind {
                ClientKind::Ip => self.ips.len() + self.nets.len(),
                ClientKind::Cookie => pairs(&self.cookies),
                ClientKind::Token => self.tokens.len(),
                ClientKind::ApiKey => pairs(&self.api_keys),
                ClientKind::Username => self.usernames.len(),
            };
            (kind, n)
        })
    }

    /// The first live entry matching any of `s`'s identifiers, IP first.
    pub fn find(&self, s: &Subject<'_>, now: i64) -> Option<(Identifier, Entry)> {
        if self.len == 0 {
            return None;
        }
        let live = |e: &Entry| e.live(now);
        if let Some(e) = self.ips.get(&s.ip).filter(|e| live(e)) {
            return Some((Identifier::Ip(s.ip), e.clone()));
        }
        // Of the live ranges holding the address, the first in the map's order (as a scan
        // of `nets` would find).
        let net = self
            .net_index
            .cover_values(&IpNet::from(s.ip))
            .flatten()
            .filter_map(|net| Some((net, self.nets.get(net).filter(|e| live(e))?)))
            .min_by_key(|(net, _)| **net);
        if let Some((net, e)) = net {
            return Some((Identifier::Net(*net), e.clone()));
        }
        if let Some((name, value)) = s.cookie
            && let Some(e) = self
                .cookies
                .get(name)
                .and_then(|m| m.get(value))
                .filter(|e| live(e))
        {
            let id = Identifier::Cookie {
                name: name.to_string(),
                value: value.to_string(),
            };
            return Some((id, e.clone()));
        }
        if let Some(t) = s.token
            && let Some(e) = self.tokens.get(t).filter(|e| live(e))
        {
            return Some((Identifier::Token(t.to_string()), e.clone()));
        }
        if let Some(k) = s.api_key
            && let Some(e) = self
                .api_keys
                .get(k.name.as_str())
                .and_then(|m| m.get(k.value.as_str()))
                .filter(|e| live(e))
        {
            let id = Identifier::ApiKey {
                name: k.name.clone(),
                value: k.value.clone(),
            };
            return Some((id, e.clone()));
        }
        if let Some(u) = s.username
            && let Some(e) = self.usernames.get(u).filter(|e| live(e))
        {
            return Some((Identifier::Username(u.to_string()), e.clone()));
        }
        None
    }

    pub fn contains(&self, id: &Identifier) -> bool {
        self.get(id).is_some()
    }

    fn get(&self, id: &Identifier) -> Option<&Entry> {
        match id {
            Identifier::Ip(ip) => self.ips.get(ip),
            Identifier::Net(n) => self.nets.get(n),
            Identifier::Cookie { name, value } => {
                self.cookies.get(name.as_str())?.get(value.as_str())
            }
            Identifier::Token(t) => self.tokens.get(t.as_str()),
            Identifier::ApiKey { name, value } => {
                self.api_keys.get(name.as_str())?.get(value.as_str())
            }
            Identifier::Username(u) => self.usernames.get(u.as_str()),
        }
    }

    /// Adds or replaces; returns whether the identifier is new.
    fn insert(&mut self, id: Identifier, entry: Entry) -> bool {
        let fresh = match id {
            Identifier::Ip(ip) => self.ips.insert(ip, entry).is_none(),
            Identifier::Net(n) => {
                let fresh = self.nets.insert(n, entry).is_none();
                if fresh {
                    let index = Arc::make_mut(&mut self.net_index);
                    index.entry(n.trunc()).or_default().push(n);
                }
                fresh
            }
            Identifier::Cookie { name, value } => {
                let inner = self.cookies.entry(Arc::from(name)).or_default();
                inner.insert(Arc::from(value), entry).is_none()
            }
            Identifier::Token(t) => self.tokens.insert(Arc::from(t), entry).is_none(),
            Identifier::ApiKey { name, value } => {
                let inner = self.api_keys.entry(Arc::from(name)).or_default();
                inner.insert(Arc::from(value), entry).is_none()
            }
            Identifier::Username(u) => self.usernames.insert(Arc::from(u), entry).is_none(),
        };
        if fresh {
            self.len += 1;
        }
        fresh
    }

    fn remove(&mut self, id: &Identifier) -> bool {
        let gone = match id {
            Identifier::Ip(ip) => self.ips.remove(ip).is_some(),
            Identifier::Net(n) => {
                let gone = self.nets.remove(n).is_some();
                if gone {
                    let index = Arc::make_mut(&mut self.net_index);
                    let network = n.trunc();
                    if let Some(keys) = index.get_mut(&network) {
                        keys.retain(|k| k != n);
                        if keys.is_empty() {
                            index.remove(&network);
                        }
                    }
                }
                gone
            }
            Identifier::Cookie { name, value } => remove_pair(&mut self.cookies, name, value),
            Identifier::Token(t) => self.tokens.remove(t.as_str()).is_some(),
            Identifier::ApiKey { name, value } => remove_pair(&mut self.api_keys, name, value),
            Identifier::Username(u) => self.usernames.remove(u.as_str()).is_some(),
        };
        if gone {
            self.len -= 1;
        }
        gone
    }

    /// What changed from `old` to this set: `(identifier, Some(entry))` for an added or
    /// changed entry, `(identifier, None)` for a removed one. Shared structure is skipped,
    /// so the cost follows the size of the change, not of the lists.
    pub fn changes_since(&self, old: &ListSet) -> Vec<(Identifier, Option<Entry>)> {
        let mut out = Vec::new();
        diff_flat(&old.ips, &self.ips, |k| Identifier::Ip(*k), &mut out);
        diff_flat(&old.nets, &self.nets, |k| Identifier::Net(*k), &mut out);
        diff_flat(
            &old.tokens,
            &self.tokens,
            |k| Identifier::Token(k.to_string()),
            &mut out,
        );
        diff_flat(
            &old.usernames,
            &self.usernames,
            |k| Identifier::Username(k.to_string()),
            &mut out,
        );
        diff_pairs(
            &old.cookies,
            &self.cookies,
            |n, v| Identifier::Cookie {
                name: n.into(),
                value: v.into(),
            },
            &mut out,
        );
        diff_pairs(
            &old.api_keys,
            &self.api_keys,
            |n, v| Identifier::ApiKey {
                name: n.into(),
                value: v.into(),
            },
            &mut out,
        );
        out
    }

    /// Every entry, in a stable order: by type (ip, cookie, token, api_key, username),
    /// then by value (addresses numerically).
    pub fn entries(&self) -> Vec<(Identifier, Entry)> {
        let mut out: Vec<(Identifier, Entry)> = Vec::with_capacity(self.len);
        out.extend(
            self.ips
                .iter()
                .map(|(k, e)| (Identifier::Ip(*k), e.clone())),
        );
        out.extend(
            self.nets
                .iter()
                .map(|(k, e)| (Identifier::Net(*k), e.clone())),
        );
        for (name, inner) in self.cookies.iter() {
            out.extend(inner.iter().map(|(value, e)| {
                let id = Identifier::Cookie {
                    name: name.to_string(),
                    value: value.to_string(),
                };
                (id, e.clone())
            }));
        }
        out.extend(
            self.tokens
                .iter()
                .map(|(k, e)| (Identifier::Token(k.to_string()), e.clone())),
        );
        for (name, inner) in self.api_keys.iter() {
            out.extend(inner.iter().map(|(value, e)| {
                let id = Identifier::ApiKey {
                    name: name.to_string(),
                    value: value.to_string(),
                };
                (id, e.clone())
            }));
        }
        out.extend(
            self.usernames
                .iter()
                .map(|(k, e)| (Identifier::Username(k.to_string()), e.clone())),
        );
        out.sort_by(|a, b| a.0.sort_key().cmp(&b.0.sort_key()));
        out
    }
}

impl Identifier {
    fn sort_key(&self) -> (u8, Option<IpNet>, &str, &str) {
        match self {
            Identifier::Ip(ip) => (0, Some(IpNet::from(*ip)), "", ""),
            Identifier::Net(n) => (1, Some(*n), "", ""),
            Identifier::Cookie { name, value } => (2, None, name, value),
            Identifier::Token(t) => (3, None, t, ""),
            Identifier::ApiKey { name, value } => (4, None, name, value),
            Identifier::Username(u) => (5, None, u, ""),
        }
    }
}

fn diff_flat<K: Ord + Clone>(
    old: &Map<K, Entry>,
    new: &Map<K, Entry>,
    id: impl Fn(&K) -> Identifier,
    out: &mut Vec<(Identifier, Option<Entry>)>,
) {
    use imbl::ordmap::DiffItem;
    for item in old.diff(new) {
        match item {
            DiffItem::Add(k, e) | DiffItem::Update { new: (k, e), .. } => {
                out.push((id(k), Some(e.clone())))
            }
            DiffItem::Remove(k, _) => out.push((id(k), None)),
        }
    }
}

fn diff_pairs(
    old: &Map<Arc<str>, Map<Arc<str>, Entry>>,
    new: &Map<Arc<str>, Map<Arc<str>, Entry>>,
    id: impl Fn(&str, &str) -> Identifier,
    out: &mut Vec<(Identifier, Option<Entry>)>,
) {
    use imbl::ordmap::DiffItem;
    let empty = Map::new();
    for item in old.diff(new) {
        let (name, before, after) = match item {
            DiffItem::Add(name, inner) => (name, &empty, inner),
            DiffItem::Update {
                old: (name, before),
                new: (_, after),
            } => (name, before, after),
            DiffItem::Remove(name, inner) => (name, inner, &empty),
        };
        diff_flat(before, after, |v| id(name, v), out);
    }
}

fn remove_pair(map: &mut Map<Arc<str>, Map<Arc<str>, Entry>>, name: &str, value: &str) -> bool {
    let Some(inner) = map.get_mut(name) else {
        return false;
    };
    let gone = inner.remove(value).is_some();
    if inner.is_empty() {
        map.remove(name);
    }
    gone
}

/// Why a list change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("the {0:?} list is full ({1} entries, list_max_entries)")]
    Full(ListKind, usize),
}

/// The deny and allow lists.
pub struct Lists {
    deny: ArcSwap<ListSet>,
    allow: ArcSwap<ListSet>,
    /// Serialises changes; readers never take it.
    writing: Mutex<()>,
    max_entries: usize,
    /// Entries refused because a list was full.
    pub refused: std::sync::atomic::AtomicU64,
}

impl Lists {
    pub fn new(max_entries: usize) -> Lists {
        Lists {
            deny: ArcSwap::from_pointee(ListSet::default()),
            allow: ArcSwap::from_pointee(ListSet::default()),
            writing: Mutex::new(()),
            max_entries,
            refused: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Entries each list holds at most.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    fn list(&self, kind: ListKind) -> &ArcSwap<ListSet> {
        match kind {
            ListKind::Deny => &self.deny,
            ListKind::Allow => &self.allow,
        }
    }

    /// The current set (a snapshot; later changes do not affect it).
    pub fn load(&self, kind: ListKind) -> Arc<ListSet> {
        self.list(kind).load_full()
    }

    /// Whether the request's identifiers are allow-listed.
    pub fn allowed(&self, s: &Subject<'_>, now: i64) -> bool {
        self.allow.load().find(s, now).is_some()
    }

    /// The deny-list entry matching the request, if any.
    pub fn denied(&self, s: &Subject<'_>, now: i64) -> Option<(Identifier, Entry)> {
        self.deny.load().find(s, now)
    }

    /// Adds identifiers (or refreshes them); returns how many were new.
    pub fn add(&self, kind: ListKind, items: Vec<(Identifier, Entry)>) -> Result<usize, ListError> {
        self.change(kind, |set| {
            let mut fresh = 0;
            for (id, entry) in items {
                if set.len() >= self.max_entries && !set.contains(&id) {
                    self.refused
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(ListError::Full(kind, self.max_entries));
                }
                // An automatic entry never overrides a manual one.
                if entry.source != Source::Manual
                    && set.get(&id).is_some_and(|e| e.source == Source::Manual)
                {
                    continue;
                }
                fresh += usize::from(set.insert(id, entry));
            }
            Ok(fresh)
        })
    }

    /// Removes identifiers; returns how many were there.
    pub fn remove(&self, kind: ListKind, ids: &[Identifier]) -> usize {
        self.change(kind, |set| {
            Ok::<_, ListError>(ids.iter().filter(|id| set.remove(id)).count())
        })
        .unwrap_or(0)
    }

    /// Empties a list, or only its entries from `source`; returns how many went.
    pub fn clear(&self, kind: ListKind, source: Option<Source>) -> usize {
        self.change(kind, |set| {
            let before = set.len();
            match source {
                None => *set = ListSet::default(),
                Some(src) => {
                    for (id, _) in set.entries().into_iter().filter(|(_, e)| e.source == src) {
                        set.remove(&id);
                    }
                }
            }
            Ok::<_, ListError>(before - set.len())
        })
        .unwrap_or(0)
    }

    /// Drops entries expired at `now` from both lists.
    pub fn sweep(&self, now: i64) -> usize {
        [ListKind::Deny, ListKind::Allow]
            .into_iter()
            .map(|kind| {
                if self.load(kind).is_empty() {
                    return 0;
                }
                self.change(kind, |set| {
                    let expired: Vec<Identifier> = set
                        .entries()
                        .into_iter()
                        .filter(|(_, e)| !e.live(now))
                        .map(|(id, _)| id)
                        .collect();
                    Ok::<_, ListError>(expired.iter().filter(|id| set.remove(id)).count())
                })
                .unwrap_or(0)
            })
            .sum()
    }

    /// Brings in the shared copy of a list (cluster mode) by a three-way merge: `base` is
    /// what this node last exchanged with the shared copy, `remote` the shared copy now.
    /// An entry changed remotely (added, refreshed) is taken; an entry gone remotely is
    /// removed here unless it changed here since `base`; local changes not yet pushed
    /// stay. Returns the new base (the remote set) and how many entries changed here.
    pub fn merge_remote(
        &self,
        kind: ListKind,
        base: &ListSet,
        remote: Vec<(Identifier, Entry)>,
    ) -> (Arc<ListSet>, usize) {
        let mut remote_set = ListSet::default();
        for (id, e) in remote {
            remote_set.insert(id, e);
        }
        let changed = self
            .change(kind, |local| {
                let mut n = 0;
                for (id, e) in remote_set.changes_since(base) {
                    match e {
                        Some(e) => {
                            let current = local.get(&id);
                            // As in `add`: an automatic entry never overrides a manual one,
                            // and the list keeps its cap.
                            let demotes = e.source != Source::Manual
                                && current.is_some_and(|c| c.source == Source::Manual);
                            let full = current.is_none() && local.len() >= self.max_entries;
                            if full {
                                tracing::warn!(list = ?kind, "a shared entry is over list_max_entries here: not applied");
                            }
                            if current != Some(&e) && !demotes && !full {
                                local.insert(id, e);
                                n += 1;
                            }
                        }
                        None => {
                            // Deleted remotely: only if this node still has it as it was.
                            if local.get(&id).is_some() && local.get(&id) == base.get(&id) {
                                local.remove(&id);
                                n += 1;
                            }
                        }
                    }
                }
                Ok::<_, ListError>(n)
            })
            .unwrap_or(0);
        (Arc::new(remote_set), changed)
    }

    fn change<T, E>(
        &self,
        kind: ListKind,
        f: impl FnOnce(&mut ListSet) -> Result<T, E>,
    ) -> Result<T, E> {
        let _one_writer = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let slot = self.list(kind);
        let mut next = ListSet::clone(&slot.load());
        let out = f(&mut next)?;
        slot.store(Arc::new(next));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: Source, expires: Option<i64>) -> Entry {
        Entry {
            source,
            added: 0,
            expires,
            reason: None,
        }
    }

    fn subject<'a>(ip: &str, token: Option<&'a str>, key: Option<&'a ApiKey>) -> Subject<'a> {
        Subject {
            ip: ip.parse().unwrap(),
            cookie: Some(("JSESSIONID", "c1")),
            token,
            api_key: key,
            username: Some("alice"),
        }
    }

    #[test]
    fn merging_the_shared_copy_keeps_unsent_local_changes() {
        let ip = |s: &str| Identifier::Ip(s.parse().unwrap());
        let e = entry(Source::Manual, None);
        let lists = Lists::new(100);
        lists
            .add(ListKind::Deny, vec![(ip("1.1.1.1"), e.clone())])
            .unwrap();
        let base = lists.load(ListKind::Deny);
        // Added here, not pushed yet.
        lists
            .add(ListKind::Deny, vec![(ip("3.3.3.3"), e.clone())])
            .unwrap();
        // Another node added 2.2.2.2.
        let remote = vec![(ip("1.1.1.1"), e.clone()), (ip("2.2.2.2"), e.clone())];
        let (base, changed) = lists.merge_remote(ListKind::Deny, &base, remote);
        assert_eq!(changed, 1);
        let now = lists.load(ListKind::Deny);
        for a in ["1.1.1.1", "2.2.2.2", "3.3.3.3"] {
            assert!(now.contains(&ip(a)), "{a}");
        }
        // Another node removed 1.1.1.1: it goes here too; 3.3.3.3 (never shared) stays.
        let remote = vec![(ip("2.2.2.2"), e.clone())];
        let (_, changed) = lists.merge_remote(ListKind::Deny, &base, remote);
        assert_eq!(changed, 1);
        let now = lists.load(ListKind::Deny);
        assert!(!now.contains(&ip("1.1.1.1")));
        assert!(now.contains(&ip("2.2.2.2")) && now.contains(&ip("3.3.3.3")));
    }

    #[test]
    fn a_shared_automatic_entry_never_replaces_a_manual_one_nor_breaks_the_cap() {
        let ip = |s: &str| Identifier::Ip(s.parse().unwrap());
        let lists = Lists::new(2);
        lists
            .add(
                ListKind::Deny,
                vec![(ip("1.1.1.1"), entry(Source::Manual, None))],
            )
            .unwrap();
        let base = ListSet::default();
        let remote = vec![
            (ip("1.1.1.1"), entry(Source::Detection, Some(100))),
            (ip("2.2.2.2"), entry(Source::Detection, None)),
            (ip("3.3.3.3"), entry(Source::Detection, None)),
        ];
        lists.merge_remote(ListKind::Deny, &base, remote);
        let now = lists.load(ListKind::Deny);
        assert_eq!(now.get(&ip("1.1.1.1")).unwrap().source, Source::Manual);
        assert_eq!(now.len(), 2, "list_max_entries holds");
    }

    #[test]
    fn every_identifier_type_matches() {
        let lists = Lists::new(100);
        let key = ApiKey {
            name: "x-api-key".into(),
            value: "k1".into(),
        };
        let cases = [
            Identifier::Ip("1.2.3.4".parse().unwrap()),
            Identifier::Net("10.0.0.0/8".parse().unwrap()),
            Identifier::Cookie {
                name: "JSESSIONID".into(),
                value: "c1".into(),
            },
            Identifier::Token("t1".into()),
            Identifier::ApiKey {
                name: "x-api-key".into(),
                value: "k1".into(),
            },
            Identifier::Username("alice".into()),
        ];
        let plain = Subject {
            ip: "9.9.9.9".parse().unwrap(),
            cookie: None,
            token: None,
            api_key: None,
            username: None,
        };
        let full = [
            subject("1.2.3.4", None, None),
            Subject {
                ip: "10.1.2.3".parse().unwrap(),
                ..plain
            },
            Subject {
                cookie: Some(("JSESSIONID", "c1")),
                ..plain
            },
            Subject {
                token: Some("t1"),
                ..plain
            },
            Subject {
                api_key: Some(&key),
                ..plain
            },
            Subject {
                username: Some("alice"),
                ..plain
            },
        ];
        for (id, s) in cases.iter().zip(full) {
            lists.clear(ListKind::Deny, None);
            assert!(lists.denied(&s, 0).is_none());
            lists
                .add(
                    ListKind::Deny,
                    vec![(id.clone(), entry(Source::Manual, None))],
                )
                .unwrap();
            assert_eq!(
                lists.denied(&s, 0).map(|(i, _)| i),
                Some(id.clone()),
                "{id:?}"
            );
            assert!(lists.denied(&plain, 0).is_none());
            assert_eq!(lists.remove(ListKind::Deny, std::slice::from_ref(id)), 1);
            assert!(lists.denied(&s, 0).is_none());
        }
    }

    /// The prefix trie finds what a scan of every range would: the first live range
    /// holding the address in the map's order, nested, expired, IPv6, with host bits set
    /// or removed again.
    #[test]
    fn ranges_match_as_a_scan_of_every_range_would() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut set = ListSet::default();
        let mut nets = Vec::new();
        for i in 0..600 {
            let r = next();
            let net: IpNet = if i % 5 == 0 {
                let addr =
                    std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(r as u16) << 80);
                ipnet::Ipv6Net::new(addr, 32 + (r % 65) as u8)
                    .unwrap()
                    .into()
            } else {
                let addr = std::net::Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff));
                let net = ipnet::Ipv4Net::new(addr, 8 + (r >> 32) as u8 % 25).unwrap();
                // Mostly as the management API stores them; some with host bits set.
                if i % 7 == 0 {
                    net.into()
                } else {
                    net.trunc().into()
                }
            };
            let expires = (r % 3 == 0).then_some(50);
            // A range drawn twice is one entry: remove it once below.
            if set.insert(Identifier::Net(net), entry(Source::Manual, expires)) {
                nets.push(net);
            }
        }
        for net in nets.iter().step_by(4) {
            assert!(set.remove(&Identifier::Net(*net)));
        }
        let mut matched = 0;
        for i in 0..20_000 {
            let r = next();
            let ip = if i % 5 == 0 {
                IpAddr::from(std::net::Ipv6Addr::from(
                    0x2001_0db8_u128 << 96 | u128::from(r as u16) << 80 | u128::from(r >> 40),
                ))
            } else {
                IpAddr::from(std::net::Ipv4Addr::from(
                    0x0a00_0000 | (r as u32 & 0x00ff_ffff),
                ))
            };
            let s = Subject {
                ip,
                cookie: None,
                token: None,
                api_key: None,
                username: None,
            };
            for now in [0, 100] {
                let scan = set
                    .nets
                    .iter()
                    .find(|(n, e)| n.contains(&ip) && e.live(now))
                    .map(|(n, e)| (Identifier::Net(*n), e.clone()));
                matched += usize::from(scan.is_some());
                assert_eq!(set.find(&s, now), scan, "{ip} at {now}");
            }
        }
        assert!(
            matched > 1_000,
            "the ranges cover some addresses: {matched}"
        );
    }

    #[test]
    fn expiry_readers_keep_their_snapshot_and_caps_hold() {
        let lists = Lists::new(2);
        let ip = Identifier::Ip("1.2.3.4".parse().unwrap());
        lists
            .add(
                ListKind::Deny,
                vec![(ip.clone(), entry(Source::Detection, Some(100)))],
            )
            .unwrap();
        let s = subject("1.2.3.4", None, None);
        let before = lists.load(ListKind::Deny);
        assert!(lists.denied(&s, 99).is_some());
        assert!(
            lists.denied(&s, 100).is_none(),
            "expired entries stop matching at once"
        );
        assert_eq!(lists.sweep(100), 1);
        assert_eq!(
            before.len(),
            1,
            "a reader's snapshot is unaffected by changes"
        );
        assert_eq!(lists.load(ListKind::Deny).len(), 0);

        lists
            .add(
                ListKind::Deny,
                vec![(Identifier::Token("a".into()), entry(Source::Manual, None))],
            )
            .unwrap();
        lists
            .add(
                ListKind::Deny,
                vec![(Identifier::Token("b".into()), entry(Source::Manual, None))],
            )
            .unwrap();
        assert_eq!(
            lists.add(
                ListKind::Deny,
                vec![(Identifier::Token("c".into()), entry(Source::Manual, None))]
            ),
            Err(ListError::Full(ListKind::Deny, 2))
        );
    }

    #[test]
    fn automatic_entries_never_replace_manual_ones_and_clear_by_source() {
        let lists = Lists::new(100);
        let ip = Identifier::Ip("1.2.3.4".parse().unwrap());
        lists
            .add(
                ListKind::Deny,
                vec![(ip.clone(), entry(Source::Manual, None))],
            )
            .unwrap();
        lists
            .add(
                ListKind::Deny,
                vec![(ip.clone(), entry(Source::Decoy, Some(5)))],
            )
            .unwrap();
        let s = subject("1.2.3.4", None, None);
        assert_eq!(
            lists.denied(&s, 10).map(|(_, e)| e.source),
            Some(Source::Manual)
        );
        lists
            .add(
                ListKind::Deny,
                vec![(Identifier::Token("t".into()), entry(Source::Decoy, None))],
            )
            .unwrap();
        assert_eq!(lists.clear(ListKind::Deny, Some(Source::Decoy)), 1);
        assert_eq!(lists.load(ListKind::Deny).len(), 1);
    }
}

#[cfg(test)]
mod storage_tests {
    use super::*;

    #[test]
    fn storage_keys_round_trip() {
        for id in [
            Identifier::Ip("2001:db8::1".parse().unwrap()),
            Identifier::Net("10.0.0.0/8".parse().unwrap()),
            Identifier::Cookie {
                name: "JSESSIONID".into(),
                value: "a=b;c".into(),
            },
            Identifier::Token("eyJ.x.y".into()),
            Identifier::ApiKey {
                name: "x-api-key".into(),
                value: "k".into(),
            },
            Identifier::Username("alice".into()),
        ] {
            assert_eq!(
                Identifier::from_storage_key(&id.storage_key()),
                Some(id.clone())
            );
        }
        assert_eq!(Identifier::from_storage_key("ip\0not-an-ip"), None);
        assert_eq!(Identifier::from_storage_key("what\0x"), None);
    }

    #[test]
    fn changes_since_sees_exactly_what_changed() {
        let lists = Lists::new(1_000_000);
        let entry = |s| Entry {
            source: s,
            added: 1,
            expires: None,
            reason: None,
        };
        let many: Vec<(Identifier, Entry)> = (0..50_000u32)
            .map(|i| {
                (
                    Identifier::Ip(IpAddr::from(i.to_be_bytes())),
                    entry(Source::Detection),
                )
            })
            .collect();
        lists.add(ListKind::Deny, many).unwrap();
        let before = lists.load(ListKind::Deny);
        let cookie = Identifier::Cookie {
            name: "sid".into(),
            value: "v".into(),
        };
        lists
            .add(
                ListKind::Deny,
                vec![(cookie.clone(), entry(Source::Manual))],
            )
            .unwrap();
        lists.remove(
            ListKind::Deny,
            &[Identifier::Ip(IpAddr::from(7u32.to_be_bytes()))],
        );
        let after = lists.load(ListKind::Deny);
        let changes = after.changes_since(&before);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(changes.contains(&(cookie, Some(entry(Source::Manual)))));
        assert!(changes.contains(&(Identifier::Ip(IpAddr::from(7u32.to_be_bytes())), None)));
        assert!(after.changes_since(&after).is_empty());
    }
}
