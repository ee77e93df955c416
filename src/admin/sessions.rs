//! The dashboard's browser sessions, owned by the application beside the other
//! components (the dashboard's handlers in [`super::dashboard`] use them).
//!
//! Sessions live in memory: they end on logout, after [`IDLE`] without a call, after
//! [`LIFETIME`], when the management secret changes, and on restart.

use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// No session lives longer than this.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; a login beyond it first drops expired ones, then the oldest.
const MAX_SESSIONS: usize = 256;

struct Session {
    user: String,
    created: Instant,
    last_used: Instant,
}

/// The dashboard's logged-in browsers.
#[derive(Default)]
pub struct Sessions {
    live: DashMap<String, Session>,
}

impl Sessions {
    /// Starts a session for `user`; its id, or `None` without randomness.
    pub fn start(&self, user: &str) -> Option<String> {
        let mut raw = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).ok()?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        if self.live.len() >= MAX_SESSIONS {
            let now = Instant::now();
            self.live.retain(|_, s| !expired(s, now));
            if self.live.len() >= MAX_SESSIONS {
                let oldest = self
                    .live
                    .iter()
                    .min_by_key(|s| s.last_used)
                    .map(|s| s.key().clone());
                if let Some(k) = oldest {
                    self.live.remove(&k);
                }
            }
        }
        let now = Instant::now();
        self.live.insert(
            id.clone(),
            Session {
                user: user.to_string(),
                created: now,
                last_used: now,
            },
        );
        Some(id)
    }

    /// The user of a live session, refreshing its idle clock.
    pub fn user(&self, id: &str) -> Option<String> {
        let now = Instant::now();
        let user = {
            let mut s = self.live.get_mut(id)?;
            if expired(&s, now) {
                None
            } else {
                s.last_used = now;
                Some(s.user.clone())
            }
        };
        if user.is_none() {
            self.live.remove(id);
        }
        user
    }

    pub fn end(&self, id: &str) {
        self.live.remove(id);
    }

    /// Ends every session (the management secret changed).
    pub fn clear(&self) {
        self.live.clear();
    }
}

fn expired(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_used) > IDLE || now.duration_since(s.created) > LIFETIME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_are_capped() {
        let s = Sessions::default();
        let id = s.start("admin").unwrap();
        assert_eq!(s.user(&id).as_deref(), Some("admin"));
        s.live.get_mut(&id).unwrap().last_used -= IDLE + Duration::from_secs(1);
        assert_eq!(s.user(&id), None, "idle too long");
        assert!(s.live.is_empty());
        for _ in 0..MAX_SESSIONS + 10 {
            s.start("admin").unwrap();
        }
        assert_eq!(s.live.len(), MAX_SESSIONS);
        let id = s.start("admin").unwrap();
        s.clear();
        assert_eq!(s.user(&id), None);
    }
}
