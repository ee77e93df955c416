//! Client and API activity: who did what, per time bucket, for the client activity, API
//! activity and attack management reports.
//!
//! Where it sits: `pipeline::on_complete` records each finished request here (beside the
//! per-API buckets of [`super::ApiRecorder`]), and `enforce` records each IoA it raises.
//! A client is one identifier value of a type ([`ClientKind`]); every request counts for
//! each identifier it carried (its IP always; its token, cookie, username and API key when
//! present).
//!
//! # Layout
//! Buckets are one hour (kept 8 days) and one day (kept 200 days); an hour bucket that ages
//! out merges into its day bucket, so a period answers exactly at hour resolution for the
//! last 8 days and at day resolution before. Each bucket holds:
//! * a dictionary of the strings and IPs it has seen (value → id, id → value);
//! * per client, a small lock-free table of `(pane, value) → count` slots ([`Panes`]);
//! * per API, a capped map of the same;
//! * per (client, API), the IoAs raised: count per IoA type, first and last time.
//!
//! Recording takes shard read guards and atomics only; a new client or value takes a
//! shard write guard once. Memory is bounded: a cap on clients per bucket, a fixed number
//! of slots per client and per API (values beyond them are counted as overflow of their
//! pane), and an overall byte budget.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use super::agent::Os;
use super::bucket::{Hasher, Map};
use super::tiers::{TierSpec, Tiers, Timed};
pub use crate::vocab::ClientKind;
use crate::vocab::Ioa;

/// One list of a report: what is counted and how its values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Ioas,
    ErrorCodes,
    Methods,
    Apis,
    Users,
    Devices,
    Endpoints,
    Ips,
    Tokens,
}

impl Pane {
    pub const COUNT: usize = 9;
    pub const ALL: [Pane; Pane::COUNT] = [
        Pane::Ioas,
        Pane::ErrorCodes,
        Pane::Methods,
        Pane::Apis,
        Pane::Users,
        Pane::Devices,
        Pane::Endpoints,
        Pane::Ips,
        Pane::Tokens,
    ];
    /// The panes of a client's activity, in the order of the seed.
    pub const CLIENT: [Pane; 8] = [
        Pane::Ioas,
        Pane::ErrorCodes,
        Pane::Methods,
        Pane::Apis,
        Pane::Users,
        Pane::Devices,
        Pane::Endpoints,
        Pane::Ips,
    ];
    /// The panes of an API's activity.
    pub const API: [Pane; 7] = [
        Pane::Ioas,
        Pane::ErrorCodes,
        Pane::Tokens,
        Pane::Users,
        Pane::Ips,
        Pane::Devices,
        Pane::Endpoints,
    ];

    /// The report's name for the pane.
    pub fn name(self) -> &'static str {
        match self {
            Pane::Ioas => "ioas",
            Pane::ErrorCodes => "error_codes",
            Pane::Methods => "methods",
            Pane::Apis => "apis",
            Pane::Users => "users",
            Pane::Devices => "device_types",
            Pane::Endpoints => "endpoints",
            Pane::Ips => "ip_addresses",
            Pane::Tokens => "tokens",
        }
    }

    /// Whether the pane's values are dictionary ids (else small codes stored inline).
    fn interned(self) -> bool {
        !matches!(self, Pane::Ioas | Pane::ErrorCodes | Pane::Devices)
    }
}

/// The Device Types pane stores `OS_CODES + ` [`Os::code`]. Codes below are the device
/// classes of records written before (see `legacy`), read under their nearest name today.
const OS_CODES: u32 = 0x100;

fn device_label(code: u32) -> &'static str {
    match code.checked_sub(OS_CODES) {
        Some(os) => u8::try_from(os)
            .ok()
            .and_then(Os::from_code)
            .unwrap_or(Os::UNKNOWN)
            .as_str(),
        None => super::legacy::os_of_device(code).as_str(),
    }
}

/// A slot key: the pane in the top bits, the value (dictionary id or code) below; never 0.
fn slot_key(pane: Pane, value: u32) -> u64 {
    ((pane as u64 + 1) << 32) | u64::from(value)
}

