//! Scoring a replayed [`Model`]: per population, whether its attackers were caught (and
//! after how many of their requests), and whether any benign client was flagged (an IoA
//! against one of its identifiers) or blocked (a request answered by enforcer instead of
//! the backend). Pure: the model, what each request got, and the IoAs raised.

use std::collections::HashSet;
use std::fmt;

use super::model::{IdKind, Kind, Model, Population};
use super::replay::{Detected, Mode, Outcome};

/// One population's result.
#[derive(Debug, Clone)]
pub struct Row {
    pub population: Population,
    pub clients: usize,
    pub requests: usize,
    /// Attackers: the expected IoAs (empty for the flood); `None` when not expected in
    /// this mode (pattern enforcement is inline only).
    pub expected: Option<Vec<&'static str>>,
    /// Attackers: clients with an expected IoA against one of their culprit identifiers.
    pub caught: usize,
    /// Attackers: the population's requests sent before its first expected IoA.
    pub until_caught: Option<usize>,
    /// Clients with any IoA against any of their identifiers.
    pub flagged: usize,
    /// Clients with at least one request answered by enforcer.
    pub blocked: usize,
    pub requests_blocked: usize,
    /// Requests that got no answer at all.
    pub failed: usize,
}

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Score {
    pub mode: Mode,
    pub seed: u64,
    pub minutes: u32,
    pub speed: f64,
    pub rows: Vec<Row>,
    /// Every IoA against a benign client: `typo-03: multi_client_login_attack on ip 203.0.113.103`.
    pub false_positives: Vec<String>,
}

impl Score {
    pub fn rows_of(&self, kind: Kind) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(move |r| r.population.kind() == kind)
    }

    /// Benign clients (victims apart): (clients, flagged, blocked, requests, requests blocked).
    pub fn benign(&self) -> (usize, usize, usize, usize, usize) {
        self.rows_of(Kind::Benign).fold((0, 0, 0, 0, 0), |a, r| {
            (
                a.0 + r.clients,
                a.1 + r.flagged,
                a.2 + r.blocked,
                a.3 + r.requests,
                a.4 + r.requests_blocked,
            )
        })
    }

    /// Attacker populations expected to be caught in this mode, and those that were (at
    /// least one client of each).
    pub fn attackers_caught(&self) -> (usize, usize) {
        let targets: Vec<&Row> = self
            .rows_of(Kind::Attacker)
            .filter(|r| r.expected.as_ref().is_some_and(|e| !e.is_empty()))
            .collect();
        (
            targets.len(),
            targets.iter().filter(|r| r.caught > 0).count(),
        )
    }

    /// The share of benign clients flagged.
    pub fn flagged_share(&self) -> f64 {
        let (clients, flagged, ..) = self.benign();
        flagged as f64 / clients.max(1) as f64
    }
}

