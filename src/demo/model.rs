//! The labelled traffic model: benign populations with realistic noise and attacker
//! populations for every IoA enforcer detects, every client labelled, generated from a seed
//! (the same seed gives the same traffic, byte for byte).
//!
//! It drives `enforcer demo` (in real time) and the detection benchmark and its test (time
//! compressed, see [`super::replay`]): both send exactly these requests through the real
//! binary. The benign side is what makes detectors lie: shoppers who mistype a password
//! once or twice, twenty people behind one office NAT address, mobile apps that change
//! networks and refresh their tokens, a partner and an inventory job polling steadily and
//! hard, crawlers that hit 404s, clients retrying on 503. The attacker side has one
//! population per IoA type, plus a flood of fresh addresses whose only aim is to move the
//! baselines so that a good client looks extreme.
//!
//! Three victims are benign clients whose credential an attacker steals (a mobile app's
//! token, a shopper's session cookie, an integration's API key): revoking the stolen
//! credential is the intended answer, so they are reported apart from the benign clients.
//!
//! The shop API is the shipped `/shop` (`login_url` `/shop/login`, session cookie
//! `JSESSIONID`, bearer tokens, `x-api-key`); the demo adds a decoy `/admin` and a mobile
//! API `/app` that requires a token and allows only GET and POST (see `super::prepare`).
//! Usernames travel in `x-user`.

use std::net::{IpAddr, Ipv4Addr};

use http::Method;

use crate::enforce::detect::Ioa;

/// A group of clients with one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Population {
    Shoppers,
    TypoUsers,
    MobileApps,
    Partner,
    NatOffice,
    Crawlers,
    Retriers,
    InventorySync,
    TokenVictim,
    CookieVictim,
    ApiKeyVictim,
    BruteForce,
    CredentialStuffing,
    StolenToken,
    StolenCookie,
    StolenApiKey,
    Probing,
    ExtremeRate,
    Exfiltration,
    DecoyVisitor,
    MissingToken,
    PatternViolation,
    BaselineFlood,
}

/// What a population is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Benign,
    /// A benign client whose credential is stolen.
    Victim,
    Attacker,
}

impl Population {
    pub const ALL: [Population; 23] = [
        Population::Shoppers,
        Population::TypoUsers,
        Population::MobileApps,
        Population::Partner,
        Population::NatOffice,
        Population::Crawlers,
        Population::Retriers,
        Population::InventorySync,
        Population::TokenVictim,
        Population::CookieVictim,
        Population::ApiKeyVictim,
        Population::BruteForce,
        Population::CredentialStuffing,
        Population::StolenToken,
        Population::StolenCookie,
        Population::StolenApiKey,
        Population::Probing,
        Population::ExtremeRate,
        Population::Exfiltration,
        Population::DecoyVisitor,
        Population::MissingToken,
        Population::PatternViolation,
        Population::BaselineFlood,
    ];

    pub fn kind(self) -> Kind {
        use Population::*;
        match self {
            Shoppers | TypoUsers | MobileApps | Partner | NatOffice | Crawlers | Retriers
            | InventorySync => Kind::Benign,
            TokenVictim | CookieVictim | ApiKeyVictim => Kind::Victim,
            _ => Kind::Attacker,
        }
    }