fn split_key(key: u64) -> Option<(Pane, u32)> {
    let pane = Pane::ALL.get(usize::try_from((key >> 32).checked_sub(1)?).ok()?)?;
    Some((*pane, key as u32))
}

#[derive(Debug, Default)]
struct Slot {
    key: AtomicU64,
    count: AtomicU64,
}

/// The `(pane, value) → count` table of one client or API.
///
/// A client's is small, fixed-capacity, insert-only and lock-free: linear probing over
/// slots in two chunks, the second allocated only when the first fills (most clients
/// need only the first). An API's sees many more values, so it is a capped map.
/// Values beyond the capacity are counted as overflow of their pane.
#[derive(Debug)]
pub struct Panes {
    table: Table,
    overflow: [AtomicU64; Pane::COUNT],
}

#[derive(Debug)]
enum Table {
    Small(Box<[OnceLock<Box<[Slot]>>]>),
    Big {
        map: Map<u64, AtomicU64>,
        len: AtomicU32,
    },
}

/// Slots per chunk for a client: 64 values in all.
const CLIENT_CHUNKS: [usize; 2] = [16, 48];
/// Values per API per bucket.
const API_VALUES: u32 = 16_384;
const SLOT_BYTES: i64 = 16;
const ENTRY_BYTES: i64 = 48;

impl Panes {
    fn client() -> Panes {
        Panes {
            table: Table::Small(CLIENT_CHUNKS.iter().map(|_| OnceLock::new()).collect()),
            overflow: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn api() -> Panes {
        Panes {
            table: Table::Big {
                map: Map::with_hasher(Hasher::default()),
                len: AtomicU32::new(0),
            },
            overflow: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Adds `n` to `key`; returns the bytes newly allocated, or counts the value as
    /// overflow of its pane when the table is full.
    fn add(&self, key: u64, n: u64) -> i64 {
        match &self.table {
            Table::Small(chunks) => {
                let mut allocated = 0;
                let start = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize;
                for (chunk, size) in chunks.iter().zip(CLIENT_CHUNKS) {
                    let slots = chunk.get_or_init(|| {
                        allocated += size as i64 * SLOT_BYTES;
                        (0..size).map(|_| Slot::default()).collect()
                    });
                    for i in 0..slots.len() {
                        let slot = &slots[(start + i) % slots.len()];
                        let mut k = slot.key.load(Relaxed);
                        if k == 0 {
                            k = match slot.key.compare_exchange(0, key, Relaxed, Relaxed) {
                                Ok(_) => key,
                                Err(actual) => actual,
                            };
                        }
                        if k == key {
                            slot.count.fetch_add(n, Relaxed);
                            return allocated;
                        }
                    }
                }
                self.overflowed(key, n);
                allocated
            }
            Table::Big { map, len } => {
                if let Some(c) = map.get(&key) {
                    c.fetch_add(n, Relaxed);
                    return 0;
                }
                if len.fetch_add(1, Relaxed) >= API_VALUES {
                    self.overflowed(key, n);
                    return 0;
                }
                map.entry(key)
                    .or_insert_with(|| AtomicU64::new(0))
                    .fetch_add(n, Relaxed);
                ENTRY_BYTES
            }
        }
    }

    fn overflowed(&self, key: u64, n: u64) {
        if let Some((pane, _)) = split_key(key) {
            self.overflow[pane as usize].fetch_add(n, Relaxed);
        }
    }

    /// Every `(key, count)` with a count.
    fn each(&self, mut f: impl FnMut(u64, u64)) {
        match &self.table {
            Table::Small(chunks) => {
                for chunk in chunks.iter() {
                    let Some(slots) = chunk.get() else { break };
                    for s in slots.iter() {
                        let (k, n) = (s.key.load(Relaxed), s.count.load(Relaxed));
                        if k != 0 && n > 0 {
                            f(k, n);
                        }
                    }
                }
            }
            Table::Big { map, .. } => {
                for e in map.iter() {
                    let n = e.value().load(Relaxed);
                    if n > 0 {
                        f(*e.key(), n);
                    }
                }
            }
        }
    }

    fn overflow(&self, pane: Pane) -> u64 {
        self.overflow[pane as usize].load(Relaxed)
    }

    fn image(&self) -> PanesImage {
        let mut slots = Vec::new();
        self.each(|k, n| slots.push((k, n)));
        PanesImage {
            slots,
            overflow: self.overflow.iter().map(|o| o.load(Relaxed)).collect(),
        }
    }
}

/// A dictionary value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Word {
    Ip(IpAddr),
    Text(Arc<str>),
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Word::Ip(ip) => ip.fmt(f),
            Word::Text(t) => f.write_str(t),
        }
    }
}

/// A borrowed dictionary value, to look up without allocating.
#[derive(Clone, Copy)]
pub enum WordRef<'a> {
    Ip(IpAddr),
    Text(&'a str),
}

/// The strings and IPs one bucket has seen, each with an id.
#[derive(Debug)]
struct Dict {
    texts: Map<Arc<str>, u32>,
    ips: Map<IpAddr, u32>,
    words: Map<u32, Word>,
    next: AtomicU32,
}

const WORD_BYTES: i64 = 96;

impl Dict {
    fn new() -> Dict {
        Dict {
            texts: Map::with_hasher(Hasher::default()),
            ips: Map::with_hasher(Hasher::default()),
            words: Map::with_hasher(Hasher::default()),
            next: AtomicU32::new(0),
        }
    }

