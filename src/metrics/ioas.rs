//! The IoA log: the most recent raised IoAs (for `/v5/ase/attacks` and the dashboard) and a
//! count of every kind since start (Prometheus). Written by the sink ([`super::Metrics::record`])
//! when an exchange that raised IoAs completes.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::vocab::{Ioa, IoaRecord};

/// How many IoA records the log keeps.
const KEPT: usize = 10_000;

/// The most recent IoAs and counts of all of them.
pub struct IoaLog {
    // Taken only when an IoA is raised (rare by design: once per client and window), never
    // per request.
    recent: Mutex<VecDeque<IoaRecord>>,
    capacity: usize,
    counts: [AtomicU64; Ioa::ALL.len()],
}

impl Default for IoaLog {
    fn default() -> Self {
        IoaLog::new(KEPT)
    }
}

impl std::fmt::Debug for IoaLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoaLog")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl IoaLog {
    pub fn new(capacity: usize) -> IoaLog {
        IoaLog {
            recent: Mutex::new(VecDeque::new()),
            capacity,
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn push(&self, r: IoaRecord) {
        self.counts[r.ioa.index()].fetch_add(1, Relaxed);
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back(r);
    }

    /// The kept records, oldest first.
    pub fn recent(&self) -> Vec<IoaRecord> {
        self.recent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// IoAs raised since start, per kind.
    pub fn count(&self, ioa: Ioa) -> u64 {
        self.counts[ioa.index()].load(Relaxed)
    }
}
