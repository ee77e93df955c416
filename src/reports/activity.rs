//! Client activity, API activity and attack management: pure functions from the activity
//! records ([`crate::metrics::activity`]) and a query to the report structures.
//!
//! Periods end at the report's time (now, or `at`) and reach back a day, a week, 30 days or
//! 182 days. They are exact at the resolution of the buckets: hours for the last 8 days,
//! days before (a day bucket is counted when it starts inside the period).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::enforce::detect::Ioa;
use crate::metrics::activity::{Activity, AttackRow, ClientKind, Pane, Tally};

/// A report period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    SixMonths,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" | "1d" => Some(Period::Day),
            "week" | "7d" => Some(Period::Week),
            "month" | "30d" => Some(Period::Month),
            "6months" | "six_months" | "182d" => Some(Period::SixMonths),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::SixMonths => "6months",
        }
    }

    pub fn seconds(self) -> i64 {
        86_400
            * match self {
                Period::Day => 1,
                Period::Week => 7,
                Period::Month => 30,
                Period::SixMonths => 182,
            }
    }

    /// `[from, to)` in unix seconds for a period ending at `at`.
    pub fn window(self, at: i64) -> (i64, i64) {
        (at - self.seconds(), at + 1)
    }
}

#[derive(Debug, Serialize)]
pub struct PeriodOut {
    pub name: &'static str,
    pub start: String,
    pub end: String,
}

impl PeriodOut {
    pub fn new(p: Period, at: i64) -> PeriodOut {
        PeriodOut {
            name: p.name(),
            start: ts(at - p.seconds()),
            end: ts(at),
        }
    }
}

/// RFC 3339 (UTC) of unix seconds.
fn ts(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// One line of a pane.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Count {
    pub value: String,
    pub count: u64,
}

fn panes(
    t: &Tally,
    which: &[Pane],
) -> (
    BTreeMap<&'static str, Vec<Count>>,
    BTreeMap<&'static str, u64>,
) {
    let mut out = BTreeMap::new();
    let mut overflow = BTreeMap::new();
    for pane in which {
        let list = t
            .pane(*pane)
            .into_iter()
            .map(|(value, count)| Count { value, count })
            .collect();
        out.insert(pane.name(), list);
        let o = t.overflow[*pane as usize];
        if o > 0 {
            overflow.insert(pane.name(), o);
        }
    }
    (out, overflow)
}

/// The panes in the dashboard's order (for a client, the seed's: IoAs, Error Codes,
/// Methods, APIs, User, Device Types, Endpoints, IP Address), serialised as one JSON object
/// in that order. A `serde_json::Map` would not do: without serde_json's `preserve_order`
/// feature (which only the tests turn on) it sorts its keys.
#[derive(Debug)]
pub struct Panes(Vec<(&'static str, Vec<Count>)>);

impl Serialize for Panes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, list) in &self.0 {
            map.serialize_entry(name, list)?;
        }
        map.end()
    }
}

impl Panes {
    /// The pane names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(name, _)| *name)
    }
}

fn ordered(which: &[Pane], mut lists: BTreeMap<&'static str, Vec<Count>>) -> Panes {
    Panes(
        which
            .iter()
            .map(|pane| (pane.name(), lists.remove(pane.name()).unwrap_or_default()))
            .collect(),
    )
}

#[derive(Debug, Serialize)]
pub struct ClientRef {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub deny_listed: bool,
}

/// `GET /v5/ase/clients/{type}/{id}/activity`.
#[derive(Debug, Serialize)]
pub struct ClientActivity {
    pub client: ClientRef,
    pub period: PeriodOut,
    pub apis_accessed: usize,
    pub requests: u64,
    pub panes: Panes,
    /// Counts beyond the bounded memory of a pane (only panes that had any).
    pub overflow: BTreeMap<&'static str, u64>,
}

/// The client's activity, or `None` for a client never seen.
pub fn client_activity(
    a: &Activity,
    kind: ClientKind,
    id: &str,
    period: Period,
    at: i64,
    deny_listed: bool,
) -> Option<ClientActivity> {
    let (from, to) = period.window(at);
    let tally = a.client(kind, id, from, to)?;
    Some(client_activity_of(tally, kind, id, period, at, deny_listed))
}