    fn find(&self, w: WordRef<'_>) -> Option<u32> {
        match w {
            WordRef::Ip(ip) => self.ips.get(&ip).map(|e| *e),
            WordRef::Text(t) => self.texts.get(t).map(|e| *e),
        }
    }

    /// The id of `w`, adding it when `room` allows; returns the bytes charged.
    fn intern(&self, w: WordRef<'_>, room: bool) -> (Option<u32>, i64) {
        if let Some(id) = self.find(w) {
            return (Some(id), 0);
        }
        if !room {
            return (None, 0);
        }
        let mut fresh = 0;
        let id = match w {
            WordRef::Ip(ip) => *self.ips.entry(ip).or_insert_with(|| {
                fresh = self.next.fetch_add(1, Relaxed);
                self.words.insert(fresh, Word::Ip(ip));
                fresh
            }),
            WordRef::Text(t) => *self.texts.entry(Arc::from(t)).or_insert_with(|| {
                fresh = self.next.fetch_add(1, Relaxed);
                self.words.insert(fresh, Word::Text(Arc::from(t)));
                fresh
            }),
        };
        let charged = if id == fresh { WORD_BYTES } else { 0 };
        (Some(id), charged)
    }

    fn word(&self, id: u32) -> Option<Word> {
        self.words.get(&id).map(|w| w.clone())
    }