    /// The IoAs this population must raise (empty: it must raise none that matter, as
    /// the flood, whose only aim is to move baselines).
    pub fn expected(self) -> &'static [Ioa] {
        use Population::*;
        match self {
            BruteForce => &[Ioa::LoginAttack],
            CredentialStuffing => &[Ioa::MultiClientLoginAttack],
            StolenToken => &[Ioa::StolenToken],
            StolenCookie => &[Ioa::StolenCookie],
            StolenApiKey => &[Ioa::StolenApiKey],
            Probing => &[Ioa::ApiProbing],
            ExtremeRate => &[Ioa::ExtremeClientActivity],
            Exfiltration => &[Ioa::DataExfiltration],
            DecoyVisitor => &[Ioa::DecoyAccess],
            MissingToken => &[Ioa::MissingToken],
            PatternViolation => &[Ioa::PatternViolation],
            _ => &[],
        }
    }

    /// Caught only by the inline proxy (API pattern enforcement is inline, as in ASE).
    pub fn inline_only(self) -> bool {
        self == Population::PatternViolation
    }

    pub fn name(self) -> &'static str {
        use Population::*;
        match self {
            Shoppers => "shoppers",
            TypoUsers => "users who mistype a password",
            MobileApps => "mobile apps (token refresh, network changes)",
            Partner => "partner integration (steady, 3 egress IPs)",
            NatOffice => "office behind one NAT address",
            Crawlers => "crawlers (404s)",
            Retriers => "clients retrying on 503",
            InventorySync => "inventory job (10 req/s, steady)",
            TokenVictim => "mobile app whose token is stolen",
            CookieVictim => "shopper whose cookie is stolen",
            ApiKeyVictim => "integration whose API key is stolen",
            BruteForce => "brute force on one account",
            CredentialStuffing => "credential stuffing from many IPs",
            StolenToken => "stolen token from new places",
            StolenCookie => "stolen session cookie",
            StolenApiKey => "stolen API key",
            Probing => "API probing",
            ExtremeRate => "extreme rate",
            Exfiltration => "data exfiltration",
            DecoyVisitor => "decoy visitor",
            MissingToken => "calls without a mandatory token",
            PatternViolation => "API pattern violation",
            BaselineFlood => "baseline flood (fresh IPs)",
        }
    }
}

/// The kinds of client identifier, as the management API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdKind {
    Ip,
    Cookie,
    Token,
    ApiKey,
    Username,
}

impl IdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Ip => "ip",
            IdKind::Cookie => "cookie",
            IdKind::Token => "token",
            IdKind::ApiKey => "api_key",
            IdKind::Username => "username",
        }
    }
}

/// One labelled client.
#[derive(Debug, Clone)]
pub struct Client {
    pub population: Population,
    /// `shoppers-07`.
    pub name: String,
    /// Every identifier it is seen with; an IoA against any of them flags it.
    pub ids: Vec<(IdKind, String)>,
    /// For an attacker: the identifiers an IoA must name for it to count as caught (its
    /// IPs, or the credential it stole).
    pub culprit: Vec<(IdKind, String)>,
}

/// One request of the model.
#[derive(Debug, Clone)]
pub struct Event {
    /// Milliseconds from the start of the traffic.
    pub at_ms: u64,
    /// Index into [`Model::clients`].
    pub client: u32,
    /// The client's address (`X-Forwarded-For` inline, `source_ip` in sideband).
    pub ip: IpAddr,
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// When the attacks come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Spread over the run, all after the first detection window (the benchmark).
    Spread,
    /// The attacks that need no baseline in the first half minute, the others once
    /// the clients are established (after eleven minutes): the demo, so the dashboard has
    /// something to show at once.
    Early,
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seed: u64,
    pub minutes: u32,
    pub schedule: Schedule,
    /// Runs of the demo follow each other: each has fresh attacker addresses.
    pub round: u32,
}

/// A generated run: its clients and their requests, in time order.
#[derive(Debug, Clone)]
pub struct Model {
    pub plan: Plan,
    pub clients: Vec<Client>,
    pub events: Vec<Event>,
}

impl Model {
    /// The length of the run in milliseconds.
    pub fn length_ms(&self) -> u64 {
        u64::from(self.plan.minutes) * MIN
    }

    /// The clients of one population.
    pub fn clients_of(&self, p: Population) -> impl Iterator<Item = (u32, &Client)> {
        self.clients
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.population == p)
            .map(|(i, c)| (i as u32, c))
    }
}

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;

/// splitmix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next();
        r
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `[lo, hi)`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
];

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// The token mobile app `app` holds at `t` (it refreshes every five minutes).
fn app_token(app: u32, t: u64) -> String {
    format!("app{app:02}-token-{}", t / (5 * MIN))
}

/// Builds requests of the run.
struct Gen {
    plan: Plan,
    /// Absolute offset of this round (tokens refresh on absolute time).
    offset: u64,
    length: u64,
    clients: Vec<Client>,
    events: Vec<Event>,
}

