//! Why a read of the cluster's Redis failed: which Redis (its masked `redis_url`), which
//! command, on which key. The registry ([`super::registry`]) and the other nodes' rows
//! ([`super::remote`]) answer with it; the admin handlers turn it into their usual
//! answers (a report of this node alone, or `last_error` in `/v4/ase/cluster`).

/// A failed Redis read of the cluster.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("Redis {redis}: cannot connect: {source}")]
    Connect {
        /// `redis_url` with any password masked.
        redis: String,
        source: redis::RedisError,
    },
    #[error("Redis {redis}: {command} {key}: {source}")]
    Command {
        redis: String,
        command: &'static str,
        key: String,
        source: redis::RedisError,
    },
}
