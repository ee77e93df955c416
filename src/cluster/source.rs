//! Where the cluster's Redis is: one server (`redis://host:port[/db]`), or the master a
//! set of Sentinels points at (`redis-sentinel://[user:password@]host:port,host:port/master[/db]`),
//! looked up again on every (re)connection so a failover is followed.
//!
//! Where it sits: near the bottom of `cluster/`; every connection the cluster opens
//! (the thread's, the store's, the reports', the spike counters') starts here.

use std::time::Duration;

use redis::{Client, Connection, RedisResult};

/// How long one Sentinel may take to answer where the master is.
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a sync Redis call may take (connect, read, write) off the request path.
pub const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// What is wrong with `redis_url` (never repeating it: it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{0}")]
    Direct(#[source] redis::RedisError),
    #[error("expected redis://host:port[/db] or redis-sentinel://host:port,.../master")]
    Scheme,
    #[error("redis-sentinel://: the master's name is missing after the hosts")]
    NoMaster,
    #[error("the master's name is empty")]
    EmptyMaster,
    #[error("database {0:?} is not a number")]
    Database(String),
    #[error("Sentinel {host}: {source}")]
    Sentinel {
        host: String,
        source: redis::RedisError,
    },
    #[error("no Sentinel hosts before the master's name")]
    NoSentinels,
}

/// The Redis a node connects to.
pub enum Source {
    Direct(Client),
    Sentinel {
        sentinels: Vec<Client>,
        master: String,
        /// `user:password@` for the master (may be empty).
        auth: String,
        /// `/db` (may be empty).
        db: String,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Direct(_) => f.write_str("Source::Direct"),
            Source::Sentinel { master, .. } => write!(f, "Source::Sentinel({master})"),
        }
    }
}

impl Source {
    /// Parses `redis_url`; the error says what is wrong with it (never repeating it).
    pub fn open(url: &str) -> Result<Source, UrlError> {
        if url.starts_with("redis://") {
            return Client::open(url)
                .map(Source::Direct)
                .map_err(UrlError::Direct);
        }
        let Some(rest) = url.strip_prefix("redis-sentinel://") else {
            return Err(UrlError::Scheme);
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (format!("{a}@"), r),
            None => (String::new(), rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or(UrlError::NoMaster)?;
        let mut parts = path.split('/');
        let master = parts
            .next()
            .filter(|m| !m.is_empty())
            .ok_or(UrlError::EmptyMaster)?;
        let db = match parts.next().filter(|d| !d.is_empty()) {
            Some(d) => {
                d.parse::<u32>()
                    .map_err(|_| UrlError::Database(d.to_string()))?;
                format!("/{d}")
            }
            None => String::new(),
        };
        let sentinels = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                Client::open(format!("redis://{h}")).map_err(|source| UrlError::Sentinel {
                    host: h.to_string(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.is_empty() {
            return Err(UrlError::NoSentinels);
        }
        Ok(Source::Sentinel {
            sentinels,
            master: master.to_string(),
            auth,
            db,
        })
    }

    /// A client for the current master. With Sentinels, each is asked in turn (at most
    /// [`SENTINEL_TIMEOUT`] each) until one names the master.
    pub fn client(&self) -> RedisResult<Client> {
        let (sentinels, master, auth, db) = match self {
            Source::Direct(c) => return Ok(c.clone()),
            Source::Sentinel {
                sentinels,
                master,
                auth,
                db,
            } => (sentinels, master, auth, db),
        };
        let mut last = None;
        for s in sentinels {
            let asked = s
                .get_connection_with_timeout(SENTINEL_TIMEOUT)
                .and_then(|mut c| {
                    c.set_read_timeout(Some(SENTINEL_TIMEOUT))?;
                    c.set_write_timeout(Some(SENTINEL_TIMEOUT))?;
                    redis::cmd("SENTINEL")
                        .arg("get-master-addr-by-name")
                        .arg(master)
                        .query::<Option<(String, u16)>>(&mut c)
                });
            match asked {
                Ok(Some((host, port))) => {
                    return Client::open(format!("redis://{auth}{host}:{port}{db}"));
                }
                Ok(None) => {
                    last = Some(redis::RedisError::from((
                        redis::ErrorKind::Io,
                        "a Sentinel does not know the master",
                        master.clone(),
                    )));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "no Sentinel answered"))
        }))
    }
}

/// Opens a sync connection (to the current master) with timeouts on every operation.
pub fn connect(source: &Source, timeout: Duration) -> RedisResult<Connection> {
    let c = source.client()?.get_connection_with_timeout(timeout)?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(matches!(
            Source::open("redis://127.0.0.1:6379"),
            Ok(Source::Direct(_))
        ));
        assert!(matches!(
            Source::open("redis-sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/2"),
            Ok(Source::Sentinel { .. })
        ));
        for bad in [
            "http://x",
            "redis-sentinel://10.0.0.1:26379",
            "redis-sentinel://10.0.0.1:26379/",
            "redis-sentinel:///mymaster",
            "redis-sentinel://h:1/m/x",
        ] {
            assert!(Source::open(bad).is_err(), "{bad}");
        }
    }
}
