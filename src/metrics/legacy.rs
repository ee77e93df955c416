//! Records written before user agents were named as ABS names them (stored layout 1), read
//! and converted to today's, so an upgraded node still answers every report from its store
//! (and from older nodes' images in a cluster).
//!
//! Layout 1 kept one of 13 device classes (woothee's: `UNKNOWN`, `MAC_OS_X`, `WINDOWS`,
//! `WINDOWS_PHONE`, `LINUX`, `BSD`, `CHROME_OS`, `ANDROID`, `IOS`, `BLACKBERRY`,
//! `MOBILE_PHONE`, `GAME_CONSOLE`, `BOT`) and no browser group. A bucket image holds every
//! raw agent it interned, so their requests are classified again, exactly; requests whose
//! agent was not kept (beyond the bucket's cap) keep their old class under its nearest name
//! today ([`os_of_device`]) and browser group `UNKNOWN`. Activity records never held the
//! agent: their device codes are read through [`os_of_device`] as they are.

use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::agent::{Agent, Browser, Os};
use super::bucket::{self, ABSENT, InternerImage};

/// Today's name for a layout-1 device class: the same where the library has it, the
/// library's answer for what the class held otherwise (it has no BSD, and names no OS for
/// bots; consoles and feature phones of unknown kind are `UNKNOWN`, `UNKNOWN_MOBILE`).
pub(super) fn os_of_device(code: u32) -> Os {
    let name = match code {
        1 => "MAC_OS_X",
        2 | 3 => "WINDOWS",
        4 => "LINUX",
        6 => "CHROME_OS",
        7 => "ANDROID",
        8 => "IOS",
        9 => "BLACKBERRY",
        10 => "UNKNOWN_MOBILE",
        _ => "UNKNOWN",
    };
    Os::named(name).unwrap_or(Os::UNKNOWN)
}

/// The device classes of layout 1.
const DEVICES: usize = 13;

/// A bucket image of layout 1, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Image {
    pub start: i64,
    pub requests: u64,
    pub success: u64,
    pub no_session: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_us: u64,
    pub devices: Vec<u64>,
    pub methods: InternerImage<String>,
    pub ips: InternerImage<IpAddr>,
    pub sessions: InternerImage<String>,
    pub paths: InternerImage<String>,
    /// The device class of each agent (an enum variant index, which postcard writes as
    /// the varint this reads).
    pub uas: InternerImage<String, u32>,
    pub servers: InternerImage<String>,
    pub combos: Vec<(Combo, u64)>,
    pub combo_count: u32,
    pub combo_overflow: u64,
}

/// A combination of layout 1: the device class, no browser group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) struct Combo {
    pub session: u32,
    pub ip: u32,
    pub path: u32,
    pub ua: u32,
    pub server: u32,
    pub method: u32,
    pub device: u8,
}

/// Converts a layout-1 image.
pub(super) fn image(old: Image) -> bucket::Image {
    // Each kept agent, classified again; its requests counted under its new OS and taken
    // off its old class, whose remainder (agents beyond the cap, requests without one)
    // keeps the old class's nearest name.
    let mut devices = vec![0u64; Os::COUNT];
    let mut attributed = [0u64; DEVICES];
    let mut agents: HashMap<u32, Agent> = HashMap::new();
    let uas = InternerImage {
        next: old.uas.next,
        overflow: old.uas.overflow,
        entries: old
            .uas
            .entries
            .into_iter()
            .map(|(ua, id, count, device)| {
                let agent = Agent::of(&ua);
                devices[agent.os.index()] += count;
                if let Some(a) = usize::try_from(device)
                    .ok()
                    .and_then(|d| attributed.get_mut(d))
                {
                    *a += count;
                }
                agents.insert(id, agent);
                (ua, id, count, agent)
            })
            .collect(),
    };
    for (code, (n, taken)) in old.devices.iter().zip(attributed).enumerate() {
        let os = os_of_device(u32::try_from(code).unwrap_or(u32::MAX));
        devices[os.index()] += n.saturating_sub(taken);
    }
    // Two old combinations that differ only in a class that now has one name merge.
    let mut combos: HashMap<bucket::Combo, u64> = HashMap::new();
    for (c, n) in old.combos {
        let agent = match agents.get(&c.ua) {
            Some(agent) => *agent,
            None if c.ua == ABSENT => Agent::UNKNOWN,
            None => Agent {
                browser: Browser::Unknown,
                os: os_of_device(u32::from(c.device)),
            },
        };
        let combo = bucket::Combo {
            session: c.session,
            ip: c.ip,
            path: c.path,
            ua: c.ua,
            server: c.server,
            method: c.method,
            os: agent.os.code(),
            browser: agent.browser.code(),
        };
        *combos.entry(combo).or_default() += n;
    }
    bucket::Image {
        start: old.start,
        requests: old.requests,
        success: old.success,
        no_session: old.no_session,
        bytes_in: old.bytes_in,
        bytes_out: old.bytes_out,
        latency_us: old.latency_us,
        devices,
        methods: old.methods,
        ips: old.ips,
        sessions: old.sessions,
        paths: old.paths,
        uas,
        servers: old.servers,
        combos: combos.into_iter().collect(),
        combo_count: old.combo_count,
        combo_overflow: old.combo_overflow,
    }
}