/// The report of a client's tally (one node's, or the cluster's summed).
pub fn client_activity_of(
    tally: Tally,
    kind: ClientKind,
    id: &str,
    period: Period,
    at: i64,
    deny_listed: bool,
) -> ClientActivity {
    let (lists, overflow) = panes(&tally, &Pane::CLIENT);
    let requests = tally.total(Pane::Methods);
    ClientActivity {
        client: ClientRef {
            kind: kind.as_str(),
            id: id.to_string(),
            deny_listed,
        },
        period: PeriodOut::new(period, at),
        apis_accessed: tally.pane(Pane::Apis).len(),
        requests,
        panes: ordered(&Pane::CLIENT, lists),
        overflow,
    }
}

/// `GET /v5/ase/apis/{api}/activity`.
#[derive(Debug, Serialize)]
pub struct ApiActivity {
    pub api: String,
    pub period: PeriodOut,
    pub requests: u64,
    pub panes: Panes,
    pub overflow: BTreeMap<&'static str, u64>,
    /// Requests and IoAs per stored bucket (hours, then days), oldest first.
    pub series: Vec<SeriesPoint>,
}

/// One bucket of an API's activity over time.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SeriesPoint {
    pub start: String,
    pub requests: u64,
    pub ioas: u64,
}

pub fn api_activity(a: &Activity, api: &str, period: Period, at: i64) -> ApiActivity {
    let (from, to) = period.window(at);
    api_activity_of(
        a.api(api, from, to),
        a.api_series(api, from, to),
        api,
        period,
        at,
    )
}

/// Points of one or more nodes (same starts add up), oldest first.
fn series(points: Vec<(i64, u64, u64)>) -> Vec<SeriesPoint> {
    let mut by_start: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    for (start, requests, ioas) in points {
        let e = by_start.entry(start).or_default();
        e.0 += requests;
        e.1 += ioas;
    }
    by_start
        .into_iter()
        .map(|(start, (requests, ioas))| SeriesPoint {
            start: ts(start),
            requests,
            ioas,
        })
        .collect()
}

/// The report of an API's tally and series points (one node's, or the cluster's summed).
pub fn api_activity_of(
    tally: Tally,
    points: Vec<(i64, u64, u64)>,
    api: &str,
    period: Period,
    at: i64,
) -> ApiActivity {
    let (lists, overflow) = panes(&tally, &Pane::API);
    let requests = tally.total(Pane::Devices);
    ApiActivity {
        api: api.to_string(),
        period: PeriodOut::new(period, at),
        requests,
        panes: ordered(&Pane::API, lists),
        overflow,
        series: series(points),
    }
}

/// The filters and order of the attack management list.
#[derive(Debug, Default)]
pub struct AttackQuery {
    pub ioa: Option<Ioa>,
    pub client_type: Option<ClientKind>,
    pub api: Option<String>,
    pub search: Option<String>,
    pub reviewed: Option<bool>,
    pub by_count: bool,
}

#[derive(Debug, Serialize)]
pub struct IoaCount {
    #[serde(rename = "type")]
    pub name: &'static str,
    pub type_id: u16,
    pub count: u64,
    /// What raised the latest of them (`"12 failed sign-ons of 12 attempts"`), when this
    /// node still keeps it in its log of recent IoAs; `null` otherwise.
    pub evidence: Option<String>,
}

/// The evidence of the latest IoA of each type per client, from the log of recent IoAs.
pub type Evidence = std::collections::HashMap<(ClientKind, String, Ioa), String>;

/// One client in the attack management list.
#[derive(Debug, Serialize)]
pub struct AttackEntry {
    pub client_type: &'static str,
    pub client_id: String,
    pub ioa_count: u64,
    pub ioa_types: Vec<IoaCount>,
    pub apis: Vec<String>,
    pub first_detected: String,
    pub last_detected: String,
    pub deny_listed: bool,
    pub reviewed: bool,
    #[serde(skip)]
    last: i64,
}

#[derive(Debug, Serialize)]
pub struct Attacks {
    pub period: PeriodOut,
    pub count: usize,
    pub attacks: Vec<AttackEntry>,
}

/// The clients with IoAs in the period, filtered and sorted (latest detection first, or
/// most IoAs first).
pub fn attacks(
    a: &Activity,
    period: Period,
    at: i64,
    q: &AttackQuery,
    deny_listed: impl Fn(ClientKind, &str) -> bool,
) -> Attacks {
    let (from, to) = period.window(at);
    attacks_of(
        a.attacks(from, to),
        a,
        period,
        at,
        q,
        deny_listed,
        &Evidence::new(),
    )
}

