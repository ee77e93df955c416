//! One time span's activity ([`ActivityBucket`]): recorded, merged when it ages into a
//! longer tier, and stored ([`ActivityImage`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use super::dict::{Dict, Word, WordRef};
use super::panes::{OS_CODES, Pane, Panes, PanesImage, slot_key, split_key};
use crate::metrics::agent::Os;
use crate::metrics::bucket::{Hasher, Map};
use crate::metrics::tiers::{TierSpec, Timed};
use crate::vocab::{ClientKind, Ioa};

/// IoAs raised against one client on one API within a bucket.
#[derive(Debug)]
pub(crate) struct AttackCell {
    pub(crate) first: AtomicI64,
    pub(crate) last: AtomicI64,
    pub(crate) by_type: [AtomicU64; Ioa::ALL.len()],
}

impl AttackCell {
    pub(crate) fn new() -> AttackCell {
        AttackCell {
            first: AtomicI64::new(i64::MAX),
            last: AtomicI64::new(i64::MIN),
            by_type: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub(crate) fn add(&self, ioa_index: usize, n: u64, first: i64, last: i64) {
        self.first.fetch_min(first, Relaxed);
        self.last.fetch_max(last, Relaxed);
        if let Some(c) = self.by_type.get(ioa_index) {
            c.fetch_add(n, Relaxed);
        }
    }
}

/// A client within a bucket: its type and the dictionary id of its value.
pub(crate) type ClientRef = (u8, u32);

/// One time span's activity.
#[derive(Debug)]
pub struct ActivityBucket {
    pub start: i64,
    /// Requests and IoAs recorded; bumped last, so an unchanged count means an unchanged
    /// bucket (the store relies on it).
    pub(crate) changes: AtomicU64,
    pub(crate) dict: Dict,
    pub(crate) clients: Map<ClientRef, Panes>,
    pub(crate) apis: Map<u32, Panes>,
    pub(crate) attacks: Map<(u8, u32, u32), AttackCell>,
    pub(crate) client_count: AtomicU32,
    /// Requests whose client did not fit (cap or budget).
    pub clients_overflow: AtomicU64,
    pub(crate) charged: AtomicI64,
}

/// What one finished request contributes.
pub struct Request<'a> {
    pub time: i64,
    pub api: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: Option<u16>,
    /// The User-Agent's operating system (the Device Types pane).
    pub os: Os,
    pub ip: IpAddr,
    pub token: Option<&'a str>,
    pub cookie: Option<&'a str>,
    pub username: Option<&'a str>,
    pub api_key: Option<&'a str>,
}

impl Request<'_> {
    pub(crate) fn clients(&self) -> impl Iterator<Item = (ClientKind, WordRef<'_>)> {
        [
            Some((ClientKind::Ip, WordRef::Ip(self.ip))),
            self.token.map(|v| (ClientKind::Token, WordRef::Text(v))),
            self.cookie.map(|v| (ClientKind::Cookie, WordRef::Text(v))),
            self.username
                .map(|v| (ClientKind::Username, WordRef::Text(v))),
            self.api_key.map(|v| (ClientKind::ApiKey, WordRef::Text(v))),
        ]
        .into_iter()
        .flatten()
    }
}

/// Limits of the activity records.
#[derive(Debug, Clone, Copy)]
pub struct ActivityCaps {
    /// Distinct clients per bucket.
    pub clients: u32,
    /// Bytes for all buckets together (approximate).
    pub memory: u64,
}

impl Default for ActivityCaps {
    fn default() -> ActivityCaps {
        ActivityCaps {
            clients: 100_000,
            memory: 1 << 30,
        }
    }
}

pub(crate) struct Budget<'a> {
    pub(crate) used: &'a AtomicI64,
    pub(crate) limit: i64,
    /// Clients not kept since start (the budget or a bucket's cap was full).
    pub(crate) overflowed: &'a AtomicU64,
}

impl Budget<'_> {
    pub(crate) fn room(&self) -> bool {
        self.used.load(Relaxed) < self.limit
    }
}

pub(crate) const CLIENT_BYTES: i64 = 160;

impl ActivityBucket {
    pub(crate) fn new(start: i64) -> ActivityBucket {
        ActivityBucket {
            start,
            changes: AtomicU64::new(0),
            dict: Dict::new(),
            clients: Map::with_hasher(Hasher::default()),
            apis: Map::with_hasher(Hasher::default()),
            attacks: Map::with_hasher(Hasher::default()),
            client_count: AtomicU32::new(0),
            clients_overflow: AtomicU64::new(0),
            charged: AtomicI64::new(0),
        }
    }

