//! What the activity reports read: sums of panes over buckets ([`Tally`]) and one
//! client's IoAs on one API over a period ([`AttackRow`]).

use super::bucket::ActivityBucket;
use super::panes::{Pane, Panes, device_label, split_key};
use crate::vocab::{ClientKind, Ioa};

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

    pub(crate) fn add(&mut self, b: &ActivityBucket, panes: &Panes) {
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
