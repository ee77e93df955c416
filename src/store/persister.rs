//! The persister as the rest of the process holds it: a handle that sends commands to
//! the persister thread (`crate::persist`, above the application it reads) and reads its health. The application owns
//! it beside the other components; the thread, which reads the application, lives apart.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, mpsc};

use serde::{Deserialize, Serialize};

/// How the persister is doing, for `status` and Prometheus.
#[derive(Debug, Default)]
pub struct Health {
    pub store: String,
    /// False after a failed commit, until one succeeds.
    pub healthy: AtomicBool,
    pub flushes: AtomicU64,
    pub errors: AtomicU64,
    /// Unix milliseconds of the last successful commit (0: none yet).
    pub last_flush_ms: AtomicI64,
    /// Rows written by the last successful commit that wrote anything.
    pub last_rows: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// The stored records are still being loaded back (reports are not complete yet).
    pub restoring: AtomicBool,
}

pub(crate) enum Command {
    Flush(tokio::sync::oneshot::Sender<Result<(), String>>),
    Stop(tokio::sync::oneshot::Sender<()>),
    /// Merge in what other nodes changed in a shared store.
    Pull,
    /// The store lost what was committed (a Redis that restarted empty): write it all.
    Resend,
}

/// The handle the rest of the process holds.
pub struct Persister {
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    pub health: Arc<Health>,
}

impl Persister {
    pub(crate) fn new(commands: mpsc::Sender<Command>, health: Arc<Health>) -> Persister {
        Persister {
            commands: Mutex::new(Some(commands)),
            health,
        }
    }

    fn send(&self, c: Command) -> bool {
        let guard = self.commands.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().is_some_and(|tx| tx.send(c).is_ok())
    }

    /// Commits whatever changed now (after an operator change that must be durable
    /// before it is acknowledged). Waits for the commit, not the request path.
    pub async fn flush_now(&self) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if !self.send(Command::Flush(tx)) {
            return Err("the persister has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the persister has stopped".into()))
    }

    /// Asks for the shared state to be merged in (cluster mode; returns at once).
    pub fn pull(&self) {
        self.send(Command::Pull);
    }

    /// Asks for everything to be written again (the store lost it; returns at once).
    pub fn resend(&self) {
        self.send(Command::Resend);
    }

    /// Final flush and stop (graceful shutdown, after the workers have stopped; not from
    /// async code). Later calls do nothing.
    pub fn stop(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.send(Command::Stop(tx)) {
            let _ = rx.blocking_recv();
        }
        self.commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }

    /// The persister's health as `status` shows it.
    pub fn status(&self) -> StoreStatus {
        let h = &self.health;
        let last = h.last_flush_ms.load(Relaxed);
        StoreStatus {
            store: h.store.clone(),
            healthy: h.healthy.load(Relaxed),
            flushes: h.flushes.load(Relaxed),
            errors: h.errors.load(Relaxed),
            last_flush: (last > 0)
                .then(|| {
                    jiff::Timestamp::from_millisecond(last)
                        .ok()
                        .map(|t| t.to_string())
                })
                .flatten(),
            last_rows: h.last_rows.load(Relaxed),
            last_error: h
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            restoring: h.restoring.load(Relaxed),
        }
    }
}

/// The persister's health at one moment, as the management API's `status` answers it
/// (`persistence`) and the CLI reads it back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The store's kind (`embedded`, `redis`).
    pub store: String,
    pub healthy: bool,
    pub flushes: u64,
    pub errors: u64,
    /// RFC 3339 time of the last successful commit (null: none yet).
    pub last_flush: Option<String>,
    pub last_rows: u64,
    pub last_error: Option<String>,
    /// The stored records are still being loaded back.
    pub restoring: bool,
}