    /// Changes recorded so far (see `changes`).
    pub fn changes_seen(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn charge(&self, b: &Budget<'_>, bytes: i64) {
        if bytes != 0 {
            self.charged.fetch_add(bytes, Relaxed);
            b.used.fetch_add(bytes, Relaxed);
        }
    }

    pub(crate) fn release(&self, used: &AtomicI64) {
        used.fetch_sub(self.charged.swap(0, Relaxed), Relaxed);
    }

    pub(crate) fn word(&self, w: WordRef<'_>, b: &Budget<'_>) -> Option<u32> {
        let (id, bytes) = self.dict.intern(w, b.room());
        self.charge(b, bytes);
        id
    }

    /// Adds to the panes of the entity `get_or_make` finds (a client or an API).
    pub(crate) fn with_panes<K: std::hash::Hash + Eq + Copy>(
        &self,
        map: &Map<K, Panes>,
        key: K,
        make: fn() -> Panes,
        cap: Option<u32>,
        b: &Budget<'_>,
        f: impl FnOnce(&Panes) -> i64,
    ) -> bool {
        if let Some(p) = map.get(&key) {
            let bytes = f(&p);
            drop(p);
            self.charge(b, bytes);
            return true;
        }
        if !b.room() {
            return false;
        }
        if let Some(cap) = cap
            && self.client_count.fetch_add(1, Relaxed) >= cap
        {
            return false;
        }
        let mut fresh = 0;
        let p = map.entry(key).or_insert_with(|| {
            fresh = CLIENT_BYTES;
            make()
        });
        let bytes = f(&p);
        drop(p);
        self.charge(b, fresh + bytes);
        true
    }

    pub(crate) fn add_request(&self, r: &Request<'_>, caps: &ActivityCaps, b: &Budget<'_>) {
        let api = self.word(WordRef::Text(r.api), b);
        let method = self.word(WordRef::Text(r.method), b);
        let path = self.word(WordRef::Text(r.path), b);
        let ip = self.word(WordRef::Ip(r.ip), b);
        let user = r.username.and_then(|u| self.word(WordRef::Text(u), b));
        let token = r.token.and_then(|t| self.word(WordRef::Text(t), b));
        let error = r.status.filter(|s| *s >= 400).map(u32::from);
        // A value that did not fit the dictionary counts as overflow of its pane.
        pub(crate) const LOST: u32 = u32::MAX;
        let values = |panes: &Panes, which: &[Pane]| -> i64 {
            let mut bytes = 0;
            for pane in which {
                let value = match pane {
                    Pane::Methods => method.or(Some(LOST)),
                    Pane::Apis => api.or(Some(LOST)),
                    Pane::Endpoints => path.or(Some(LOST)),
                    Pane::Ips => ip.or(Some(LOST)),
                    Pane::Users => r.username.map(|_| user.unwrap_or(LOST)),
                    Pane::Tokens => r.token.map(|_| token.unwrap_or(LOST)),
                    Pane::Devices => Some(OS_CODES + u32::from(r.os.code())),
                    Pane::ErrorCodes => error,
                    Pane::Ioas => None,
                };
                match value {
                    Some(LOST) => {
                        panes.overflow[*pane as usize].fetch_add(1, Relaxed);
                    }
                    Some(v) => bytes += panes.add(slot_key(*pane, v), 1),
                    None => {}
                }
            }
            bytes
        };
        for (kind, value) in r.clients() {
            // The IP, token and username were just looked up for the panes.
            let id = match kind {
                ClientKind::Ip => ip,
                ClientKind::Token => token,
                ClientKind::Username => user,
                ClientKind::Cookie | ClientKind::ApiKey => self.word(value, b),
            };
            let fitted = id.is_some_and(|id| {
                self.with_panes(
                    &self.clients,
                    (kind.code(), id),
                    Panes::client,
                    Some(caps.clients),
                    b,
                    |p| values(p, &Pane::CLIENT),
                )
            });
            if !fitted {
                self.clients_overflow.fetch_add(1, Relaxed);
                b.overflowed.fetch_add(1, Relaxed);
            }
        }
        if let Some(api) = api {
            self.with_panes(&self.apis, api, Panes::api, None, b, |p| {
                values(p, &Pane::API)
            });
        }
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    pub(crate) fn add_ioa(
        &self,
        client: (ClientKind, WordRef<'_>),
        api: &str,
        ioa: Ioa,
        at: i64,
        caps: &ActivityCaps,
        b: &Budget<'_>,
    ) {
        let key = slot_key(Pane::Ioas, ioa.index() as u32);
        let (Some(client_id), Some(api_id)) =
            (self.word(client.1, b), self.word(WordRef::Text(api), b))
        else {
            return;
        };
        let cref = (client.0.code(), client_id);
        self.with_panes(
            &self.clients,
            cref,
            Panes::client,
            Some(caps.clients),
            b,
            |p| p.add(key, 1),
        );
        self.with_panes(&self.apis, api_id, Panes::api, None, b, |p| p.add(key, 1));
        let akey = (cref.0, cref.1, api_id);
        match self.attacks.get(&akey) {
            Some(cell) => cell.add(ioa.index(), 1, at, at),
            None => {
                self.charge(b, CLIENT_BYTES);
                self.attacks
                    .entry(akey)
                    .or_insert_with(AttackCell::new)
                    .add(ioa.index(), 1, at, at);
            }
        }
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Adds everything in `src` (an older, finer bucket no one writes any more).
    pub(crate) fn merge_from(&self, src: &ActivityBucket, caps: &ActivityCaps, b: &Budget<'_>) {
        let translate = |id: u32| -> Option<u32> {
            let w = src.dict.word(id)?;
            let r = match &w {
                Word::Ip(ip) => WordRef::Ip(*ip),
                Word::Text(t) => WordRef::Text(t),
            };
            self.word(r, b)
        };
        let copy = |from: &Panes, to: &Panes| -> i64 {
            let mut bytes = 0;
            from.each(|k, n| {
                let Some((pane, v)) = split_key(k) else {
                    return;
                };
                let v = if pane.interned() {
                    translate(v)
                } else {
                    Some(v)
                };
                match v {
                    Some(v) => bytes += to.add(slot_key(pane, v), n),
                    None => {
                        to.overflow[pane as usize].fetch_add(n, Relaxed);
                    }
                }
            });
            for pane in Pane::ALL {
                to.overflow[pane as usize].fetch_add(from.overflow(pane), Relaxed);
            }
            bytes
        };
        for e in src.clients.iter() {
            let (kind, id) = *e.key();
            let fitted = translate(id).is_some_and(|id| {
                self.with_panes(
                    &self.clients,
                    (kind, id),
                    Panes::client,
                    Some(caps.clients),
                    b,
                    |p| copy(e.value(), p),
                )
            });
            if !fitted {
                let mut lost = 0;
                e.value().each(|_, n| lost += n);
                self.clients_overflow.fetch_add(lost, Relaxed);
            }
        }
        for e in src.apis.iter() {
            if let Some(id) = translate(*e.key()) {
                self.with_panes(&self.apis, id, Panes::api, None, b, |p| copy(e.value(), p));
            }
        }
        for e in src.attacks.iter() {
            let (kind, client, api) = *e.key();
            let (Some(client), Some(api)) = (translate(client), translate(api)) else {
                continue;
            };
            let cell = self
                .attacks
                .entry((kind, client, api))
                .or_insert_with(AttackCell::new);
            let s = e.value();
            for (i, n) in s.by_type.iter().enumerate() {
                cell.add(
                    i,
                    n.load(Relaxed),
                    s.first.load(Relaxed),
                    s.last.load(Relaxed),
                );
            }
        }
        self.clients_overflow
            .fetch_add(src.clients_overflow.load(Relaxed), Relaxed);
        self.changes.fetch_add(
            src.changes.load(Relaxed).max(1),
            std::sync::atomic::Ordering::Release,
        );
    }
}

impl Timed for ActivityBucket {
    fn start(&self) -> i64 {
        self.start
    }
}

/// Activity tiers: hours for 8 days, then days for 200.
pub const ACTIVITY_TIERS: [TierSpec; 2] = [
    TierSpec {
        name: "hour",
        span: 3_600,
        keep: 8 * 86_400,
    },
    TierSpec {
        name: "day",
        span: 86_400,
        keep: 200 * 86_400,
    },
];

/// IoAs of one (client, API) as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackImage {
    pub first: i64,
    pub last: i64,
    pub by_type: Vec<u64>,
}

/// An activity bucket as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityImage {
    pub start: i64,
    pub changes: u64,
    pub clients_overflow: u64,
    pub words: Vec<(u32, Word)>,
    pub clients: Vec<(u8, u32, PanesImage)>,
    pub apis: Vec<(u32, PanesImage)>,
    pub attacks: Vec<(u8, u32, u32, AttackImage)>,
}

impl ActivityBucket {
    /// The bucket as stored.
    pub fn image(&self) -> ActivityImage {
        let changes = self.changes_seen();
        ActivityImage {
            start: self.start,
            changes,
            clients_overflow: self.clients_overflow.load(Relaxed),
            words: self
                .dict
                .words
                .iter()
                .map(|e| (*e.key(), e.value().clone()))
                .collect(),
            clients: self
                .clients
                .iter()
                .map(|e| (e.key().0, e.key().1, e.value().image()))
                .collect(),
            apis: self
                .apis
                .iter()
                .map(|e| (*e.key(), e.value().image()))
                .collect(),
            attacks: self
                .attacks
                .iter()
                .map(|e| {
                    let c = e.value();
                    let (k, cl, api) = *e.key();
                    (
                        k,
                        cl,
                        api,
                        AttackImage {
                            first: c.first.load(Relaxed),
                            last: c.last.load(Relaxed),
                            by_type: c.by_type.iter().map(|n| n.load(Relaxed)).collect(),
                        },
                    )
                })
                .collect(),
        }
    }
}