// The decoder lives beside the older layout it converts, so that `bucket` (today's layout)
// needs nothing from here.
impl bucket::Image {
    /// Reads a stored image, of this layout or of the one before (converted).
    pub fn decode(bytes: &[u8]) -> Result<bucket::Image, bucket::ImageError> {
        match bytes {
            [bucket::IMAGE_MARK, bucket::IMAGE_VERSION, rest @ ..] => {
                Ok(postcard::from_bytes(rest)?)
            }
            [bucket::IMAGE_MARK, version, ..] => Err(bucket::ImageError::Version(*version)),
            _ => Ok(image(postcard::from_bytes(bytes)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::bucket::OVERFLOW;
    use crate::metrics::{ApiRecorder, Caps};

    const CHROME_WINDOWS_10: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const START: i64 = 1_700_000_040;

    fn interner<K>(entries: Vec<(K, u32, u64, ())>) -> InternerImage<K> {
        InternerImage {
            next: entries.len() as u32,
            overflow: 0,
            entries,
        }
    }

    /// A layout-1 bucket: 3 requests from Chrome on Windows 10 (class WINDOWS), 2 from
    /// curl (UNKNOWN), 1 without an agent (UNKNOWN) and 4 from agents beyond the cap (one
    /// IOS, three BOT), all in session `s`.
    fn layout_1() -> Image {
        let combo = |ua: u32, device: u8| Combo {
            session: 0,
            ip: 0,
            path: 0,
            ua,
            server: ABSENT,
            method: 0,
            device,
        };
        let mut devices = vec![0; DEVICES];
        devices[2] = 3;
        devices[0] = 3;
        devices[8] = 1;
        devices[12] = 3;
        Image {
            start: START,
            requests: 10,
            success: 10,
            no_session: 0,
            bytes_in: 0,
            bytes_out: 0,
            latency_us: 0,
            devices,
            methods: interner(vec![("GET".into(), 0, 10, ())]),
            ips: interner(vec![("10.0.0.1".parse().unwrap(), 0, 10, ())]),
            sessions: interner(vec![("s".into(), 0, 10, ())]),
            paths: interner(vec![("/a".into(), 0, 10, ())]),
            uas: InternerImage {
                next: 2,
                overflow: 4,
                entries: vec![
                    (CHROME_WINDOWS_10.into(), 0, 3, 2),
                    ("curl/8.5.0".into(), 1, 2, 0),
                ],
            },
            servers: interner(vec![]),
            combos: vec![
                (combo(0, 2), 3),
                (combo(1, 0), 2),
                (combo(ABSENT, 0), 1),
                (combo(OVERFLOW, 8), 1),
                (combo(OVERFLOW, 12), 3),
            ],
            combo_count: 5,
            combo_overflow: 0,
        }
    }

    #[test]
    fn a_layout_1_image_reads_with_todays_names() {
        let bytes = postcard::to_stdvec(&layout_1()).unwrap();
        let image = bucket::Image::decode(&bytes).unwrap();
        let named = |counts: &[u64]| -> Vec<(&str, u64)> {
            Os::all()
                .zip(counts)
                .filter(|(_, n)| **n > 0)
                .map(|(os, n)| (os.as_str(), *n))
                .collect()
        };
        assert_eq!(
            named(&image.devices),
            [("UNKNOWN", 6), ("WINDOWS_10", 3), ("IOS", 1)]
        );
        let r = ApiRecorder::new("a", Caps::default(), 1 << 20);
        assert!(r.restore(0, image));
        let snap = r.snapshot(START, START + 60);
        let s = &snap.sessions["s"];
        let browsers: Vec<(&str, u64)> = s.browsers.iter().map(|(b, n)| (b.as_str(), n)).collect();
        assert_eq!(browsers, [("UNKNOWN", 5), ("CHROME", 3), ("DOWNLOAD", 2)]);
        let oses: Vec<(&str, u64)> = s.devices.iter().map(|(o, n)| (o.as_str(), n)).collect();
        assert_eq!(oses, [("UNKNOWN", 6), ("WINDOWS_10", 3), ("IOS", 1)]);
        assert_eq!(s.requests, 10);
        // Recording goes on with the classes kept for the agents.
        let get = http::Method::GET;
        let agent = r.record_at(
            &crate::metrics::Observation {
                time: START,
                method: &get,
                path: "/a",
                client_ip: "10.0.0.1".parse().unwrap(),
                session: Some("s"),
                user_agent: Some("curl/8.5.0"),
                status: Some(200),
                server: None,
                request_bytes: 0,
                response_bytes: 0,
                latency_us: 0,
            },
            START + 1,
        );
        assert_eq!(agent.browser, Browser::Download);
    }

    #[test]
    fn todays_images_round_trip_and_no_bucket_start_looks_like_the_mark() {
        let image = image(layout_1());
        let bytes = image.encode().unwrap();
        assert_eq!(bucket::Image::decode(&bytes).unwrap(), image);
        assert!(bucket::Image::decode(&[1, 99, 0]).is_err());
        // Every bucket starts on a minute: its layout-1 encoding never begins with the mark.
        for start in (-100_000..100_000).map(|m| m * 60).chain([START, 0]) {
            let old = Image {
                start,
                ..layout_1()
            };
            assert_ne!(postcard::to_stdvec(&old).unwrap()[0], 1, "{start}");
        }
    }
}