    fn insert(&self, id: u32, w: Word) {
        match &w {
            Word::Ip(ip) => {
                self.ips.insert(*ip, id);
            }
            Word::Text(t) => {
                self.texts.insert(t.clone(), id);
            }
        }
        self.words.insert(id, w);
        self.next.fetch_max(id.saturating_add(1), Relaxed);
    }
}

/// IoAs raised against one client on one API within a bucket.
#[derive(Debug)]
struct AttackCell {
    first: AtomicI64,
    last: AtomicI64,
    by_type: [AtomicU64; Ioa::ALL.len()],
}

impl AttackCell {
    fn new() -> AttackCell {
        AttackCell {
            first: AtomicI64::new(i64::MAX),
            last: AtomicI64::new(i64::MIN),
            by_type: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn add(&self, ioa_index: usize, n: u64, first: i64, last: i64) {
        self.first.fetch_min(first, Relaxed);
        self.last.fetch_max(last, Relaxed);
        if let Some(c) = self.by_type.get(ioa_index) {
            c.fetch_add(n, Relaxed);
        }
    }
}

/// A client within a bucket: its type and the dictionary id of its value.
type ClientRef = (u8, u32);

/// One time span's activity.
#[derive(Debug)]
pub struct ActivityBucket {
    pub start: i64,
    /// Requests and IoAs recorded; bumped last, so an unchanged count means an unchanged
    /// bucket (the store relies on it).
    changes: AtomicU64,
    dict: Dict,
    clients: Map<ClientRef, Panes>,
    apis: Map<u32, Panes>,
    attacks: Map<(u8, u32, u32), AttackCell>,
    client_count: AtomicU32,
    /// Requests whose client did not fit (cap or budget).
    pub clients_overflow: AtomicU64,
    charged: AtomicI64,
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
    fn clients(&self) -> impl Iterator<Item = (ClientKind, WordRef<'_>)> {
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

struct Budget<'a> {
    used: &'a AtomicI64,
    limit: i64,
    /// Clients not kept since start (the budget or a bucket's cap was full).
    overflowed: &'a AtomicU64,
}

impl Budget<'_> {
    fn room(&self) -> bool {
        self.used.load(Relaxed) < self.limit
    }
}

const CLIENT_BYTES: i64 = 160;

impl ActivityBucket {
    fn new(start: i64) -> ActivityBucket {
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

    fn charge(&self, b: &Budget<'_>, bytes: i64) {
        if bytes != 0 {
            self.charged.fetch_add(bytes, Relaxed);
            b.used.fetch_add(bytes, Relaxed);
        }
    }

    fn release(&self, used: &AtomicI64) {
        used.fetch_sub(self.charged.swap(0, Relaxed), Relaxed);
    }

    fn word(&self, w: WordRef<'_>, b: &Budget<'_>) -> Option<u32> {
        let (id, bytes) = self.dict.intern(w, b.room());
        self.charge(b, bytes);
        id
    }

    /// Adds to the panes of the entity `get_or_make` finds (a client or an API).
    fn with_panes<K: std::hash::Hash + Eq + Copy>(
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

    fn add_request(&self, r: &Request<'_>, caps: &ActivityCaps, b: &Budget<'_>) {
        let api = self.word(WordRef::Text(r.api), b);
        let method = self.word(WordRef::Text(r.method), b);
        let path = self.word(WordRef::Text(r.path), b);
        let ip = self.word(WordRef::Ip(r.ip), b);
        let user = r.username.and_then(|u| self.word(WordRef::Text(u), b));
        let token = r.token.and_then(|t| self.word(WordRef::Text(t), b));
        let error = r.status.filter(|s| *s >= 400).map(u32::from);
        // A value that did not fit the dictionary counts as overflow of its pane.
        const LOST: u32 = u32::MAX;
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

    fn add_ioa(
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
    fn merge_from(&self, src: &ActivityBucket, caps: &ActivityCaps, b: &Budget<'_>) {
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

/// The activity records of the whole process.
#[derive(Debug)]
pub struct Activity {
    tiers: Tiers<ActivityBucket, 2>,
    caps: ActivityCaps,
    used: AtomicI64,
    overflowed: AtomicU64,
    /// Attack-management entries marked reviewed: (client type, client) → when.
    reviewed: Map<(ClientKind, Arc<str>), i64>,
}

impl Activity {
    pub fn new(caps: ActivityCaps) -> Activity {
        Activity {
            tiers: Tiers::new(&ACTIVITY_TIERS),
            caps,
            used: AtomicI64::new(0),
            overflowed: AtomicU64::new(0),
            reviewed: Map::with_hasher(Hasher::default()),
        }
    }

    fn budget(&self) -> Budget<'_> {
        Budget {
            used: &self.used,
            limit: i64::try_from(self.caps.memory).unwrap_or(i64::MAX),
            overflowed: &self.overflowed,
        }
    }

    /// Clients whose detail could not be kept since start (their requests still count).
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Relaxed)
    }

    fn with_bucket(&self, t: i64, now: i64, f: impl FnOnce(&ActivityBucket)) {
        if let Some((tier, start)) = self.tiers.place(t, now) {
            self.tiers.with(tier, start, ActivityBucket::new, f);
        }
    }

    /// Records one finished request as of `now`.
    pub fn record(&self, r: &Request<'_>, now: i64) {
        let b = self.budget();
        self.with_bucket(r.time, now, |bucket| bucket.add_request(r, &self.caps, &b));
    }

    /// Records an IoA raised against `client` on `api`, at `at`.
    pub fn record_ioa(&self, client: (ClientKind, WordRef<'_>), api: &str, ioa: Ioa, at: i64) {
        let b = self.budget();
        self.with_bucket(at, at, |bucket| {
            bucket.add_ioa(client, api, ioa, at, &self.caps, &b)
        });
    }

    /// Moves aged hour buckets into their day and drops day buckets past retention.
    pub fn compact(&self, now: i64) {
        let budget = self.budget();
        self.tiers.compact(
            now,
            ActivityBucket::new,
            |leaving| leaving.release(&self.used),
            |into, from| into.merge_from(from, &self.caps, &budget),
        );
    }

    /// Runs `f` on every bucket whose start lies in `[from, to)`, under the roll-up lock.
    fn each_in(&self, from: i64, to: i64, mut f: impl FnMut(&ActivityBucket)) {
        self.tiers.each_in(from, to, |_, b| f(b));
    }

    /// Bytes in use and the limit.
    pub fn memory(&self) -> (i64, u64) {
        (self.used.load(Relaxed), self.caps.memory)
    }

    /// A client's panes over `[from, to)`; `None` when the client appears in no bucket
    /// at all (never seen, in any period).
    pub fn client(&self, kind: ClientKind, value: &str, from: i64, to: i64) -> Option<Tally> {
        let word = word_ref(kind, value);
        let mut tally = Tally::default();
        let mut seen = false;
        self.each_in(i64::MIN, i64::MAX, |b| {
            let Some(id) = b.dict.find(word) else { return };
            let Some(panes) = b.clients.get(&(kind.code(), id)) else {
                return;
            };
            seen = true;
            if (from..to).contains(&b.start) {
                tally.add(b, &panes);
            }
        });
        seen.then_some(tally)
    }

    /// An API's panes over `[from, to)`.
    /// An API's requests and IoAs per stored bucket starting in `[from, to)`: (bucket
    /// start, requests, IoAs), in no order. Buckets without the API are left out.
    pub fn api_series(&self, api: &str, from: i64, to: i64) -> Vec<(i64, u64, u64)> {
        let mut out = Vec::new();
        self.each_in(from, to, |b| {
            let Some(id) = b.dict.find(WordRef::Text(api)) else {
                return;
            };
            if let Some(panes) = b.apis.get(&id) {
                let mut t = Tally::default();
                t.add(b, &panes);
                out.push((b.start, t.total(Pane::Devices), t.total(Pane::Ioas)));
            }
        });
        out
    }

    pub fn api(&self, api: &str, from: i64, to: i64) -> Tally {
        let mut tally = Tally::default();
        self.each_in(from, to, |b| {
            let Some(id) = b.dict.find(WordRef::Text(api)) else {
                return;
            };
            if let Some(panes) = b.apis.get(&id) {
                tally.add(b, &panes);
            }
        });
        tally
    }

    /// The clients with IoAs in `[from, to)`, per (client, API).
    pub fn attacks(&self, from: i64, to: i64) -> Vec<AttackRow> {
        let mut rows: std::collections::HashMap<(ClientKind, String, String), AttackRow> =
            std::collections::HashMap::new();
        self.each_in(from, to, |b| {
            for e in b.attacks.iter() {
                let (kind, client, api) = *e.key();
                let (Some(kind), Some(client), Some(api)) = (
                    ClientKind::from_code(kind),
                    b.dict.word(client),
                    b.dict.word(api),
                ) else {
                    continue;
                };
                let key = (kind, client.to_string(), api.to_string());
                let row = rows.entry(key.clone()).or_insert_with(|| AttackRow {
                    client_type: kind,
                    client: key.1.clone(),
                    api: key.2.clone(),
                    by_type: [0; Ioa::ALL.len()],
                    first: i64::MAX,
                    last: i64::MIN,
                });
                let cell = e.value();
                for (i, n) in cell.by_type.iter().enumerate() {
                    row.by_type[i] += n.load(Relaxed);
                }
                row.first = row.first.min(cell.first.load(Relaxed));
                row.last = row.last.max(cell.last.load(Relaxed));
            }
        });
        rows.into_values().collect()
    }

    /// Marks (or unmarks) a client's attack entry reviewed.
    pub fn set_reviewed(&self, kind: ClientKind, client: &str, reviewed: bool, now: i64) {
        let key = (kind, Arc::from(client));
        if reviewed {
            self.reviewed.insert(key, now);
        } else {
            self.reviewed.remove(&key);
        }
    }

    pub fn reviewed(&self, kind: ClientKind, client: &str) -> Option<i64> {
        self.reviewed
            .get(&(kind, Arc::from(client)))
            .map(|e| *e.value())
    }

    /// The reviewed marks as stored (JSON, sorted so equal state gives equal bytes).
    pub fn reviewed_image(&self) -> Vec<u8> {
        let mut all: Vec<(ClientKind, String, i64)> = self
            .reviewed
            .iter()
            .map(|e| (e.key().0, e.key().1.to_string(), *e.value()))
            .collect();
        all.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        serde_json::to_vec(&all).unwrap_or_default()
    }

    pub fn restore_reviewed(&self, bytes: &[u8]) -> Result<(), String> {
        let all: Vec<(ClientKind, String, i64)> =
            serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        for (k, c, at) in all {
            self.reviewed.insert((k, Arc::from(c)), at);
        }
        Ok(())
    }

    /// Visits every bucket (tier, bucket) for the store.
    pub fn each_bucket(&self, f: impl FnMut(usize, &ActivityBucket)) {
        self.tiers.each(f);
    }

    /// Puts back a stored bucket (at start-up).
    pub fn restore(&self, tier: usize, img: ActivityImage) -> bool {
        if tier >= ACTIVITY_TIERS.len() {
            return false;
        }
        let b = ActivityBucket::new(img.start);
        let budget = self.budget();
        for (id, w) in img.words {
            b.dict.insert(id, w);
            b.charge(&budget, WORD_BYTES);
        }
        let fill = |panes: &Panes, p: PanesImage| -> i64 {
            let mut bytes = 0;
            for (k, n) in p.slots {
                bytes += panes.add(k, n);
            }
            for (o, v) in panes.overflow.iter().zip(p.overflow) {
                o.store(v, Relaxed);
            }
            bytes
        };
        for (kind, id, p) in img.clients {
            let panes = Panes::client();
            let bytes = fill(&panes, p);
            b.charge(&budget, bytes + CLIENT_BYTES);
            b.clients.insert((kind, id), panes);
        }
        b.client_count.store(b.clients.len() as u32, Relaxed);
        for (id, p) in img.apis {
            let panes = Panes::api();
            let bytes = fill(&panes, p);
            b.charge(&budget, bytes + CLIENT_BYTES);
            b.apis.insert(id, panes);
        }
        for (kind, client, api, a) in img.attacks {
            let cell = AttackCell::new();
            for (i, n) in a.by_type.into_iter().enumerate() {
                cell.add(i, n, a.first, a.last);
            }
            b.attacks.insert((kind, client, api), cell);
        }
        b.clients_overflow.store(img.clients_overflow, Relaxed);
        b.changes.store(img.changes, Relaxed);
        // Restored while traffic is recorded: a bucket recorded since the start gets the
        // stored one merged in (and counts as changed, so the merge is stored).
        self.tiers.restore(tier, b.start, |live| match live {
            Some(live) => {
                live.merge_from(&b, &self.caps, &budget);
                live.changes.fetch_add(1, Relaxed);
                b.release(&self.used);
                None
            }
            None => Some(b),
        })
    }
}

fn word_ref(kind: ClientKind, value: &str) -> WordRef<'_> {
    match (kind, value.parse::<IpAddr>()) {
        (ClientKind::Ip, Ok(ip)) => WordRef::Ip(ip),
        _ => WordRef::Text(value),
    }
}

/// Sums of panes over buckets, by value.
#[derive(Debug, Default)]
pub struct Tally {
    pub panes: [std::collections::HashMap<String, u64>; Pane::COUNT],
    pub overflow: [u64; Pane::COUNT],
}

impl Tally {
    /// Everything counted in `pane`, overflow included (the pane the exchange always
    /// has a value in gives the request count).
    pub fn total(&self, pane: Pane) -> u64 {
        self.panes[pane as usize].values().sum::<u64>() + self.overflow[pane as usize]
    }

    /// Adds another tally of the same client or API (another node's, in a cluster).
    pub fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.panes.iter_mut().zip(other.panes) {
            for (label, n) in theirs {
                *mine.entry(label).or_default() += n;
            }
        }
        for (mine, theirs) in self.overflow.iter_mut().zip(other.overflow) {
            *mine += theirs;
        }
    }

    fn add(&mut self, b: &ActivityBucket, panes: &Panes) {
        panes.each(|k, n| {
            let Some((pane, v)) = split_key(k) else {
                return;
            };
            let label = match pane {
                Pane::Ioas => Ioa::ALL.get(v as usize).map(|i| i.name().to_string()),
                Pane::ErrorCodes => Some(v.to_string()),
                Pane::Devices => Some(device_label(v).to_string()),
                _ => b.dict.word(v).map(|w| w.to_string()),
            };
            match label {
                Some(l) => *self.panes[pane as usize].entry(l).or_default() += n,
                None => self.overflow[pane as usize] += n,
            }
        });
        for pane in Pane::ALL {
            self.overflow[pane as usize] += panes.overflow(pane);
        }
    }

    /// A pane as `(value, count)`, by count (then value) descending.
    pub fn pane(&self, pane: Pane) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.panes[pane as usize]
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// One client's IoAs on one API over a period.
#[derive(Debug, Clone)]
pub struct AttackRow {
    pub client_type: ClientKind,
    pub client: String,
    pub api: String,
    pub by_type: [u64; Ioa::ALL.len()],
    pub first: i64,
    pub last: i64,
}

/// A panes table as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanesImage {
    pub slots: Vec<(u64, u64)>,
    pub overflow: Vec<u64>,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn caps() -> ActivityCaps {
        ActivityCaps {
            clients: 1_000,
            memory: 64 << 20,
        }
    }

    fn req<'a>(
        time: i64,
        ip: &str,
        path: &'a str,
        status: u16,
        token: Option<&'a str>,
    ) -> Request<'a> {
        Request {
            time,
            api: "shop",
            method: "GET",
            path,
            status: Some(status),
            os: Os::UNKNOWN,
            ip: ip.parse().unwrap(),
            token,
            cookie: None,
            username: Some("alice"),
            api_key: None,
        }
    }

    #[test]
    fn panes_count_exactly_then_overflow() {
        let p = Panes::client();
        for v in 0..70u32 {
            p.add(slot_key(Pane::Endpoints, v), 2);
        }
        let mut n = 0;
        p.each(|_, c| n += c);
        assert_eq!(n, 64 * 2, "64 slots hold exact counts");
        assert_eq!(p.overflow(Pane::Endpoints), 6 * 2, "the rest is overflow");
    }

    #[test]
    fn a_client_is_tallied_per_period_and_survives_roll_up_and_a_restore() {
        let a = Activity::new(caps());
        let day_ago = NOW - 86_400 - 3_600;
        a.record(&req(NOW - 60, "10.0.0.1", "/shop/a", 200, Some("tok")), NOW);
        a.record(
            &req(NOW - 120, "10.0.0.1", "/shop/b", 404, Some("tok")),
            NOW,
        );
        a.record(&req(day_ago, "10.0.0.1", "/shop/a", 500, None), NOW);
        a.record_ioa(
            (ClientKind::Ip, WordRef::Ip("10.0.0.1".parse().unwrap())),
            "shop",
            Ioa::ApiProbing,
            NOW - 30,
        );

        let day = a
            .client(ClientKind::Ip, "10.0.0.1", NOW - 86_400, NOW + 1)
            .unwrap();
        assert_eq!(
            day.pane(Pane::Endpoints),
            vec![("/shop/a".into(), 1), ("/shop/b".into(), 1)]
        );
        assert_eq!(day.pane(Pane::ErrorCodes), vec![("404".into(), 1)]);
        assert_eq!(day.pane(Pane::Ioas), vec![("api_probing".into(), 1)]);
        let week = a
            .client(ClientKind::Ip, "10.0.0.1", NOW - 7 * 86_400, NOW + 1)
            .unwrap();
        assert_eq!(
            week.pane(Pane::Endpoints),
            vec![("/shop/a".into(), 2), ("/shop/b".into(), 1)]
        );
        assert_eq!(
            week.pane(Pane::ErrorCodes),
            vec![("404".into(), 1), ("500".into(), 1)]
        );
        let tok = a
            .client(ClientKind::Token, "tok", NOW - 86_400, NOW + 1)
            .unwrap();
        assert_eq!(tok.pane(Pane::Ips), vec![("10.0.0.1".into(), 2)]);
        assert!(a.client(ClientKind::Ip, "10.9.9.9", 0, i64::MAX).is_none());

        // Nine days later the hour buckets have rolled into days: still there.
        a.compact(NOW + 9 * 86_400);
        let month = a
            .client(ClientKind::Ip, "10.0.0.1", NOW - 30 * 86_400, NOW + 1)
            .unwrap();
        assert_eq!(month.pane(Pane::Endpoints), week.pane(Pane::Endpoints));
        assert_eq!(a.attacks(0, i64::MAX).len(), 1);

        // Stored and restored, every pane is the same.
        let b = Activity::new(caps());
        a.each_bucket(|t, bucket| {
            let img: ActivityImage =
                postcard::from_bytes(&postcard::to_stdvec(&bucket.image()).unwrap()).unwrap();
            assert!(b.restore(t, img));
        });
        let again = b.client(ClientKind::Ip, "10.0.0.1", 0, i64::MAX).unwrap();
        for pane in Pane::ALL {
            assert_eq!(
                again.pane(pane),
                a.client(ClientKind::Ip, "10.0.0.1", 0, i64::MAX)
                    .unwrap()
                    .pane(pane)
            );
        }
    }

    #[test]
    fn device_types_read_records_of_both_layouts_under_todays_names() {
        let ios = Os::named("IOS").unwrap();
        assert_eq!(device_label(OS_CODES + u32::from(ios.code())), "IOS");
        // Layout 1 stored woothee's classes: 2 was WINDOWS, 12 BOT, 10 MOBILE_PHONE.
        assert_eq!(device_label(2), "WINDOWS");
        assert_eq!(device_label(12), "UNKNOWN");
        assert_eq!(device_label(10), "UNKNOWN_MOBILE");
        assert_eq!(device_label(OS_CODES + 250), "UNKNOWN");
        let a = Activity::new(caps());
        a.record(
            &Request {
                os: ios,
                ..req(NOW, "10.0.0.1", "/x", 200, None)
            },
            NOW,
        );
        let t = a.client(ClientKind::Ip, "10.0.0.1", 0, i64::MAX).unwrap();
        assert_eq!(t.pane(Pane::Devices), vec![("IOS".into(), 1)]);
    }

    #[test]
    fn clients_beyond_the_cap_are_counted_not_kept() {
        let a = Activity::new(ActivityCaps {
            clients: 3,
            memory: 64 << 20,
        });
        for i in 0..10 {
            a.record(&req(NOW, &format!("10.0.0.{i}"), "/x", 200, None), NOW);
        }
        let mut overflow = 0;
        a.each_bucket(|_, b| overflow += b.clients_overflow.load(Relaxed));
        // Two IPs and alice (a username client) fit; the other eight IPs do not.
        assert_eq!(overflow, 8);
    }
}
