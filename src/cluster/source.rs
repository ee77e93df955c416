//! Where the cluster's Redis is: one server (`redis://host:port[/db]`), or the master a
//! set of Sentinels points at (`redis-sentinel://[user:password@]host:port,host:port/master[/db]`),
//! looked up again on every (re)connection so a failover is followed.

use std::sync::Mutex;

use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, RedisConnectionInfo, RedisResult};

/// The Redis a node connects to.
pub enum Source {
    Direct(Client),
    Sentinel(Mutex<SentinelClient>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Direct(_) => f.write_str("Source::Direct"),
            Source::Sentinel(_) => f.write_str("Source::Sentinel"),
        }
    }
}

impl Source {
    /// Parses `redis_url`; the error says what is wrong with it (never repeating it).
    pub fn open(url: &str) -> Result<Source, String> {
        if url.starts_with("redis://") {
            return Client::open(url)
                .map(Source::Direct)
                .map_err(|e| e.to_string());
        }
        let Some(rest) = url.strip_prefix("redis-sentinel://") else {
            return Err(
                "expected redis://host:port[/db] or redis-sentinel://host:port,.../master".into(),
            );
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hosts, path) = rest
            .split_once('/')
            .ok_or("redis-sentinel://: the master's name is missing after the hosts")?;
        let mut parts = path.split('/');
        let master = parts
            .next()
            .filter(|m| !m.is_empty())
            .ok_or("the master's name is empty")?;
        let mut info = RedisConnectionInfo::default();
        if let Some(db) = parts.next().filter(|d| !d.is_empty()) {
            info = info.set_db(
                db.parse::<i64>()
                    .map_err(|_| format!("database {db:?} is not a number"))?,
            );
        }
        if let Some(auth) = auth {
            let (user, password) = auth.split_once(':').unwrap_or(("", auth));
            if !user.is_empty() {
                info = info.set_username(user);
            }
            info = info.set_password(password);
        }
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("redis://{h}"))
            .collect();
        if sentinels.is_empty() {
            return Err("no Sentinel hosts before the master's name".into());
        }
        let node = SentinelNodeConnectionInfo::default().set_redis_connection_info(info);
        SentinelClient::build(
            sentinels,
            master.to_string(),
            Some(node),
            SentinelServerType::Master,
        )
        .map(|s| Source::Sentinel(Mutex::new(s)))
        .map_err(|e| e.to_string())
    }

    /// A client for the current master.
    pub fn client(&self) -> RedisResult<Client> {
        match self {
            Source::Direct(c) => Ok(c.clone()),
            Source::Sentinel(s) => s.lock().unwrap_or_else(|p| p.into_inner()).get_client(),
        }
    }
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
            Ok(Source::Sentinel(_))
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