impl Gen {
    fn client(&mut self, population: Population, n: usize, ids: Vec<(IdKind, String)>) -> u32 {
        let name = format!("{}-{n:02}", short(population));
        self.clients.push(Client {
            population,
            name,
            culprit: Vec::new(),
            ids,
        });
        (self.clients.len() - 1) as u32
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        client: u32,
        at: u64,
        ip: IpAddr,
        method: Method,
        target: String,
        headers: Vec<(&'static str, String)>,
        body: &str,
    ) {
        if at >= self.length {
            return;
        }
        self.events.push(Event {
            at_ms: at,
            client,
            ip,
            method,
            target,
            headers,
            body: body.to_string(),
        });
    }

    /// Adds an identifier to a client (once).
    fn note(&mut self, client: u32, kind: IdKind, value: &str) {
        let ids = &mut self.clients[client as usize].ids;
        if !ids.iter().any(|(k, v)| *k == kind && v == value) {
            ids.push((kind, value.to_string()));
        }
    }

    /// A browsing session at `t` for `client`: optional sign-on (with `typos` failed
    /// attempts first), then `requests` calls `gap` apart. Returns when it ended.
    #[allow(clippy::too_many_arguments)]
    fn session(
        &mut self,
        rng: &mut Rng,
        client: u32,
        ip: IpAddr,
        base: &[(&'static str, String)],
        mut t: u64,
        login: bool,
        typos: u32,
        requests: u32,
    ) -> u64 {
        let with = |extra: Option<(&'static str, String)>| {
            let mut h = base.to_vec();
            h.extend(extra);
            h
        };
        if login {
            let form = Some(("content-type", "application/x-www-form-urlencoded".into()));
            for _ in 0..typos {
                self.push(
                    client,
                    t,
                    ip,
                    Method::POST,
                    "/shop/login".into(),
                    with(form.clone()),
                    "user=me&password=tpyo",
                );
                t += rng.range(4, 10) * SEC;
            }
            self.push(
                client,
                t,
                ip,
                Method::POST,
                "/shop/login".into(),
                with(form),
                "user=me&password=demo",
            );
            t += rng.range(2, 6) * SEC;
        }
        for _ in 0..requests {
            let roll = rng.range(0, 100);
            let (method, target) = match roll {
                0..=59 => (Method::GET, format!("/shop/items/{}", rng.range(1, 21))),
                60..=74 => (Method::GET, "/shop/items".to_string()),
                75..=84 => (Method::POST, "/shop/cart".to_string()),
                85..=95 => (Method::GET, "/shop/cart".to_string()),
                96..=97 => (Method::GET, format!("/shop/items/{}", rng.range(21, 24))),
                _ => (Method::POST, "/shop/password-reset".to_string()),
            };
            self.push(client, t, ip, method, target, with(None), "");
            t += rng.range(3, 15) * SEC;
        }
        t
    }
}

fn short(p: Population) -> &'static str {
    use Population::*;
    match p {
        Shoppers => "shopper",
        TypoUsers => "typo",
        MobileApps => "app",
        Partner => "partner",
        NatOffice => "office",
        Crawlers => "crawler",
        Retriers => "retrier",
        InventorySync => "inventory",
        TokenVictim => "app-victim",
        CookieVictim => "shopper-victim",
        ApiKeyVictim => "ops",
        BruteForce => "bruteforce",
        CredentialStuffing => "stuffing",
        StolenToken => "token-thief",
        StolenCookie => "cookie-thief",
        StolenApiKey => "key-thief",
        Probing => "prober",
        ExtremeRate => "extreme",
        Exfiltration => "exfil",
        DecoyVisitor => "decoy",
        MissingToken => "no-token",
        PatternViolation => "pattern",
        BaselineFlood => "flood",
    }
}

/// Generates the run `plan` describes.
pub fn generate(plan: Plan) -> Model {
    let length = u64::from(plan.minutes) * MIN;
    let mut g = Gen {
        plan,
        offset: u64::from(plan.round) * length,
        length,
        clients: Vec::new(),
        events: Vec::new(),
    };
    benign(&mut g);
    attacks(&mut g);
    g.events.sort_by_key(|e| (e.at_ms, e.client));
    Model {
        plan,
        clients: g.clients,
        events: g.events,
    }
}

fn benign(g: &mut Gen) {
    let seed = g.plan.seed;
    // Shoppers: sessions of browsing with sign-ons; one in twelve mistypes once, one in
    // fifty twice. Shopper 0 is the cookie victim.
    for i in 0..30u32 {
        let population = if i == 0 {
            Population::CookieVictim
        } else {
            Population::Shoppers
        };
        let ip = v4(203, 0, 113, 10 + i as u8);
        let cookie = format!("demo-session-{i:02}");
        let user = format!("shopper{i:02}@example.com");
        let mut rng = Rng::new(seed, 1_000 + u64::from(i));
        let agent = rng.pick(BROWSERS).to_string();
        let c = g.client(
            population,
            i as usize,
            vec![
                (IdKind::Ip, ip.to_string()),
                (IdKind::Cookie, cookie.clone()),
                (IdKind::Username, user.clone()),
            ],
        );
        let base = vec![
            ("cookie", format!("JSESSIONID={cookie}")),
            ("x-user", user),
            ("user-agent", agent),
        ];
        let mut t = rng.range(0, 60) * SEC;
        while t < g.length {
            let login = rng.chance(0.5);
            let typos = if rng.chance(0.02) {
                2
            } else {
                u32::from(rng.chance(0.08))
            };
            let n = rng.range(8, 30) as u32;
            t = g.session(&mut rng, c, ip, &base, t, login, typos, n);
            t += rng.range(3, 10) * MIN;
        }
    }
    // Users who mistype their password once or twice at every sign-on, then get in: with
    // twelve of them, ten or more distinct addresses fail within most windows.
    for i in 0..12u32 {
        let ip = v4(203, 0, 113, 100 + i as u8);
        let user = format!("forgetful{i:02}@example.com");
        let mut rng = Rng::new(seed, 2_000 + u64::from(i));
        let c = g.client(
            Population::TypoUsers,
            i as usize,
            vec![
                (IdKind::Ip, ip.to_string()),
                (IdKind::Username, user.clone()),
            ],
        );
        let base = vec![
            ("x-user", user),
            ("user-agent", rng.pick(BROWSERS).to_string()),
        ];
        let mut t = rng.range(0, 4 * 60) * SEC;
        while t < g.length {
            let typos = 1 + u32::from(rng.chance(0.4));
            let n = rng.range(4, 12) as u32;
            t = g.session(&mut rng, c, ip, &base, t, true, typos, n);
            t += rng.range(5, 11) * MIN;
        }
    }
    // Mobile apps: a token refreshed every five minutes, the network (and so the address)
    // changing every few minutes between two. App 0 is the token victim.
    for i in 0..10u32 {
        let population = if i == 0 {
            Population::TokenVictim
        } else {
            Population::MobileApps
        };
        let ips = [v4(100, 64, i as u8, 1), v4(100, 65, i as u8, 1)];
        let user = format!("app{i:02}@example.com");
        let mut rng = Rng::new(seed, 3_000 + u64::from(i));
        let c = g.client(
            population,
            i as usize,
            vec![
                (IdKind::Ip, ips[0].to_string()),
                (IdKind::Ip, ips[1].to_string()),
                (IdKind::Username, user.clone()),
            ],
        );
        let mut t = rng.range(0, 30) * SEC;
        let mut net = 0usize;
        let mut switch_at = t + rng.range(3, 9) * MIN;
        let mut generation = u64::MAX;
        while t < g.length {
            if t >= switch_at {
                net = 1 - net;
                switch_at = t + rng.range(3, 9) * MIN;
            }
            let token = app_token(i, g.offset + t);
            g.note(c, IdKind::Token, &token);
            let auth = ("authorization", format!("Bearer {token}"));
            let head = vec![
                auth,
                ("x-user", user.clone()),
                ("user-agent", "ShopApp/5.2 (iPhone; iOS 17.1)".to_string()),
            ];
            let now_gen = (g.offset + t) / (5 * MIN);
            if now_gen != generation {
                generation = now_gen;
                g.push(
                    c,
                    t,
                    ips[net],
                    Method::POST,
                    "/app/refresh".into(),
                    head.clone(),
                    "",
                );
                t += SEC;
            }
            let target = if rng.chance(0.8) {
                "/app/feed"
            } else {
                "/app/profile"
            };
            g.push(c, t, ips[net], Method::GET, target.into(), head, "");
            t += rng.range(5, 20) * SEC;
        }
    }
    // A partner polling hard and steadily with its API key from three egress addresses.
    {
        let ips = [v4(192, 0, 2, 10), v4(192, 0, 2, 11), v4(192, 0, 2, 12)];
        let key = "partner-7f3a".to_string();
        let c = g.client(
            Population::Partner,
            0,
            ips.iter()
                .map(|ip| (IdKind::Ip, ip.to_string()))
                .chain([(IdKind::ApiKey, key.clone())])
                .collect(),
        );
        let mut rng = Rng::new(seed, 4_000);
        let mut t = 0;
        let mut k = 0usize;
        while t < g.length {
            let head = vec![
                ("x-api-key", key.clone()),
                ("user-agent", "partner-sync/2.1".to_string()),
            ];
            let target = format!("/shop/items/{}", rng.range(1, 21));
            g.push(c, t, ips[k % 3], Method::GET, target, head, "");
            k += 1;
            t += 200;
        }
    }
    // An office: twenty people behind one NAT address, each with their own session and
    // user, one in ten mistyping once.
    let nat = v4(198, 18, 0, 1);
    for i in 0..20u32 {
        let cookie = format!("office-session-{i:02}");
        let user = format!("staff{i:02}@corp.example");
        let mut rng = Rng::new(seed, 5_000 + u64::from(i));
        let c = g.client(
            Population::NatOffice,
            i as usize,
            vec![
                (IdKind::Ip, nat.to_string()),
                (IdKind::Cookie, cookie.clone()),
                (IdKind::Username, user.clone()),
            ],
        );
        let base = vec![
            ("cookie", format!("JSESSIONID={cookie}")),
            ("x-user", user),
            ("user-agent", rng.pick(BROWSERS).to_string()),
        ];
        let mut t = rng.range(0, 90) * SEC;
        while t < g.length {
            let login = rng.chance(0.6);
            let typos = u32::from(rng.chance(0.1));
            let n = rng.range(10, 40) as u32;
            t = g.session(&mut rng, c, nat, &base, t, login, typos, n);
            t += rng.range(2, 7) * MIN;
        }
    }
    // Crawlers: a request a second over the catalog, one in six a dead link (404).
    for i in 0..2u32 {
        let ip = v4(66, 249, 66, 1 + i as u8);
        let c = g.client(
            Population::Crawlers,
            i as usize,
            vec![(IdKind::Ip, ip.to_string())],
        );
        let mut t = u64::from(i) * 500;
        let mut k = 0u64;
        while t < g.length {
            let head = vec![(
                "user-agent",
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
                    .to_string(),
            )];
            let target = format!("/shop/items/{}", 1 + k % 24);
            g.push(c, t, ip, Method::GET, target, head, "");
            k += 1;
            t += SEC;
        }
    }
    // Clients of a flaky endpoint: a 503 is retried twice, a second or two apart.
    for i in 0..3u32 {
        let ip = v4(203, 0, 113, 200 + i as u8);
        let mut rng = Rng::new(seed, 6_000 + u64::from(i));
        let c = g.client(
            Population::Retriers,
            i as usize,
            vec![(IdKind::Ip, ip.to_string())],
        );
        let mut t = rng.range(0, 20) * SEC;
        while t < g.length {
            let head = vec![("user-agent", "okhttp/4.12.0".to_string())];
            let mut tries = 0;
            loop {
                let fail = tries < 2 && rng.chance(0.35);
                let target = if fail {
                    "/shop/flaky?fail=1"
                } else {
                    "/shop/flaky"
                };
                g.push(c, t, ip, Method::GET, target.into(), head.clone(), "");
                tries += 1;
                t += rng.range(1, 3) * SEC;
                if !fail {
                    break;
                }
            }
            t += rng.range(10, 30) * SEC;
        }
    }
    // An inventory job: ten requests a second, all day, from one address.
    {
        let ip = v4(192, 0, 2, 30);
        let c = g.client(
            Population::InventorySync,
            0,
            vec![(IdKind::Ip, ip.to_string())],
        );
        let mut t = 50;
        while t < g.length {
            let head = vec![("user-agent", "inventory-sync/1.0".to_string())];
            g.push(c, t, ip, Method::GET, "/shop/items".into(), head, "");
            t += 100;
        }
    }
    // An integration calling with its API key from one address; the key gets stolen.
    {
        let ip = v4(192, 0, 2, 40);
        let key = "ops-key-9c1d".to_string();
        let c = g.client(
            Population::ApiKeyVictim,
            0,
            vec![(IdKind::Ip, ip.to_string()), (IdKind::ApiKey, key.clone())],
        );
        let mut t = 700;
        while t < g.length {
            let head = vec![("x-api-key", key.clone())];
            g.push(c, t, ip, Method::GET, "/shop/cart".into(), head, "");
            t += 5 * SEC;
        }
    }
}

/// When each attack starts, in milliseconds from the start of the run.
fn start_of(schedule: Schedule, p: Population) -> u64 {
    use Population::*;
    match schedule {
        Schedule::Spread => match p {
            BruteForce => 4 * MIN,
            CredentialStuffing => 6 * MIN,
            StolenToken => 10 * MIN,
            StolenCookie => 12 * MIN,
            StolenApiKey => 14 * MIN,
            Probing => 16 * MIN,
            ExtremeRate => 18 * MIN,
            Exfiltration => 21 * MIN,
            DecoyVisitor => 23 * MIN,
            MissingToken => 24 * MIN,
            PatternViolation => 25 * MIN,
            BaselineFlood => 26 * MIN,
            _ => 0,
        },
        Schedule::Early => match p {
            BruteForce => 2 * SEC,
            Probing => 3 * SEC,
            StolenToken => 10 * SEC,
            DecoyVisitor => 12 * SEC,
            StolenCookie => 14 * SEC,
            StolenApiKey => 16 * SEC,
            MissingToken => 18 * SEC,
            PatternViolation => 20 * SEC,
            CredentialStuffing => 25 * SEC,
            ExtremeRate => 11 * MIN,
            BaselineFlood => 12 * MIN,
            Exfiltration => 13 * MIN,
            _ => 0,
        },
    }
}

fn attacks(g: &mut Gen) {
    let (seed, round, schedule) = (g.plan.seed, g.plan.round, g.plan.schedule);
    // Each round's attackers come from fresh addresses.
    let net = (100 + round % 100) as u8;
    let at = |p: Population| start_of(schedule, p);
    let early = schedule == Schedule::Early;
    let browser = ("user-agent", BROWSERS[4].to_string());
    let form = (
        "content-type",
        "application/x-www-form-urlencoded".to_string(),
    );

    // Brute force: forty passwords against one account from one address.
    {
        let ip = v4(198, 51, net, 7);
        let user = "admin@example.com";
        let c = g.client(
            Population::BruteForce,
            0,
            vec![
                (IdKind::Ip, ip.to_string()),
                (IdKind::Username, user.into()),
            ],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        let step = if early { SEC / 2 } else { 3 * SEC };
        for k in 0..40 {
            let head = vec![("x-user", user.to_string()), browser.clone(), form.clone()];
            let body = format!("user=admin&password=guess{k}");
            g.push(
                c,
                at(Population::BruteForce) + k * step,
                ip,
                Method::POST,
                "/shop/login".into(),
                head,
                &body,
            );
        }
    }
    // Credential stuffing: twenty-five addresses, five leaked credentials each, all wrong.
    for i in 0..25u32 {
        let ip = v4(198, 51, net, 100 + i as u8);
        let mut rng = Rng::new(seed, 10_000 + u64::from(round) * 100 + u64::from(i));
        let c = g.client(
            Population::CredentialStuffing,
            i as usize,
            vec![(IdKind::Ip, ip.to_string())],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        let mut t = at(Population::CredentialStuffing) + rng.range(0, 120) * SEC;
        for k in 0..5 {
            let user = format!("leaked{}@mail.example", i * 5 + k);
            let head = vec![("x-user", user.clone()), browser.clone(), form.clone()];
            let body = format!("user={user}&password=hunter{k}");
            g.push(c, t, ip, Method::POST, "/shop/login".into(), head, &body);
            t += rng.range(5, 15) * SEC;
        }
    }
    // A stolen token, replayed from eight new places.
    {
        let start = at(Population::StolenToken);
        let token = app_token(0, g.offset + start);
        for i in 0..8u32 {
            let ip = v4(198, 51, net, 40 + i as u8);
            let c = g.client(
                Population::StolenToken,
                i as usize,
                vec![(IdKind::Ip, ip.to_string()), (IdKind::Token, token.clone())],
            );
            g.clients[c as usize].culprit = vec![(IdKind::Token, token.clone())];
            for k in 0..3u64 {
                let head = vec![
                    ("authorization", format!("Bearer {token}")),
                    browser.clone(),
                ];
                g.push(
                    c,
                    start + u64::from(i) * 2 * SEC + k * 5 * SEC,
                    ip,
                    Method::GET,
                    "/app/feed".into(),
                    head,
                    "",
                );
            }
        }
    }
    // A stolen session cookie (shopper 0's), from seven places.
    {
        let start = at(Population::StolenCookie);
        let cookie = "demo-session-00".to_string();
        for i in 0..7u32 {
            let ip = v4(198, 51, net, 50 + i as u8);
            let c = g.client(
                Population::StolenCookie,
                i as usize,
                vec![
                    (IdKind::Ip, ip.to_string()),
                    (IdKind::Cookie, cookie.clone()),
                ],
            );
            g.clients[c as usize].culprit = vec![(IdKind::Cookie, cookie.clone())];
            for k in 0..3u64 {
                let head = vec![("cookie", format!("JSESSIONID={cookie}")), browser.clone()];
                g.push(
                    c,
                    start + u64::from(i) * 2 * SEC + k * 5 * SEC,
                    ip,
                    Method::GET,
                    "/shop/cart".into(),
                    head,
                    "",
                );
            }
        }
    }
    // A stolen API key (the integration's), from seven places.
    {
        let start = at(Population::StolenApiKey);
        let key = "ops-key-9c1d".to_string();
        for i in 0..7u32 {
            let ip = v4(198, 51, net, 60 + i as u8);
            let c = g.client(
                Population::StolenApiKey,
                i as usize,
                vec![(IdKind::Ip, ip.to_string()), (IdKind::ApiKey, key.clone())],
            );
            g.clients[c as usize].culprit = vec![(IdKind::ApiKey, key.clone())];
            for k in 0..3u64 {
                let head = vec![
                    ("x-api-key", key.clone()),
                    ("user-agent", "python-requests/2.31".to_string()),
                ];
                g.push(
                    c,
                    start + u64::from(i) * 2 * SEC + k * 5 * SEC,
                    ip,
                    Method::GET,
                    "/shop/cart".into(),
                    head,
                    "",
                );
            }
        }
    }
    // A prober walking sixty paths that do not exist.
    {
        let ip = v4(198, 51, net, 9);
        let c = g.client(Population::Probing, 0, vec![(IdKind::Ip, ip.to_string())]);
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        let words = [
            "backup", "config", "debug", ".git", ".env", "old", "test", "v0", "private", "admin",
        ];
        let step = if early { SEC / 4 } else { SEC };
        for k in 0..60u64 {
            let target = format!("/shop/{}{}", words[(k % 10) as usize], k / 10);
            let head = vec![("user-agent", "sqlmap/1.7".to_string())];
            g.push(
                c,
                at(Population::Probing) + k * step,
                ip,
                Method::GET,
                target,
                head,
                "",
            );
        }
    }
    // An extreme rate: a new address at ten requests a second for three minutes.
    {
        let ip = v4(198, 51, net, 70);
        let c = g.client(
            Population::ExtremeRate,
            0,
            vec![(IdKind::Ip, ip.to_string())],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        for k in 0..1_800u64 {
            let target = format!("/shop/items/{}", 1 + k % 20);
            g.push(
                c,
                at(Population::ExtremeRate) + k * 100,
                ip,
                Method::GET,
                target,
                vec![browser.clone()],
                "",
            );
        }
    }
    // Exfiltration: sixteen downloads of 4 MB, five seconds apart.
    {
        let ip = v4(198, 51, net, 80);
        let c = g.client(
            Population::Exfiltration,
            0,
            vec![(IdKind::Ip, ip.to_string())],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        for k in 0..16u64 {
            g.push(
                c,
                at(Population::Exfiltration) + k * 5 * SEC,
                ip,
                Method::GET,
                "/shop/download?bytes=4194304".into(),
                vec![browser.clone()],
                "",
            );
        }
    }
    // A decoy visitor: the fake admin API, then the real shop.
    {
        let ip = v4(198, 51, net, 23);
        let c = g.client(
            Population::DecoyVisitor,
            0,
            vec![(IdKind::Ip, ip.to_string())],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        let head = vec![("user-agent", "curl/8.5.0".to_string())];
        let start = at(Population::DecoyVisitor);
        g.push(
            c,
            start,
            ip,
            Method::GET,
            "/admin/login".into(),
            head.clone(),
            "",
        );
        g.push(
            c,
            start + 2 * SEC,
            ip,
            Method::GET,
            "/shop/items".into(),
            head,
            "",
        );
    }
    // Calls without the token the mobile API requires.
    {
        let ip = v4(198, 51, net, 30);
        let c = g.client(
            Population::MissingToken,
            0,
            vec![(IdKind::Ip, ip.to_string())],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        for k in 0..3u64 {
            g.push(
                c,
                at(Population::MissingToken) + k * 3 * SEC,
                ip,
                Method::GET,
                "/app/feed".into(),
                vec![("user-agent", "curl/8.5.0".to_string())],
                "",
            );
        }
    }
    // A method the mobile API does not allow.
    {
        let ip = v4(198, 51, net, 31);
        let token = format!("pattern-token-{round}");
        let c = g.client(
            Population::PatternViolation,
            0,
            vec![(IdKind::Ip, ip.to_string()), (IdKind::Token, token.clone())],
        );
        g.clients[c as usize].culprit = g.clients[c as usize].ids.clone();
        for k in 0..3u64 {
            let head = vec![
                ("authorization", format!("Bearer {token}")),
                ("user-agent", "curl/8.5.0".to_string()),
            ];
            g.push(
                c,
                at(Population::PatternViolation) + k * 3 * SEC,
                ip,
                Method::DELETE,
                "/app/feed".into(),
                head,
                "",
            );
        }
    }
    // A flood from six hundred fresh addresses, five requests each within two minutes:
    // nothing to catch, but it must not make any steady client look extreme.
    for i in 0..600u32 {
        let ip = v4(100, 96 + (i / 250) as u8, (i % 250) as u8, 7);
        let mut rng = Rng::new(seed, 20_000 + u64::from(round) * 1_000 + u64::from(i));
        let c = g.client(
            Population::BaselineFlood,
            i as usize,
            vec![(IdKind::Ip, ip.to_string())],
        );
        let start = at(Population::BaselineFlood);
        for _ in 0..5 {
            let t = start + rng.range(0, 120) * SEC;
            let target = format!("/shop/items/{}", rng.range(1, 21));
            g.push(c, t, ip, Method::GET, target, vec![browser.clone()], "");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_traffic_and_every_population_is_present() {
        let plan = Plan {
            seed: 7,
            minutes: 30,
            schedule: Schedule::Spread,
            round: 0,
        };
        let (a, b) = (generate(plan), generate(plan));
        assert_eq!(a.events.len(), b.events.len());
        assert!(
            a.events
                .iter()
                .zip(&b.events)
                .all(|(x, y)| x.at_ms == y.at_ms && x.target == y.target && x.ip == y.ip)
        );
        assert!(a.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        for p in Population::ALL {
            let clients: Vec<u32> = a.clients_of(p).map(|(i, _)| i).collect();
            assert!(!clients.is_empty(), "{p:?}");
            assert!(
                a.events.iter().any(|e| clients.contains(&e.client)),
                "{p:?} sends nothing"
            );
            if p.kind() == Kind::Attacker && !p.expected().is_empty() {
                assert!(a.clients_of(p).all(|(_, c)| !c.culprit.is_empty()), "{p:?}");
            }
        }
        let other = generate(Plan { round: 1, ..plan });
        let ip_of = |m: &Model| {
            m.clients_of(Population::BruteForce)
                .next()
                .map(|(_, c)| c.ids[0].1.clone())
        };
        assert_ne!(ip_of(&a), ip_of(&other), "each round has fresh attackers");
    }
}
