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

pub mod bucket;
pub mod dict;
pub mod panes;
pub mod tally;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::metrics::bucket::{Hasher, Map};
use crate::metrics::tiers::Tiers;
pub use crate::vocab::ClientKind;
use crate::vocab::Ioa;

use bucket::Budget;
pub use bucket::{
    ACTIVITY_TIERS, ActivityBucket, ActivityCaps, ActivityImage, AttackImage, Request,
};
use bucket::{AttackCell, CLIENT_BYTES};
use dict::WORD_BYTES;
use dict::word_ref;
pub use dict::{Word, WordRef};
pub use panes::{Pane, Panes, PanesImage};
pub use tally::{AttackRow, Tally};

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

#[cfg(test)]
mod tests {
    use super::panes::{OS_CODES, device_label, slot_key};
    use super::*;
    use crate::metrics::agent::Os;

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