/// The attack list of `rows` (one node's, or every node's: rows of the same client are
/// summed); `a` says which clients were marked reviewed.
pub fn attacks_of(
    rows: Vec<AttackRow>,
    a: &Activity,
    period: Period,
    at: i64,
    q: &AttackQuery,
    deny_listed: impl Fn(ClientKind, &str) -> bool,
    evidence: &Evidence,
) -> Attacks {
    let mut by_client: BTreeMap<(&'static str, String), (ClientKind, Vec<AttackRow>)> =
        BTreeMap::new();
    for row in rows {
        if q.api.as_deref().is_some_and(|api| api != row.api)
            || q.client_type.is_some_and(|t| t != row.client_type)
            || q.ioa.is_some_and(|i| row.by_type[i.index()] == 0)
            || q.search
                .as_deref()
                .is_some_and(|s| !row.client.to_lowercase().contains(&s.to_lowercase()))
        {
            continue;
        }
        by_client
            .entry((row.client_type.as_str(), row.client.clone()))
            .or_insert_with(|| (row.client_type, Vec::new()))
            .1
            .push(row);
    }
    let mut out: Vec<AttackEntry> = by_client
        .into_iter()
        .filter_map(|((kind_name, client), (kind, rows))| {
            let reviewed = a.reviewed(kind, &client).is_some();
            if q.reviewed.is_some_and(|want| want != reviewed) {
                return None;
            }
            let mut by_type = [0u64; Ioa::ALL.len()];
            let (mut first, mut last) = (i64::MAX, i64::MIN);
            let mut apis: Vec<String> = Vec::new();
            for r in &rows {
                for (i, n) in r.by_type.iter().enumerate() {
                    by_type[i] += n;
                }
                first = first.min(r.first);
                last = last.max(r.last);
                apis.push(r.api.clone());
            }
            apis.sort();
            apis.dedup();
            let mut ioa_types: Vec<IoaCount> = Ioa::ALL
                .iter()
                .filter(|i| by_type[i.index()] > 0)
                .map(|i| IoaCount {
                    name: i.name(),
                    type_id: i.type_id(),
                    count: by_type[i.index()],
                    evidence: evidence.get(&(kind, client.clone(), *i)).cloned(),
                })
                .collect();
            ioa_types.sort_by(|a, b| b.count.cmp(&a.count).then(a.name.cmp(b.name)));
            Some(AttackEntry {
                client_type: kind_name,
                deny_listed: deny_listed(kind, &client),
                client_id: client,
                ioa_count: by_type.iter().sum(),
                ioa_types,
                apis,
                first_detected: ts(first),
                last_detected: ts(last),
                reviewed,
                last,
            })
        })
        .collect();
    if q.by_count {
        out.sort_by(|a, b| b.ioa_count.cmp(&a.ioa_count).then(b.last.cmp(&a.last)));
    } else {
        out.sort_by(|a, b| b.last.cmp(&a.last).then(b.ioa_count.cmp(&a.ioa_count)));
    }
    Attacks {
        period: PeriodOut::new(period, at),
        count: out.len(),
        attacks: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::activity::{ActivityCaps, Request};

    #[test]
    fn client_panes_keep_the_seeds_order() {
        let a = Activity::new(ActivityCaps {
            clients: 10,
            memory: 1 << 20,
        });
        a.record(
            &Request {
                time: 1_800_000_000,
                api: "shop",
                method: "GET",
                path: "/shop/x",
                status: Some(404),
                os: crate::metrics::Os::UNKNOWN,
                ip: "10.0.0.1".parse().unwrap(),
                token: None,
                cookie: None,
                username: Some("alice"),
                api_key: None,
            },
            1_800_000_000,
        );
        let report = client_activity(
            &a,
            ClientKind::Ip,
            "10.0.0.1",
            Period::Day,
            1_800_000_000,
            false,
        )
        .unwrap();
        // The JSON text is written in serialisation order, whatever serde_json's features.
        assert_eq!(
            serde_json::to_string(&report.panes).unwrap(),
            concat!(
                r#"{"ioas":[],"error_codes":[{"value":"404","count":1}],"#,
                r#""methods":[{"value":"GET","count":1}],"apis":[{"value":"shop","count":1}],"#,
                r#""users":[{"value":"alice","count":1}],"#,
                r#""device_types":[{"value":"UNKNOWN","count":1}],"#,
                r#""endpoints":[{"value":"/shop/x","count":1}],"#,
                r#""ip_addresses":[{"value":"10.0.0.1","count":1}]}"#
            )
        );
        let api = api_activity(&a, "shop", Period::Day, 1_800_000_000);
        assert_eq!(
            api.panes.names().collect::<Vec<_>>(),
            [
                "ioas",
                "error_codes",
                "tokens",
                "users",
                "ip_addresses",
                "device_types",
                "endpoints"
            ]
        );
    }
}
