//! One bucket's dictionary: the strings and addresses it has seen, each with an id, so
//! the pane tables hold small ids instead of values.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::metrics::bucket::{Hasher, Map};
use crate::vocab::ClientKind;

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
pub(crate) struct Dict {
    pub(crate) texts: Map<Arc<str>, u32>,
    pub(crate) ips: Map<IpAddr, u32>,
    pub(crate) words: Map<u32, Word>,
    pub(crate) next: AtomicU32,
}

pub(crate) const WORD_BYTES: i64 = 96;

impl Dict {
    pub(crate) fn new() -> Dict {
        Dict {
            texts: Map::with_hasher(Hasher::default()),
            ips: Map::with_hasher(Hasher::default()),
            words: Map::with_hasher(Hasher::default()),
            next: AtomicU32::new(0),
        }
    }

    pub(crate) fn find(&self, w: WordRef<'_>) -> Option<u32> {
        match w {
            WordRef::Ip(ip) => self.ips.get(&ip).map(|e| *e),
            WordRef::Text(t) => self.texts.get(t).map(|e| *e),
        }
    }

    /// The id of `w`, adding it when `room` allows; returns the bytes charged.
    pub(crate) fn intern(&self, w: WordRef<'_>, room: bool) -> (Option<u32>, i64) {
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

    pub(crate) fn word(&self, id: u32) -> Option<Word> {
        self.words.get(&id).map(|w| w.clone())
    }

    pub(crate) fn insert(&self, id: u32, w: Word) {
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

pub(crate) fn word_ref(kind: ClientKind, value: &str) -> WordRef<'_> {
    match (kind, value.parse::<IpAddr>()) {
        (ClientKind::Ip, Ok(ip)) => WordRef::Ip(ip),
        _ => WordRef::Text(value),
    }
}
