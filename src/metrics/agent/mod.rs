//! The User-Agent header, classified the way Ping's ABS reports it: a browser group
//! ([`Browser`]: `CHROME`, `FIREFOX`, `DOWNLOAD` for curl and wget, `BOT`, …) for
//! `user_agent` and an operating system ([`Os`]: `WINDOWS_10`, `MAC_OS_X`, `IOS`, …) for
//! `device`, in the vocabulary of the Java library ABS uses, user-agent-utils 1.21.
//!
//! Where it sits: the recorder ([`super::bucket`]) classifies each distinct agent once per
//! bucket, when the agent is first seen there, and keeps the answer beside the raw string;
//! later requests with the same agent reuse it through the bucket's read guard. Between
//! buckets, and for agents beyond a bucket's cap, an API's [`Cache`] remembers answers. A
//! classification is a lower-casing and at most a few hundred substring tests, never a
//! regex.
//!
//! The rules are the library's own (see [`browser`] and [`os`]), not a mapping from another
//! parser's answers: they reproduce its quirks, which are what ABS shows (Chromium Edge and
//! Opera are `CHROME`, `python-requests`, Go and Java clients `BOT`, a bot's OS `UNKNOWN`).
//! `corpus.tsv` holds 144 real agents (browsers, phones, consoles, bots, tools) with the
//! library's answers, and the tests hold every one.

pub mod browser;
pub mod os;

pub use browser::Browser;
pub use os::Os;

/// What enforcer reports of one User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub struct Agent {
    pub browser: Browser,
    pub os: Os,
}

impl Agent {
    /// A request without a User-Agent, or one nothing recognises.
    pub const UNKNOWN: Agent = Agent {
        browser: Browser::Unknown,
        os: Os::UNKNOWN,
    };

    /// Classifies a User-Agent header value (`UserAgent.parseUserAgentString`).
    pub fn of(user_agent: &str) -> Agent {
        // The library lower-cases with Java's (Unicode) toLowerCase; so does this.
        let l = user_agent.to_lowercase();
        let browser = Browser::of_lowercase(&l);
        // The library does not look for the OS of a plain BOT (its child BOT_MOBILE,
        // Googlebot-Mobile, does get one).
        let os = if browser == Browser::Bot && !l.contains("googlebot-mobile") {
            Os::UNKNOWN
        } else {
            Os::of_lowercase(&l)
        };
        Agent { browser, os }
    }
}

/// A small lock-free memo of classifications, shared by an API's buckets: a new minute
/// bucket meets mostly agents an earlier one classified, and a bucket that reached its cap
/// of distinct agents (`metrics_max_user_agents`) keeps none of the rest, so without it
/// those would be classified on every request. Direct-mapped: each slot is one atomic
/// holding a 48-bit hash of the agent and its 16-bit class code, and a collision only
/// means classifying again. The hash is seeded per process, so clients cannot aim at a
/// slot.
#[derive(Debug)]
pub struct Cache {
    slots: Box<[std::sync::atomic::AtomicU64]>,
    hasher: foldhash::fast::RandomState,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::new()
    }
}

impl Cache {
    /// Slots (a power of two): 32 KiB.
    const SLOTS: usize = 4_096;

