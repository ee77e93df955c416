//! A client's or an API's counts per report pane within one bucket: the `(pane, value) →
//! count` tables ([`Panes`]) and the panes themselves ([`Pane`]).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::metrics::agent::Os;
use crate::metrics::bucket::{Hasher, Map};

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
    pub(crate) fn interned(self) -> bool {
        !matches!(self, Pane::Ioas | Pane::ErrorCodes | Pane::Devices)
    }
}

/// The Device Types pane stores `OS_CODES + ` [`Os::code`]. Codes below are the device
/// classes of records written before (see `legacy`), read under their nearest name today.
pub(crate) const OS_CODES: u32 = 0x100;

pub(crate) fn device_label(code: u32) -> &'static str {
    match code.checked_sub(OS_CODES) {
        Some(os) => u8::try_from(os)
            .ok()
            .and_then(Os::from_code)
            .unwrap_or(Os::UNKNOWN)
            .as_str(),
        None => crate::metrics::legacy::os_of_device(code).as_str(),
    }
}

/// A slot key: the pane in the top bits, the value (dictionary id or code) below; never 0.
pub(crate) fn slot_key(pane: Pane, value: u32) -> u64 {
    ((pane as u64 + 1) << 32) | u64::from(value)
}

pub(crate) fn split_key(key: u64) -> Option<(Pane, u32)> {
    let pane = Pane::ALL.get(usize::try_from((key >> 32).checked_sub(1)?).ok()?)?;
    Some((*pane, key as u32))
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) key: AtomicU64,
    pub(crate) count: AtomicU64,
}

/// The `(pane, value) → count` table of one client or API.
///
/// A client's is small, fixed-capacity, insert-only and lock-free: linear probing over
/// slots in two chunks, the second allocated only when the first fills (most clients
/// need only the first). An API's sees many more values, so it is a capped map.
/// Values beyond the capacity are counted as overflow of their pane.
#[derive(Debug)]
pub struct Panes {
    pub(crate) table: Table,
    pub(crate) overflow: [AtomicU64; Pane::COUNT],
}

#[derive(Debug)]
pub(crate) enum Table {
    Small(Box<[OnceLock<Box<[Slot]>>]>),
    Big {
        map: Map<u64, AtomicU64>,
        len: AtomicU32,
    },
}

/// Slots per chunk for a client: 64 values in all.
pub(crate) const CLIENT_CHUNKS: [usize; 2] = [16, 48];
/// Values per API per bucket.
pub(crate) const API_VALUES: u32 = 16_384;
pub(crate) const SLOT_BYTES: i64 = 16;
pub(crate) const ENTRY_BYTES: i64 = 48;

impl Panes {
    pub(crate) fn client() -> Panes {
        Panes {
            table: Table::Small(CLIENT_CHUNKS.iter().map(|_| OnceLock::new()).collect()),
            overflow: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub(crate) fn api() -> Panes {
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
    pub(crate) fn add(&self, key: u64, n: u64) -> i64 {
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

    pub(crate) fn overflowed(&self, key: u64, n: u64) {
        if let Some((pane, _)) = split_key(key) {
            self.overflow[pane as usize].fetch_add(n, Relaxed);
        }
    }

    /// Every `(key, count)` with a count.
    pub(crate) fn each(&self, mut f: impl FnMut(u64, u64)) {
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

    pub(crate) fn overflow(&self, pane: Pane) -> u64 {
        self.overflow[pane as usize].load(Relaxed)
    }

    pub(crate) fn image(&self) -> PanesImage {
        let mut slots = Vec::new();
        self.each(|k, n| slots.push((k, n)));
        PanesImage {
            slots,
            overflow: self.overflow.iter().map(|o| o.load(Relaxed)).collect(),
        }
    }
}

/// A panes table as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PanesImage {
    pub slots: Vec<(u64, u64)>,
    pub overflow: Vec<u64>,
}