/// Scores a run of `model` whose requests got `outcomes`, with `ioas` raised.
pub fn score(
    model: &Model,
    mode: Mode,
    speed: f64,
    outcomes: &[Outcome],
    ioas: &[Detected],
) -> Score {
    let mut client_blocked = vec![false; model.clients.len()];
    for (e, o) in model.events.iter().zip(outcomes) {
        if o.blocked {
            client_blocked[e.client as usize] = true;
        }
    }
    let mut false_positives = Vec::new();
    for c in model
        .clients
        .iter()
        .filter(|c| c.population.kind() == Kind::Benign)
    {
        for d in ioas {
            if c.ids
                .iter()
                .any(|(k, v)| k.as_str() == d.client_type && *v == d.client_id)
            {
                false_positives.push(format!(
                    "{}: {} on {} {}",
                    c.name, d.name, d.client_type, d.client_id
                ));
            }
        }
    }
    let mut rows = Vec::new();
    for p in Population::ALL {
        let members: Vec<u32> = model.clients_of(p).map(|(i, _)| i).collect();
        let member_set: HashSet<u32> = members.iter().copied().collect();
        let requests: Vec<(usize, &Outcome)> = model
            .events
            .iter()
            .enumerate()
            .filter(|(_, e)| member_set.contains(&e.client))
            .map(|(i, _)| (i, &outcomes[i]))
            .collect();
        let against = |ids: &[(IdKind, String)], names: Option<&[&str]>| {
            ioas.iter()
                .filter(|d| {
                    ids.iter()
                        .any(|(k, v)| k.as_str() == d.client_type && *v == d.client_id)
                        && names.is_none_or(|n| n.contains(&d.name.as_str()))
                })
                .map(|d| d.at_ms)
                .min()
        };
        let expected: Option<Vec<&'static str>> = (!(p.inline_only() && mode == Mode::Sideband))
            .then(|| p.expected().iter().map(|i| i.name()).collect());
        let mut caught = 0;
        let mut first_caught: Option<i64> = None;
        let mut flagged = 0;
        let mut blocked = 0;
        for &m in &members {
            let c = &model.clients[m as usize];
            if against(&c.ids, None).is_some() {
                flagged += 1;
            }
            if let Some(names) = expected.as_ref().filter(|e| !e.is_empty())
                && let Some(at) = against(&c.culprit, Some(names))
            {
                caught += 1;
                first_caught = Some(first_caught.map_or(at, |f| f.min(at)));
            }
            if client_blocked[m as usize] {
                blocked += 1;
            }
        }
        rows.push(Row {
            population: p,
            clients: members.len(),
            requests: requests.len(),
            caught,
            until_caught: first_caught
                .map(|at| requests.iter().filter(|(_, o)| o.sent_ms <= at).count()),
            expected,
            flagged,
            blocked,
            requests_blocked: requests.iter().filter(|(_, o)| o.blocked).count(),
            failed: requests.iter().filter(|(_, o)| o.failed).count(),
        });
    }
    Score {
        mode,
        seed: model.plan.seed,
        minutes: model.plan.minutes,
        speed,
        rows,
        false_positives,
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Inline => "inline",
            Mode::Sideband => "sideband",
        };
        writeln!(
            f,
            "{mode}: {} simulated minutes at {}x, seed {}",
            self.minutes, self.speed, self.seed
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| population | clients | requests | expected IoA | caught | requests until caught | flagged | blocked clients | blocked requests |"
        )?;
        writeln!(f, "|---|---:|---:|---|---:|---:|---:|---:|---:|")?;
        for r in &self.rows {
            let expected = match &r.expected {
                None => "(inline only)".to_string(),
                Some(e) if e.is_empty() => "none".to_string(),
                Some(e) => e.join(", "),
            };
            let is_attack = r.population.kind() == Kind::Attacker;
            let caught = if is_attack && r.expected.as_ref().is_some_and(|e| !e.is_empty()) {
                format!("{}/{}", r.caught, r.clients)
            } else {
                "–".into()
            };
            let until = r.until_caught.map_or("–".to_string(), |n| n.to_string());
            let kind = match r.population.kind() {
                Kind::Benign => "benign",
                Kind::Victim => "victim",
                Kind::Attacker => "attacker",
            };
            writeln!(
                f,
                "| {} ({kind}) | {} | {} | {expected} | {caught} | {until} | {} | {} | {} |",
                r.population.name(),
                r.clients,
                r.requests,
                r.flagged,
                r.blocked,
                r.requests_blocked
            )?;
        }
        let (clients, flagged, blocked, requests, requests_blocked) = self.benign();
        let (targets, caught) = self.attackers_caught();
        let failed: usize = self.rows.iter().map(|r| r.failed).sum();
        for fp in &self.false_positives {
            writeln!(f, "benign client flagged: {fp}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "attacker populations caught: {caught} of {targets}; benign clients flagged: {flagged} of {clients} ({:.1}%), blocked: {blocked}; benign requests blocked: {requests_blocked} of {requests}; requests without an answer: {failed}",
            100.0 * flagged as f64 / clients.max(1) as f64
        )
    }
}