    pub fn new() -> Cache {
        Cache {
            slots: (0..Cache::SLOTS)
                .map(|_| std::sync::atomic::AtomicU64::new(0))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// [`Agent::of`], remembered.
    pub fn of(&self, user_agent: &str) -> Agent {
        use std::hash::BuildHasher;
        use std::sync::atomic::Ordering::Relaxed;
        let hash = self.hasher.hash_one(user_agent);
        let tag = hash >> 16;
        let Some(slot) = self.slots.get(hash as usize & (Cache::SLOTS - 1)) else {
            return Agent::of(user_agent);
        };
        let held = slot.load(Relaxed);
        if held >> 16 == tag
            && let Ok(agent) = Agent::try_from(held as u16)
        {
            return agent;
        }
        let agent = Agent::of(user_agent);
        slot.store(tag << 16 | u64::from(u16::from(agent)), Relaxed);
        agent
    }
}

/// Stored as one number: the browser's code in the high byte, the OS's in the low one.
impl From<Agent> for u16 {
    fn from(a: Agent) -> u16 {
        u16::from(a.browser.code()) << 8 | u16::from(a.os.code())
    }
}

impl TryFrom<u16> for Agent {
    type Error = String;

    fn try_from(code: u16) -> Result<Agent, String> {
        let [b, o] = code.to_be_bytes();
        Browser::from_code(b)
            .zip(Os::from_code(o))
            .map(|(browser, os)| Agent { browser, os })
            .ok_or_else(|| format!("{code:#06x} is not a stored user agent class"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (agent, browser group, reported OS, the library's OS constant, what it is).
    fn corpus() -> Vec<[&'static str; 5]> {
        include_str!("corpus.tsv")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                [f[0], f[1], f[2], f[3], f[4]]
            })
            .collect()
    }

    #[test]
    fn the_corpus_gets_exactly_what_the_library_answered() {
        let rows = corpus();
        assert_eq!(rows.len(), 144);
        let mut wrong = Vec::new();
        for [ua, browser, os, leaf, what] in rows {
            let got = Agent::of(ua);
            let got_leaf =
                if got.browser == Browser::Bot && !ua.to_lowercase().contains("googlebot-mobile") {
                    "UNKNOWN"
                } else {
                    os::leaf(&ua.to_lowercase())
                };
            if (got.browser.as_str(), got.os.as_str(), got_leaf) != (browser, os, leaf) {
                wrong.push(format!(
                    "{what}: want {browser}/{os} ({leaf}), got {}/{} ({got_leaf}): {ua}",
                    got.browser.as_str(),
                    got.os.as_str()
                ));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    #[test]
    fn the_corpus_covers_browsers_phones_bots_and_tools() {
        let rows = corpus();
        let count = |col: usize, name: &str| rows.iter().filter(|r| r[col] == name).count();
        assert!(count(1, "BOT") >= 10 && count(1, "DOWNLOAD") >= 3);
        for name in [
            "CHROME", "FIREFOX", "SAFARI", "IE", "EDGE", "OPERA", "MOZILLA",
        ] {
            assert!(count(1, name) >= 1, "{name}");
        }
        for name in [
            "IOS",
            "ANDROID",
            "WINDOWS_10",
            "WINDOWS_7",
            "WINDOWS_XP",
            "MAC_OS_X",
            "LINUX",
        ] {
            assert!(count(2, name) >= 1, "{name}");
        }
    }

    #[test]
    fn what_abs_shows_for_common_clients() {
        for (ua, browser, os) in [
            ("curl/8.5.0", "DOWNLOAD", "UNKNOWN"),
            ("Wget/1.21.2", "DOWNLOAD", "UNKNOWN"),
            ("python-requests/2.31.0", "BOT", "UNKNOWN"),
            ("Go-http-client/1.1", "BOT", "UNKNOWN"),
            ("okhttp/4.12.0", "UNKNOWN", "UNKNOWN"),
            ("", "UNKNOWN", "UNKNOWN"),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "BOT",
                "UNKNOWN",
            ),
            (
                "Mozilla/5.0 (Windows NT 6.1; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/109.0.0.0 Safari/537.36",
                "CHROME",
                "WINDOWS_7",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "SAFARI",
                "IOS",
            ),
            (
                "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
                "FIREFOX",
                "LINUX",
            ),
        ] {
            let a = Agent::of(ua);
            assert_eq!((a.browser.as_str(), a.os.as_str()), (browser, os), "{ua}");
        }
    }

    #[test]
    fn the_cache_answers_as_the_classifier() {
        let cache = Cache::new();
        for _ in 0..2 {
            for [ua, ..] in corpus() {
                assert_eq!(cache.of(ua), Agent::of(ua), "{ua}");
            }
        }
    }

    #[test]
    fn the_stored_code_round_trips() {
        for b in Browser::ALL {
            for os in Os::all() {
                let a = Agent { browser: b, os };
                assert_eq!(Agent::try_from(u16::from(a)), Ok(a));
            }
        }
        assert!(Agent::try_from(0xff00).is_err());
        let bytes = postcard::to_allocvec(&Agent::of("curl/8.0")).unwrap();
        assert_eq!(
            postcard::from_bytes::<Agent>(&bytes).unwrap(),
            Agent::of("curl/8.0")
        );
    }
}
